"""checks.spec and checks.http: what an http check is, and the verdict on an answer."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shadowroute.acceptance.spec import (
    Check,
    Expect,
    Hook,
    HttpCheck,
    JobCheck,
    SecretValue,
    canonical_json_path,
    checks_for,
    duplicate_names,
)
from shadowroute.checks.http import EXCERPT, MAX_MESSAGE, Answer, NoAnswer, judge
from shadowroute.compare.differ import flatten

JSON = {"content-type": "application/json"}


def http(**expect: object) -> HttpCheck:
    return HttpCheck(path="/healthz", expect=Expect(**expect))  # type: ignore[arg-type]


def answer(body: object = None, status: int = 200, seconds: float = 0.01) -> Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Answer(status=status, headers=JSON, body=raw, seconds=seconds)


# --------------------------------------------------------------------------- spec


def test_a_json_path_is_spelled_the_way_the_differ_spells_it() -> None:
    assert canonical_json_path('body["items"][0].price') == "body.items[0].price"
    assert canonical_json_path('body["a.b"]') == 'body["a.b"]'
    assert canonical_json_path("body[007]") == "body[7]"
    for wrong in ("items[0]", "body.", "body..a", "body[x]", "body.a b", "body[-1]"):
        with pytest.raises(ValueError):
            canonical_json_path(wrong)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(json_values)
def test_every_path_the_differ_writes_is_already_canonical(value: object) -> None:
    for path in flatten(value):
        assert canonical_json_path(path) == path


def test_expect_normalises_its_paths_and_refuses_bad_values() -> None:
    assert set(Expect(json={'body["ok"]': True}).json) == {"body.ok"}
    with pytest.raises(ValueError, match="same field"):
        Expect(json={"body.ok": 1, 'body["ok"]': 2})
    with pytest.raises(ValueError, match="not JSON"):
        Expect(json={"body.x": float("nan")})
    with pytest.raises(ValueError):
        Expect(status_codes=frozenset())
    with pytest.raises(ValueError):
        Expect(status_codes=frozenset({700}))
    with pytest.raises(ValueError):
        Expect(max_latency_seconds=0)
    with pytest.raises(ValueError):
        Expect(body_contains="")


def test_http_check_header_names_are_lowercased_and_values_never_quoted() -> None:
    c = HttpCheck(method="post", headers={"Authorization": SecretValue("tok", "bearer")})
    assert c.method == "POST"
    assert dict(c.headers) == {"authorization": SecretValue("tok", "bearer")}
    assert c.secret_headers == ("authorization",)
    with pytest.raises(ValueError) as e:
        HttpCheck(headers={"x-a": "sekrit\r\nx-b: 1"})
    assert "sekrit" not in str(e.value)
    for bad in ({"bad name": "v"}, {"X-A": "1", "x-a": "2"}, {"x": 3}):
        with pytest.raises(ValueError):
            HttpCheck(headers=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        HttpCheck(path="healthz")
    with pytest.raises(ValueError):
        SecretValue("", "k")


def test_check_rules() -> None:
    ok = Check("smoke", Hook.BEFORE_TRAFFIC, HttpCheck(), timeout_seconds=5, retries=2)
    assert ok.max_attempts == 3
    assert Check("s", "EachStep", HttpCheck()).hook is Hook.EACH_STEP  # type: ignore[arg-type]
    for kwargs in (
        {"name": "Bad_Name"},
        {"name": "x" * 41},
        {"timeout_seconds": 0},
        {"timeout_seconds": float("inf")},
        {"retries": -1},
        {"retries": 11},
        {"retries": True},
    ):
        args = {"name": "smoke", "hook": Hook.BEFORE_TRAFFIC, "action": HttpCheck(), **kwargs}
        with pytest.raises(ValueError):
            Check(**args)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        JobCheck({"spec": {}})


def test_checks_for_keeps_order_and_duplicates_are_named() -> None:
    a = Check("a", Hook.EACH_STEP, HttpCheck())
    b = Check("b", Hook.BEFORE_TRAFFIC, HttpCheck())
    c = Check("c", Hook.EACH_STEP, HttpCheck())
    assert checks_for([a, b, c], Hook.EACH_STEP) == (a, c)
    assert duplicate_names([a, b, c, a, b]) == ("a", "b")
    assert duplicate_names([a, b]) == ()


# --------------------------------------------------------------------------- judge


def test_default_expectation_is_any_2xx() -> None:
    assert judge(HttpCheck(), answer(b"", status=204)).passed
    out = judge(HttpCheck(), answer(b"", status=503))
    assert not out.passed and "status 503 is not 2xx" in out.message


def test_no_answer_fails_with_its_reason_bounded() -> None:
    out = judge(HttpCheck(), NoAnswer("connection refused " * 50))
    assert not out.passed and out.message.startswith("no answer: 'connection refused")
    assert len(out.message) < 3 * EXCERPT


def test_numbers_compare_by_value_never_as_strings() -> None:
    c = http(json={"body.price": 1})
    assert judge(c, answer({"price": 1.0})).passed
    assert not judge(c, answer({"price": "1"})).passed
    assert not judge(c, answer({"price": True})).passed


def test_a_subtree_is_expected_whole() -> None:
    c = http(json={"body.items": [{"id": 1}]})
    assert judge(c, answer({"items": [{"id": 1}]})).passed
    out = judge(c, answer({"items": [{"id": 1}, {"id": 2}]}))
    assert not out.passed and "body.items is a value of 2 fields" in out.message
    assert not judge(c, answer({"items": []})).passed


def test_a_path_is_not_a_prefix_of_a_longer_key() -> None:
    out = judge(http(json={"body.a": 1}), answer({"ab": 1}))
    assert not out.passed and "body.a is missing" in out.message


def test_a_body_that_is_not_json_fails_naming_the_paths() -> None:
    out = judge(http(json={"body.ok": True}), answer(b"<html>ok</html>"))
    assert not out.passed and "not JSON" in out.message and "body.ok" in out.message


def test_json_is_read_whatever_the_content_type() -> None:
    a = Answer(200, {"Content-Type": "text/plain"}, b'{"ok": true}', 0.1)
    assert judge(http(json={"body.ok": True}), a).passed


def test_latency_and_substring() -> None:
    c = http(max_latency_seconds=0.5, body_contains="healthy")
    assert judge(c, answer(b"all healthy", seconds=0.5)).passed
    slow = judge(c, answer(b"all healthy", seconds=0.75))
    assert not slow.passed and "more than 0.5s" in slow.message
    missing = judge(c, answer(b"sick"))
    assert not missing.passed and "does not contain 'healthy'" in missing.message


def test_every_failure_is_told_at_once() -> None:
    c = http(status_codes=frozenset({200}), body_contains="x", json={"body.a": 1})
    out = judge(c, answer({"a": 2}, status=500))
    assert "status 500" in out.message and "contain" in out.message and "body.a is 2" in out.message


def test_messages_quote_no_header_value_and_little_body() -> None:
    secret_body = "S" * 10_000
    c = HttpCheck(
        headers={"authorization": "Bearer hunter2"},
        expect=Expect(body_contains="needle", json={"body.token": "x"}),
    )
    a = Answer(
        500,
        {"set-cookie": "session=cookie-value", **JSON},
        json.dumps({"token": secret_body}).encode(),
        1,
    )
    out = judge(c, a)
    assert "hunter2" not in out.message and "cookie-value" not in out.message
    assert out.message.count("S") <= 2 * EXCERPT + 5
    assert len(out.message) <= MAX_MESSAGE


@given(
    value=json_values,
    status=st.integers(100, 599),
    seconds=st.floats(0, 10, allow_nan=False),
    data=st.data(),
)
def test_an_answer_matching_every_expectation_passes(
    value: object, status: int, seconds: float, data: st.DataObject
) -> None:
    body = json.dumps(value).encode()
    fields = flatten(value)
    paths = data.draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True))
    # the expectation at a leaf path is the leaf's JSON value, rebuilt from the body
    expected = {p: _value_at(value, p) for p in paths}
    snippet = data.draw(st.sampled_from([None, body.decode()[: max(1, len(body) // 2)]]))
    c = http(
        status_codes=frozenset({status}),
        body_contains=snippet,
        json=expected,
        max_latency_seconds=seconds + 0.001,
    )
    out = judge(c, Answer(status, JSON, body, seconds))
    assert out.passed, out.message


@given(json_values, st.text("abcxyz", min_size=1, max_size=6))
def test_a_missing_path_fails_and_names_it(value: object, key: str) -> None:
    path = f"body.nowhere_{key}"
    out = judge(http(json={path: 1}), answer({"other": value}))
    assert not out.passed
    assert f"{path} is missing" in out.message


def _value_at(value: object, path: str) -> object:
    """The value at a flatten path of ``value`` (by walking it, not by flatten)."""
    for p, leaf_value in _walk(value, "body"):
        if p == path:
            return leaf_value
    raise KeyError(path)


def _walk(value: object, path: str):  # type: ignore[no-untyped-def]
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            key = canonical_json_path(f"{path}[{json.dumps(str(k))}]")
            yield from _walk(v, key)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
