// Runs the documented booking Edge Function once, as the scheduler would (one
// Request in, one Response out), and prints {status, body} as JSON.
// Usage: deno run ... invoke_book_campaign.ts '<booking json>' '<bearer token>'
import { handler } from "../../supabase/functions/book-campaign/index.ts";

const [booking, bearer] = Deno.args;
const request = new Request("http://localhost/functions/v1/book-campaign", {
  method: "POST",
  headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
  body: booking,
});
const response = await handler(request);
console.log(JSON.stringify({ status: response.status, body: await response.json() }));
