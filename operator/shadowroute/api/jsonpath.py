"""JSON paths into an answer's body, in compare.differ's spelling (``body.items[0].price``).

Here, in the models' layer, so that the resource refuses at apply (and the models when
they parse) every path the acceptance checks could not use: one spelling, one check.
"""

from __future__ import annotations

import json
import re

JSON_ROOT = "body"
_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # compare.differ writes these keys as ``.key``
_PATH_SEGMENT = re.compile(
    r'\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[("(?:[^"\\]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*")\]'
)
JSON_PATH_PATTERN = (
    r'^body((\.[A-Za-z0-9_-]+)|(\[[0-9]+\])|(\["([^"\\]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"\]))*$'
)
"""The same grammar as a regular expression, for the CRD: a quoted key's escapes are
JSON's (so that it decodes)."""


def canonical_json_path(path: str) -> str:
    """A JSON path in compare.differ's spelling (``body.items[0].price``), or ValueError.

    Differ writes a key made of ``A-Z a-z 0-9 _ -`` as ``.key`` and any other key as
    ``["key"]``; a user may write ``body["price"]``, which names the same field, so it
    is normalised here: a lookup by exact path then finds it.
    """
    if not path.startswith(JSON_ROOT):
        raise ValueError(f"a JSON path starts with {JSON_ROOT!r}: {path!r}")
    out = [JSON_ROOT]
    at = len(JSON_ROOT)
    while at < len(path):
        m = _PATH_SEGMENT.match(path, at)
        if m is None:
            raise ValueError(
                f"not a JSON path at character {at}: {path!r} "
                '(segments are .key, [index] or ["any key"])'
            )
        simple, index, quoted = m.groups()
        if simple is not None:
            out.append(f".{simple}")
        elif index is not None:
            out.append(f"[{int(index)}]")
        else:
            key = json.loads(quoted, strict=False)  # a raw control character is a key too
            out.append(f".{key}" if _SIMPLE_KEY.fullmatch(key) else f"[{json.dumps(key)}]")
        at = m.end()
    return "".join(out)
