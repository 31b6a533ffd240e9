// Supabase Edge Function `manage-payment-methods`: the traveler's wallet, a
// thin layer over the Parker Wallet sidecar. The traveler's JWT, the
// Idempotency-Key and the audit headers are passed on untouched; the sidecar
// verifies the token and acts for that traveler only (RLS holds it to that).
// Nothing secret lives here: the Stripe and KMS keys stay in the sidecar.
//
//   GET    /manage-payment-methods                  the saved cards
//   POST   /manage-payment-methods/setup-intents    a SetupIntent for Stripe.js
//   POST   /manage-payment-methods                  save the confirmed card {setup_intent_id, off_session_consent}
//   POST   /manage-payment-methods/{id}/default     make it the default
//   DELETE /manage-payment-methods/{id}             delete it
//   POST   /manage-payment-methods/{id}/consent     consent to off-session charges {text_version}
//   DELETE /manage-payment-methods/{id}/consent     withdraw that consent

import {
  type AddPaymentMethodRequest,
  type CardConsentRequest,
  forwarded,
  isUuid,
  problem,
  requireToken,
  respond,
  segmentsAfter,
  Sidecar,
  withJsonBody,
} from "@parker-wallet/sidecar";

const sidecar = Sidecar.fromEnv();

export function handler(req: Request): Promise<Response> | Response {
  const refused = requireToken(req);
  if (refused) return refused;
  const api = sidecar.api;
  const caller = forwarded(req);
  const [first, second, ...rest] = segmentsAfter("manage-payment-methods", req.url);
  const route = `${req.method} ${first === undefined ? "" : isUuid(first) ? "{id}" : first}${second ? `/${second}` : ""}`;
  if (rest.length > 0) return notFound();
  switch (route) {
    case "GET ":
      return respond(api.listPaymentMethods(caller));
    case "POST ":
      return withJsonBody<AddPaymentMethodRequest>(req, (body) => api.addPaymentMethod(caller, body));
    case "POST setup-intents":
      return respond(api.createSetupIntent(caller));
    case "POST {id}/default":
      return respond(api.makeDefaultPaymentMethod(caller, first));
    case "DELETE {id}":
      return respond(api.deletePaymentMethod(caller, first));
    case "POST {id}/consent":
      return withJsonBody<CardConsentRequest>(req, (body) => api.consentToOffSessionCharges(caller, first, body));
    case "DELETE {id}/consent":
      return respond(api.withdrawOffSessionConsent(caller, first));
    default:
      return notFound();
  }
}

function notFound(): Response {
  return problem(404, "not_found", "No such wallet route");
}

if (import.meta.main) {
  Deno.serve(handler);
}
