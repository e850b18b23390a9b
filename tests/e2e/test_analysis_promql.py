"""The escaping of query templates, checked by the real PromQL parser: whatever a value
holds, the string literal Prometheus reads is exactly that value, and a regex matcher
built from it matches exactly it. Every preset is valid PromQL in every convention."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shadowroute.analysis.presets import family_of, preset_queries
from shadowroute.analysis.templates import Context, escape_string, render
from shadowroute.api.models import MetricConvention, MetricPreset

from .analysis_support import instant
from .conftest import Cluster

pytestmark = pytest.mark.e2e

# label_replace expands $1-style references in its replacement, so a "$" would not read
# back as itself there: it is left out of the values whose read-back is compared.
values = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="$"), min_size=1, max_size=30
)
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def prometheus(cluster: Cluster) -> str:
    if not cluster.prometheus:
        pytest.skip("no Prometheus: set SHADOWROUTE_PROMETHEUS")
    return cluster.prometheus


def ctx(name: str) -> Context:
    return Context(
        namespace="ns", name=name, primary="p", canary="c", shadow="s", target=name,
        revision="r", stable_revision="r0", canary_revision="r", interval=1.0, window=5.0,
    )  # fmt: skip


def labels(prometheus: str, query: str) -> dict[str, str]:
    doc = instant(prometheus, query)
    assert doc["status"] == "success", (query, doc)
    [series] = doc["data"]["result"]
    return series["metric"]


@SETTINGS
@given(value=values)
def test_a_double_quoted_value_reads_back_exactly(prometheus: str, value: str) -> None:
    query = render('label_replace(vector(1), "got", "{{ name }}", "", "")', ctx(value))
    assert labels(prometheus, query) == {"got": value}


@SETTINGS
@given(value=values)
def test_a_single_quoted_value_reads_back_exactly(prometheus: str, value: str) -> None:
    query = render("label_replace(vector(1), 'got', '{{ name }}', '', '')", ctx(value))
    assert labels(prometheus, query) == {"got": value}


@SETTINGS
@given(value=values, other=values)
def test_a_regex_matcher_matches_exactly_the_value(prometheus: str, value: str, other: str) -> None:
    """The pattern the renderer writes after =~ (taken from its output as it is) selects
    a label exactly when the label is the value: label_replace applies it, anchored, the
    way a matcher is applied."""
    rendered = render('x{v=~"{{ target }}"}', ctx(value))
    pattern = rendered.removeprefix('x{v=~"').removesuffix('"}')
    for label in (value, other, value + "x", "x" + value):
        query = (
            f'label_replace(label_replace(vector(1), "v", "{escape_string(label)}", "", ""), '
            f'"m", "yes", "v", "{pattern}")'
        )
        got = labels(prometheus, query)
        assert (got.get("m") == "yes") == (label == value), (value, label, pattern)


@pytest.mark.parametrize("convention", list(MetricConvention))
@pytest.mark.parametrize("preset", list(MetricPreset))
def test_every_preset_is_valid_promql(prometheus: str, preset, convention) -> None:
    q = preset_queries(preset, convention)
    for template in (q.value, q.requests):
        doc = instant(prometheus, render(template, ctx("web-canary")))
        assert doc["status"] == "success", doc


@pytest.mark.parametrize("convention", list(MetricConvention))
@pytest.mark.parametrize("preset", list(MetricPreset))
def test_every_batched_preset_is_valid_promql(prometheus: str, preset, convention) -> None:
    members = [("ns", "web-canary"), ("other", 'a.b|c"d\\e')]
    for requests in (False, True):
        family, _ = family_of(preset, convention, requests, ctx("web-canary"))
        doc = instant(prometheus, family.query(members))
        assert doc["status"] == "success", doc
