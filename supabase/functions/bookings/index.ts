// Supabase Edge Function `bookings`: a traveler's own booking, for the
// "Complete authentication" page the 3-D Secure email links to.
//
//   GET  /bookings/{id}          the booking (with what Stripe.js needs while authentication is pending)
//   POST /bookings/{id}/resume   carry on once Stripe.js has confirmed the payment
//
// New bookings are made by the scheduler only (`book-campaign`).

import { forwarded, isUuid, problem, requireToken, respond, segmentsAfter, Sidecar } from "@parker-wallet/sidecar";

const sidecar = Sidecar.fromEnv();

export function handler(req: Request): Promise<Response> | Response {
  const refused = requireToken(req);
  if (refused) return refused;
  const [id, action, ...rest] = segmentsAfter("bookings", req.url);
  if (!isUuid(id) || rest.length > 0) return problem(404, "not_found", "No such booking route");
  const caller = forwarded(req);
  if (req.method === "GET" && action === undefined) return respond(sidecar.api.showBooking(caller, id));
  if (req.method === "POST" && action === "resume") return respond(sidecar.api.resumeBooking(caller, id));
  return problem(404, "not_found", "No such booking route");
}

if (import.meta.main) {
  Deno.serve(handler);
}
