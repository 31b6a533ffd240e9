"""Runs localstripe for one test run: bound to loopback, nothing persisted.

Stock localstripe listens on every interface and pickles its state to a fixed
file shared by every instance; tests need neither.
"""
import argparse
import logging

from aiohttp import web
from localstripe import resources
from localstripe.server import app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    resources.Store.dump_to_disk = lambda self: None
    logging.basicConfig(level=logging.WARNING)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
