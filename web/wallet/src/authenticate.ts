// "Complete authentication": the page the 3-D Secure email links to. It loads
// the booking, runs Stripe.js's confirmation with the client secret the
// sidecar returns for it, then asks the sidecar to carry on, and shows where
// the booking ended.

import type { PageConfig } from "./config.ts";
import { announce, h, page, replace } from "./dom.ts";
import { bookingState, cardName, money } from "./format.ts";
import { type BookingView, failure, type Functions } from "./functions.ts";
import { loadStripe } from "./stripe.ts";

export async function authenticationPage(functions: Functions, config: PageConfig, bookingId: string): Promise<void> {
  const details = h("div", { id: "booking" }, h("p", {}, "Loading your booking…"));
  const outcome = h("div", { id: "outcome", role: "status" });
  page("Complete authentication", details, outcome, h("p", {}, h("a", { href: "/", id: "back-to-wallet" }, "Back to your wallet")));
  try {
    const { data: booking } = await functions.showBooking(bookingId);
    replace(details, facts(booking));
    if (booking.state === "requires_authentication" && booking.authentication?.client_secret) {
      replace(outcome, h("p", {}, "Your bank asks you to confirm this payment before we book the flight."),
        authenticateButton(functions, config, booking, outcome));
    } else {
      replace(outcome, finalState(booking));
    }
  } catch (error) {
    replace(details, h("p", { class: "error", role: "alert" }, failure(error)));
  }
}

function facts(booking: BookingView): HTMLElement {
  return h(
    "dl",
    { class: "facts" },
    h("dt", {}, "Flight"),
    h("dd", { id: "booking-route" }, booking.route ?? booking.offer_id),
    h("dt", {}, "Amount"),
    h("dd", {}, money(booking.amount, booking.currency)),
    booking.card && h("dt", {}, "Card"),
    booking.card && h("dd", {}, cardName(booking.card)),
    h("dt", {}, "Status"),
    h("dd", { id: "booking-state" }, bookingState(booking.state)),
  );
}

function authenticateButton(
  functions: Functions,
  config: PageConfig,
  booking: BookingView,
  outcome: HTMLElement,
): HTMLElement {
  const error = h("p", { class: "error", role: "alert", id: "authentication-error" });
  const button = h("button", {
    type: "button",
    id: "complete-authentication",
    onclick: async () => {
      const authentication = booking.authentication;
      if (!authentication?.client_secret) return;
      button.disabled = true;
      error.textContent = "";
      try {
        const stripe = await loadStripe(config.stripe_js_url, config.stripe_publishable_key);
        const confirmed = await stripe.confirmCardPayment(authentication.client_secret, {
          payment_method: authentication.payment_method ?? undefined,
        });
        if (confirmed.error) {
          error.textContent = `Your bank did not confirm the payment: ${confirmed.error.message ?? "try again"}`;
          return;
        }
        const { data: resumed } = await functions.resumeBooking(booking.id);
        replace(document.getElementById("booking") as HTMLElement, facts(resumed));
        replace(outcome, finalState(resumed));
        announce(bookingState(resumed.state));
      } catch (e) {
        error.textContent = failure(e);
      } finally {
        button.disabled = false;
      }
    },
  }, "Complete authentication");
  return h("div", {}, button, error);
}

function finalState(booking: BookingView): HTMLElement {
  if (booking.state === "captured") {
    return h("p", { class: "success", id: "final-state" },
      "Your flight is booked.",
      booking.booking_reference && ` Booking reference: ${booking.booking_reference}.`);
  }
  const reason = booking.failure?.reason ?? booking.failure?.code;
  return h("p", { id: "final-state" }, bookingState(booking.state), reason && `: ${reason}`);
}
