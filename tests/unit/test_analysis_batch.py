"""Batched Prometheus queries: the grouped form of the presets, its answer split back per
route, and the client's batcher against a local HTTP server that answers like the
Prometheus API and counts the requests it gets."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from shadowroute.analysis.judge import Sample
from shadowroute.analysis.presets import CONVENTIONS, Family, family_of, preset_queries
from shadowroute.analysis.prometheus import Ask, Client, Endpoint, InvalidQuery, Unavailable
from shadowroute.analysis.scope import evaluation_time, next_tick
from shadowroute.analysis.templates import Context, render
from shadowroute.analysis.union import UNION, key_of
from shadowroute.api.models import AnalysisSpec, AnalysisStatus, MetricConvention, MetricPreset
from shadowroute.observability.metrics import QUERIES

from .test_analysis_prometheus import serve

TICK = dt.datetime(2026, 11, 25, 5, 0, 10, tzinfo=dt.UTC)
ERRORS = Family(MetricPreset.ERROR_RATE, MetricConvention.HTTP, False, "30s")

# --------------------------------------------------------------------------- rendering


def ctx(namespace: str, target: str, window: float = 30.0) -> Context:
    return Context(
        namespace=namespace, name="web", primary="web-primary", canary="web-canary",
        shadow="web-shadow", target=target, revision="r1", stable_revision="r0",
        canary_revision="r1", interval=10.0, window=window,
    )  # fmt: skip


def test_the_batched_error_rate_groups_by_namespace_and_service_over_the_members() -> None:
    q = ERRORS.query([("shop", "web-canary"), ("shop", "a.b-canary")])
    assert q == (
        '(sum by (namespace, service) (rate(http_requests_total{namespace=~"shop",'
        'service=~"a\\\\.b-canary|web-canary",code=~"5.."}[30s])) or (sum by (namespace, '
        'service) (rate(http_requests_total{namespace=~"shop",service=~"a\\\\.b-canary|'
        'web-canary"}[30s])) * 0)) / sum by (namespace, service) (rate(http_requests_total{'
        'namespace=~"shop",service=~"a\\\\.b-canary|web-canary"}[30s]))'
    )


@pytest.mark.parametrize("convention", list(MetricConvention))
@pytest.mark.parametrize("preset", list(MetricPreset))
def test_a_batch_of_one_differs_from_the_route_s_query_only_in_grouping(preset, convention):
    """The batched form is the route's own query with each key matcher a regex of the
    members' values and every aggregation by the key labels (the zero of the error
    count aside): nothing else of the query changes."""
    c = context = ctx("shop", "web-canary")
    labels = [label for label, _ in CONVENTIONS[convention].keys]
    for requests in (False, True):
        family, key = family_of(preset, convention, requests, context)
        assert family.labels == tuple(labels) and key == ("shop", "web-canary")
        own = render(
            getattr(preset_queries(preset, convention), "requests" if requests else "value"), c
        )
        batched = family.query([key])
        by = ", ".join(labels)
        expected = own.replace("sum(", f"sum by ({by}) (").replace("by (le)", f"by (le, {by})")
        for label in labels:
            expected = re.sub(rf'\b{label}="', f'{label}=~"', expected)
        if "or vector(0)" in own:
            total = expected.split(" / ")[-1]
            expected = expected.replace("vector(0)", f"({total} * 0)")
        assert batched == expected


names = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20)
_UNESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def unquote(literal: str) -> str:
    """A double-quoted PromQL string's value (the escapes escape_string writes)."""

    def one(m: re.Match[str]) -> str:
        e = m.group(1)
        return chr(int(e[1:], 16)) if e.startswith("x") else _UNESCAPES.get(e, e)

    return re.sub(r"\\(x[0-9a-f]{2}|.)", one, literal, flags=re.DOTALL)


@given(st.lists(st.tuples(names, names), min_size=1, max_size=8, unique=True), names)
def test_the_key_matchers_match_exactly_the_members_values(members, other) -> None:
    """Each key label's regex, read back from the query, fully matches the members'
    values and no other (Python's re reads these escapes as RE2 does)."""
    q = ERRORS.query(members)
    for column, label in enumerate(ERRORS.labels):
        literal = re.search(rf'{label}=~"((?:[^"\\]|\\.)*)"', q, re.DOTALL)
        assert literal is not None
        pattern = unquote(literal.group(1))
        values = {m[column] for m in members}
        for v in values:
            assert re.fullmatch(pattern, v, re.DOTALL), (pattern, v)
        if other not in values:
            assert not re.fullmatch(pattern, other, re.DOTALL), (pattern, other)


label_values = st.sampled_from(["a", "b", "c-canary"])


@given(
    st.lists(
        st.tuples(
            label_values, label_values, st.sampled_from(["", "0.5", "1"]),
            st.floats(allow_nan=False),
        ),
        max_size=12,
        unique_by=lambda t: t[:3],
    )
)  # fmt: skip
def test_a_batched_answer_splits_into_each_member_s_samples_without_the_key_labels(rows):
    samples = []
    for ns, svc, le, v in rows:
        labels = {"namespace": ns, "service": svc, **({"le": le} if le else {})}
        samples.append(Sample(tuple(sorted(labels.items())), v))
    split = ERRORS.split(samples)
    assert sum(len(v) for v in split.values()) == len(samples)
    for (ns, svc), got in split.items():
        mine = [(le, v) for n, s, le, v in rows if (n, s) == (ns, svc)]
        assert [(dict(x.labels).get("le", ""), x.value) for x in got] == mine
        assert all(set(dict(x.labels)) <= {"le"} for x in got)


# --------------------------------------------------------------------------- tick alignment


def spec(interval: str = "10s") -> AnalysisSpec:
    return AnalysisSpec.model_validate(
        {"interval": interval, "metrics": [{"name": "e", "preset": "error-rate", "max": 0.1}]}
    )


def test_runs_after_the_first_fall_on_the_multiples_of_the_interval_since_the_epoch() -> None:
    t = TICK + dt.timedelta(seconds=3.217)  # a first run, off the ticks
    assert next_tick(t, 10.0) == TICK + dt.timedelta(seconds=10)
    # Off the ticks late in an interval: the next tick, unless within a second of it.
    assert next_tick(TICK + dt.timedelta(seconds=8.5), 10.0) == TICK + dt.timedelta(seconds=10)
    assert next_tick(TICK + dt.timedelta(seconds=9.2), 10.0) == TICK + dt.timedelta(seconds=20)
    assert next_tick(TICK, 10.0) == TICK + dt.timedelta(seconds=10)  # on time: an interval on
    # A short interval keeps a tenth of it between runs.
    assert next_tick(TICK + dt.timedelta(seconds=1.75), 2.0) == TICK + dt.timedelta(seconds=2)
    assert next_tick(TICK + dt.timedelta(seconds=1.85), 2.0) == TICK + dt.timedelta(seconds=4)


@given(st.floats(0, 1e6), st.sampled_from([1.0, 2.0, 5.0, 10.0, 30.0, 60.0]))
def test_a_run_is_followed_within_an_interval_and_a_gap_on_a_tick(offset, interval) -> None:
    """Whatever a run's time, the next falls on a tick, no sooner than the gap and no
    later than an interval and the gap: a breach right after a step is seen within
    that, aligned or not."""
    after = TICK + dt.timedelta(seconds=offset)
    nxt = next_tick(after, interval)
    gap = (nxt - after).total_seconds()
    assert min(1.0, interval / 10) - 1e-6 <= gap <= interval + min(1.0, interval / 10) + 1e-6
    assert abs(nxt.timestamp() / interval - round(nxt.timestamp() / interval)) < 1e-6


def test_a_run_on_time_evaluates_at_its_tick_a_late_or_first_one_at_its_own_time() -> None:
    last = AnalysisStatus(last_run_at="2026-11-25T05:00:00.000Z")
    a = spec()
    assert evaluation_time(a, AnalysisStatus(), TICK) == (TICK, None)  # never ran
    for late in (-0.04, 0.0, 0.3, 4.9):
        at = TICK + dt.timedelta(seconds=late)
        assert evaluation_time(a, last, at) == (TICK, 10.0), late
    late = TICK + dt.timedelta(seconds=5.1)  # past half an interval: its own time, alone
    assert evaluation_time(a, last, late) == (late, None)


# --------------------------------------------------------------------------- the batcher


class Api:
    """Answers each query with one series per (namespace, service) pair it selects, the
    value looked up by service; refuses a query holding `refuse`; counts requests."""

    def __init__(self, values: dict[str, float], refuse: str = "") -> None:
        self.values, self.refuse = values, refuse
        self.queries: list[dict[str, str]] = []
        self.gate: asyncio.Event | None = None
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        form = dict(await request.post())
        self.queries.append({**form, "auth": request.headers.get("Authorization", "")})
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        q = str(form["query"])
        if self.refuse and self.refuse in q:
            return web.json_response(
                {"status": "error", "errorType": "bad_data", "error": "refused"}, status=400
            )
        grouped = "by (namespace, service)" in q
        result = []
        for service, value in self.values.items():
            if re.search(rf'service=~?"[^"]*\b{re.escape(service)}\b', q):
                labels = {"namespace": "shop", "service": service} if grouped else {}
                result.append({"metric": labels, "value": [TICK.timestamp(), str(value)]})
        doc = {"status": "success", "data": {"resultType": "vector", "result": result}}
        return web.json_response(doc)


@pytest.fixture
async def prom() -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(values: dict[str, float], refuse: str = "") -> tuple[Client, Endpoint, Api]:
        api = Api(values, refuse)
        url = await serve(api.handle, runners)
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Client(session=lambda: session), Endpoint(url), api

    yield start
    for s in sessions:
        await s.close()
    for r in runners:
        await r.cleanup()


def member(service: str, period: float | None = 10.0, family: Family = ERRORS) -> Ask:
    key = ("shop", service)
    own = render(preset_queries(family.preset, family.convention).value, ctx(*key))
    return Ask(own, family, key, period)


async def ask_all(client: Client, where: Endpoint, asks: list[Ask], at: dt.datetime) -> list:
    return await asyncio.gather(*(client.ask(where, a, at) for a in asks), return_exceptions=True)


def value(samples: Any) -> float:
    assert isinstance(samples, tuple) and len(samples) == 1, samples
    assert samples[0].labels == ()
    return samples[0].value


async def test_many_routes_asking_at_one_tick_send_one_query_and_each_gets_its_value(prom):
    services = {f"web{i}-canary": i / 100 for i in range(40)}
    client, where, api = await prom(services)
    sent = QUERIES.labels("batched")._value.get()
    got = await ask_all(client, where, [member(s) for s in services], TICK)
    assert len(api.queries) == 1 and "=~" in api.queries[0]["query"]
    assert api.queries[0]["time"] == f"{TICK.timestamp():.3f}"
    assert [value(g) for g in got] == list(services.values())
    assert QUERIES.labels("batched")._value.get() == sent + 1


async def test_the_next_tick_sends_the_query_for_the_last_tick_s_members_at_once(prom):
    """Members known from the last tick are in the first query of the next, sent
    without waiting: routes asking one after another (as reconciles do) share it."""
    services = {f"web{i}-canary": 0.01 for i in range(10)}
    client, where, api = await prom(services)
    await ask_all(client, where, [member(s) for s in services], TICK)
    nxt = TICK + dt.timedelta(seconds=10)
    client.batch_window = 60.0  # would show as a hang if the next tick waited for it
    for s in services:  # one at a time, in order
        assert value(await asyncio.wait_for(client.ask(where, member(s), nxt), 5)) == 0.01
    assert len(api.queries) == 2


async def test_a_route_asking_alone_sends_its_own_query(prom):
    client, where, api = await prom({"web-canary": 0.2})
    ask = member("web-canary")
    for k in range(3):
        at = TICK + dt.timedelta(seconds=10 * k)
        assert value(await client.ask(where, ask, at)) == 0.2
    assert [q["query"] for q in api.queries] == [ask.query] * 3


async def test_a_member_without_series_gets_no_samples(prom):
    client, where, api = await prom({"web-canary": 0.2})
    got = await ask_all(client, where, [member("web-canary"), member("idle-canary")], TICK)
    assert value(got[0]) == 0.2 and got[1] == ()
    assert len(api.queries) == 1


async def test_a_refused_batch_is_asked_per_route_and_each_gets_its_own_answer(prom):
    """One bad route's query must not fail the others: the batch refused, each member
    asks alone; the one Prometheus refuses alone gets its real reason."""
    services = {"a-canary": 0.1, "b-canary": 0.2, "bad-canary": 0.3}
    client, where, api = await prom(services, refuse="bad-canary")
    got = await ask_all(client, where, [member(s) for s in services], TICK)
    assert value(got[0]) == 0.1 and value(got[1]) == 0.2
    assert isinstance(got[2], InvalidQuery) and "refused" in str(got[2])
    assert len(api.queries) == 4  # the batch, then each alone


async def test_an_unreachable_prometheus_is_reported_to_every_member(prom):
    client, _, _ = await prom({})
    client.attempts = 1
    down = Endpoint("http://127.0.0.1:9", timeout=1.0)
    got = await ask_all(client, down, [member("a-canary"), member("b-canary")], TICK)
    assert all(isinstance(g, Unavailable) and "ConnectionError" in g.reason for g in got)


async def test_batches_stay_within_one_endpoint_and_its_credentials(prom):
    client, where, api = await prom({"a-canary": 0.1, "b-canary": 0.2})
    other = Endpoint(where.address, headers={"Authorization": "Bearer other"})
    got = await asyncio.gather(
        client.ask(where, member("a-canary"), TICK), client.ask(other, member("b-canary"), TICK)
    )
    assert [value(g) for g in got] == [0.1, 0.2]
    assert sorted(q["auth"] for q in api.queries) == ["", "Bearer other"]


async def test_identical_queries_of_a_tick_are_asked_once(prom):
    client, where, api = await prom({"web-canary": 0.5})
    own = 'sum(rate(http_requests_total{service="web-canary"}[30s]))'
    asks = [Ask(own, period=10.0) for _ in range(5)]
    got = await ask_all(client, where, asks, TICK)
    assert [value(g) for g in got] == [0.5] * 5 and len(api.queries) == 1


async def test_routes_at_different_times_or_windows_are_not_batched(prom):
    client, where, api = await prom({"a-canary": 0.1, "b-canary": 0.2})
    other_window = Family(ERRORS.preset, ERRORS.convention, False, "15s")
    got = await asyncio.gather(
        client.ask(where, member("a-canary"), TICK),
        client.ask(where, member("b-canary", None), TICK + dt.timedelta(seconds=1)),  # off-tick
        client.ask(where, member("b-canary", family=other_window), TICK),
    )
    assert [value(g) for g in got] == [0.1, 0.2, 0.2] and len(api.queries) == 3


async def test_a_cancelled_route_does_not_cancel_the_batch_of_the_others(prom):
    client, where, api = await prom({"a-canary": 0.1, "b-canary": 0.2})
    api.gate = asyncio.Event()
    a = asyncio.ensure_future(client.ask(where, member("a-canary"), TICK))
    b = asyncio.ensure_future(client.ask(where, member("b-canary"), TICK))
    await asyncio.wait_for(api.arrived.wait(), 5)
    a.cancel()
    api.gate.set()
    assert value(await b) == 0.2


# --------------------------------------------------------------------------- custom queries


PART = re.compile(r'label_replace\(\((.*?)\), "shadowroute_member", "(\d+)", "", ""\)')


class UnionApi:
    """Answers a custom query, alone or as a union of tagged members, from `series`
    (query text -> its series); a query in `scalars` answers a scalar, so a union
    holding it is refused as Prometheus refuses label_replace of a scalar."""

    def __init__(self, series: dict[str, list[dict[str, Any]]], scalars: set[str]) -> None:
        self.series, self.scalars = series, scalars
        self.queries: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        q = str((await request.post())["query"])
        self.queries.append(q)
        parts = PART.findall(q)
        if not parts:  # alone
            if q in self.scalars:
                data = {"resultType": "scalar", "result": [TICK.timestamp(), "1"]}
                return web.json_response({"status": "success", "data": data})
            result = [{"metric": m, "value": [TICK.timestamp(), str(v)]} for m, v in self._of(q)]
            return web.json_response(
                {"status": "success", "data": {"resultType": "vector", "result": result}}
            )
        assert (
            " or ".join(
                f'label_replace(({t}), "shadowroute_member", "{i}", "", "")' for t, i in parts
            )
            == q
        )
        if any(t in self.scalars for t, _ in parts):
            error = 'expected type instant vector in call to function "label_replace", got scalar'
            return web.json_response(
                {"status": "error", "errorType": "bad_data", "error": error}, status=400
            )
        result = [
            {"metric": {**m, "shadowroute_member": i}, "value": [TICK.timestamp(), str(v)]}
            for t, i in parts
            for m, v in self._of(t)
        ]
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    def _of(self, q: str) -> list[tuple[dict[str, str], float]]:
        return [(dict(s["metric"]), s["value"]) for s in self.series.get(q, [])]


def custom(service: str) -> str:
    return f'sum by (code) (rate(http_requests_total{{service="{service}"}}[30s]))'


async def union_client(
    series: dict[str, list[dict[str, Any]]], scalars: set[str] = frozenset(), runners=None
) -> tuple[Client, Endpoint, UnionApi, aiohttp.ClientSession]:
    api = UnionApi(series, set(scalars))
    url = await serve(api.handle, runners)
    session = aiohttp.ClientSession()
    return Client(session=lambda: session), Endpoint(url), api, session


def united(query: str, period: float | None = 10.0) -> Ask:
    return Ask(query, UNION, key_of(query), period)


@pytest.fixture
async def runners() -> AsyncIterator[list[web.AppRunner]]:
    made: list[web.AppRunner] = []
    yield made
    for r in made:
        await r.cleanup()


async def test_routes_with_custom_queries_at_one_tick_send_one_query_each_gets_its_series(
    runners,
):
    series = {
        custom(f"web{i}-canary"): [
            {"metric": {"code": "200"}, "value": 10.0 + i},
            {"metric": {"code": "500"}, "value": float(i)},
        ]
        for i in range(30)
    }
    series[custom("web3-canary")] = []  # no series: no samples, as alone
    client, where, api, session = await union_client(series, runners=runners)
    try:
        got = await ask_all(client, where, [united(q) for q in series], TICK)
        assert len(api.queries) == 1
        for (q, rows), samples in zip(series.items(), got, strict=True):
            assert samples == tuple(
                Sample((("code", r["metric"]["code"]),), r["value"]) for r in rows
            ), q
    finally:
        await session.close()


async def test_a_custom_query_prometheus_refuses_in_a_union_is_asked_alone_from_then_on(
    runners,
):
    """A member answering a scalar makes the union refused: every member asks alone
    that tick and still gets its own answer (the scalar its value); at the next tick
    the others are one union again and only that member asks alone."""
    queries = [custom(f"web{i}-canary") for i in range(5)]
    series = {q: [{"metric": {"code": "200"}, "value": 1.0}] for q in queries}
    odd = "scalar(sum(up))"
    client, where, api, session = await union_client(series, {odd}, runners=runners)
    try:
        for k, expected in ((0, 1 + 6), (1, 2)):
            api.queries.clear()
            at = TICK + dt.timedelta(seconds=10 * k)
            got = await ask_all(client, where, [united(q) for q in [*queries, odd]], at)
            assert all(g == (Sample((("code", "200"),), 1.0),) for g in got[:-1]), got
            assert got[-1] == (Sample((), 1.0),), got[-1]
            assert len(api.queries) == expected, api.queries
        assert odd in api.queries and sum(" or " in q for q in api.queries) == 1
    finally:
        await session.close()


@given(st.lists(st.sampled_from(["a", "b", 'c\\"d', "e f"]), min_size=1, max_size=6, unique=True))
def test_a_union_tags_each_member_and_splits_back_exactly_its_samples(names) -> None:
    members = [key_of(custom(n)) for n in names]
    text = UNION.query(members)
    assert [t for t, _ in PART.findall(text)] == [m[0] for m in members]
    answer = [
        Sample(tuple(sorted({"code": "200", "shadowroute_member": str(i)}.items())), float(i))
        for i in range(len(members))
    ]
    split = UNION.split(answer, members)
    assert split == {m: (Sample((("code", "200"),), float(i)),) for i, m in enumerate(members)}
