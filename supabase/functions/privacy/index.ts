// Supabase Edge Function `privacy`: the traveler's GDPR rights.
//
//   GET    /privacy/export    everything held about them, as a JSON download (streamed)
//   DELETE /privacy/account   erase the account {confirmation} (needs a recent sign-in and an Idempotency-Key)

import {
  type EraseAccountRequest,
  forwarded,
  problem,
  refused,
  requireToken,
  segmentsAfter,
  Sidecar,
  SidecarError,
  withJsonBody,
} from "@parker-wallet/sidecar";

const sidecar = Sidecar.fromEnv();

export async function handler(req: Request): Promise<Response> {
  const refused = requireToken(req);
  if (refused) return refused;
  const caller = forwarded(req);
  const path = segmentsAfter("privacy", req.url).join("/");
  if (req.method === "GET" && path === "export") return await exportData(caller);
  if (req.method === "DELETE" && path === "account") {
    return await withJsonBody<EraseAccountRequest>(req, (body) => sidecar.api.eraseAccount(caller, body));
  }
  return problem(404, "not_found", "No such privacy route");
}

/** The export streamed through as the sidecar writes it. */
async function exportData(caller: Headers): Promise<Response> {
  try {
    const upstream = await sidecar.api.exportData(caller);
    const headers = new Headers({ "content-type": "application/json", "cache-control": "no-store" });
    const disposition = upstream.headers.get("content-disposition");
    if (disposition) headers.set("content-disposition", disposition);
    return new Response(upstream.body, { status: upstream.status, headers });
  } catch (error) {
    // Refusals (429 while another export runs, 401) pass on as problem+json.
    if (error instanceof SidecarError) return refused(error);
    throw error;
  }
}

if (import.meta.main) {
  Deno.serve(handler);
}
