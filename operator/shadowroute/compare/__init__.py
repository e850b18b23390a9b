"""Shadow comparison: which fields of the candidate's answers differ from the primary's
more than two instances of the old version differ from each other.

Pure, no I/O: `differ` turns answers into fields and differing field names, `tally`
counts them over many requests, subtracts the noise and gives a verdict.

The comparator (the mirror target, ``shadowroute-compare`` / ``python -m
shadowroute.compare``) is built around them: `config` (its command line), `resolve`
(where the asks go), `redact`, `samples`, `latency` and `comparison` (what three
answers count as, the summary) are pure; `metrics` reads the comparison at scrape time;
`server` does the I/O; `__main__` starts it. They are imported by module, not here, so
that importing the pure differ costs no aiohttp.
"""

from .differ import (
    DEFAULT_IGNORED_HEADERS,
    MAX_DEPTH,
    MAX_FIELDS,
    IgnoredPaths,
    Response,
    Rules,
    body_fields,
    differences,
    differing,
    flatten,
)
from .tally import (
    ABSOLUTE_GAP,
    MAX_NAMES,
    MAX_SETS,
    OTHER,
    RELATIVE_GAP,
    FieldCount,
    Judgement,
    ShadowVerdict,
    Tally,
)

__all__ = [
    "ABSOLUTE_GAP",
    "DEFAULT_IGNORED_HEADERS",
    "MAX_DEPTH",
    "MAX_FIELDS",
    "MAX_NAMES",
    "MAX_SETS",
    "OTHER",
    "RELATIVE_GAP",
    "FieldCount",
    "IgnoredPaths",
    "Judgement",
    "Response",
    "Rules",
    "ShadowVerdict",
    "Tally",
    "body_fields",
    "differences",
    "differing",
    "flatten",
]
