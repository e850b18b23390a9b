"""What the plugin prints: pure functions from API objects to text, so the layout is
unit-tested and the commands only fetch and print."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from ..names import CheckHook, ConditionType, Stage, parse_timestamp
from ..stages import step_index

MAX_MESSAGE_SHOWN = 100
"""A check's message in the CHECKS table is cut to this many characters (the operator
writes up to 512 of them: an answer's excerpt, a Job's log tail)."""
HOOK_ORDER = {str(h): i for i, h in enumerate(CheckHook)}
CHECK_STATES = ("Passed", "Failed", "Running", "Pending")
NOT_RUN = "not run"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded like kubectl's: upper-case headers, three spaces apart."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def age(timestamp: str | None, now: dt.datetime) -> str:
    """kubectl's short ages: 42s, 5m, 3h, 12d; `-` when unknown."""
    if not timestamp:
        return "-"
    try:
        seconds = int((now - parse_timestamp(timestamp)).total_seconds())
    except ValueError:
        return "-"
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


def _step(obj: dict[str, Any]) -> str:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    steps = ((spec.get("strategy") or {}).get("canary") or {}).get("steps") or []
    stage = status.get("stage")
    if stage == Stage.PROGRESSING and steps:
        return f"{step_index(int(status.get('currentStep') or 0), len(steps)) + 1}/{len(steps)}"
    if stage == Stage.PROGRESSING:
        return "preview"
    return "-"


def get_rows(
    objs: Sequence[dict[str, Any]], now: dt.datetime, all_namespaces: bool, wide: bool
) -> str:
    headers = ["NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "MIRROR", "STEP", "READY", "AGE"]
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    if wide:
        headers += ["STABLE-IMAGE", "CANARY-IMAGE", "MESSAGE"]
    rows = []
    for obj in objs:
        meta, status = obj["metadata"], obj.get("status") or {}
        ready = condition(status, ConditionType.READY)
        row = [
            meta["name"],
            status.get("phase") or "-",
            status.get("stableRevision") or "-",
            status.get("canaryRevision") or "-",
            f"{status.get('canaryWeight') or 0}%",
            f"{status.get('mirrorPercent') or 0}%",
            _step(obj),
            ready.get("status") if ready else "-",
            age(meta.get("creationTimestamp"), now),
        ]
        if all_namespaces:
            row.insert(0, meta.get("namespace", ""))
        if wide:
            row += [
                status.get("stableImage") or "-",
                status.get("canaryImage") or "-",
                status.get("message") or "",
            ]
        rows.append(row)
    return table(headers, rows)


def _fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _revision(status: dict[str, Any], which: str) -> str:
    """`aaa674dfae (app=web:2)`: the revision and, when status names them, its images."""
    revision = status.get(f"{which}Revision") or "-"
    images = status.get(f"{which}Image")
    return f"{revision} ({images})" if images and revision != "-" else revision


def _stage_line(obj: dict[str, Any]) -> str:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    strategy = spec.get("strategy") or {}
    stage = status.get("stage") or status.get("phase") or Stage.INITIALIZING
    if stage == Stage.SHADOWING:
        shadow = strategy.get("shadow") or {}
        return f"shadowing {shadow.get('mirrorPercent', 100)}% for {shadow.get('duration', '?')}"
    if stage == Stage.PROGRESSING:
        steps = (strategy.get("canary") or {}).get("steps") or []
        if not steps:
            preview = (strategy.get("blueGreen") or {}).get("previewDuration")
            return f"blue/green preview ({preview or 'until promoted'})"
        i = step_index(int(status.get("currentStep") or 0), len(steps))
        step = steps[i]
        pause = step.get("pause")
        if pause is None:
            held = "no pause"
        elif pause.get("duration"):
            held = f"pause {pause['duration']}"
        else:
            held = "waits for promote/resume"
        weight, routed = step.get("weight"), status.get("canaryWeight") or 0
        # The weight actually routed (the traffic line's): a step takes its weight only
        # once its canary is ready, not paused, and past its before-traffic checks.
        shown = f"{routed}%" if routed == weight else f"{routed}% ({weight}% once the step starts)"
        return f"canary step {i + 1}/{len(steps)}: weight {shown}, {held}"
    return stage


def status_view(
    obj: dict[str, Any], events: Sequence[dict[str, Any]], now: dt.datetime, max_events: int = 8
) -> str:
    """The live view of one ShadowRoute: stage, weights, checks, recent events."""
    meta, status = obj["metadata"], obj.get("status") or {}
    gen, seen = meta.get("generation"), status.get("observedGeneration")
    stale = "" if seen == gen else f"   (status describes generation {seen}, spec is at {gen})"
    lines = [
        f"ShadowRoute {meta.get('namespace')}/{meta['name']}   phase {status.get('phase') or '-'}"
        + (
            f" (stage {status['stage']})"
            if status.get("stage") not in (None, status.get("phase"))
            else ""
        )
        + stale,
        f"stage      {_stage_line(obj)}",
        f"revisions  stable {_revision(status, 'stable')}   "
        f"canary {_revision(status, 'canary')}   "
        f"primary runs {status.get('primaryRevision') or '-'}",
        f"traffic    canary {status.get('canaryWeight') or 0}%   "
        f"mirror {status.get('mirrorPercent') or 0}%",
    ]
    if status.get("canaryChanges"):
        lines.append(f"changes    {status['canaryChanges']}")
    holds = []
    if (obj.get("spec") or {}).get("paused"):
        holds.append("spec.paused")
    if status.get("userPaused"):
        holds.append("pause gate")
    if status.get("waitingForPromotion"):
        holds.append("step waits for promote/resume")
    if holds:
        lines.append(f"held by    {', '.join(holds)}")
    if status.get("message"):
        lines.append(f"message    {status['message']}")
    conds = [
        f"{c.get('type')}={c.get('status')} ({c.get('reason') or '-'})"
        for c in status.get("conditions") or []
    ]
    lines.append(f"conditions {'  '.join(conds) if conds else '-'}")
    for c in status.get("conditions") or []:
        if (
            c.get("type") == ConditionType.DEGRADED
            and c.get("status") == "True"
            and c.get("message")
        ):
            lines.append(f"degraded   {c['message']}")

    analysis = status.get("analysis") or {}
    spec_analysis = (obj.get("spec") or {}).get("analysis")
    metrics = analysis.get("metrics") or []
    if spec_analysis or metrics:
        limit = (spec_analysis or {}).get("failureLimit", "?")
        last_run = analysis.get("lastRunAt")
        ran = f"last run {age(last_run, now)} ago" if last_run else "no run yet"
        lines += [
            "",
            f"ANALYSIS   failed runs in a row {analysis.get('consecutiveFailures') or 0} "
            f"(limit {limit}), {ran}",
        ]
        if metrics:
            lines.append(
                table(
                    ["METRIC", "VALUE", "VERDICT", "CHECKED", "MESSAGE"],
                    [
                        [
                            m.get("name"),
                            _fmt_value(m.get("value")),
                            m.get("verdict") or "-",
                            age(m.get("checkedAt"), now),
                            m.get("message") or "",
                        ]
                        for m in metrics
                    ],
                )
            )
        elif last_run:
            # A run that measured nothing (no data yet): say what it found, not "never ran".
            lines.append(analysis.get("message") or "the last run measured no metric")
        else:
            lines.append("no analysis run yet")

    lines += _comparison_lines(status.get("comparison"), now)
    lines += _checks_lines(obj)
    lines += ["", "EVENTS"]
    recent = list(events)[-max_events:]
    if recent:
        lines.append(
            table(
                ["AGE", "TYPE", "REASON", "MESSAGE"],
                [
                    [age(event_time(e), now), e.get("type"), e.get("reason"), _note(e)]
                    for e in recent
                ],
            )
        )
    else:
        lines.append("none")
    return "\n".join(lines)


def _comparison_lines(c: dict[str, Any] | None, now: dt.datetime) -> list[str]:
    """The shadow comparison's last look (status.comparison), when there is one."""
    if not c:
        return []
    rate = c.get("mismatchRate")
    shown = f"{rate:.2%}" if isinstance(rate, int | float) else "-"
    lines = [
        "",
        f"COMPARISON revision {c.get('revision') or '-'}: {c.get('verdict') or '-'} "
        f"({c.get('reason') or '-'}), {c.get('compared') or 0} compared, "
        f"{c.get('mismatched') or 0} mismatched ({shown}), read {age(c.get('checkedAt'), now)} ago",
    ]
    p95 = [c.get("shadowP95"), c.get("baselineP95")]
    if any(isinstance(v, int | float) for v in p95):
        shadow, baseline = (
            f"{v * 1000:.0f} ms" if isinstance(v, int | float) else "-" for v in p95
        )
        lines.append(f"latency    p95 shadow {shadow}, baseline {baseline}")
    if c.get("topFields"):
        lines.append(
            table(
                ["FIELD", "RAW", "NOISE", "BEYOND NOISE"],
                [
                    [f.get("name"), f.get("raw"), f.get("noise"), "yes" if f.get("real") else "no"]
                    for f in c["topFields"]
                ],
            )
        )
    if c.get("message"):
        lines.append(f"message    {c['message']}")
    return lines


def checks_revision(status: dict[str, Any]) -> tuple[str, str]:
    """(revision, which) whose acceptance checks matter now: the one rolling out, else
    the one just rolled back (while RolledBack), else the stable one."""
    if status.get("canaryRevision"):
        return status["canaryRevision"], "canary"
    rolled_back = Stage.ROLLED_BACK in (status.get("phase"), status.get("stage"))
    if rolled_back and status.get("rolledBackRevision"):
        return status["rolledBackRevision"], "rolled back"
    return status.get("stableRevision") or "", "stable"


def _short(text: Any, limit: int = MAX_MESSAGE_SHOWN) -> str:
    """One line (whitespace folded, as Events are) of at most ``limit`` characters."""
    folded = " ".join(str(text or "").split())
    return folded if len(folded) <= limit else folded[: limit - 1] + "…"


def _checks_lines(obj: dict[str, Any]) -> list[str]:
    """The acceptance checks of the revision that matters (status.checks), and the
    checks the spec declares that have no record for it (not run)."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    declared = [c for c in spec.get("checks") or [] if isinstance(c, dict)]
    records = [r for r in status.get("checks") or [] if isinstance(r, dict)]
    if not declared and not records:
        return []
    revision, which = checks_revision(status)
    mine = [r for r in records if revision and r.get("revision") == revision]
    order = {c.get("name"): i for i, c in enumerate(declared)}
    by_name = {c.get("name"): c for c in declared}
    last = len(HOOK_ORDER)

    rows: list[tuple[tuple[Any, ...], list[Any]]] = []
    for r in mine:
        name, hook, step = r.get("name"), r.get("hook") or "-", r.get("step")
        shown_hook = hook
        if hook == CheckHook.EACH_STEP and isinstance(step, int):
            shown_hook = f"{hook} step {step + 1}"  # people count steps from 1
        attempt = f"attempt {r.get('attempts') or 0}"
        if name in by_name:
            attempt += f" of {1 + int(by_name[name].get('retries') or 0)}"
        key = (
            HOOK_ORDER.get(hook, last),
            step if isinstance(step, int) else -1,
            order.get(name, len(order)),
            str(name),
        )
        rows.append(
            (key, [name, shown_hook, r.get("state") or "-", attempt, _short(r.get("message"))])
        )
    recorded = {r.get("name") for r in mine}
    for c in declared:
        if c.get("name") in recorded:
            continue
        hook = c.get("when") or "-"
        # an EachStep check not run yet comes after the steps that ran
        key = (
            HOOK_ORDER.get(hook, last),
            float("inf") if hook == CheckHook.EACH_STEP else -1,
            order[c.get("name")],
            str(c.get("name")),
        )
        rows.append((key, [c.get("name"), hook, NOT_RUN, "", ""]))
    rows.sort(key=lambda kr: kr[0])

    states = [row[2] for _, row in rows]
    counts = [f"{states.count(s)} {s.lower()}" for s in (*CHECK_STATES, NOT_RUN) if states.count(s)]
    lines = [
        "",
        f"CHECKS     revision {revision or '-'} ({which})"
        + (f": {', '.join(counts)}" if counts else ""),
    ]
    if rows:
        lines.append(
            table(["CHECK", "HOOK", "STATE", "ATTEMPTS", "MESSAGE"], [row for _, row in rows])
        )
    else:
        lines.append("no check has run for this revision")
    return lines


def event_time(event: dict[str, Any]) -> str | None:
    """The most recent time an Event (core/v1 view) names."""
    series = event.get("series") or {}
    return (
        series.get("lastObservedTime")
        or event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
    )


def _note(event: dict[str, Any]) -> str:
    return " ".join(str(event.get("message") or event.get("note") or "").split())


def sort_events(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(e: dict[str, Any]) -> dt.datetime:
        try:
            return parse_timestamp(event_time(e) or "")
        except ValueError:
            return dt.datetime.min.replace(tzinfo=dt.UTC)

    return sorted(events, key=key)


def history_view(obj: dict[str, Any], now: dt.datetime) -> str:
    history = (obj.get("status") or {}).get("history") or []
    if not history:
        return f"no rollout of {obj['metadata']['name']} has finished yet"
    return table(
        ["AGE", "TIME", "OUTCOME", "REVISION", "IMAGES", "CHANGES", "REASON", "MESSAGE"],
        [
            [
                age(h.get("at"), now),
                h.get("at") or "-",
                h.get("outcome"),
                h.get("revision"),
                h.get("images") or "-",
                h.get("changes") or "-",
                h.get("reason") or "-",
                h.get("message") or "",
            ]
            for h in history
        ],
    )
