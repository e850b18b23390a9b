"""Query templates: every substituted value is escaped for where it stands, so no value
can change the shape of a query; presets render for every convention."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from shadowroute.analysis.presets import preset_queries
from shadowroute.analysis.templates import (
    Context,
    TemplateError,
    escape_regex,
    escape_string,
    promql_duration,
    render,
)
from shadowroute.api.models import (
    TEMPLATE_PLACEHOLDERS,
    MetricCheck,
    MetricConvention,
    MetricPreset,
)


def ctx(**values: str) -> Context:
    base = dict(
        namespace="shop",
        name="web",
        primary="web-primary",
        canary="web-canary",
        shadow="web-shadow",
        target="web-canary",
        revision="abc123",
        stable_revision="def456",
        canary_revision="abc123",
        interval=30.0,
        window=60.0,
    )
    base.update(values)
    return Context(**base)


# --------------------------------------------------------------------------- a PromQL reader
# An independent reading of PromQL's lexer (promql/parser/lex.go) and of Go's unquoting,
# to check what Prometheus would make of a rendered query.

_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def unquote(body: str, quote: str) -> str:
    """The value of a string literal's inside, as Go's strconv.Unquote reads it."""
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\n":
            raise ValueError("raw line break in a string")
        if ch == quote:
            raise ValueError("unescaped quote inside the string")
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _SIMPLE:
            out.append(_SIMPLE[nxt])
            i += 2
        elif nxt == "\\" or nxt == quote:
            out.append(nxt)
            i += 2
        elif nxt == "x":
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
        else:
            raise ValueError(f"invalid escape \\{nxt}")
    return "".join(out)


def tokens(query: str) -> list[tuple[str, str]]:
    """The query as ("code", text) and ("<quote>", value) tokens."""
    out: list[tuple[str, str]] = []
    code, i = "", 0
    while i < len(query):
        ch = query[i]
        if ch in "\"'`":
            out.append(("code", code))
            code = ""
            j = i + 1
            while query[j] != ch:
                j += 2 if ch != "`" and query[j] == "\\" else 1
            body = query[i + 1 : j]
            out.append((ch, body if ch == "`" else unquote(body, ch)))
            i = j + 1
        elif ch == "#":
            end = query.find("\n", i)
            end = len(query) if end < 0 else end
            out.append(("comment", query[i:end]))
            i = end
        else:
            code += ch
            i += 1
    out.append(("code", code))
    return out


# Any text a value might hold (surrogates cannot be encoded, so they are not text).
values = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


# --------------------------------------------------------------------------- escaping


@given(value=values)
def test_a_double_quoted_value_reads_back_exactly(value: str) -> None:
    query = render(
        'sum(rate(x{namespace="{{ namespace }}",code="5xx"}[{{ window }}]))', ctx(namespace=value)
    )
    assert tokens(query) == [
        ("code", "sum(rate(x{namespace="),
        ('"', value),
        ("code", ",code="),
        ('"', "5xx"),
        ("code", "}[60s]))"),
    ]


@given(value=values)
def test_a_single_quoted_value_reads_back_exactly(value: str) -> None:
    query = render("x{service='{{ target }}'}", ctx(target=value))
    assert tokens(query) == [("code", "x{service="), ("'", value), ("code", "}")]


@given(value=values)
def test_a_regex_matcher_matches_exactly_the_value(value: str) -> None:
    query = render('x{pod=~"{{ canary }}-.*"}', ctx(canary=value))
    kinds = [kind for kind, _ in tokens(query)]
    assert kinds == ["code", '"', "code"]
    pattern = tokens(query)[1][1]
    # Prometheus anchors the regex; RE2 reads these escapes like Python's re.
    assert re.fullmatch(pattern, value + "-7f9c", flags=re.DOTALL)
    assert not re.fullmatch(pattern, "x" + value + "-7f9c", flags=re.DOTALL)


@given(
    value=values,
    template=st.sampled_from(
        ['a{b="{{ name }}"}', "a{b='{{ name }}'}", 'a{b=~"{{ name }}"} # {{ name }}']
    ),
)
def test_no_value_changes_the_shape_of_a_query(value: str, template: str) -> None:
    """The code between the strings is the same whatever the value: nothing injected."""
    safe = [(k, v) for k, v in tokens(render(template, ctx(name="plain"))) if k == "code"]
    got = [(k, v) for k, v in tokens(render(template, ctx(name=value))) if k == "code"]
    assert got == safe


def test_only_the_delimiting_quote_is_escaped() -> None:
    # PromQL unquotes like Go: \' inside double quotes is an error, and the other way.
    assert escape_string('it\'s "x"', '"') == 'it\'s \\"x\\"'
    assert escape_string('it\'s "x"', "'") == 'it\\\'s "x"'


def test_control_characters_and_line_breaks_are_escaped() -> None:
    assert escape_string("a\nb\tc\x00\\") == "a\\nb\\tc\\x00\\\\"


def test_regex_metacharacters_are_escaped() -> None:
    assert escape_regex("web.v1+(a|b)") == r"web\.v1\+\(a\|b\)"


@given(value=values.filter(lambda v: "`" not in v))
def test_a_raw_string_holds_the_value_as_it_is(value: str) -> None:
    assert tokens(render("x{a=`{{ name }}`}", ctx(name=value)))[1] == ("`", value)


def test_a_value_with_a_backtick_cannot_go_in_a_raw_string() -> None:
    with pytest.raises(TemplateError, match="backtick"):
        render("x{a=`{{ name }}`}", ctx(name="a`b"))


def test_a_name_outside_a_string_is_refused() -> None:
    with pytest.raises(TemplateError, match="outside a string"):
        render("sum by ({{ name }}) (x)", ctx())


def test_an_unknown_placeholder_is_refused() -> None:
    with pytest.raises(TemplateError, match="unknown placeholder"):
        render('x{a="{{ colour }}"}', ctx())


def test_escaped_quotes_in_the_template_do_not_end_its_string() -> None:
    query = render(r'x{a="say \"{{ name }}\""}', ctx(name='a"b'))
    assert tokens(query)[1] == ('"', 'say "a"b"')


def test_a_placeholder_in_a_comment_cannot_break_the_line() -> None:
    query = render("x # for {{ name }}\n+ y", ctx(name="a\nb"))
    assert query == "x # for a\\nb\n+ y"


@pytest.mark.parametrize(
    "seconds,text", [(30, "30s"), (60, "60s"), (1.5, "1500ms"), (0.25, "250ms"), (3600, "3600s")]
)
def test_durations_are_promql_durations(seconds: float, text: str) -> None:
    assert promql_duration(seconds) == text


def test_every_placeholder_renders() -> None:
    template = " ".join(f'"{{{{ {p} }}}}"' for p in TEMPLATE_PLACEHOLDERS)
    out = render(template, ctx())
    assert "{{" not in out
    assert '"shop" "web" "web" "web-primary" "web-canary" "web-shadow" "web-canary"' in out


# --------------------------------------------------------------------------- the CEL twin


@pytest.mark.parametrize(
    "query",
    [
        'sum(x{a="{{ namespace }}"})',
        'x{a="{{namespace}}"}[{{ window }}]',
        "x{}",
        '{__name__=~"a{2}"}',
        "x{",
    ],
)
def test_known_placeholders_pass_the_schema(query: str) -> None:
    MetricCheck(name="m", query=query, max=1)


@pytest.mark.parametrize(
    "query", ['x{a="{{ colour }}"}', 'x{a="{{ namespace }"}', "x{a={{{ name }}}}", "{{"]
)
def test_unknown_or_unclosed_placeholders_fail_the_schema(query: str) -> None:
    with pytest.raises(ValidationError, match="unknown or unclosed"):
        MetricCheck(name="m", query=query, max=1)


def test_the_cel_rule_and_its_twin_use_the_same_pattern() -> None:
    schema = MetricCheck.model_json_schema(by_alias=True)
    rule = schema["properties"]["query"]["anyOf"][0]["x-kubernetes-validations"][0]["rule"]
    pattern = rule.removeprefix("self.matches('").removesuffix("')")
    assert "\\" not in pattern  # no escapes that CEL and Python could read differently
    for good in ["{{ name }}", 'a{b="{{ window }}"}']:
        assert re.search(pattern, good)
    assert not re.search(pattern, "{{ nope }}")


# --------------------------------------------------------------------------- presets


@pytest.mark.parametrize("convention", list(MetricConvention))
@pytest.mark.parametrize("preset", list(MetricPreset))
def test_presets_render_for_every_convention(
    preset: MetricPreset, convention: MetricConvention
) -> None:
    q = preset_queries(preset, convention)
    value = render(q.value, ctx(target="web-canary"))
    count = render(q.requests, ctx(target="web-canary"))
    for text in (value, count):
        assert "{{" not in text and '"web-canary"' in text and '"shop"' in text
        assert "[60s]" in text
        assert text.count("(") == text.count(")")
    if preset is MetricPreset.ERROR_RATE:
        # No 5xx series at all (a version that never failed) must read 0, not no data.
        assert "or vector(0)" in value
    else:
        quantile = float("0." + preset.value.removeprefix("latency-p"))
        assert value.startswith(f"histogram_quantile({quantile}, ")
        in_ms = convention in (MetricConvention.ISTIO, MetricConvention.LINKERD)
        assert value.endswith("/ 1000") == in_ms, "latencies are seconds whatever the unit"
