"""Shadow comparison, pure: which fields differ between two answers, and which of
those differ more old vs new than old vs old (noise subtraction), within bounds."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shadowroute.compare import (
    DEFAULT_IGNORED_HEADERS,
    OTHER,
    IgnoredPaths,
    Judgement,
    Response,
    Rules,
    Tally,
    differences,
    flatten,
)

JSON_TYPE = {"content-type": "application/json"}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=25,
)
header_names = st.sampled_from(
    ["content-type", "etag", "x-request-id", "date", "server", "x-envoy-upstream", "Cache-Control"]
)
headers = st.dictionaries(header_names, st.text(max_size=6), max_size=5)


@st.composite
def responses(draw: st.DrawFn) -> Response:
    hs = draw(headers)
    if draw(st.booleans()):
        hs["content-type"] = draw(st.sampled_from(["application/json", "application/x+json"]))
        body = json.dumps(draw(json_values)).encode()
    else:
        body = draw(st.binary(max_size=20))
    return Response(draw(st.sampled_from([200, 404, 500])), hs, body)


def js(value: object, status: int = 200, **extra: str) -> Response:
    return Response(status, {**JSON_TYPE, **extra}, json.dumps(value).encode())


# -- one pair of answers ---------------------------------------------------------------


@given(responses())
def test_an_answer_never_differs_from_itself(r: Response) -> None:
    assert differences(r, r) == frozenset()
    assert differences(r, Response(r.status, dict(r.headers), bytes(r.body))) == frozenset()


@given(responses(), responses())
def test_differences_are_symmetric(a: Response, b: Response) -> None:
    assert differences(a, b) == differences(b, a)


@given(responses(), responses())
def test_ignored_headers_never_appear(a: Response, b: Response) -> None:
    found = differences(a, b, ignore_headers=DEFAULT_IGNORED_HEADERS | {"etag"})
    names = {n.removeprefix("header:") for n in found if n.startswith("header:")}
    assert not names & {"date", "server", "etag", "x-envoy-upstream"}


@given(json_values, json_values)
def test_ignored_paths_never_appear(a: object, b: object) -> None:
    wrap = {"items": [{"id": a, "n": 1}, {"id": b}], "meta": a, "keep": b}
    other = {"items": [{"id": b}, {"id": a, "n": 2}], "meta": b, "keep": a}
    found = differences(js(wrap), js(other), ignore_paths=["body.items[*].id", "body.meta"])
    assert not any(
        n.startswith(("body.items[0].id", "body.items[1].id", "body.meta")) for n in found
    )


def test_status_and_headers_are_fields() -> None:
    a = Response(200, {"Content-Type": "text/plain", "ETag": "1", "Date": "now"}, b"x")
    b = Response(503, {"content-type": "text/plain", "date": "later", "Retry-After": "1"}, b"x")
    assert differences(a, b) == {"status", "header:etag", "header:retry-after"}


def test_repeated_headers_are_joined_in_order() -> None:
    a = Response(200, [("Vary", "a"), ("vary", "b")])
    assert a.headers == {"vary": "a, b"}
    assert differences(a, Response(200, {"vary": ["a", "b"]})) == frozenset()
    assert differences(a, Response(200, {"vary": ["b", "a"]})) == {"header:vary"}


def test_content_length_is_compared_by_default() -> None:
    a, b = Response(200, {"content-length": "1"}, b"x"), Response(200, {"content-length": "2"})
    assert differences(a, b) == {"header:content-length", "body"}


def test_header_wildcard_is_a_prefix_and_case_does_not_matter() -> None:
    a = Response(200, {"X-Trace-Id": "1", "X-Trace-Span": "2", "X-Other": "3"})
    b = Response(200, {"x-trace-id": "9", "x-trace-span": "8", "x-other": "7"})
    assert differences(a, b, ignore_headers={"X-Trace-*"}) == {"header:x-other"}


def test_numbers_compare_by_value_not_by_spelling() -> None:
    assert differences(js({"n": 1}), js({"n": 1.0})) == frozenset()
    assert differences(js({"n": 0}), js({"n": -0.0})) == frozenset()
    assert differences(js({"n": 1}), js({"n": "1"})) == {"body.n"}
    assert differences(js({"n": 1}), js({"n": True})) == {"body.n"}
    assert differences(js({"n": 0}), js({"n": None})) == {"body.n"}


def test_nan_equals_itself() -> None:
    nan = Response(200, JSON_TYPE, b'{"n": NaN}')
    assert differences(nan, nan) == frozenset()


def test_arrays_compare_by_index() -> None:
    assert differences(js({"a": [1, 2]}), js({"a": [2, 1]})) == {"body.a[0]", "body.a[1]"}
    assert differences(js({"a": [1, 2]}), js({"a": [1, 2, 3]})) == {"body.a[2]"}
    assert differences(js({"a": [1]}), js({"a": []})) == {"body.a", "body.a[0]"}


def test_missing_and_type_change_are_differences() -> None:
    assert differences(js({"a": 1, "b": 2}), js({"a": 1})) == {"body.b"}
    assert differences(js({"a": None}), js({})) == {"body", "body.a"}
    assert differences(js({"a": 1}), js({"a": {"b": 1}})) == {"body.a", "body.a.b"}
    assert differences(js({"a": {}}), js({"a": []})) == {"body.a"}


def test_object_key_order_does_not_matter() -> None:
    a = Response(200, JSON_TYPE, b'{"a": 1, "b": [1, {"c": 2, "d": 3}]}')
    b = Response(200, JSON_TYPE, b'{"b": [1, {"d": 3, "c": 2}], "a": 1}')
    assert differences(a, b) == frozenset()


def test_keys_that_are_not_plain_names_are_quoted() -> None:
    assert set(flatten({"a.b": 1, "a": {"b": 2}, "": 3, "x[0]": 4})) == {
        'body["a.b"]',
        "body.a.b",
        'body[""]',
        'body["x[0]"]',
    }


def test_a_body_that_is_not_json_is_compared_whole() -> None:
    a = Response(200, {"content-type": "text/html"}, b'{"a": 1}')
    b = Response(200, {"content-type": "text/html"}, b'{"a": 1.0}')
    assert differences(a, b) == {"body"}
    broken = Response(200, JSON_TYPE, b"{not json")
    assert differences(broken, Response(200, JSON_TYPE, b"{not json!")) == {"body"}
    assert differences(broken, broken) == frozenset()
    assert differences(a, b, compare_bodies=False) == frozenset()


def test_json_is_recognised_by_its_media_type() -> None:
    assert Response(200, {"Content-Type": "application/json; charset=utf-8"}).is_json
    assert Response(200, {"content-type": "application/problem+json"}).is_json
    assert not Response(200, {"content-type": "text/plain"}).is_json
    assert not Response(200).is_json


def test_ignored_path_syntax() -> None:
    ignored = IgnoredPaths(["body.items[*].id", 'body["a.b"]', "body.meta"])
    assert ignored.matches("body.items[12].id")
    assert ignored.matches("body.items[0].id.deeper")
    assert not ignored.matches("body.items[0].idx")
    assert not ignored.matches("body.items[x].id")
    assert ignored.matches('body["a.b"]')
    assert ignored.matches("body.meta[0]")
    assert not ignored.matches("body.metadata")
    with pytest.raises(ValueError, match="starts with"):
        IgnoredPaths(["header:date"])
    with pytest.raises(ValueError, match="starts with"):
        Rules(ignore_paths=("items[*]",))


def test_ignoring_the_whole_body() -> None:
    a = Response(200, {"content-type": "text/plain"}, b"a")
    assert (
        differences(a, Response(200, {"content-type": "text/plain"}, b"b"), (), ["body"]) == set()
    )
    assert differences(js([1]), js([2]), (), ["body"]) == frozenset()


# -- bounds ------------------------------------------------------------------------------


plain_json = st.recursive(
    st.integers(0, 3) | st.none(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text("ab", min_size=1, max_size=2), children, max_size=4)
    ),
    max_leaves=40,
)


@given(plain_json, st.integers(0, 4), st.integers(0, 8))
def test_flatten_is_bounded(value: object, depth: int, cap: int) -> None:
    out = flatten(value, max_depth=depth, max_fields=cap)
    assert len(out) <= cap + 1
    assert all(n.count("[") + n.count(".") <= depth for n in out)
    assert flatten(value, max_depth=depth, max_fields=cap) == out


def test_past_the_depth_a_container_is_one_field_that_still_compares() -> None:
    deep_a = {"a": {"b": {"c": {"d": 1}}}}
    deep_b = {"a": {"b": {"c": {"d": 2}}}}
    assert set(flatten(deep_a, max_depth=2)) == {"body.a.b"}
    rules = Rules(max_depth=2)
    assert rules.differences(js(deep_a), js(deep_b)) == {"body.a.b"}
    assert rules.differences(js(deep_a), js({"a": {"b": {"c": {"d": 1.0}}}})) == frozenset()
    ignored = Rules(max_depth=2, ignore_paths=("body.a.b.c.d",))
    assert ignored.differences(js(deep_a), js(deep_b)) == frozenset()


def test_past_the_field_cap_the_rest_is_one_field_that_still_compares() -> None:
    many = {f"k{i:04}": i for i in range(50)}
    out = flatten(many, max_fields=10)
    assert len(out) == 11 and "body#truncated" in out
    rules = Rules(max_fields=10)
    assert rules.differences(js(many), js(many)) == frozenset()
    assert rules.differences(js(many), js({**many, "k0049": -1})) == {"body#truncated"}
    assert rules.differences(js(many), js({**many, "k0000": -1})) == {"body.k0000"}


def test_a_body_too_deep_to_parse_is_compared_whole() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    deep = Response(200, JSON_TYPE, body)
    assert set(Rules().fields(deep)) >= {"body"}
    assert differences(deep, Response(200, JSON_TYPE, body + b" ")) == {"body"}


# -- many requests: noise subtraction ------------------------------------------------


def test_observe_gives_raw_and_noise() -> None:
    primary = js({"price": 1, "at": "t1"}, **{"x-request-id": "a"})
    candidate = js({"price": 2, "at": "t2"}, **{"x-request-id": "b"})
    secondary = js({"price": 1, "at": "t3"}, **{"x-request-id": "c"})
    raw, noise = Rules().observe(primary, candidate, secondary)
    assert raw == {"body.price", "body.at", "header:x-request-id"}
    assert noise == {"body.at", "header:x-request-id"}


@given(st.lists(st.frozensets(st.sampled_from("abcdef")), max_size=60), st.randoms())
def test_a_field_as_noisy_as_it_differs_is_never_real(raws: list, rnd) -> None:
    noises = list(raws)
    rnd.shuffle(noises)  # each field differs as often old vs old as old vs new
    tally = Tally()
    for raw, noise in zip(raws, noises, strict=True):
        tally.record(raw | {"echo"}, noise | {"echo"})
    assert all(f.raw == f.noise for f in tally.fields)
    assert tally.real == frozenset()
    assert tally.mismatched == 0


@given(
    st.lists(
        st.tuples(st.frozensets(st.sampled_from("abc")), st.frozensets(st.sampled_from("abc")))
    )
)
def test_a_field_no_more_different_than_noise_is_never_real(pairs: list) -> None:
    tally = Tally()
    for raw, noise in pairs:
        tally.record(raw, noise | raw)
    assert tally.real == frozenset()


def test_a_timestamp_drops_out_and_a_real_change_stays() -> None:
    tally = Tally()
    for i in range(2000):
        raw = {"body.at", "header:x-request-id"}
        if i % 20 == 0:  # 5 % of requests
            raw.add("body.price")
        tally.record(raw, {"body.at", "header:x-request-id"})
    assert tally.real == {"body.price"}
    assert tally.mismatched == 100
    verdict = tally.verdict(max_mismatch_rate=0.01, min_compared=100)
    assert verdict.judgement is Judgement.FAIL
    assert verdict.top[0].name == "body.price" and verdict.top[0].real
    assert "body.price (raw 100, noise 0)" in verdict.message
    assert tally.verdict(max_mismatch_rate=0.06, min_compared=100).judgement is Judgement.PASS


@given(st.integers(1, 30))
def test_five_percent_real_differences_are_found_once_enough_requests(k: int) -> None:
    tally = Tally()
    n = 20 * k
    for i in range(n):
        tally.record({"body.price"} if i % 20 == 0 else set(), set())
    assert tally.real == {"body.price"}
    assert tally.mismatched == k


def test_the_thresholds() -> None:
    tally = Tally()
    for i in range(100):
        tally.record({"f"} if i < 10 else (), {"f"} if i < 9 else ())
    assert tally.count("f").raw == 10 and tally.count("f").noise == 9
    assert "f" not in tally.real  # gap 1 of 10: 10 %, below 20 %
    loose = Tally(relative_gap=0.05)
    for i in range(100):
        loose.record({"f"} if i < 10 else (), {"f"} if i < 9 else ())
    assert loose.real == {"f"}
    rare = Tally()
    for i in range(10_000):
        rare.record({"f"} if i < 3 else (), ())
    assert rare.real == frozenset()  # 3 in 10,000 is 0.03 %: not above it
    rare.record({"f"}, ())
    assert rare.real == {"f"}


def test_not_enough_data_whatever_the_rate() -> None:
    tally = Tally()
    assert tally.verdict(0.01, 0).judgement is Judgement.NOT_ENOUGH_DATA
    for _ in range(10):
        tally.record({"status"}, ())
    verdict = tally.verdict(0.01, 100)
    assert verdict.judgement is Judgement.NOT_ENOUGH_DATA
    assert verdict.message.startswith("10 requests compared, 100 needed")
    assert tally.verdict(0.01, 10).judgement is Judgement.FAIL


def test_no_difference_passes() -> None:
    tally = Tally()
    for _ in range(200):
        tally.record((), ())
    verdict = tally.verdict(0.0, 100)
    assert verdict.judgement is Judgement.PASS and verdict.mismatch_rate == 0 and not verdict.top


@given(st.lists(st.frozensets(st.text(min_size=1, max_size=3), max_size=6), max_size=40))
def test_the_field_name_cap_holds(sets: list) -> None:
    tally = Tally(max_names=5)
    for s in sets:
        tally.record(s, s)
    assert len(tally.names) <= 5
    assert len(tally.fields) <= 5
    distinct = set().union(*sets) if sets else set()
    if len(distinct) > 5:
        assert OTHER in tally.names


def test_names_past_the_cap_are_counted_as_other() -> None:
    tally = Tally(max_names=3)
    tally.record({"a", "b"}, ())
    tally.record({"c", "d"}, ())
    assert tally.names == {"a", "b", OTHER}
    assert tally.count(OTHER).raw == 1  # once per request, not per folded name
    assert tally.count("a").raw == 1


def test_long_names_are_cut() -> None:
    tally = Tally()
    tally.record({"body." + "k" * 10_000}, ())
    (name,) = tally.names
    assert len(name) == 256


def test_past_the_set_cap_mismatches_are_an_upper_bound() -> None:
    def fill(tally: Tally) -> Tally:
        for i in range(200):
            tally.record({"x", "z"} if i % 2 else {"y"}, {"y"})  # y is noise
        return tally

    exact, bounded = fill(Tally()), fill(Tally(max_sets=0))
    assert exact.exact and exact.mismatched == 100
    assert not bounded.exact and bounded.real == exact.real == {"x", "z"}
    assert bounded.mismatched == 200  # never below the truth: errs towards failing
    assert bounded.verdict(0.6, 1).message.startswith("at most 200 of 200")
    assert exact.verdict(0.6, 1).message.startswith("100 of 200")


def test_with_one_real_field_the_bound_is_exact() -> None:
    tally = Tally(max_sets=2)
    for i in range(2000):
        tally.record({"real", f"noise{i % 4}"}, {f"noise{i % 4}"})
    assert not tally.exact  # four distinct sets, two kept
    assert tally.real == {"real"}
    assert tally.mismatched == 2000
