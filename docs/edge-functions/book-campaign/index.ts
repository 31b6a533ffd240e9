// A scheduled Supabase Edge Function: books a campaign's chosen offer for the
// campaign's owner, with no traveler present (merchant-initiated, on the consent
// stored in campaigns.consent_at). It calls the Parker Wallet sidecar with the
// project's service key; the sidecar acts as the campaign's owner under RLS, and
// holds every payment secret itself.
//
// The Idempotency-Key comes from the campaign and the offer, so a schedule that
// fires twice, or a retry after a timeout, books once.

const socketPath = Deno.env.get("PW_SIDECAR_SOCKET") ?? "/run/parker-wallet/sidecar.sock";
const sidecar = Deno.createHttpClient({ proxy: { transport: "unix", path: socketPath } });

export interface CampaignBooking {
  campaign_id: string;
  offer_id: string;
  passengers: Record<string, unknown>[];
  amount: number; // minor units, as Stripe counts them
  currency: string;
  route?: string;
}

export async function bookCampaignOffer(booking: CampaignBooking): Promise<{ status: number; body: unknown }> {
  const serviceKey = Deno.env.get("SUPABASE_SERVICE_ROLE_KEY");
  if (!serviceKey) throw new Error("SUPABASE_SERVICE_ROLE_KEY is not set");
  const response = await fetch("http://sidecar/v1/bookings", {
    method: "POST",
    client: sidecar,
    headers: {
      authorization: `Bearer ${serviceKey}`,
      "idempotency-key": `campaign:${booking.campaign_id}:offer:${booking.offer_id}`,
      "content-type": "application/json",
    },
    body: JSON.stringify(booking),
  });
  // The booking (201 new, 200 the same one again) or a problem+json refusal.
  return { status: response.status, body: await response.json() };
}

export async function handler(req: Request): Promise<Response> {
  const { status, body } = await bookCampaignOffer(await req.json());
  return Response.json(body, { status });
}

if (import.meta.main) {
  Deno.serve(handler);
}
