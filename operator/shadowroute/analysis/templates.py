"""Query templates: ``{{ placeholder }}`` substitution that cannot change a query's shape.

Pure. A value is never pasted into PromQL as it is: the template is read with a small
PromQL lexer, and each placeholder is escaped for the place it stands in —

- inside a "double" or 'single' quoted string: escaped for that string literal
  (backslash, the quote, control characters);
- inside a string that follows ``=~`` or ``!~`` (a regex matcher): first escaped for
  RE2, so a name with a dot matches only that dot, then for the string literal;
- inside a `raw` string: a value holding a backtick is refused (nothing escapes there);
- in code (outside strings): only the durations ``{{ interval }}`` and ``{{ window }}``
  may stand there, spelled as PromQL durations ("30s", "1500ms"); a name there is
  refused, since it would be PromQL rather than data;
- in a ``#`` comment: escaped as in a double-quoted string, so no line break ends it.

So whatever a namespace, a name or a revision holds, the query Prometheus parses has the
shape the author wrote, and each string literal holds exactly the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..api.models import TEMPLATE_PLACEHOLDERS

DURATION_PLACEHOLDERS = frozenset({"interval", "window"})
STRING_PLACEHOLDERS = frozenset(TEMPLATE_PLACEHOLDERS) - DURATION_PLACEHOLDERS

_PLACEHOLDER = re.compile(r"\{\{ *([A-Za-z]+) *\}\}")
_REGEX_META = frozenset("\\.+*?()|[]{}^$")
_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class TemplateError(ValueError):
    """The template cannot be rendered safely; the message says where and why."""


@dataclass(frozen=True)
class Context:
    """The values a template may use. Durations are in seconds."""

    namespace: str
    name: str
    primary: str
    canary: str
    shadow: str
    target: str
    revision: str
    stable_revision: str
    canary_revision: str
    interval: float
    window: float

    def strings(self) -> dict[str, str]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "service": self.name,
            "primary": self.primary,
            "canary": self.canary,
            "shadow": self.shadow,
            "target": self.target,
            "revision": self.revision,
            "stableRevision": self.stable_revision,
            "canaryRevision": self.canary_revision,
        }

    def durations(self) -> dict[str, float]:
        return {"interval": self.interval, "window": self.window}


def promql_duration(seconds: float) -> str:
    """A PromQL duration: whole seconds as "30s", anything finer in milliseconds."""
    ms = round(seconds * 1000)
    if ms < 1:
        raise TemplateError(f"duration {seconds}s is shorter than PromQL's 1ms")
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def escape_string(value: str, quote: str = '"') -> str:
    """The inside of a PromQL string literal delimited by `quote` that reads as `value`.

    PromQL unquotes like Go: only the delimiting quote may be escaped (a \\' inside
    double quotes is an error), and a raw line break ends the string.
    """
    out = []
    for ch in value:
        if ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        elif ch == quote:
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            raise TemplateError(f"value {value!r} holds a lone surrogate, not text")
        else:
            out.append(ch)
    return "".join(out)


def escape_regex(value: str) -> str:
    """`value` as an RE2 pattern that matches exactly it (Prometheus anchors matchers)."""
    return "".join("\\" + ch if ch in _REGEX_META else ch for ch in value)


def render(template: str, context: Context) -> str:
    """The query with every placeholder replaced, escaped for where it stands."""
    strings, durations = context.strings(), context.durations()
    out: list[str] = []
    state = "code"  # code | " | ' | ` | comment
    regex = False  # the string being read is the right side of =~ or !~
    code_tail = ""  # the last code characters, to see an =~ before a string opens
    i = 0
    while i < len(template):
        match = _PLACEHOLDER.match(template, i)
        if match:
            key = match.group(1)
            out.append(_substitute(key, state, regex, strings, durations, template, i))
            i = match.end()
            continue
        ch = template[i]
        out.append(ch)
        i += 1
        if state == "code":
            if ch in "\"'`":
                state = ch
                regex = code_tail.rstrip().endswith(("=~", "!~"))
            elif ch == "#":
                state = "comment"
            else:
                code_tail = (code_tail + ch)[-16:]
        elif state == "comment":
            if ch == "\n":
                state, code_tail = "code", ""
        elif ch == "\\" and state != "`" and i < len(template):
            out.append(template[i])  # an escape in the template itself: keep it whole
            i += 1
        elif ch == state:
            state, code_tail = "code", ""
    return "".join(out)


def _substitute(
    key: str,
    state: str,
    regex: bool,
    strings: Mapping[str, str],
    durations: Mapping[str, float],
    template: str,
    at: int,
) -> str:
    where = f"{{{{ {key} }}}} at character {at}"
    if key in durations:
        return promql_duration(durations[key])
    if key not in strings:
        known = ", ".join("{{ " + p + " }}" for p in TEMPLATE_PLACEHOLDERS)
        raise TemplateError(f"unknown placeholder {where}; known: {known}")
    value = strings[key]
    if state == "code":
        raise TemplateError(
            f"{where} is outside a string: write it in quotes, like "
            f'service="{{{{ {key} }}}}"; only {{{{ interval }}}} and {{{{ window }}}} '
            "stand alone"
        )
    if state == "comment":
        return escape_string(value)
    if regex:
        value = escape_regex(value)
    if state == "`":
        if "`" in value:
            raise TemplateError(f"{where}: the value holds a backtick, which a raw string cannot")
        return value
    return escape_string(value, state)
