"""The pure parts of the test world's plumbing: what the pod proxy lets through and
how it rewrites a request, and how the test kubelet reads a pod spec (env, probes,
ports, addresses). The processes themselves are tested on the local cluster
(tests/e2e/test_test_kubelet.py, test_real_traffic.py)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .hack_scripts import load

netbridge = load("netbridge")
kubelet = load("test_kubelet")


@pytest.mark.parametrize(
    "host, allowed",
    [
        ("127.0.0.1", True),
        ("10.244.128.7", True),
        ("10.244.0.1", True),
        ("10.245.0.1", False),  # another 10.x: never dialled
        ("10.96.0.1", False),  # a Service address
        ("192.0.2.1", False),
        ("example.com", False),  # names are never resolved
        ("::1", False),
    ],
)
def test_the_inside_agent_only_dials_loopback_and_the_pod_range(host: str, allowed: bool) -> None:
    assert netbridge.reachable_inside(host) is allowed


def test_the_proxy_turns_an_absolute_url_into_a_path_and_closes_the_connection() -> None:
    head = (
        b"GET http://10.244.130.5:9898/metrics?x=1 HTTP/1.1\r\n"
        b"Host: 10.244.130.5:9898\r\nAccept: text/plain\r\nConnection: keep-alive\r\n"
        b"Proxy-Authorization: x\r\n\r\n"
    )
    host, port, out = netbridge.rewrite_head(head)
    assert (host, port) == ("10.244.130.5", 9898)
    assert out == (
        b"GET /metrics?x=1 HTTP/1.1\r\nHost: 10.244.130.5:9898\r\nAccept: text/plain\r\n"
        b"Connection: close\r\n\r\n"
    )


def test_the_proxy_defaults_to_port_80_and_refuses_other_schemes() -> None:
    assert netbridge.rewrite_head(b"GET http://10.244.130.5/ HTTP/1.1\r\n\r\n")[:2] == (
        "10.244.130.5",
        80,
    )
    with pytest.raises(ValueError):
        netbridge.rewrite_head(b"CONNECT 10.244.130.5:443 HTTP/1.1\r\n\r\n")
    with pytest.raises(ValueError):
        netbridge.rewrite_head(b"GET /metrics HTTP/1.1\r\n\r\n")


@pytest.mark.parametrize(
    "image, name",
    [
        ("shadowroute.local/sample-app:v2", "shadowroute.local/sample-app"),
        ("shadowroute.local/sample-app", "shadowroute.local/sample-app"),
        ("registry:5000/team/app:1.0", "registry:5000/team/app"),
        ("shadowroute.local/sample-app@sha256:abc", "shadowroute.local/sample-app"),
    ],
)
def test_image_names_lose_their_tag_or_digest(image: str, name: str) -> None:
    assert kubelet.image_name(image) == name


def pod(*containers: dict) -> dict:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
        "spec": {"nodeName": "kwok-node-0", "containers": list(containers)},
    }


def test_a_pod_is_real_when_any_container_uses_a_test_world_image() -> None:
    assert kubelet.is_real(pod({"name": "a", "image": "shadowroute.local/sample-app:v1"}))
    assert kubelet.is_real(
        pod({"name": "a", "image": "nginx"}, {"name": "b", "image": "shadowroute.local/x"})
    )
    assert not kubelet.is_real(pod({"name": "a", "image": "registry.example/app:1"}))


def test_env_takes_literals_and_field_refs_then_the_bind_address_and_port() -> None:
    container = {
        "name": "app",
        "env": [
            {"name": "VERSION", "value": "v2"},
            {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        "ports": [{"containerPort": 9898}],
    }
    env = kubelet.container_env(pod(container), container, "10.244.130.9")
    assert env["VERSION"] == "v2" and env["ME"] == "p" and env["IP"] == "10.244.130.9"
    assert env["BIND_ADDRESS"] == "10.244.130.9" and env["PORT"] == "9898"


def test_a_port_set_in_env_wins_over_the_container_port() -> None:
    container = {
        "name": "a",
        "env": [{"name": "PORT", "value": "7000"}],
        "ports": [{"containerPort": 9898}],
    }
    assert kubelet.container_env(pod(container), container, "10.244.130.9")["PORT"] == "7000"


def test_env_from_secrets_is_refused_with_a_reason() -> None:
    container = {
        "name": "a",
        "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
    }
    with pytest.raises(kubelet.ConfigError, match="only value and fieldRef"):
        kubelet.container_env(pod(container), container, "10.244.130.9")


def test_probes_follow_the_spec_or_fall_back_to_a_tcp_connect() -> None:
    named = {
        "name": "a",
        "ports": [{"name": "http", "containerPort": 9898}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 1,
        },
    }
    probe = kubelet.readiness_probe(named)
    assert (probe.port, probe.path, probe.period, probe.failure_threshold) == (
        9898,
        "/healthz",
        2,
        1,
    )
    bare = {"name": "a", "ports": [{"containerPort": 7000}]}
    assert (kubelet.readiness_probe(bare).port, kubelet.readiness_probe(bare).path) == (7000, None)
    assert kubelet.readiness_probe({"name": "a"}) is None
    with pytest.raises(kubelet.ConfigError, match="only httpGet and tcpSocket"):
        kubelet.readiness_probe({"name": "a", "readinessProbe": {"exec": {"command": ["true"]}}})


def test_the_data_planes_ports_are_refused_as_container_ports() -> None:
    with pytest.raises(kubelet.ConfigError, match="held by the data plane"):
        kubelet.check_ports({"name": "a", "ports": [{"containerPort": 8080}]})
    kubelet.check_ports({"name": "a", "ports": [{"containerPort": 9898}]})


@given(st.text(min_size=1, max_size=36), st.sets(st.integers(0, 500), max_size=50))
def test_addresses_are_in_the_real_range_and_never_taken(uid: str, taken_offsets: set[int]) -> None:
    base = kubelet.REAL_POD_RANGE.network_address
    taken = {str(base + 1 + i) for i in taken_offsets}
    ip = kubelet.pick_ip(uid, taken)
    assert ipaddress.ip_address(ip) in kubelet.REAL_POD_RANGE
    assert ip not in taken
    assert ip != str(kubelet.REAL_POD_RANGE.broadcast_address)
