// Invokes the example Edge Function the way Supabase would (one Request in, one
// Response out) and prints what came back, for the Rust test to check.
import { handler } from "../../docs/edge-functions/wallet-cards/index.ts";

const [token] = Deno.args;
const headers: Record<string, string> = { "user-agent": "supabase-edge-runtime-test", "x-forwarded-for": "192.0.2.10" };
if (token) headers.authorization = `Bearer ${token}`;
const response = await handler(new Request("http://localhost/functions/v1/wallet-cards", { headers }));
console.log(JSON.stringify({ status: response.status, body: await response.json() }));
