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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    resources.Store.dump_to_disk = lambda self: None
    add_fields_stripe_always_sends()
    logging.basicConfig(level=logging.WARNING)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
