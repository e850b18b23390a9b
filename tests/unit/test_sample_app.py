"""The sample app (examples/app/server.py) as a process: what its environment makes it
answer, what it exports for Prometheus, how it stops; and its example ShadowRoute."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from prometheus_client import Histogram
from prometheus_client.parser import text_string_to_metric_families
from shadowroute.api.models import ShadowRoute

from .sample_app import SERVER, get, get_json, sample_app

spec = importlib.util.spec_from_file_location("sample_app_server", SERVER)
assert spec is not None and spec.loader is not None
server = importlib.util.module_from_spec(spec)
sys.modules["sample_app_server"] = server
spec.loader.exec_module(server)


@pytest.fixture(scope="module")
def v2() -> Iterator[str]:
    """A "v2" with its own price that fails a quarter of the requests under /pay."""
    with sample_app(
        VERSION="v2", BODY_FIELDS='{"price": 11}', ERROR_RATE="0.25", ERROR_PATHS="/pay"
    ) as (url, _):
        yield url


def test_every_response_names_the_version(v2: str) -> None:
    for path in ("/", "/healthz", "/metrics"):
        assert get(v2 + path)[1]["X-Version"] == "v2"


def test_the_body_carries_version_path_noise_and_body_fields(v2: str) -> None:
    status, headers, body = get_json(v2 + "/cart/items", {"X-Request-Id": "abc-123"})
    assert status == 200 and headers["X-Request-Id"] == "abc-123"
    assert body.keys() == {"version", "path", "method", "requestId", "time", "price"}
    assert (body["version"], body["path"], body["method"], body["price"]) == (
        "v2", "/cart/items", "GET", 11,
    )  # fmt: skip
    assert datetime.fromisoformat(body["time"]).utcoffset().total_seconds() == 0
    assert get_json(v2 + "/cart/items")[2]["requestId"] != body["requestId"]


def test_errors_are_exact_and_only_on_error_paths(v2: str) -> None:
    assert {get(v2 + "/cart")[0] for _ in range(8)} == {200}
    answers = [get_json(v2 + "/pay/now") for _ in range(12)]
    assert [status for status, _, _ in answers] == [200, 200, 200, 500] * 3
    _, headers, body = answers[3]
    assert headers["X-Version"] == "v2" and body["version"] == "v2" and body["error"]


def test_a_share_of_answers_on_diff_paths_differs() -> None:
    with sample_app(
        BODY_FIELDS='{"price": 12}', DIFF_FIELDS='{"price": 13}', DIFF_RATE="0.25",
        DIFF_PATHS="/price", FRESH_REQUEST_ID="1",
    ) as (url, _):  # fmt: skip
        prices = [get_json(url + "/price/book")[2]["price"] for _ in range(8)]
        assert prices == [12, 12, 12, 13] * 2
        assert {get_json(url + "/cart")[2]["price"] for _ in range(8)} == {12}
        ids = {
            get_json(url + "/cart", {"X-Request-Id": "same"})[1]["X-Request-Id"] for _ in range(3)
        }
        assert len(ids) == 3 and "same" not in ids


@pytest.mark.parametrize("rate", ["0.1", "0.29", "0.5", "1", "0"])
def test_the_error_schedule_fails_floor_n_times_rate(rate: str) -> None:
    schedule = server.ErrorSchedule(Fraction(rate))
    failed = 0
    for n in range(1, 301):
        failed += schedule.next_fails()
        assert failed == n * Fraction(rate) // 1


def test_metrics_count_requests_like_a_client_library() -> None:
    with sample_app(LATENCY_MS="30") as (url, _):
        for _ in range(3):
            get(url + "/a")
        get(url + "/healthz")
        get(url + "/metrics")
        status, headers, text = get(url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    (requests,) = [s for s in families["http_requests"].samples if s.name.endswith("_total")]
    assert families["http_requests"].type == "counter"
    assert (requests.labels, requests.value) == ({"code": "200", "method": "GET"}, 3)
    duration = families["http_request_duration_seconds"]
    assert duration.type == "histogram"
    buckets = {
        float(s.labels["le"]): s.value for s in duration.samples if s.name.endswith("_bucket")
    }
    assert list(buckets) == list(Histogram.DEFAULT_BUCKETS)
    # 30 ms of latency is never under 25 ms; how far above depends on the machine's load.
    assert buckets[0.025] == 0 and buckets[float("inf")] == 3
    assert all(s.labels["method"] == "GET" for s in duration.samples)


def test_healthz_fails_on_demand() -> None:
    with sample_app(HEALTHZ_FAIL="1") as (url, _):
        assert get(url + "/healthz")[0] == 503
        assert get(url + "/")[0] == 200


def test_sigterm_stops_it_within_a_second() -> None:
    with sample_app() as (url, process):
        assert get(url + "/healthz")[0] == 200
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert time.monotonic() - sent < 1.0


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"ERROR_RATE": "1.5"}, "ERROR_RATE='1.5' is outside 0..1"),
        ({"LATENCY_MS": "10", "LATENCY_JITTER_MS": "20"}, "LATENCY_JITTER_MS='20' is outside"),
        ({"BODY_FIELDS": "[1]"}, "BODY_FIELDS must be a JSON object"),
        ({"BODY_FIELDS": '{"version": "x"}'}, "may not replace the built-in fields ['version']"),
        ({"PORT": "http"}, "PORT='http' is not an integer"),
        ({"DIFF_FIELDS": '{"time": 1}'}, "DIFF_FIELDS may not replace the built-in fields"),
        ({"DIFF_RATE": "2"}, "DIFF_RATE='2' is outside 0..1"),
        ({"PORT": "70000"}, "PORT=70000 is outside"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], says: str) -> None:
    with pytest.raises(server.SettingError) as error:
        server.Config.from_env(env)
    assert says in str(error.value)


def test_a_bad_setting_exits_2_before_listening() -> None:
    done = subprocess.run(
        [sys.executable, str(SERVER)],
        env={"ERROR_RATE": "x", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert done.returncode == 2 and "ERROR_RATE='x' is not a number" in done.stderr


def test_the_example_shadowroute_is_valid() -> None:
    path = Path(SERVER).with_name("deployment.yaml")
    (route,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    parsed = ShadowRoute.model_validate(route)
    (container,) = parsed.spec.template.containers
    assert container["image"].startswith("shadowroute.local/sample-app:")
    assert parsed.spec.traffic.gateway_api.hostnames == ["checkout.example.test"]
