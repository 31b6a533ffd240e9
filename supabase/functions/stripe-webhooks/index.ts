// Supabase Edge Function `stripe-webhooks`: the endpoint Stripe calls. The raw
// body and the Stripe-Signature go to the Parker Wallet sidecar unchanged,
// before anything parses them: the signature covers the exact bytes, and the
// sidecar alone holds the webhook secrets. Deploy with verify_jwt = false
// (Stripe sends no Supabase token; supabase/config.toml).

import { problem, respond, Sidecar } from "@parker-wallet/sidecar";

const sidecar = Sidecar.fromEnv();

export async function handler(req: Request): Promise<Response> {
  if (req.method !== "POST") return problem(405, "method_not_allowed", "Stripe posts its events");
  const signature = req.headers.get("stripe-signature");
  if (!signature) return problem(400, "invalid_signature", "Stripe-Signature is missing");
  const headers = new Headers({
    "stripe-signature": signature,
    "content-type": req.headers.get("content-type") ?? "application/json",
  });
  // Bytes, not text: nothing may re-encode what Stripe signed.
  const body = new Uint8Array(await req.arrayBuffer());
  return respond(sidecar.api.receiveStripeEvent(headers, body));
}

if (import.meta.main) {
  Deno.serve(handler);
}
