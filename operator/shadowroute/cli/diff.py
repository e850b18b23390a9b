"""`kubectl shadowroute diff`: the comparator's summary for people. Pure.

The differing fields with their raw (old vs new) and noise (old vs old) counts, then a
few sample pairs side by side: the shadow's answer on the left, the baseline's on the
right, the lines that differ marked with `!`. The comparator redacted the samples
(credential headers, query parameters) and cut their bodies before they left it.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from typing import Any

from .view import table

COLUMN = 52
MAX_BODY_LINES = 40


def _rate(value: Any) -> str:
    return f"{value:.2%}" if isinstance(value, int | float) else "-"


def _ms(value: Any) -> str:
    return f"{value * 1000:.0f} ms" if isinstance(value, int | float) else "-"


def _counts(counts: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted((counts or {}).items()) if v) or "none"


def _body_lines(body: str) -> list[str]:
    try:
        text = json.dumps(json.loads(body), indent=2, sort_keys=True)
    except (ValueError, TypeError):
        text = body
    lines: list[str] = []
    for line in text.splitlines() or [""]:
        lines += textwrap.wrap(line, COLUMN, drop_whitespace=False) or [""]
    if len(lines) > MAX_BODY_LINES:
        lines = [*lines[:MAX_BODY_LINES], f"… ({len(lines) - MAX_BODY_LINES} more lines)"]
    return lines


def _answer_lines(answer: Mapping[str, Any]) -> list[str]:
    status = answer.get("status")
    head = f"status {status}" + (f" ({answer['error']})" if answer.get("error") else "")
    headers = [f"{k}: {v}" for k, v in sorted((answer.get("headers") or {}).items())]
    return [head, *headers, "", *_body_lines(str(answer.get("body") or ""))]


def side_by_side(left: list[str], right: list[str], titles: tuple[str, str]) -> str:
    rows = [f"  {titles[0]:<{COLUMN}} | {titles[1]}"]
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        mark = "!" if a != b else " "
        rows.append(f"{mark} {a[:COLUMN]:<{COLUMN}} | {b[:COLUMN]}")
    return "\n".join(rows)


def diff_view(summary: Mapping[str, Any], samples: int = 3) -> str:
    verdict = summary.get("verdict") or {}
    latency = summary.get("latency") or {}
    lines = [
        f"COMPARISON of revision {summary.get('revision') or '-'} "
        f"(ShadowRoute {summary.get('route') or '-'}): {verdict.get('judgement') or '-'}",
        f"compared   {summary.get('compared', 0)}   mismatched "
        f"{'' if summary.get('exact', True) else 'at most '}{summary.get('mismatched', 0)} "
        f"({_rate(summary.get('mismatchRate'))})",
        f"skipped    {_counts(summary.get('skipped'))}",
        f"dropped    {_counts(summary.get('dropped'))}",
        f"latency    p95 shadow {_ms((latency.get('candidate') or {}).get('p95'))}, "
        f"baseline {_ms((latency.get('baseline') or {}).get('p95'))}",
    ]
    if verdict.get("message"):
        lines.append(f"verdict    {verdict['message']}")
    fields = summary.get("fields") or []
    lines.append("")
    if fields:
        lines.append(
            table(
                ["FIELD", "RAW", "NOISE", "BEYOND NOISE"],
                [
                    [f.get("name"), f.get("raw"), f.get("noise"), "yes" if f.get("real") else "no"]
                    for f in fields
                ],
            )
        )
    else:
        lines.append("no field has differed")
    for i, sample in enumerate((summary.get("samples") or [])[:samples], start=1):
        request = sample.get("request") or {}
        lines += [
            "",
            f"SAMPLE {i}: {sample.get('field')}   "
            f"{request.get('method', '?')} {request.get('path', '?')}",
            side_by_side(
                _answer_lines(sample.get("candidate") or {}),
                _answer_lines(sample.get("baseline") or {}),
                ("SHADOW (new)", "BASELINE (stable)"),
            ),
        ]
    return "\n".join(lines)
