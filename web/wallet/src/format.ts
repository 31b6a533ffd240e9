// How values read on the page.

import type { CardView } from "./functions.ts";

export function cardName(card: { brand?: string | null; last4?: string | null }): string {
  const brand = card.brand ? card.brand.charAt(0).toUpperCase() + card.brand.slice(1) : "Card";
  return `${brand} ending ${card.last4 ?? "????"}`;
}

export function expiry(card: CardView): string {
  if (card.exp_month == null || card.exp_year == null) return "No expiry date";
  return `${String(card.exp_month).padStart(2, "0")}/${card.exp_year}`;
}

/** Minor units (as Stripe counts them) in the currency's own format. */
export function money(amount: number, currency: string): string {
  const code = currency.toUpperCase();
  const digits = new Intl.NumberFormat("en", { style: "currency", currency: code }).resolvedOptions()
    .maximumFractionDigits ?? 2;
  return new Intl.NumberFormat("en", { style: "currency", currency: code }).format(amount / 10 ** digits);
}

const BOOKING_STATES: Record<string, string> = {
  pending: "Starting",
  authorizing: "Authorising the payment",
  requires_authentication: "Waiting for you to authenticate the payment",
  ordering: "Booking the flight",
  capturing: "Taking the payment",
  captured: "Booked",
  voiding: "Cancelling the payment",
  voided: "Not booked: you were not charged",
  refunding: "Refunding",
  refunded: "Refunded",
  failed: "Not booked",
  needs_reconciliation: "Being checked by our team",
};

export function bookingState(state: string): string {
  return BOOKING_STATES[state] ?? state;
}
