"""Runs localstripe for one test run: bound to loopback, nothing persisted.

Stock localstripe listens on every interface and pickles its state to a fixed
file shared by every instance; tests need neither.
"""
import argparse
import logging

from aiohttp import web
from localstripe import resources
from localstripe.server import app


def add_fields_stripe_always_sends() -> None:
    """localstripe omits fields Stripe always sends; the official client rejects
    objects without them. Derive them from the emulator's own state."""
    intent = resources.PaymentIntent
    intent.amount_capturable = property(
        lambda self: self.amount if self.status == "requires_capture" else 0)
    intent.amount_received = property(
        lambda self: self.amount if self.status == "succeeded" else 0)
    intent.confirmation_method = property(lambda self: "automatic")
    intent.payment_method_types = property(lambda self: ["card"])

    charge = resources.Charge
    charge.amount_captured = property(
        lambda self: self.amount if getattr(self, "captured", False) else 0)
    charge.amount_refunded = property(lambda self: 0)
    charge.billing_details = property(lambda self: {
        "address": None, "email": None, "name": None, "phone": None, "tax_id": None})
    charge.disputed = property(lambda self: False)
    charge.paid = property(lambda self: self.status == "succeeded")
    charge.refunded = property(lambda self: False)


def add_payment_intent_list_filters() -> None:
    """Stripe lists PaymentIntents by `customer` and `created`, newest first;
    localstripe refuses both filters. Bookings use them to find an authorization
    a crash kept the sidecar from recording."""
    intent = resources.PaymentIntent
    plain_list = resources.StripeObject._api_list_all.__func__

    def list_all(cls, url, customer=None, created=None, limit=None, starting_after=None, **kwargs):
        listed = plain_list(cls, url, limit=limit, starting_after=starting_after, **kwargs)
        kept = [pi for pi in listed._list if customer is None or pi.customer == customer]
        bounds = created if isinstance(created, dict) else {}
        checks = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
                  "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}
        for op, value in bounds.items():
            kept = [pi for pi in kept if checks[op](pi.created, int(value))]
        listed._list = sorted(kept, key=lambda pi: pi.created, reverse=True)
        return listed

    intent._api_list_all = classmethod(list_all)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    resources.Store.dump_to_disk = lambda self: None
    add_fields_stripe_always_sends()
    add_payment_intent_list_filters()
    logging.basicConfig(level=logging.WARNING)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
