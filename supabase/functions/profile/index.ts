// Supabase Edge Function `profile`: how complete the traveler's profile is,
// with one recommendation per missing field (the extension scores it).
//
//   GET /profile

import { forwarded, problem, requireToken, respond, segmentsAfter, Sidecar } from "@parker-wallet/sidecar";

const sidecar = Sidecar.fromEnv();

export function handler(req: Request): Promise<Response> | Response {
  const refused = requireToken(req);
  if (refused) return refused;
  if (req.method !== "GET" || segmentsAfter("profile", req.url).length > 0) {
    return problem(404, "not_found", "No such profile route");
  }
  return respond(sidecar.api.showProfile(forwarded(req)));
}

if (import.meta.main) {
  Deno.serve(handler);
}
