"""`python -m shadowroute.compare` / `shadowroute-compare`: the mirror target of one
shadowing revision (see `shadowroute.compare.server`). Writes no files; stops on
SIGTERM or SIGINT after the comparisons in progress end (at most ``--timeout``)."""

from __future__ import annotations

import asyncio
import os
import signal

from prometheus_client import disable_created_metrics

from ..observability.logs import configure
from .config import parse_args
from .server import run


async def _main(argv: list[str] | None) -> None:
    config = parse_args(argv)
    configure(config.log_format)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await run(config, dict(os.environ), stopping)


def main(argv: list[str] | None = None) -> None:
    disable_created_metrics()  # the *_created series double the output; nobody graphs them
    asyncio.run(_main(argv))


if __name__ == "__main__":
    main()
