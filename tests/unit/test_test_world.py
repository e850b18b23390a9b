"""The pure parts of the test world's plumbing: what the pod proxy and the API
server's egress let through and how they rewrite a request, how the test kubelet reads
a pod spec (env, Service variables, probes, ports, addresses, command, user), how the
kube-proxy picks listeners and endpoints, and how Prometheus' relabelling reads the pod
annotations. The processes themselves are tested on the local cluster
(tests/e2e/test_test_kubelet.py, test_real_traffic.py)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .hack_scripts import load

netbridge = load("netbridge")
kubelet = load("test_kubelet")
kube_proxy = load("kube_proxy")
cluster = load("cluster")


@pytest.mark.parametrize(
    "host, allowed",
    [
        ("127.0.0.1", True),
        ("10.244.128.7", True),
        ("10.244.0.1", True),
        ("10.245.0.1", False),  # another 10.x: never dialled
        ("10.96.0.1", True),  # a ClusterIP (hack/kube_proxy.py listens there)
        ("10.97.0.1", False),
        ("192.0.2.1", False),
        ("example.com", False),  # names are never resolved
        ("::1", False),
    ],
)
def test_the_inside_agent_only_dials_loopback_the_pod_and_the_service_range(
    host: str, allowed: bool
) -> None:
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


# --------------------------------------------------------------------------- egress


@pytest.mark.parametrize(
    "host, route",
    [
        ("10.244.130.5", "inside"),
        ("10.96.0.1", "inside"),
        ("127.0.0.1", "host"),  # kwok's fake kubelets, webhooks served on host loopback
        ("localhost", "host"),
        ("::1", "host"),
    ],
)
def test_the_egress_dials_cluster_addresses_inside_and_loopback_on_the_host(
    host: str, route: str
) -> None:
    assert netbridge.egress_route(host) == route


@pytest.mark.parametrize("host", ["10.1.2.3", "10.97.0.1", "192.0.2.1", "example.com"])
def test_the_egress_refuses_what_is_no_cluster_address(host: str) -> None:
    with pytest.raises(ValueError):
        netbridge.egress_route(host)


def test_connect_requests_are_parsed_and_nothing_else() -> None:
    assert netbridge.parse_connect(b"CONNECT 10.244.130.5:9898 HTTP/1.1\r\nHost: x\r\n\r\n") == (
        "10.244.130.5",
        9898,
    )
    assert netbridge.parse_connect(b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n") == ("::1", 443)
    for bad in (b"GET http://10.244.1.1/ HTTP/1.1\r\n\r\n", b"CONNECT 10.244.1.1 HTTP/1.1\r\n\r\n"):
        with pytest.raises(ValueError):
            netbridge.parse_connect(bad)


async def test_the_egress_socket_tunnels_to_host_loopback_and_refuses_others(tmp_path) -> None:
    import asyncio

    async def echo(reader, writer):
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    target = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = target.sockets[0].getsockname()[1]
    sock = str(tmp_path / "egress.sock")
    egress = await asyncio.start_unix_server(
        lambda r, w: netbridge.connect_proxy(tmp_path, r, w), sock
    )
    try:
        reader, writer = await asyncio.open_unix_connection(sock)
        writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 200 Connection established\r\n\r\n"
        writer.write(b"hello\n")
        assert await reader.readline() == b"hello\n"
        writer.close()

        reader, writer = await asyncio.open_unix_connection(sock)
        writer.write(b"CONNECT 10.1.2.3:80 HTTP/1.1\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 502 ")
        writer.close()
    finally:
        egress.close()
        target.close()


def test_the_api_server_egress_is_http_connect_over_the_bridge_socket() -> None:
    doc = cluster.egress_selector()
    assert doc["kind"] == "EgressSelectorConfiguration"
    assert doc["apiVersion"] == "apiserver.k8s.io/v1beta1"
    (selection,) = doc["egressSelections"]
    assert selection["name"] == "cluster"
    assert selection["connection"]["proxyProtocol"] == "HTTPConnect"
    uds = selection["connection"]["transport"]["uds"]["udsName"]
    assert uds.endswith("/netns/" + netbridge.EGRESS_SOCKET) and len(uds) < 108


# --------------------------------------------------------------------------- Service variables


def svc(name: str, ip: str | None, *ports: dict, namespace: str = "ns") -> dict:
    spec: dict = {"ports": list(ports)}
    if ip is not None:
        spec["clusterIP"] = ip
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


def test_service_variables_are_named_as_a_kubelet_names_them() -> None:
    env = kubelet.service_env(
        [
            svc(
                "checkout-shadow",
                "10.96.1.2",
                {"name": "http", "port": 80},
                {"name": "admin-port", "port": 9090, "protocol": "TCP"},
            ),
            svc("headless", "None", {"name": "http", "port": 80}),
            svc("pending", None, {"name": "http", "port": 80}),
        ]
    )
    assert env == {
        "CHECKOUT_SHADOW_SERVICE_HOST": "10.96.1.2",
        "CHECKOUT_SHADOW_SERVICE_PORT": "80",
        "CHECKOUT_SHADOW_SERVICE_PORT_HTTP": "80",
        "CHECKOUT_SHADOW_SERVICE_PORT_ADMIN_PORT": "9090",
        "CHECKOUT_SHADOW_PORT": "tcp://10.96.1.2:80",
        "CHECKOUT_SHADOW_PORT_80_TCP": "tcp://10.96.1.2:80",
        "CHECKOUT_SHADOW_PORT_80_TCP_PROTO": "tcp",
        "CHECKOUT_SHADOW_PORT_80_TCP_PORT": "80",
        "CHECKOUT_SHADOW_PORT_80_TCP_ADDR": "10.96.1.2",
        "CHECKOUT_SHADOW_PORT_9090_TCP": "tcp://10.96.1.2:9090",
        "CHECKOUT_SHADOW_PORT_9090_TCP_PROTO": "tcp",
        "CHECKOUT_SHADOW_PORT_9090_TCP_PORT": "9090",
        "CHECKOUT_SHADOW_PORT_9090_TCP_ADDR": "10.96.1.2",
    }


def test_service_links_follow_enable_service_links_and_always_include_the_api_server() -> None:
    master = [svc("kubernetes", "10.96.0.1", {"name": "https", "port": 443}, namespace="default")]
    own = [svc("a", "10.96.1.1", {"port": 80})]
    linked = kubelet.linked_services(pod({"name": "c"}), own, master)
    assert [s["metadata"]["name"] for s in linked] == ["a", "kubernetes"]
    off = pod({"name": "c"})
    off["spec"]["enableServiceLinks"] = False
    assert [s["metadata"]["name"] for s in kubelet.linked_services(off, own, master)] == [
        "kubernetes"
    ]


def test_the_containers_own_env_wins_and_may_refer_to_service_variables() -> None:
    container = {
        "name": "c",
        "env": [
            {"name": "A_SERVICE_HOST", "value": "mine"},
            {"name": "URL", "value": "http://$(A_SERVICE_PORT_HTTP)/$(NOPE)/$$(A_SERVICE_PORT)"},
        ],
    }
    env = kubelet.container_env(
        pod(container),
        container,
        "10.244.130.9",
        [svc("a", "10.96.1.1", {"name": "http", "port": 8})],
    )
    assert env["A_SERVICE_HOST"] == "mine" and env["A_SERVICE_PORT"] == "8"
    assert env["URL"] == "http://8/$(NOPE)/$(A_SERVICE_PORT)"


@pytest.mark.parametrize(
    "value, expanded",
    [
        ("$(X)", "1"),
        ("a$(X)b$(Y)", "a1b$(Y)"),
        ("$$(X)", "$(X)"),
        ("$$", "$"),
        ("$", "$"),
        ("$(X", "$(X"),
        ("$x", "$x"),
    ],
)
def test_variables_expand_as_in_kubernetes(value: str, expanded: str) -> None:
    assert kubelet.expand(value, {"X": "1"}) == expanded


# --------------------------------------------------------------------------- the operator image


def operator_image(tmp_path) -> object:
    for name in ("shadowroute-compare", "python"):
        (tmp_path / name).write_text("#!/usr/bin/env python\n")
        (tmp_path / name).chmod(0o755)
    return kubelet.Image(bin_dir=tmp_path, user=65532, group=65532)


def test_the_operator_image_runs_its_command_from_the_environments_bin(tmp_path) -> None:
    image = operator_image(tmp_path)
    c = {"name": "c", "image": "x", "command": ["shadowroute-compare", "--a"], "args": ["b"]}
    assert kubelet.program_argv(image, c) == [str(tmp_path / "shadowroute-compare"), "--a", "b"]
    c["command"] = ["/opt/shadowroute/bin/python", "-c", "pass"]
    assert kubelet.program_argv(image, c)[0] == str(tmp_path / "python")
    for command, message in [
        (None, "needs a command"),
        (["sh"], "is not an entry point"),
        (["../python"], "is not an entry point"),
    ]:
        with pytest.raises(kubelet.ConfigError, match=message):
            kubelet.program_argv(image, {"name": "c", "image": "x", "command": command})
    assert "shadowroute.local/shadowroute" in kubelet.KNOWN_IMAGES


def test_the_user_comes_from_the_container_then_the_pod_then_the_image(tmp_path) -> None:
    image = operator_image(tmp_path)
    p = pod({"name": "c"})
    assert kubelet.run_as(p, p["spec"]["containers"][0], image) == kubelet.RunAs(65532, 65532)
    p["spec"]["securityContext"] = {"runAsUser": 1000, "supplementalGroups": [5], "fsGroup": 6}
    c = {"name": "c", "securityContext": {"runAsGroup": 7}}
    assert kubelet.run_as(p, c, image) == kubelet.RunAs(1000, 7, (5, 6))
    sample = kubelet.KNOWN_IMAGES["shadowroute.local/sample-app"]
    assert kubelet.run_as(pod({"name": "c"}), {"name": "c"}, sample) == kubelet.RunAs(None, None)
    restricted = {
        "name": "c",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    assert kubelet.run_as(pod(restricted), restricted, sample) == kubelet.RunAs(65532, 0)
    with pytest.raises(kubelet.ConfigError, match="runAsNonRoot and image will run as root"):
        kubelet.run_as(
            pod({"name": "c"}), {"name": "c", "securityContext": {"runAsNonRoot": True}}, sample
        )


def test_access_is_judged_by_the_mode_bits_of_every_folder_above(tmp_path) -> None:
    # The owner's bits count for the owner (tmp_path's folders above are only the owner's).
    owner = tmp_path.stat().st_uid
    private = tmp_path / "private"
    private.mkdir()
    (private / "prog").write_text("")
    (private / "prog").chmod(0o755)
    private.chmod(0o600)
    assert "not searchable" in kubelet.access_problem(private / "prog", owner, set(), 4)
    private.chmod(0o700)
    assert kubelet.access_problem(private / "prog", owner, set(), 4 | 1) is None
    (private / "prog").chmod(0o400)
    assert "cannot be read/run" in kubelet.access_problem(private / "prog", owner, set(), 5)
    # Another user is judged by the others' bits: the folders above are private.
    assert "not searchable" in kubelet.access_problem(private / "prog", owner + 1, set(), 4)


# --------------------------------------------------------------------------- kube-proxy


def test_the_proxy_listens_on_every_tcp_port_of_every_cluster_ip() -> None:
    found = kube_proxy.listeners(
        [
            svc(
                "a",
                "10.96.1.1",
                {"name": "http", "port": 80},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ),
            svc("b", "10.96.1.2", {"port": 81}),
            svc("headless", "None", {"port": 80}),
            svc("outside", "10.100.0.1", {"port": 80}),
        ]
    )
    assert found == {
        ("10.96.1.1", 80): kube_proxy.ServicePort("ns", "a", "http"),
        ("10.96.1.2", 81): kube_proxy.ServicePort("ns", "b", ""),
    }


def endpoint_slice(
    *endpoints: tuple[str, bool | None], port: int = 9898, name: str = "http"
) -> dict:
    return {
        "addressType": "IPv4",
        "ports": [{"name": name, "port": port, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [a], **({} if r is None else {"conditions": {"ready": r}})}
            for a, r in endpoints
        ],
    }


def test_only_ready_pod_endpoints_of_the_named_port_are_chosen() -> None:
    slices = [
        endpoint_slice(("10.244.130.2", True), ("10.244.130.1", None), ("10.244.130.3", False)),
        endpoint_slice(("10.244.130.4", True), port=9100, name="metrics"),
        endpoint_slice(("127.0.0.1", True), ("10.9.0.1", True)),  # never dialled
    ]
    assert kube_proxy.endpoints(slices, "http") == [("10.244.130.1", 9898), ("10.244.130.2", 9898)]
    assert kube_proxy.endpoints(slices, "metrics") == [("10.244.130.4", 9100)]
    assert kube_proxy.endpoints(slices, "") == []


def test_connections_go_round_robin_per_service_port() -> None:
    rr = kube_proxy.RoundRobin()
    a, b = kube_proxy.ServicePort("ns", "a", "http"), kube_proxy.ServicePort("ns", "b", "http")
    two = [("10.244.130.1", 1), ("10.244.130.2", 1)]
    assert [rr.pick(a, two) for _ in range(3)] == [two[0], two[1], two[0]]
    assert rr.pick(b, two) == two[0]
    assert rr.pick(a, []) is None


# --------------------------------------------------------------------------- Prometheus


def relabel(rules: list[dict], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus' relabelling, for the actions the pods job uses (replace, keep,
    keepequal), with its defaults: separator ';', regex '(.*)' anchored, '$1'."""
    import re

    labels = dict(labels)
    for rule in rules:
        value = ";".join(labels.get(s, "") for s in rule.get("source_labels", []))
        regex = re.compile(f"^(?:{rule.get('regex', '(.*)')})$")
        action = rule.get("action", "replace")
        if action == "keep":
            if not regex.match(value):
                return None
        elif action == "keepequal":
            if value != labels.get(rule["target_label"], ""):
                return None
        elif action == "replace":
            m = regex.match(value)
            if m:
                out = m.expand(rule.get("replacement", "$1").replace("$", "\\"))
                if out:
                    labels[rule["target_label"]] = out
                else:
                    labels.pop(rule["target_label"], None)
    return {k: v for k, v in labels.items() if not k.startswith("__tmp")}


def target(address_port: str, container_port: str, **annotations: str) -> dict[str, str]:
    labels = {
        "__address__": f"10.244.130.5:{address_port}",
        "__metrics_path__": "/metrics",
        "__meta_kubernetes_pod_ip": "10.244.130.5",
        "__meta_kubernetes_pod_container_port_number": container_port,
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
        "__meta_kubernetes_namespace": "ns",
        "__meta_kubernetes_service_name": "app",
        "__meta_kubernetes_pod_name": "app-1",
        "__meta_kubernetes_pod_container_name": "app",
    }
    for key, value in annotations.items():
        labels[f"__meta_kubernetes_pod_annotation_prometheus_io_{key}"] = value
    return labels


def test_prometheus_scrapes_an_annotated_pod_only_on_its_port_and_path() -> None:
    rules = cluster.pods_scrape_job("https://127.0.0.1:1", "http://127.0.0.1:2")["relabel_configs"]
    annotated = {"port": "9100", "path": "/stats"}
    kept = [
        t
        for t in (
            relabel(rules, target("9898", "9898", **annotated)),
            relabel(rules, target("9100", "9100", **annotated)),
        )
        if t
    ]
    assert len(kept) == 1
    assert kept[0]["__address__"] == "10.244.130.5:9100"
    assert kept[0]["__metrics_path__"] == "/stats"
    # Without annotations every port stays, as before.
    plain = relabel(rules, target("9898", "9898"))
    assert plain and plain["__address__"] == "10.244.130.5:9898"
    assert plain["__metrics_path__"] == "/metrics" and plain["service"] == "app"
    assert relabel(rules, target("9898", "")) is not None
