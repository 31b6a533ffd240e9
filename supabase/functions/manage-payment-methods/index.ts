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

import { forwarded, problem, relay, Sidecar } from "@parker-wallet/sidecar";

const sidecar = Sidecar.fromEnv();
const CARD_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The sidecar route for a request to this function, or null. */
export function sidecarRoute(method: string, url: string): string | null {
  const segments = new URL(url).pathname.split("/").filter(Boolean);
  const at = segments.indexOf("manage-payment-methods");
  const [first, second, ...rest] = at < 0 ? segments : segments.slice(at + 1);
  if (rest.length > 0) return null;
  const base = "/v1/wallet/payment-methods";
  if (first === undefined) return method === "GET" || method === "POST" ? base : null;
  if (first === "setup-intents") return method === "POST" && second === undefined ? "/v1/wallet/setup-intents" : null;
  if (!CARD_ID.test(first)) return null;
  if (second === undefined) return method === "DELETE" ? `${base}/${first}` : null;
  if (second === "default") return method === "POST" ? `${base}/${first}/default` : null;
  if (second === "consent") return method === "POST" || method === "DELETE" ? `${base}/${first}/consent` : null;
  return null;
}

export async function handler(req: Request): Promise<Response> {
  if (!req.headers.get("authorization")) return problem(401, "invalid_token", "Invalid or missing traveler token");
  const route = sidecarRoute(req.method, req.url);
  if (route === null) return problem(404, "not_found", "No such wallet route");
  const headers = forwarded(req);
  const hasBody = req.method === "POST" && req.body !== null;
  if (hasBody) headers.set("content-type", "application/json");
  return relay(await sidecar.fetch(req.method, route, headers, hasBody ? await req.text() : null));
}

if (import.meta.main) {
  Deno.serve(handler);
}
