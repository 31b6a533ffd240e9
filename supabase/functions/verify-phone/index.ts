// Supabase Edge Function `verify-phone`: the traveler proves a phone number
// with a code Twilio Verify sends (the sidecar holds the Twilio keys).
//
//   POST /verify-phone         send a code {phone_number} (E.164)
//   POST /verify-phone/check   check it {code}; the profile's score moves

import {
  forwarded,
  type PhoneCodeRequest,
  type PhoneVerificationRequest,
  problem,
  requireToken,
  segmentsAfter,
  Sidecar,
  withJsonBody,
} from "@parker-wallet/sidecar";

const sidecar = Sidecar.fromEnv();

export function handler(req: Request): Promise<Response> | Response {
  const refused = requireToken(req);
  if (refused) return refused;
  const caller = forwarded(req);
  const path = segmentsAfter("verify-phone", req.url).join("/");
  if (req.method === "POST" && path === "") {
    return withJsonBody<PhoneVerificationRequest>(req, (body) => sidecar.api.startPhoneVerification(caller, body));
  }
  if (req.method === "POST" && path === "check") {
    return withJsonBody<PhoneCodeRequest>(req, (body) => sidecar.api.checkPhoneCode(caller, body));
  }
  return problem(404, "not_found", "No such phone route");
}

if (import.meta.main) {
  Deno.serve(handler);
}
