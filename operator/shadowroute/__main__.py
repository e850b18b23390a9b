"""`python -m shadowroute` / `shadowroute-operator`: run the operator against the
cluster of the kubeconfig (or in-cluster), in all namespaces or the ones given."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="shadowroute-operator", description=__doc__)
    parser.add_argument(
        "-n", "--namespace", action="append", default=[],
        help="watch this namespace (repeatable; glob patterns allowed); default: all",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-port", type=int, default=8080, help="port of /metrics (0: off); default 8080"
    )
    parser.add_argument("--metrics-address", default="0.0.0.0", help="address /metrics listens on")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    import kopf

    from . import handlers  # noqa: F401 - registers the handlers
    from .observability.metrics import serve

    serve(args.metrics_port, args.metrics_address)

    asyncio.run(
        kopf.operator(
            standalone=True,  # no KopfPeering CRD; run one replica, or leader-elect later
            clusterwide=not args.namespace,
            namespaces=args.namespace,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
