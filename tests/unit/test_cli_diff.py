"""`kubectl shadowroute diff` and the comparison in `status`: the views, pure."""

from __future__ import annotations

import datetime as dt

from shadowroute.cli import view
from shadowroute.cli.diff import diff_view
from shadowroute.cli.main import build_parser

NOW = dt.datetime(2026, 11, 25, 5, 0, 0, tzinfo=dt.UTC)

SUMMARY = {
    "route": "web",
    "revision": "abc123",
    "compared": 400,
    "mismatched": 20,
    "exact": True,
    "mismatchRate": 0.05,
    "verdict": {"judgement": "Fail", "message": "20 of 400 compared requests differ"},
    "fields": [
        {"name": "body.price", "raw": 20, "noise": 0, "real": True},
        {"name": "body.time", "raw": 400, "noise": 400, "real": False},
    ],
    "skipped": {"method": 7, "too-large": 0},
    "dropped": {"busy": 0},
    "latency": {"candidate": {"p95": 0.031}, "baseline": {"p95": 0.022}},
    "samples": [
        {
            "field": "body.price",
            "request": {"method": "GET", "path": "/price/book", "headers": {}},
            "candidate": {
                "status": 200,
                "headers": {"content-type": "application/json", "cookie": "<redacted>"},
                "body": '{"price": 13, "item": "book"}',
            },
            "baseline": {
                "status": 200,
                "headers": {"content-type": "application/json", "cookie": "<redacted>"},
                "body": '{"price": 12, "item": "book"}',
            },
        }
    ],
}


def test_diff_shows_fields_with_noise_and_the_sample_side_by_side() -> None:
    text = diff_view(SUMMARY)
    assert "Fail" in text and "compared   400" in text and "(5.00%)" in text
    assert "skipped    method 7" in text and "dropped    none" in text
    assert "p95 shadow 31 ms, baseline 22 ms" in text
    rows = {
        line.split()[0]: line.split()[1:] for line in text.splitlines() if line.startswith("body.")
    }
    assert rows["body.price"] == ["20", "0", "yes"]
    assert rows["body.time"] == ["400", "400", "no"]
    assert "SAMPLE 1: body.price   GET /price/book" in text
    marked = [line for line in text.splitlines() if line.startswith("!")]
    assert len(marked) == 1 and '"price": 13' in marked[0] and '"price": 12' in marked[0]
    assert "cookie: <redacted>" in text


def test_diff_of_a_candidate_without_answer_and_no_fields() -> None:
    summary = {
        **SUMMARY,
        "fields": [],
        "samples": [
            {
                **SUMMARY["samples"][0],
                "candidate": {"status": "no answer", "error": "timeout", "headers": {}, "body": ""},
            }
        ],
    }
    text = diff_view(summary)
    assert "no field has differed" in text
    assert "status no answer (timeout)" in text


def test_diff_takes_a_name_samples_and_json() -> None:
    args = build_parser().parse_args(["diff", "web", "-n", "shop", "-o", "json", "--samples", "1"])
    assert (args.name, args.namespace, args.output, args.samples) == ("web", "shop", "json", 1)


def test_status_shows_the_last_comparison() -> None:
    obj = {
        "metadata": {"name": "web", "namespace": "shop", "generation": 2},
        "spec": {},
        "status": {
            "observedGeneration": 2,
            "phase": "Shadowing",
            "comparison": {
                "revision": "abc123",
                "verdict": "NotEnoughData",
                "reason": "ComparisonPending",
                "message": "40 requests compared, 100 needed",
                "compared": 40,
                "mismatched": 0,
                "mismatchRate": 0.0,
                "shadowP95": 0.03,
                "topFields": [{"name": "body.price", "raw": 2, "noise": 0, "real": True}],
                "checkedAt": "2026-11-25T04:59:58Z",
            },
        },
    }
    text = view.status_view(obj, [], NOW)
    assert "COMPARISON revision abc123: NotEnoughData (ComparisonPending), 40 compared" in text
    assert "read 2s ago" in text and "p95 shadow 30 ms, baseline -" in text
    assert "body.price" in text and "40 requests compared, 100 needed" in text


def test_plan_says_the_shadow_stage_compares() -> None:
    from shadowroute.api import ShadowRouteSpec
    from shadowroute.cli.plan import stages

    from .sim import spec_dict

    raw = spec_dict(shadow={"duration": "1m", "compare": {"minCompared": 300}})
    (first, *_) = stages(ShadowRouteSpec.model_validate(raw), "web")
    assert "mirrored to web-comparator" in first and "web-baseline" in first
    assert "at least 300 compared requests" in first and "GET, HEAD, OPTIONS only" in first
