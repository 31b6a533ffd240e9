// Runs the documented booking Edge Function once, as the scheduler would, and
// prints {status, body} as JSON. Usage: deno run ... invoke_book_campaign.ts '<booking json>'
import { bookCampaignOffer } from "../../docs/edge-functions/book-campaign/index.ts";

console.log(JSON.stringify(await bookCampaignOffer(JSON.parse(Deno.args[0]))));
