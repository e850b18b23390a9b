"""The comparator's pure parts: its command line, where it sends its asks, what it
redacts, which samples it keeps, its latency percentiles, and what a mirrored
request's three answers count as (the summary)."""

from __future__ import annotations

import importlib
import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shadowroute.compare.comparison import (
    COMPARED,
    SKIP_BASELINE_FAILED,
    SKIP_TOO_LARGE,
    TIMEOUT,
    TOO_LARGE,
    Answer,
    Comparison,
    NoAnswer,
    Request,
)
from shadowroute.compare.config import SAFE_METHODS, Config, parse_args
from shadowroute.compare.latency import Reservoir
from shadowroute.compare.redact import REDACTED, is_credential, redact_headers
from shadowroute.compare.resolve import (
    Target,
    original_host,
    resolve,
    service_link_env,
    upstream_headers,
)
from shadowroute.compare.samples import Sample, Samples, Shown, show_body, show_path

ARGS = ["--candidate", "http://web-shadow:80", "--baseline", "http://web-baseline:80"]
ARGS += ["--route", "web", "--revision", "abc123"]
JSON = (("content-type", "application/json"),)
REQUEST = Request("GET", "/items?id=1", (("Host", "shop.example"),))


def config(**changes: object) -> Config:
    base: dict[str, object] = {
        "candidate": "http://web-shadow:80",
        "baseline": "http://web-baseline:80",
        "route": "web",
        "revision": "abc123",
    }
    return Config(**{**base, **changes})  # type: ignore[arg-type]


def answer(doc: object, status: int = 200, *headers: tuple[str, str]) -> Answer:
    return Answer(status, JSON + headers, json.dumps(doc).encode())


# -- the command line ------------------------------------------------------------


def test_defaults() -> None:
    c = parse_args(ARGS)
    assert (c.candidate, c.baseline, c.route, c.revision) == (
        "http://web-shadow:80",
        "http://web-baseline:80",
        "web",
        "abc123",
    )
    assert (c.listen_port, c.admin_port, c.max_in_flight, c.timeout) == (8070, 8071, 64, 5.0)
    assert c.methods == frozenset(SAFE_METHODS) == {"GET", "HEAD", "OPTIONS"}
    assert c.max_body_bytes == 1_048_576 and c.samples == 3 and c.compare_bodies
    assert "date" in c.rules.ignore_headers  # the differ's defaults stay


def test_repeatable_options_and_durations() -> None:
    c = parse_args(
        [
            *ARGS,
            *("--method", "get", "--method", "POST", "--ignore-header", "X-Trace"),
            *("--ignore-path", "body.meta", "--ignore-path", "body.items[*].id"),
            *("--no-bodies", "--timeout", "1500ms", "--max-in-flight", "8"),
            *("--max-mismatch-rate", "0.05", "--min-compared", "10", "--samples", "1"),
        ]
    )
    assert c.methods == {"GET", "POST"}
    assert "x-trace" in c.rules.ignore_headers and "server" in c.rules.ignore_headers
    assert c.rules.ignore_paths == ("body.items[*].id", "body.meta")
    assert not c.compare_bodies and not c.rules.compare_bodies
    assert (c.timeout, c.max_in_flight, c.max_mismatch_rate, c.min_compared, c.samples) == (
        1.5,
        8,
        0.05,
        10,
        1,
    )


@pytest.mark.parametrize(
    "extra",
    [
        ["--timeout", "5"],  # a duration has a unit
        ["--timeout", "0s"],
        ["--max-in-flight", "0"],
        ["--max-mismatch-rate", "1.5"],
        ["--ignore-path", "meta"],  # paths start with body
        ["--listen-port", "8071"],  # the admin port's
        ["--candidate", "web-shadow:80"],  # no scheme
        ["--candidate", "http://web-shadow/?q=1"],
    ],
)
def test_bad_input_is_a_usage_error(extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args([*ARGS, *extra])
    assert exit_.value.code == 2
    assert "shadowroute-compare" in capsys.readouterr().err


def test_entry_points() -> None:
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["shadowroute-compare"] == (
        "shadowroute.compare.__main__:main"
    )
    assert callable(importlib.import_module("shadowroute.compare.__main__").main)


def test_required_arguments() -> None:
    with pytest.raises(SystemExit):
        parse_args(ARGS[:4])


# -- where the asks go -----------------------------------------------------------


def test_service_link_variables_give_the_address_and_the_url_port() -> None:
    env = {"WEB_SHADOW_SERVICE_HOST": "10.96.0.7", "WEB_SHADOW_SERVICE_PORT": "8080"}
    t = resolve("http://web-shadow:80", env)
    assert t == Target("http", "10.96.0.7", 80, "", via_service_link=True)
    assert t.url("/a/b?c=%2F") == "http://10.96.0.7:80/a/b?c=%2F"


def test_without_the_variables_the_name_is_resolved_normally() -> None:
    assert resolve("http://web-shadow", {}) == Target("http", "web-shadow", 80)
    only_host = {"WEB_SHADOW_SERVICE_HOST": "10.96.0.7"}
    assert not resolve("http://web-shadow", only_host).via_service_link
    # a qualified name is DNS's, whatever the environment
    env = {"WEB_SHADOW_SERVICE_HOST": "10.96.0.7", "WEB_SHADOW_SERVICE_PORT": "80"}
    assert resolve("http://web-shadow.shop.svc:80", env).address == "web-shadow.shop.svc"
    # https keeps its name, for TLS
    assert resolve("https://web-shadow", env) == Target("https", "web-shadow", 443)


def test_a_path_prefix_and_ipv6() -> None:
    assert resolve("http://web:8080/api/", {}).url("/v1?x=1") == "http://web:8080/api/v1?x=1"
    assert resolve("http://[::1]:8080", {}).url("/") == "http://[::1]:8080/"


@pytest.mark.parametrize(
    ("host", "env"),
    [
        ("web-shadow", ("WEB_SHADOW_SERVICE_HOST", "WEB_SHADOW_SERVICE_PORT")),
        ("Web", ("WEB_SERVICE_HOST", "WEB_SERVICE_PORT")),
        ("web.shop", None),
        ("10.0.0.1", None),
        ("-web", None),
    ],
)
def test_service_link_names(host: str, env: tuple[str, str] | None) -> None:
    assert service_link_env(host) == env


@pytest.mark.parametrize(
    ("mirrored", "original"),
    [
        ("shop.example-shadow", "shop.example"),
        ("shop.example-shadow:8080", "shop.example:8080"),  # Envoy: before the port
        ("shop.example:8080-shadow", "shop.example:8080"),  # very old Envoys: after it
        ("shop.example", "shop.example"),  # Envoy Gateway without the suffix
        ("[::1]:8080", "[::1]:8080"),
        ("", ""),
    ],
)
def test_original_host(mirrored: str, original: str) -> None:
    assert original_host(mirrored) == original


@given(st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?", fullmatch=True))
def test_the_shadow_suffix_comes_off(host: str) -> None:
    assert original_host(host + "-shadow") == host
    assert original_host(host + "-shadow:443") == host + ":443"


def test_upstream_headers_leave_hop_by_hop_out_and_set_the_host() -> None:
    headers = [
        ("Host", "shop.example-shadow"),
        ("Connection", "keep-alive, X-Hop"),
        ("X-Hop", "1"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "0"),
        ("Accept", "a"),
        ("Accept", "b"),
        ("X-Request-Id", "r1"),
    ]
    assert upstream_headers(headers, "shop.example-shadow") == [
        ("Accept", "a"),
        ("Accept", "b"),
        ("X-Request-Id", "r1"),
        ("Host", "shop.example"),
    ]


# -- redaction -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        *("Authorization", "proxy-authorization", "Cookie", "Set-Cookie", "X-Api-Key"),
        *("X-Auth-Token", "x-session-token", "X-Client-Secret", "db-password", "api_key"),
    ],
)
def test_credential_headers(name: str) -> None:
    assert is_credential(name)
    assert redact_headers([(name, "s3cr3t")]) == {name.lower(): REDACTED}


def test_other_headers_are_shown_joined_and_bounded() -> None:
    shown = redact_headers(
        [
            *(("Content-Type", "text/plain"), ("Vary", "a"), ("vary", "b")),
            *(("X-Long", "x" * 600), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")),
        ]
    )
    assert shown["content-type"] == "text/plain" and shown["vary"] == "a, b"
    assert shown["set-cookie"] == REDACTED
    assert len(shown["x-long"]) == 512 and shown["x-long"].endswith("…")
    many = redact_headers([(f"x-{i}", "v") for i in range(100)], max_headers=10)
    assert len(many) == 10


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Authorization", "Cookie", "x-token", "Accept", "ETag", "x-Auth"]),
            st.text(min_size=1, max_size=8),
        ),
        max_size=8,
    )
)
def test_no_credential_value_survives(headers: list[tuple[str, str]]) -> None:
    shown = redact_headers(headers)
    for name, value in shown.items():
        if is_credential(name):
            assert value == REDACTED


def test_query_credentials_and_bodies_in_samples() -> None:
    assert show_path("/a?id=1&access_token=xyz&api_key=k&key=g&q") == (
        f"/a?id=1&access_token={REDACTED}&api_key={REDACTED}&key={REDACTED}&q"
    )
    assert show_path("/plain") == "/plain"
    assert show_body(b"short") == "short"
    cut = show_body(b"x" * 5000)
    assert cut.startswith("x" * 2048) and cut.endswith("…[truncated: 5000 bytes in all]")
    assert show_body(b"\xff\xfe") == "\ufffd\ufffd"


# -- samples ---------------------------------------------------------------------


def sample(n: int = 0) -> Sample:
    shown = Shown.answer(200, [("ETag", str(n))], b"{}")
    return Sample.of("GET", f"/{n}", [("Authorization", "Bearer x")], shown, shown)


def test_samples_are_capped_per_field_and_built_only_when_kept() -> None:
    samples = Samples(per_field=2, max_fields=3)
    built = []

    def make(n: int) -> Sample:
        built.append(n)
        return sample(n)

    for n in range(5):
        samples.offer({"status"}, lambda n=n: make(n), lambda _: 0)
    assert [s.path for s in samples.of("status")] == ["/0", "/1"] and built == [0, 1]
    assert samples.of("status")[0].headers == {"authorization": REDACTED}


def test_noise_never_crowds_a_real_change_out() -> None:
    samples = Samples(per_field=1, max_fields=2)
    gaps = {"header:x-request-id": 0, "body.ts": 0, "body.price": 3}
    samples.offer({"header:x-request-id", "body.ts"}, sample, gaps.__getitem__)
    assert samples.fields == {"header:x-request-id", "body.ts"}
    samples.offer({"body.price"}, sample, gaps.__getitem__)
    assert "body.price" in samples.fields and len(samples.fields) == 2
    # an equally weak newcomer takes no one's place
    gaps["body.other"] = 0
    samples.offer({"body.other"}, sample, gaps.__getitem__)
    assert "body.other" not in samples.fields


def test_no_samples_when_asked_for_none() -> None:
    samples = Samples(per_field=0)
    assert not samples.offer({"status"}, sample, lambda _: 1)
    assert samples.listed(str) == []


# -- latency ---------------------------------------------------------------------


def test_reservoir_percentiles_over_the_latest_values() -> None:
    r = Reservoir(capacity=100)
    assert r.as_dict() == {"p50": None, "p95": None, "count": 0}
    for i in range(1, 201):
        r.add(i / 1000)
    assert r.count == 200
    assert r.quantile(0.5) == 0.15 and r.quantile(0.95) == 0.195 and r.quantile(1) == 0.2
    assert r.quantile(0) == 0.101


# -- what three answers count as -------------------------------------------------


def test_identical_answers_compare_equal() -> None:
    c = Comparison(config())
    a = answer({"price": 10})
    assert c.observe(REQUEST, a, a, a) == COMPARED
    assert (c.tally.compared, c.tally.mismatched, c.samples.fields) == (1, 0, frozenset())


def test_a_difference_beyond_noise_is_real_and_sampled() -> None:
    c = Comparison(config(max_mismatch_rate=0.01, min_compared=10))
    for i in range(100):
        ts = ("x-request-id", str(i))
        b1, b2 = answer({"price": 10}, 200, ts), answer({"price": 10}, 200, ("x-request-id", "z"))
        cand = answer({"price": 11 if i % 20 == 0 else 10}, 200, ("x-request-id", f"c{i}"))
        c.observe(REQUEST, cand, b1, b2)
    assert c.tally.real == {"body.price"}
    assert c.tally.mismatched == 5
    s = c.summary()
    assert s["verdict"]["judgement"] == "Fail" and s["mismatchRate"] == 0.05
    assert s["fields"][0] == {"name": "body.price", "raw": 5, "noise": 0, "real": True}
    noise = next(f for f in s["fields"] if f["name"] == "header:x-request-id")
    assert noise == {"name": "header:x-request-id", "raw": 100, "noise": 100, "real": False}
    assert s["samples"][0]["field"] == "body.price"
    assert json.loads(s["samples"][0]["candidate"]["body"]) == {"price": 11}


def test_a_candidate_without_an_answer_differs_on_status() -> None:
    c = Comparison(config())
    a = answer({"ok": True})
    assert c.observe(REQUEST, NoAnswer(TIMEOUT), a, a) == COMPARED
    assert c.tally.count("status").raw == 1 and c.tally.mismatched == 1
    [s] = c.summary()["samples"]
    assert s["candidate"] == {"status": "no answer", "headers": {}, "body": "", "error": "timeout"}
    assert s["baseline"]["status"] == 200
    assert c.summary()["noAnswer"]["candidate"] == {"timeout": 1}


def test_a_failed_baseline_or_a_big_answer_is_skipped() -> None:
    c = Comparison(config())
    a = answer({})
    assert c.observe(REQUEST, a, NoAnswer(TIMEOUT), a) == SKIP_BASELINE_FAILED
    assert c.observe(REQUEST, a, a, NoAnswer("connect")) == SKIP_BASELINE_FAILED
    assert c.observe(REQUEST, NoAnswer(TIMEOUT), NoAnswer(TIMEOUT), a) == SKIP_BASELINE_FAILED
    assert c.observe(REQUEST, NoAnswer(TOO_LARGE), a, a) == SKIP_TOO_LARGE
    assert c.tally.compared == 0
    assert c.skipped == {"method": 0, "too-large": 1, "baseline-failed": 3}


def test_summary_shape() -> None:
    c = Comparison(config())
    c.observe(REQUEST, answer({"a": 1}), answer({"a": 2}), answer({"a": 2}))
    c.timed("candidate", 0.01)
    s = c.summary()
    assert set(s) == {
        "route",
        "revision",
        "compared",
        "mismatched",
        "exact",
        "mismatchRate",
        "verdict",
        "fields",
        "skipped",
        "dropped",
        "noAnswer",
        "latency",
        "samples",
    }
    assert (s["route"], s["revision"], s["compared"], s["mismatched"]) == ("web", "abc123", 1, 1)
    assert (
        s["verdict"]["judgement"] == "NotEnoughData"
        and "1 requests compared" in (s["verdict"]["message"])
    )
    assert s["latency"]["candidate"] == {"p50": 0.01, "p95": 0.01, "count": 1}
    assert s["latency"]["baseline"]["count"] == 0
    assert s["dropped"] == {"busy": 0, "error": 0, "stalled": 0}
    [sample_] = s["samples"]
    assert set(sample_) == {"field", "request", "candidate", "baseline"}
    assert sample_["request"] == {
        "method": "GET",
        "path": "/items?id=1",
        "headers": {"host": "shop.example"},
    }
    json.dumps(s)  # serialisable as is


def test_field_names_are_bounded() -> None:
    c = Comparison(config(), max_names=10)
    for i in range(50):
        c.observe(REQUEST, answer({f"k{i}": 1}), answer({}), answer({}))
    assert len(c.tally.names) <= 10 and "_other" in c.tally.names


def test_without_bodies_only_status_and_headers_count() -> None:
    c = Comparison(config(compare_bodies=False))
    c.observe(REQUEST, answer({"a": 1}), answer({"a": 2}), answer({"a": 2}))
    assert c.tally.compared == 1 and not c.tally.names


statuses = st.sampled_from([200, 201, 404, 500])
header_pairs = st.lists(
    st.tuples(st.sampled_from(["etag", "x-id", "content-type", "Vary"]), st.text(max_size=5)),
    max_size=4,
)


@given(statuses, header_pairs, st.binary(max_size=40) | st.just(b'{"a": [1, {"b": null}]}'))
def test_an_answer_compared_with_itself_never_mismatches(
    status: int, headers: list[tuple[str, str]], body: bytes
) -> None:
    c = Comparison(config())
    a = Answer(status, tuple(headers), body)
    for _ in range(3):
        assert c.observe(REQUEST, a, a, a) == COMPARED
    assert c.tally.mismatched == 0 and not c.tally.names and c.summary()["samples"] == []
