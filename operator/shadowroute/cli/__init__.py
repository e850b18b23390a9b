"""The kubectl plugin: `kubectl shadowroute get|status|promote|abort|pause|resume|retry|
history|plan` (console script `kubectl-shadowroute`)."""

from __future__ import annotations

import sys


def main() -> None:
    """Console entry point: exit with the command's code (see cli.exit_codes)."""
    from .main import main as run

    sys.exit(run())
