// Invokes the `manage-payment-methods` Edge Function the way Supabase would (one
// Request in, one Response out) and prints what came back, for the Rust test.
// Usage: deno run ... invoke_manage_payment_methods.ts METHOD PATH [token] [json body] [idempotency key]
import { handler } from "../../supabase/functions/manage-payment-methods/index.ts";

const [method, path, token, body, key] = Deno.args;
const headers: Record<string, string> = { "user-agent": "supabase-edge-runtime-test", "x-forwarded-for": "192.0.2.10" };
if (token) headers.authorization = `Bearer ${token}`;
if (key) headers["idempotency-key"] = key;
const request = new Request(`http://localhost/functions/v1/manage-payment-methods${path}`, {
  method,
  headers,
  body: body || undefined,
});
const response = await handler(request);
console.log(JSON.stringify({ status: response.status, body: await response.json() }));
