"""A test kubelet: pods whose image the test world knows run as real local processes.

    python hack/test_kubelet.py --kubeconfig K --log-dir D   # inside the pod network

It runs inside the cluster's network namespace (hack/netbridge.py), where the pod
range is local. For every scheduled pod whose containers all use an image of
KNOWN_IMAGES (kwok is told to leave those pods alone; every other pod stays a kwok
fake), it:

- gives the pod an address in 10.244.128.0/17 (kwok's fakes get 10.244.0.0/17);
- starts one process per container, the program the image stands for: the sample
  app with the container's args, or (shadowroute.local/shadowroute, the operator's
  image) the container's `command` - required - resolved in the bin directory of this
  Python environment, with its args;
- gives it the container's literal env and fieldRef env (metadata.name, .namespace,
  .uid, status.podIP, spec.nodeName), the Service variables a kubelet with
  enableServiceLinks gives ({SVC}_SERVICE_HOST, {SVC}_SERVICE_PORT,
  {SVC}_SERVICE_PORT_{PORT} and the Docker-link ones, for the Services of its
  namespace that exist when it starts, and always the `kubernetes` Service; its own env
  wins), $(VAR) expansion, plus BIND_ADDRESS (the pod IP) and PORT (the first
  containerPort, unless env sets it), its output in <log-dir>/<ns>_<pod>_<c>.log;
- runs it as the securityContext's runAsUser / runAsGroup (else the image's user:
  65532 for the operator image), refusing runAsNonRoot for root, and checking that
  user can run the program and this environment's packages (when this Python cannot
  be run by other users, it makes a virtualenv of the system Python that can);
- reports the pod Running, and Ready only while each container's readiness probe
  (httpGet or tcpSocket; without one, a TCP connect to its first port) really
  answers, per the probe's period and thresholds, with a Warning Event `Unhealthy`
  when a probe starts failing;
- restarts a container that exits (restartPolicy Always / OnFailure, with backoff), or
  ends the pod Succeeded / Failed (Never); the exit is reported as state.terminated,
  and as lastState.terminated once the container is restarting or restarted;
- with terminationMessagePolicy FallbackToLogsOnError, gives a container that exits
  non-zero a terminated.message as a kubelet does: the tail of the output of that run
  of the container (its log file from where the run began), the last 80 lines and of
  those at most the last 2048 bytes, decoded as UTF-8 with replacement; a container
  that exits 0, or whose run printed nothing, gets no message;
- stops the processes (SIGTERM, then SIGKILL) when the pod is being deleted or gone,
  and all of them when it stops itself.

What it does not do (it is a test kubelet, not a container runtime): no images, no
filesystem or process isolation (every pod shares this namespace and the host's
files), no resource limits, no volumes, no exec probes or liveness probes, no
configMapKeyRef / secretKeyRef env (such a container waits with
CreateContainerConfigError), no envFrom, no init containers, no logs or exec through
the API; readOnlyRootFilesystem, capabilities and allowPrivilegeEscalation are
accepted and not enforced. No termination message file: with terminationMessagePolicy
File (the default) a kubelet reads the container's /dev/termination-log
(terminationMessagePath), which needs the filesystem isolation there is not here, so
such a container's terminated state has no message, whatever its exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The bin directory of the Python environment this kubelet runs from: the operator
# image's entry points (shadowroute-operator, shadowroute-compare, python, ...).
BIN_DIR = Path(sys.executable).parent
# Where the operator image (Dockerfile) installs its virtualenv: an absolute command in
# it names the same entry point here.
IMAGE_BIN_DIR = "/opt/shadowroute/bin"
NONROOT = 65532  # the Dockerfile's USER 65532:65532


@dataclass(frozen=True)
class Image:
    """What an image of the test world stands for: a fixed program (the sample app), or
    the `command` of the container resolved in `bin_dir` (the operator image), run as
    the image's user with the image's environment, in its working directory."""

    program: tuple[str, ...] | None = None
    bin_dir: Path | None = None
    user: int | None = None  # None: root, as an image without USER
    group: int | None = None
    env: tuple[tuple[str, str], ...] = ()
    cwd: Path = ROOT


# Image name (without tag) -> what it stands for.
KNOWN_IMAGES: dict[str, Image] = {
    "shadowroute.local/sample-app": Image(
        program=(sys.executable, str(ROOT / "examples" / "app" / "server.py"))
    ),
    "shadowroute.local/shadowroute": Image(
        bin_dir=BIN_DIR,
        user=NONROOT,
        group=NONROOT,
        env=(
            ("PATH", f"{BIN_DIR}:/usr/local/bin:/usr/bin:/bin"),
            ("PYTHONUNBUFFERED", "1"),
            ("PYTHONDONTWRITEBYTECODE", "1"),
        ),
        cwd=Path("/"),
    ),
}
KNOWN_PREFIX = "shadowroute.local/"
REAL_POD_RANGE = ipaddress.ip_network("10.244.128.0/17")
HOST_IP = "127.0.0.1"
# Ports Envoy Gateway and its Envoy hold on every address of the namespace.
RESERVED_PORTS = frozenset({80, 8080, 8081, 9443, 18000, 18001, 18002, 19000, 19001, 19003})


def log(msg: str) -> None:
    print(f"{dt.datetime.now(dt.UTC).isoformat(timespec='milliseconds')} {msg}", flush=True)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_name(image: str) -> str:
    """registry/name:tag or name@digest -> registry/name."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def is_real(pod: dict) -> bool:
    """A pod is ours when any container's image is of the test world (the same test
    as the kwok stage selector); ours but unknown images are refused, never faked."""
    return any(c.get("image", "").startswith(KNOWN_PREFIX) for c in pod["spec"]["containers"])


# --------------------------------------------------------------------------- env and probes


class ConfigError(Exception):
    """The container cannot be started as specified (reason CreateContainerConfigError)."""


def field_value(pod: dict, path: str, pod_ip: str) -> str:
    values = {
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": pod["metadata"]["namespace"],
        "metadata.uid": pod["metadata"]["uid"],
        "status.podIP": pod_ip,
        "status.hostIP": HOST_IP,
        "spec.nodeName": pod["spec"].get("nodeName", ""),
    }
    if path not in values:
        raise ConfigError(f"fieldRef {path} is not supported by the test kubelet")
    return values[path]


def env_name(name: str) -> str:
    """A Service or port name as a kubelet spells it in a variable: upper case, - -> _."""
    return name.upper().replace("-", "_")


def cluster_ip_set(service: dict) -> bool:
    ip = (service.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def service_env(services: list[dict]) -> dict[str, str]:
    """The variables a kubelet with enableServiceLinks gives a container for these
    Services (kubelet's envvars.FromServices): {SVC}_SERVICE_HOST, {SVC}_SERVICE_PORT
    (the first port), {SVC}_SERVICE_PORT_{PORT} for each named port, and the
    Docker-link ones, {SVC}_PORT=tcp://IP:PORT and {SVC}_PORT_{N}_{PROTO}[_PROTO|_PORT|
    _ADDR]. Headless Services (clusterIP None) and ones without a ClusterIP give none."""
    env: dict[str, str] = {}
    for service in services:
        spec = service.get("spec") or {}
        ports = spec.get("ports") or []
        if not cluster_ip_set(service) or not ports:
            continue
        ip = spec["clusterIP"]
        prefix = env_name(service["metadata"]["name"])
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for p in ports:
            if p.get("name"):
                env[f"{prefix}_SERVICE_PORT_{env_name(p['name'])}"] = str(p["port"])
        for i, p in enumerate(ports):
            proto = (p.get("protocol") or "TCP").lower()
            url = f"{proto}://{ip}:{p['port']}"
            if i == 0:
                env[f"{prefix}_PORT"] = url
            port_prefix = f"{prefix}_PORT_{p['port']}_{proto.upper()}"
            env[port_prefix] = url
            env[f"{port_prefix}_PROTO"] = proto
            env[f"{port_prefix}_PORT"] = str(p["port"])
            env[f"{port_prefix}_ADDR"] = ip
    return env


def linked_services(pod: dict, in_namespace: list[dict], master: list[dict]) -> list[dict]:
    """The Services whose variables a container of `pod` gets, as a kubelet picks them:
    those of its namespace unless `enableServiceLinks: false`, and always the API
    server's `kubernetes` Service of `default` (`master`); a namespace's own Service of
    the same name wins."""
    chosen: dict[str, dict] = {}
    for service in master:
        chosen[service["metadata"]["name"]] = service
    if pod["spec"].get("enableServiceLinks", True) is not False:
        for service in in_namespace:
            chosen[service["metadata"]["name"]] = service
    return [chosen[name] for name in sorted(chosen)]


def expand(value: str, lookup: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: $(NAME) becomes its value when defined and stays as
    written otherwise; $$ is a literal $."""
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch != "$" or i + 1 == len(value):
            out.append(ch)
            i += 1
            continue
        nxt = value[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = value.find(")", i + 2)
            if end < 0:
                out.append(value[i:])
                break
            name = value[i + 2 : end]
            out.append(lookup.get(name, f"$({name})"))
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def container_env(
    pod: dict,
    container: dict,
    pod_ip: str,
    services: list[dict] | None = None,
    image: Image | None = None,
) -> dict[str, str]:
    """The process' environment, in a kubelet's order of precedence: the image's env,
    then the Service variables, then the container's own env (which wins over both, and
    may refer to any of them as $(VAR)); then the test world's BIND_ADDRESS and PORT."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    env.update(dict(image.env) if image else {})
    links = service_env(services or [])
    own: dict[str, str] = {}
    for item in container.get("env") or []:
        if "value" in item:
            own[item["name"]] = expand(str(item["value"]), {**links, **own})
        elif (item.get("valueFrom") or {}).get("fieldRef"):
            own[item["name"]] = field_value(pod, item["valueFrom"]["fieldRef"]["fieldPath"], pod_ip)
        elif item.get("valueFrom"):
            raise ConfigError(f"env {item['name']}: only value and fieldRef are supported")
        else:
            own[item["name"]] = ""
    env.update(links)
    env.update(own)
    env["BIND_ADDRESS"] = pod_ip
    ports = container.get("ports") or []
    if ports and "PORT" not in own:
        env["PORT"] = str(ports[0]["containerPort"])
    return env


# --------------------------------------------------------------------------- program and user


def program_argv(image: Image, container: dict) -> list[str]:
    """The argv of a container: the image's fixed program with the container's args, or
    (operator image) its `command` resolved among the image's entry points."""
    args = [str(a) for a in container.get("args") or []]
    if image.program is not None:
        return [*image.program, *args]
    assert image.bin_dir is not None
    command = [str(a) for a in container.get("command") or []]
    if not command:
        raise ConfigError(
            f"image {container.get('image')!r} needs a command: one of its entry points "
            f"({', '.join(entry_points(image.bin_dir))})"
        )
    name = command[0]
    if name.startswith(IMAGE_BIN_DIR + "/"):
        name = name[len(IMAGE_BIN_DIR) + 1 :]
    path = image.bin_dir / name
    if "/" in name or not (path.is_file() and os.access(path, os.X_OK)):
        raise ConfigError(
            f"command {command[0]!r} is not an entry point of image {container.get('image')!r} "
            f"(looked in {image.bin_dir}; there: {', '.join(entry_points(image.bin_dir))})"
        )
    return [str(path), *command[1:], *args]


def entry_points(bin_dir: Path) -> list[str]:
    return sorted(
        p.name for p in bin_dir.iterdir() if p.name.startswith(("shadowroute", "kubectl-shadow"))
    )


@dataclass(frozen=True)
class RunAs:
    uid: int | None  # None: this kubelet's own user (root)
    gid: int | None
    groups: tuple[int, ...] = ()


def run_as(pod: dict, container: dict, image: Image) -> RunAs:
    """The user a container runs as: the container's securityContext, else the pod's,
    else the image's USER; runAsNonRoot refuses a container that would run as root.
    readOnlyRootFilesystem, capabilities, allowPrivilegeEscalation, seccomp and SELinux
    options are accepted and not enforced (there is no container runtime)."""
    pod_sc = pod["spec"].get("securityContext") or {}
    sc = container.get("securityContext") or {}

    def pick(key: str):
        return sc.get(key, pod_sc.get(key))

    uid = pick("runAsUser")
    uid = image.user if uid is None else int(uid)
    gid = pick("runAsGroup")
    gid = (image.group if uid == image.user else None) if gid is None else int(gid)
    if pick("runAsNonRoot") and not uid:
        raise ConfigError(
            f"container has runAsNonRoot and image will run as root (container: "
            f"{container['name']})"
        )
    if uid is None:
        return RunAs(None, None)
    groups = [int(g) for g in pod_sc.get("supplementalGroups") or []]
    if pod_sc.get("fsGroup") is not None:
        groups.append(int(pod_sc["fsGroup"]))
    return RunAs(uid, 0 if gid is None else gid, tuple(groups))


def access_problem(path: Path, uid: int, gids: set[int], want: int) -> str | None:
    """Why `uid` (with groups `gids`) cannot use `path` - search every folder above it,
    and `want` (os.R_OK | os.X_OK bits) on the path itself - by the mode bits, as the
    kernel decides for a user that is not root; None when it can."""

    def allowed(st: os.stat_result, bits: int) -> bool:
        if st.st_uid == uid:
            shift = 6
        elif st.st_gid in gids:
            shift = 3
        else:
            shift = 0
        return (st.st_mode >> shift) & bits == bits

    path = Path(os.path.abspath(path))
    for folder in reversed(path.parents):
        if not allowed(folder.stat(), os.X_OK):
            return f"{folder} is not searchable by uid {uid}"
    if not allowed(path.stat(), want):
        what = "/".join(n for b, n in ((os.R_OK, "read"), (os.X_OK, "run")) if want & b)
        return f"{path} cannot be {what} by uid {uid}"
    return None


def check_usable(argv: list[str], user: RunAs) -> None:
    """A container run as another user must be able to run its program: the program,
    the Python it runs on and this environment's packages (the kubelet opens the log
    file itself, so the log folder need not be writable by it)."""
    if not user.uid:
        return
    gids = {user.gid or 0, *user.groups}
    needs: list[tuple[Path, int]] = [(Path(argv[0]), os.X_OK)]
    needs += [(Path(a), os.R_OK) for a in argv[1:2] if Path(a).is_file()]
    needs += [(p, os.R_OK | os.X_OK) for p in package_dirs()]
    for path, want in needs:
        problem = access_problem(path, user.uid, gids, want)
        if problem:
            raise ConfigError(f"runAsUser {user.uid}: {problem}")


def package_dirs() -> list[Path]:
    """Where this environment's packages are (its site-packages and editable sources),
    not the base interpreter's standard library."""
    base = Path(sys.base_prefix)
    dirs = [Path(p) for p in sys.path[1:] if p and Path(p).is_dir()]
    return [d for d in dirs if not d.is_relative_to(base)]


def python_script(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


class UserPython:
    """A Python interpreter other users can run, when this kubelet's own cannot be run
    by them (on a machine whose Python lives under a private home, say): a virtualenv
    made once from a system Python of the same version, its site-packages pointing at
    this environment's (same version, same packages)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.lock = threading.Lock()

    def for_user(self, argv: list[str], user: RunAs) -> list[str]:
        """argv, with this environment's Python (or a script of it) run by a Python the
        user can run, when theirs is not."""
        if not user.uid:
            return argv
        gids = {user.gid or 0, *user.groups}
        own = Path(sys.executable)
        if access_problem(own.resolve(), user.uid, gids, os.X_OK) is None:
            return argv
        first = Path(argv[0])
        if first == own or (first.parent == own.parent and first.name.startswith("python")):
            return [str(self.python()), *argv[1:]]
        if first.parent == own.parent and python_script(argv[0]):
            return [str(self.python()), *argv]
        return argv

    def python(self) -> Path:
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        python = self.folder / "bin" / "python"
        with self.lock:
            if python.exists():
                return python
            base = next(
                (
                    Path(d) / version
                    for d in ("/usr/local/bin", "/usr/bin", "/bin")
                    if (Path(d) / version).is_file()
                ),
                None,
            )
            if base is None:
                raise ConfigError(
                    f"{sys.executable} cannot be run by other users, and there is no "
                    f"system {version} to run them with"
                )
            made = subprocess.run(
                [str(base), "-m", "venv", "--without-pip", str(self.folder)],
                capture_output=True,
                text=True,
            )
            if made.returncode != 0:
                raise ConfigError(f"a Python for other users: {made.stderr.strip()[-300:]}")
            site = self.folder / "lib" / version / "site-packages"
            lines = [f"import site; site.addsitedir({str(d)!r})" for d in package_dirs()]
            (site / "test-kubelet.pth").write_text("\n".join(lines) + "\n")
            for path in [self.folder, *self.folder.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
            log(f"made {self.folder} ({base}) for containers run as other users")
            return python


def resolve_port(container: dict, port) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ConfigError(f"probe port {port!r} is not a port of container {container['name']}")


@dataclass(frozen=True)
class Probe:
    """A readiness probe: an HTTP GET (2xx/3xx passes) or a TCP connect."""

    port: int
    path: str | None
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int

    def check(self, ip: str) -> str | None:
        """None when the probe passes, else why it failed (as a kubelet words it)."""
        try:
            if self.path is None:
                with socket.create_connection((ip, self.port), timeout=self.timeout):
                    return None
            url = f"http://{ip}:{self.port}{self.path}"
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                return (
                    None
                    if 200 <= resp.status < 400
                    else f"HTTP probe failed with statuscode: {resp.status}"
                )
        except urllib.error.HTTPError as exc:
            return f"HTTP probe failed with statuscode: {exc.code}"
        except (OSError, urllib.error.URLError, ValueError) as exc:
            return f"{'TCP' if self.path is None else 'HTTP'} probe failed: {exc}"


def readiness_probe(container: dict) -> Probe | None:
    spec = container.get("readinessProbe")
    common = {}
    if spec:
        common = {
            "initial_delay": float(spec.get("initialDelaySeconds", 0)),
            "period": float(spec.get("periodSeconds", 10)),
            "timeout": float(spec.get("timeoutSeconds", 1)),
            "success_threshold": int(spec.get("successThreshold", 1)),
            "failure_threshold": int(spec.get("failureThreshold", 3)),
        }
        if "httpGet" in spec:
            get = spec["httpGet"]
            if get.get("scheme", "HTTP") != "HTTP":
                raise ConfigError("only HTTP readiness probes are supported")
            return Probe(resolve_port(container, get["port"]), get.get("path", "/"), **common)
        if "tcpSocket" in spec:
            return Probe(resolve_port(container, spec["tcpSocket"]["port"]), None, **common)
        raise ConfigError("only httpGet and tcpSocket readiness probes are supported")
    ports = container.get("ports") or []
    if not ports:
        return None
    return Probe(int(ports[0]["containerPort"]), None, 0, 10, 1, 1, 3)


def check_ports(container: dict) -> None:
    for p in container.get("ports") or []:
        if int(p["containerPort"]) in RESERVED_PORTS:
            raise ConfigError(
                f"containerPort {p['containerPort']} is held by the data plane in the test "
                f"world (reserved: {sorted(RESERVED_PORTS)})"
            )


# --------------------------------------------------------------------------- termination message

# A kubelet's limits on a termination message read from the container's log
# (kubecontainer.MaxContainerTerminationMessageLogLines / ...LogLength, in kubernetes'
# pkg/kubelet/container/runtime.go): the last 80 lines, and of those the last 2 KiB.
MAX_MESSAGE_LOG_LINES = 80
MAX_MESSAGE_LOG_BYTES = 2048


def termination_message(log_bytes: bytes) -> str:
    """The termination message a kubelet makes of a container's output for
    terminationMessagePolicy FallbackToLogsOnError: its last MAX_MESSAGE_LOG_LINES
    lines (a final line without a newline counts), of those the last
    MAX_MESSAGE_LOG_BYTES bytes, decoded as UTF-8 with replacement (a cut through a
    character becomes U+FFFD). Only the last MAX_MESSAGE_LOG_BYTES + 1 bytes of the
    output matter (see read_termination_message)."""
    body = log_bytes[:-1] if log_bytes.endswith(b"\n") else log_bytes
    start = 0
    pos = len(body)
    for _ in range(MAX_MESSAGE_LOG_LINES):
        pos = body.rfind(b"\n", 0, pos)
        if pos < 0:
            start = 0
            break
        start = pos + 1
    return log_bytes[start:][-MAX_MESSAGE_LOG_BYTES:].decode("utf-8", errors="replace")


def read_termination_message(path: Path, offset: int) -> str:
    """termination_message() of what `path` holds from `offset` on (the output of one
    run of the container), reading only the end that can matter; as a kubelet, a log it
    cannot read gives a message that says so."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(offset, size - MAX_MESSAGE_LOG_BYTES - 1))
            return termination_message(f.read())
    except OSError as exc:
        return f"Error on reading termination message from logs: {exc}"


# --------------------------------------------------------------------------- one pod


@dataclass
class Container:
    spec: dict
    argv: list[str] | None = None  # before $(VAR) expansion
    image: Image | None = None
    user: RunAs = field(default_factory=lambda: RunAs(None, None))
    env: dict[str, str] = field(default_factory=dict)
    probe: Probe | None = None
    process: subprocess.Popen | None = None
    started_at: str = ""
    restarts: int = 0
    ready: bool = False
    successes: int = 0
    failures: int = 0
    next_probe: float = 0.0
    next_start: float = 0.0
    waiting: tuple[str, str] | None = None  # (reason, message)
    terminated: dict | None = None
    last_terminated: dict | None = None  # the run before a restart: lastState
    finished: bool = False  # exited and not to be restarted (restartPolicy)
    log_path: Path | None = None
    log_offset: int = 0  # where the current run's output begins in log_path


class PodRunner(threading.Thread):
    """Runs one pod's containers and reports its status until told to stop."""

    def __init__(self, kubelet: TestKubelet, pod: dict, ip: str):
        super().__init__(daemon=True, name=f"pod-{pod['metadata']['name']}")
        self.kubelet = kubelet
        self.pod = pod
        self.ip = ip
        self.stopping = threading.Event()
        self.restart_policy = pod["spec"].get("restartPolicy", "Always")
        self.containers = [Container(c) for c in pod["spec"]["containers"]]
        self.phase = "Pending"
        self.reported: dict | None = None
        self.started = now_iso()

    @property
    def key(self) -> str:
        return f"{self.pod['metadata']['namespace']}/{self.pod['metadata']['name']}"

    def prepare(self) -> None:
        for c in self.containers:
            try:
                image = KNOWN_IMAGES.get(image_name(c.spec.get("image", "")))
                if image is None:
                    raise ConfigError(
                        f"image {c.spec.get('image')!r} is not one the test world runs "
                        f"(known: {sorted(KNOWN_IMAGES)})"
                    )
                check_ports(c.spec)
                c.image = image
                c.argv = program_argv(image, c.spec)
                c.user = run_as(self.pod, c.spec, image)
                c.argv = self.kubelet.user_python.for_user(c.argv, c.user)
                check_usable(c.argv, c.user)
                c.env = container_env(self.pod, c.spec, self.ip, image=image)  # checks env
                c.probe = readiness_probe(c.spec)
            except ConfigError as exc:
                c.argv = None
                c.waiting = ("CreateContainerConfigError", str(exc))

    def run(self) -> None:
        try:
            self.prepare()
            while not self.stopping.is_set():
                self.step()
                self.report()
                self.stopping.wait(0.1)
        except Exception as exc:  # one pod's trouble never stops the kubelet
            log(f"{self.key}: runner failed: {exc!r}")
        finally:
            self.stop_processes()

    def step(self) -> None:
        now = time.monotonic()
        for c in self.containers:
            if c.argv is None or c.finished:
                continue
            if c.process is None:
                if now >= c.next_start:
                    self.start_container(c)
                continue
            code = c.process.poll()
            if code is not None:
                self.exited(c, code, now)
                continue
            if c.probe is None:
                c.ready = True
            elif now >= c.next_probe:
                self.probe(c, now)
        self.phase = self.pod_phase()

    def start_container(self, c: Container) -> None:
        assert c.argv is not None and c.image is not None
        try:
            # As a kubelet does: the Services that exist when the container starts.
            services = self.kubelet.linked_services(self.pod)
        except Exception as exc:  # the API server restarting: try again shortly
            log(f"{self.key}/{c.spec['name']}: listing Services: {exc!r}; retrying")
            c.next_start = time.monotonic() + 1
            return
        c.env = container_env(self.pod, c.spec, self.ip, services, c.image)
        if c.user.uid and "HOME" not in {e["name"] for e in c.spec.get("env") or []}:
            c.env["HOME"] = "/"  # root's home is not theirs
        argv = [c.argv[0], *(expand(a, c.env) for a in c.argv[1:])]
        logfile = self.kubelet.log_dir / (
            f"{self.pod['metadata']['namespace']}_{self.pod['metadata']['name']}_"
            f"{c.spec['name']}.log"
        )
        as_user = {}
        if c.user.uid is not None:
            as_user = {"user": c.user.uid, "group": c.user.gid, "extra_groups": list(c.user.groups)}
        with logfile.open("ab") as out:
            c.log_path, c.log_offset = logfile, out.seek(0, os.SEEK_END)
            c.process = subprocess.Popen(
                argv,
                env=c.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=c.image.cwd,
                **as_user,
            )
        c.started_at = now_iso()
        c.terminated = None
        c.waiting = None
        c.ready = False
        c.successes = c.failures = 0
        c.next_probe = time.monotonic() + (c.probe.initial_delay if c.probe else 0)
        who = f" as uid {c.user.uid}" if c.user.uid is not None else ""
        log(f"{self.key}/{c.spec['name']}: started pid {c.process.pid} on {self.ip}{who}")

    def exited(self, c: Container, code: int, now: float) -> None:
        log(f"{self.key}/{c.spec['name']}: exited {code}")
        c.terminated = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": c.started_at,
            "finishedAt": now_iso(),
        }
        policy = c.spec.get("terminationMessagePolicy") or "File"
        if policy == "FallbackToLogsOnError" and code != 0 and c.log_path is not None:
            message = read_termination_message(c.log_path, c.log_offset)
            if message:
                c.terminated["message"] = message
        c.process = None
        c.ready = False
        restart = self.restart_policy == "Always" or (
            self.restart_policy == "OnFailure" and code != 0
        )
        if restart:
            c.last_terminated = c.terminated
            c.restarts += 1
            c.next_start = now + min(30.0, 2.0 ** min(c.restarts, 5) / 2)
            c.waiting = ("CrashLoopBackOff", f"back-off restarting after exit {code}")
        else:
            c.finished = True

    def probe(self, c: Container, now: float) -> None:
        assert c.probe is not None
        failure = c.probe.check(self.ip)
        if failure is None:
            c.successes, c.failures = c.successes + 1, 0
            if c.successes >= c.probe.success_threshold:
                c.ready = True
        else:
            c.failures, c.successes = c.failures + 1, 0
            if c.failures >= c.probe.failure_threshold or not c.ready:
                c.ready = False
            if c.failures == c.probe.failure_threshold:  # once per failing streak
                self.kubelet.post_event(self.pod, "Unhealthy", f"Readiness probe failed: {failure}")
        # Until first Ready, look often: a pod should not wait a whole period to serve.
        c.next_probe = now + (c.probe.period if c.ready or c.failures > 50 else 0.2)

    def pod_phase(self) -> str:
        if any(c.argv is None for c in self.containers):
            return "Pending"  # a container that cannot start keeps the pod Pending
        if all(c.finished for c in self.containers):
            ok = all(c.terminated and c.terminated["exitCode"] == 0 for c in self.containers)
            return "Succeeded" if ok else "Failed"
        if any(c.process is not None or c.terminated for c in self.containers):
            return "Running"
        return "Pending"

    def status(self) -> dict:
        ready = all(c.ready for c in self.containers) and self.phase == "Running"
        statuses = []
        for c in self.containers:
            state: dict
            if c.process is not None:
                state = {"running": {"startedAt": c.started_at}}
            elif c.waiting:
                state = {"waiting": {"reason": c.waiting[0], "message": c.waiting[1]}}
            elif c.terminated:
                state = {"terminated": c.terminated}
            else:
                state = {"waiting": {"reason": "ContainerCreating"}}
            entry = {
                "name": c.spec["name"],
                "image": c.spec.get("image", ""),
                "imageID": "",
                "ready": c.ready,
                "started": c.process is not None,
                "restartCount": c.restarts,
                "state": state,
                "lastState": {"terminated": c.last_terminated} if c.last_terminated else {},
            }
            if c.process is not None:
                entry["containerID"] = f"testkubelet://{c.process.pid}"
            statuses.append(entry)
        flag = "True" if ready else "False"
        return {
            "phase": self.phase,
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "startTime": self.started,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": flag},
                {"type": "Ready", "status": flag},
            ],
            "containerStatuses": statuses,
        }

    def report(self) -> None:
        status = self.status()
        if status == self.reported:
            return
        # Conditions merge by type: a transition time is sent only when one changed.
        conditions = [
            {**c, "lastTransitionTime": now_iso()} if self._changed(c) else c
            for c in status["conditions"]
        ]
        body = {"status": {**status, "conditions": conditions}}
        if self.kubelet.patch_status(self.pod, body):
            self.reported = status

    def _previous(self, condition: dict) -> dict | None:
        for c in (self.reported or {}).get("conditions", []):
            if c["type"] == condition["type"]:
                return c
        return None

    def _changed(self, condition: dict) -> bool:
        before = self._previous(condition)
        return before is None or before["status"] != condition["status"]

    def stop_processes(self) -> None:
        grace = min(float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)), 5.0)
        running = [c.process for c in self.containers if c.process is not None]
        for p in running:
            with_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in running:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with_group(p.pid, signal.SIGKILL)
                p.wait()
        for c in self.containers:
            c.process = None


def with_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


# --------------------------------------------------------------------------- the kubelet


def pick_ip(uid: str, taken: set[str]) -> str:
    """A stable address for a pod uid in the real pod range, never one in use."""
    size = REAL_POD_RANGE.num_addresses - 2
    start = int(hashlib.sha256(uid.encode()).hexdigest(), 16) % size
    for i in range(size):
        ip = str(REAL_POD_RANGE.network_address + 1 + (start + i) % size)
        if ip not in taken:
            return ip
    raise RuntimeError("the real pod range is full")


class TestKubelet:
    def __init__(self, kubeconfig: str, log_dir: Path, user_python: Path | None = None):
        from kubernetes import client, config

        self.api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
        self.log_dir = log_dir
        self.user_python = UserPython(user_python or log_dir.parent / "user-python")
        self.runners: dict[str, PodRunner] = {}  # pod uid -> runner
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def patch_status(self, pod: dict, body: dict) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.patch_namespaced_pod_status(
                pod["metadata"]["name"], pod["metadata"]["namespace"], body
            )
            return True
        except ApiException as exc:
            if exc.status != 404:
                meta = pod["metadata"]
                log(f"status of {meta['namespace']}/{meta['name']}: {exc.status}")
            return False
        except Exception as exc:  # the API server restarting: report again next tick
            log(f"status of {pod['metadata']['name']}: {exc!r}")
            return False

    def linked_services(self, pod: dict) -> list[dict]:
        """The Services whose variables a container of the pod gets (see
        linked_services()), read from the API server when the container starts."""
        namespace = pod["metadata"]["namespace"]
        own: list[dict] = []
        if pod["spec"].get("enableServiceLinks", True) is not False:
            listed = self.api.list_namespaced_service(namespace, _preload_content=False)
            own = json.loads(listed.data).get("items", [])
        listed = self.api.list_namespaced_service(
            "default", field_selector="metadata.name=kubernetes", _preload_content=False
        )
        master = json.loads(listed.data).get("items", [])
        return linked_services(pod, own, master)

    def post_event(self, pod: dict, reason: str, message: str) -> None:
        """A Warning Event on the pod, as a kubelet posts one (kubectl describe pod)."""
        meta = pod["metadata"]
        event = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": "Warning",
            "reason": reason,
            "message": message[:1000],
            "source": {"component": "test-kubelet"},
            "firstTimestamp": now_iso(),
            "lastTimestamp": now_iso(),
            "count": 1,
        }
        try:
            self.api.create_namespaced_event(meta["namespace"], event)
        except Exception as exc:  # an Event is best effort, as a kubelet's is
            log(f"event for {meta['namespace']}/{meta['name']}: {exc!r}")

    def observe(self, kind: str, pod: dict) -> None:
        """One watch event: start a runner for a new real pod, stop one that goes."""
        uid = pod["metadata"]["uid"]
        gone = kind == "DELETED" or pod["metadata"].get("deletionTimestamp")
        with self.lock:
            runner = self.runners.get(uid)
            if gone:
                if runner:
                    runner.stopping.set()
                    del self.runners[uid]
                return
            if runner or not pod["spec"].get("nodeName") or not is_real(pod):
                return
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                return
            taken = {r.ip for r in self.runners.values()}
            ip = pod.get("status", {}).get("podIP") or pick_ip(uid, taken)
            runner = PodRunner(self, pod, ip)
            self.runners[uid] = runner
        runner.start()

    def forget_missing(self, present: set[str]) -> None:
        with self.lock:
            for uid in list(self.runners):
                if uid not in present:
                    self.runners.pop(uid).stopping.set()

    def run(self) -> None:
        from kubernetes import watch

        while not self.stopping.is_set():
            try:
                listed = self.api.list_pod_for_all_namespaces(_preload_content=False)
                doc = json.loads(listed.data)
                items = doc.get("items", [])
                for pod in items:
                    self.observe("ADDED", pod)
                self.forget_missing({p["metadata"]["uid"] for p in items})
                version = doc["metadata"]["resourceVersion"]
                w = watch.Watch()
                for event in w.stream(
                    self.api.list_pod_for_all_namespaces,
                    resource_version=version,
                    timeout_seconds=300,
                    allow_watch_bookmarks=True,
                ):
                    if self.stopping.is_set():
                        break
                    obj = event["raw_object"]
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self.observe(event["type"], obj)
            except Exception as exc:  # a dropped watch or 410 Gone: list again
                if not self.stopping.is_set():
                    log(f"watch ended: {exc!r}; listing again")
                    self.stopping.wait(1)

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            runners = list(self.runners.values())
            self.runners.clear()
        for r in runners:
            r.stopping.set()
        for r in runners:
            r.join(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--log-dir", type=Path, required=True)
    parser.add_argument(
        "--user-python",
        type=Path,
        help="where to make a Python for containers run as other users, when they cannot "
        "run this one (default: next to the log folder)",
    )
    args = parser.parse_args(argv)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    kubelet = TestKubelet(args.kubeconfig, args.log_dir, args.user_python)

    def on_signal(*_):
        kubelet.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    watcher = threading.Thread(target=kubelet.run, daemon=True, name="watch")
    watcher.start()
    log("test kubelet running")
    kubelet.stopping.wait()
    kubelet.stop()
    log("test kubelet stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
