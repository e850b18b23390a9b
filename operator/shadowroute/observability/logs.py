"""Logging setup: text for people at a terminal, one JSON object per line for log
pipelines (Loki, Elasticsearch, Cloud Logging) that index fields instead of grepping.

A JSON line has `time` (RFC 3339, UTC, milliseconds), `level`, `logger`, `message`,
the object the line is about when known (`namespace`, `name`: kopf passes it as
`k8s_ref`), any other `extra=` fields, and `exception` with the traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, TextIO

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime", "taskName"}
)
_KOPF_INTERNAL = frozenset({"k8s_skip", "k8s_ref", "settings"})


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line; never raises on odd `extra` values."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            for key in ("namespace", "name"):
                if ref.get(key):
                    out[key] = ref[key]
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in _KOPF_INTERNAL and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(fmt: str = "text", verbose: bool = False, stream: TextIO | None = None) -> None:
    """Route every logger (ours, kopf's, aiohttp's) to one handler."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # The HTTP libraries log every request at DEBUG: too much even for --verbose. kopf
    # logs "Handler ... succeeded" for every watch event at INFO: only with --verbose.
    for noisy in ("urllib3", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("kopf.objects").setLevel(logging.NOTSET if verbose else logging.WARNING)
