// Supabase Edge Function `book-campaign`, run by the scheduler: books a campaign's chosen offer for the
// campaign's owner, with no traveler present (merchant-initiated, on the consent
// stored in campaigns.consent_at). It calls the Parker Wallet sidecar with the
// project's service key; the sidecar acts as the campaign's owner under RLS, and
// holds every payment secret itself.
//
// The Idempotency-Key comes from the campaign and the offer, so a schedule that
// fires twice, or a retry after a timeout, books once. Deploy it to be invoked
// by the scheduler only (the handler checks for the service key): whoever can
// call it chooses what is booked on the owner's card.

import {
  type Answer,
  type BookingRequest,
  type BookingView,
  type Data,
  type JsonBytes,
  problem,
  Sidecar,
  withJsonBody,
} from "@parker-wallet/sidecar";

const sidecar = Sidecar.fromEnv();

/** Books `booking` (its JSON, as received) for its campaign's owner: the
 * booking (201 new, 200 the same one again), or a `SidecarError` for a refusal. */
export function bookCampaignOffer(
  body: JsonBytes<BookingRequest>,
  booking: BookingRequest,
): Promise<Answer<Data<BookingView>>> {
  const serviceKey = Deno.env.get("SUPABASE_SERVICE_ROLE_KEY");
  if (!serviceKey) throw new Error("SUPABASE_SERVICE_ROLE_KEY is not set");
  const caller = new Headers({
    authorization: `Bearer ${serviceKey}`,
    "idempotency-key": `campaign:${booking.campaign_id}:offer:${booking.offer_id}`,
  });
  return sidecar.api.createBooking(caller, body);
}

/** Constant-time comparison, so the check does not leak the key by timing. */
function sameSecret(a: string, b: string): boolean {
  const [x, y] = [new TextEncoder().encode(a), new TextEncoder().encode(b)];
  let difference = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) difference |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return difference === 0;
}

// Only the scheduler may run this function: it must present the service key
// (pg_cron + pg_net send it). A traveler's or the anon key is refused, since the
// booking is charged to the campaign owner's card.
export async function handler(req: Request): Promise<Response> {
  const serviceKey = Deno.env.get("SUPABASE_SERVICE_ROLE_KEY") ?? "";
  if (!serviceKey || !sameSecret(req.headers.get("authorization") ?? "", `Bearer ${serviceKey}`)) {
    return problem(401, "invalid_token", "Scheduler only");
  }
  return await withJsonBody(req, bookCampaignOffer);
}

if (import.meta.main) {
  Deno.serve(handler);
}
