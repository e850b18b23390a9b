"""The project's own small client of the API server: the kubeconfig's cluster, user
and namespace, and JSON requests over the standard library's http.client and ssl.

Both the operator (kube/client.py, one connection per worker thread) and the kubectl
plugin use it. Not the kubernetes client: importing it took seconds per plugin call
(issue 14) and 33 MiB of the operator's memory (issue 15). What it honours of a
kubeconfig, per docs/operations.md:

- $KUBECONFIG (several files joined by ':', the first to name an entry wins), else
  ~/.kube/config, else the pod's service account (in-cluster);
- cluster: server (https or http), certificate-authority(-data), insecure-skip-tls-verify,
  tls-server-name, proxy-url (http:// only: a CONNECT tunnel);
- user: token, tokenFile, client-certificate(-data) with client-key(-data), username and
  password, exec credential plugins (client.authentication.k8s.io ExecCredential).
  auth-provider (the legacy gcp/azure/oidc plugins) is refused with a one-line error.

Credentials that expire are renewed: a service account token (rotated by the kubelet)
and a tokenFile are read again every TOKEN_REREAD_SECONDS, and an answer 401 loads the
kubeconfig again (an exec plugin runs again) and retries once.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..api_errors import ApiError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_KUBECONFIG = "~/.kube/config"


class ConfigError(Exception):
    """The kubeconfig cannot be used; the message is one line for people."""


class Unreachable(ConnectionError):
    """No answer from the API server: refused, timed out, TLS failed, DNS failed."""


TOKEN_REREAD_SECONDS = 60.0


@dataclass
class Endpoint:
    """Where and who: everything a request needs, read from the kubeconfig."""

    server: str
    namespace: str = "default"
    context: ssl.SSLContext | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    tls_server_name: str | None = None
    proxy: str | None = field(default=None, repr=False)  # it may carry a password
    token_file: str | None = None
    """A token that is read again every TOKEN_REREAD_SECONDS (a service account's)."""
    reload: Callable[[], Endpoint] | None = field(default=None, repr=False)
    """Load the kubeconfig again: after a 401, the credentials may have expired."""
    # The TLS material as the kubeconfig gave it, for kopf's own client (handlers.py).
    ca_pem: str | None = field(default=None, repr=False)
    cert_pem: str | None = field(default=None, repr=False)
    key_pem: str | None = field(default=None, repr=False)
    insecure: bool = False
    _token_read_at: float = field(default=0.0, repr=False)

    def auth_headers(self) -> dict[str, str]:
        """The headers of a request, with the token file read again when due."""
        if self.token_file and time.monotonic() - self._token_read_at > TOKEN_REREAD_SECONDS:
            try:
                token = Path(self.token_file).read_text().strip()
            except OSError:
                token = ""  # rotated away this instant: keep the last one
            if token:
                self.headers = {**self.headers, "Authorization": f"Bearer {token}"}
            self._token_read_at = time.monotonic()
        return self.headers


# --------------------------------------------------------------------------- kubeconfig


def _read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"cannot load kubeconfig: {path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"cannot load kubeconfig: {path}: {exc.strerror}") from None
    data: Any = None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
    if data is None:
        import yaml  # only for YAML kubeconfigs: JSON ones (hack/, kind's) skip its import

        try:
            data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"cannot load kubeconfig: {path} is not YAML{line}") from None
    if data is None:
        data = {}  # an empty file: no entries, like kubectl
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k) or [], list)
        and all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in data.get(k) or [])
        for k in ("clusters", "contexts", "users")
    ):
        raise ConfigError(
            f"cannot load kubeconfig: {path} is YAML, but not a Config with clusters, "
            "contexts and users"
        )
    return data


def _files(kubeconfig: str | None, env: dict[str, str]) -> list[Path]:
    if kubeconfig:
        return [Path(kubeconfig).expanduser()]
    if env.get("KUBECONFIG"):
        paths = [Path(p).expanduser() for p in env["KUBECONFIG"].split(os.pathsep) if p]
        return [p for p in paths if p.exists()]
    default = Path(DEFAULT_KUBECONFIG).expanduser()
    return [default] if default.exists() else []


@dataclass
class _Merged:
    entries: dict[str, dict[str, tuple[dict[str, Any], Path]]]
    current: str | None
    where: str


def _merge(files: list[Path]) -> _Merged:
    entries: dict[str, dict[str, tuple[dict[str, Any], Path]]] = {
        k: {} for k in ("clusters", "contexts", "users")
    }
    current = None
    for path in files:
        data = _read_config(path)
        current = current or data.get("current-context") or None
        for kind, named in entries.items():
            for entry in data.get(kind) or []:
                inner = entry.get(kind[:-1])
                named.setdefault(entry["name"], (inner if isinstance(inner, dict) else {}, path))
    return _Merged(entries, current, ", ".join(str(p) for p in files))


def load(
    kubeconfig: str | None = None, context: str | None = None, env: dict[str, str] | None = None
) -> Endpoint:
    """The endpoint the kubeconfig (or the pod's service account) names; ConfigError
    with one line when it names none."""
    env = dict(os.environ) if env is None else env
    files = _files(kubeconfig, env)
    if not files:
        if not context and env.get("KUBERNETES_SERVICE_HOST"):
            return _in_cluster(env)
        where = env.get("KUBECONFIG") or DEFAULT_KUBECONFIG
        raise ConfigError(
            f"no cluster to talk to: no kubeconfig at {where} and not in a pod "
            "(set KUBECONFIG or pass --kubeconfig)"
        )
    merged = _merge(files)
    name = context or merged.current
    if not name:
        raise ConfigError(
            f"cannot load kubeconfig: {merged.where} sets no current-context (pass --context)"
        )
    if name not in merged.entries["contexts"]:
        known = ", ".join(sorted(merged.entries["contexts"])) or "none"
        raise ConfigError(
            f"cannot load kubeconfig: no context {name!r} in {merged.where} (it has: {known})"
        )
    ctx, _ = merged.entries["contexts"][name]
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if cluster_name not in merged.entries["clusters"]:
        raise ConfigError(
            f"cannot load kubeconfig: context {name!r} names cluster {cluster_name!r}, "
            f"which {merged.where} does not have"
        )
    cluster, cluster_file = merged.entries["clusters"][cluster_name]
    user, user_file = merged.entries["users"].get(user_name, ({}, cluster_file))
    if user_name and user_name not in merged.entries["users"]:
        raise ConfigError(
            f"cannot load kubeconfig: context {name!r} names user {user_name!r}, "
            f"which {merged.where} does not have"
        )
    server = cluster.get("server")
    if not server:
        raise ConfigError(f"cannot load kubeconfig: cluster {cluster_name!r} has no server")
    endpoint = Endpoint(
        server=str(server).rstrip("/"),
        namespace=ctx.get("namespace") or "default",
        tls_server_name=cluster.get("tls-server-name"),
        proxy=cluster.get("proxy-url"),
    )
    user = dict(user)  # an exec plugin's answer is added to it
    try:
        _credentials(endpoint, user, user_file.parent, env)
        if endpoint.server.startswith("https://"):
            endpoint.context = _tls(endpoint, cluster, cluster_file.parent, user, user_file.parent)
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load kubeconfig: {name!r}: {_one_line(exc)}") from None
    endpoint.reload = lambda: load(kubeconfig, name, env)
    return endpoint


def _in_cluster(env: dict[str, str]) -> Endpoint:
    host, port = env["KUBERNETES_SERVICE_HOST"], env.get("KUBERNETES_SERVICE_PORT", "443")
    try:
        token = (SERVICE_ACCOUNT / "token").read_text().strip()
        ns_file = SERVICE_ACCOUNT / "namespace"
        namespace = ns_file.read_text().strip() if ns_file.exists() else "default"
        context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
        ca_pem = (SERVICE_ACCOUNT / "ca.crt").read_text()
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"no cluster to talk to: in a pod, but {_one_line(exc)}") from None
    host = f"[{host}]" if ":" in host else host
    return Endpoint(
        server=f"https://{host}:{port}",
        namespace=namespace,
        context=context,
        headers={"Authorization": f"Bearer {token}"},
        token_file=str(SERVICE_ACCOUNT / "token"),
        reload=lambda: _in_cluster(env),
        ca_pem=ca_pem,
        _token_read_at=time.monotonic(),
    )


def _path(value: str, base: Path) -> str:
    """A file a kubeconfig names: relative paths are relative to that kubeconfig."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _credentials(endpoint: Endpoint, user: dict[str, Any], base: Path, env: dict) -> None:
    if user.get("auth-provider"):
        raise ValueError(
            "auth-provider credentials are not supported by the plugin; use an exec "
            "plugin, a token or a client certificate"
        )
    if user.get("exec"):
        user.update(_exec(user["exec"], base, env))
    token = user.get("token")
    if not token and user.get("tokenFile"):
        endpoint.token_file = _path(user["tokenFile"], base)
        token = Path(endpoint.token_file).read_text().strip()
        endpoint._token_read_at = time.monotonic()
    if token:
        endpoint.headers["Authorization"] = f"Bearer {token}"
    elif user.get("username") and user.get("password") is not None:
        basic = base64.b64encode(f"{user['username']}:{user['password']}".encode()).decode()
        endpoint.headers["Authorization"] = f"Basic {basic}"


def _exec(spec: dict[str, Any], base: Path, env: dict) -> dict[str, Any]:
    """Run an exec credential plugin; its ExecCredential's status as user fields."""
    command = str(spec.get("command") or "")
    if os.sep in command and not Path(command).is_absolute():
        command = str(base / command)
    run_env = {**env, **{e["name"]: e["value"] for e in spec.get("env") or []}}
    api_version = spec.get("apiVersion") or "client.authentication.k8s.io/v1"
    run_env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
    )
    import subprocess  # only for exec plugins

    try:
        done = subprocess.run(
            [command, *(spec.get("args") or [])],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"exec plugin {command!r}: {_one_line(exc)}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        raise ValueError(f"exec plugin {command!r} exited {done.returncode}: {last}")
    try:
        status = json.loads(done.stdout).get("status") or {}
    except (ValueError, AttributeError):
        raise ValueError(f"exec plugin {command!r} did not print an ExecCredential") from None
    return {
        k: v
        for k, v in {
            "token": status.get("token"),
            "client-certificate-data-pem": status.get("clientCertificateData"),
            "client-key-data-pem": status.get("clientKeyData"),
        }.items()
        if v
    }


def _pem(entry: dict[str, Any], key: str, base: Path) -> str | None:
    """A PEM the kubeconfig gives inline (base64 `<key>-data`) or as a file."""
    if entry.get(f"{key}-data-pem"):
        return entry[f"{key}-data-pem"]
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"]).decode()
    if entry.get(key):
        return Path(_path(entry[key], base)).read_text()
    return None


def _tls(
    endpoint: Endpoint,
    cluster: dict[str, Any],
    cluster_base: Path,
    user: dict[str, Any],
    user_base: Path,
) -> ssl.SSLContext:
    ca = _pem(cluster, "certificate-authority", cluster_base)
    endpoint.ca_pem, endpoint.insecure = ca, bool(cluster.get("insecure-skip-tls-verify"))
    if endpoint.insecure:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca:  # the cluster's own CA only: loading the system's store costs a tenth of a second
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=ca)
    else:
        context = ssl.create_default_context()
    cert = _pem(user, "client-certificate", user_base)
    key = _pem(user, "client-key", user_base)
    if cert and key:
        _load_chain(context, cert, key)
        endpoint.cert_pem, endpoint.key_pem = cert, key
    elif cert or key:
        raise ValueError("a client certificate needs both the certificate and its key")
    return context


def _load_chain(context: ssl.SSLContext, cert: str, key: str) -> None:
    """ssl loads a certificate and key only from files: anonymous in-memory files
    where Linux has them, else a private directory removed as soon as it is loaded."""
    if hasattr(os, "memfd_create"):
        fds = [os.memfd_create(name) for name in ("cert.pem", "key.pem")]
        try:
            for fd, pem in zip(fds, (cert, key), strict=True):
                os.write(fd, pem.encode())
            context.load_cert_chain(*(f"/proc/self/fd/{fd}" for fd in fds))
        finally:
            for fd in fds:
                os.close(fd)
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kubectl-shadowroute-") as tmp:
        cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        cert_file.write_text(cert)
        key_file.touch(0o600)
        key_file.write_text(key)
        context.load_cert_chain(str(cert_file), str(key_file))


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


# --------------------------------------------------------------------------- requests


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS with the kubeconfig's tls-server-name (SNI and the name checked)."""

    def __init__(self, host: str, port: int | None, *, tls: ssl.SSLContext, name: str | None,
                 timeout: float) -> None:  # fmt: skip
        super().__init__(host, port, timeout=timeout, context=tls)
        self.tls, self.name = tls, name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)  # TCP, and the proxy's tunnel if any
        server_name = self.name or self._tunnel_host or self.host
        self.sock = self.tls.wrap_socket(self.sock, server_hostname=server_name)


class ApiServer:
    """JSON requests to one API server, over one kept-alive connection (one thread's:
    http.client connections are not shared between threads)."""

    def __init__(
        self, endpoint: Endpoint, timeout: float = 30, agent: str = "kubectl-shadowroute"
    ) -> None:
        self.endpoint, self.timeout, self.agent = endpoint, timeout, agent
        self._conn: http.client.HTTPConnection | None = None
        self._used = False

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is not None:
            return self._conn
        e = self.endpoint
        url = urlsplit(e.server)
        host, port = url.hostname or "", url.port
        if e.proxy:
            proxy = urlsplit(e.proxy)
            if proxy.scheme != "http":
                where = f"{proxy.scheme}://{proxy.hostname or ''}"  # never its user:password
                raise Unreachable(f"proxy-url {where}: only http:// proxies are supported")
            conn_host, conn_port = proxy.hostname or "", proxy.port or 80
        else:
            conn_host, conn_port = host, port
        if url.scheme == "https":
            conn: http.client.HTTPConnection = _TLSConnection(
                conn_host,
                conn_port or 443,
                tls=e.context or ssl.create_default_context(),
                name=e.tls_server_name,
                timeout=self.timeout,
            )
        else:
            conn = http.client.HTTPConnection(conn_host, conn_port or 80, timeout=self.timeout)
        if e.proxy:
            proxy = urlsplit(e.proxy)
            headers = {}
            if proxy.username:
                creds = f"{proxy.username}:{proxy.password or ''}".encode()
                headers["Proxy-Authorization"] = f"Basic {base64.b64encode(creds).decode()}"
            conn.set_tunnel(host, port or (443 if url.scheme == "https" else 80), headers)
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        """The JSON answer (None when empty); ApiError for an error status, Unreachable
        when no answer came. A 401 loads the credentials again and retries once."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        try:
            return self._request(method, path, query, data, content_type)
        except ApiError as exc:
            if exc.status != 401 or self.endpoint.reload is None:
                raise
            try:
                self.endpoint = self.endpoint.reload()
            except ConfigError:
                raise exc from None
            self.close()
            return self._request(method, path, query, data, content_type)

    def watch(self, path: str, query: list[tuple[str, Any]]) -> Iterator[dict[str, Any]]:
        """A WATCH: each event the server streams (`{"type": ..., "object": ...}`), until
        it ends the stream (its timeoutSeconds) or `interrupt` is called from another
        thread. ApiError for an error status; Unreachable when the connection fails. A
        401 loads the credentials again and retries once. Always on a connection of its
        own (the stream holds it), so one ApiServer is one watch."""
        for attempt in (1, 2):
            base_path = urlsplit(self.endpoint.server).path.rstrip("/")
            target = f"{base_path}{path}?{urlencode(query)}"
            headers = {"Accept": "application/json", "User-Agent": self.agent}
            headers.update(self.endpoint.auth_headers())
            self.close()
            try:
                conn = self._connection()
                conn.request("GET", target, headers=headers)
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise Unreachable(_one_line(exc)) from None
            if response.status == 401 and attempt == 1 and self.endpoint.reload is not None:
                response.read()
                try:
                    self.endpoint = self.endpoint.reload()
                except ConfigError:
                    raise ApiError(401, response.reason, "") from None
                continue
            if not 200 <= response.status < 300:
                text = response.read().decode(errors="replace")
                self.close()
                raise ApiError(response.status, response.reason, text)
            yield from self._events(response)
            return

    def _events(self, response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
        pending = b""
        try:
            while True:
                try:
                    chunk = response.read1(1 << 16)
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    raise Unreachable(_one_line(exc)) from None
                if not chunk:
                    return
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        finally:
            self.close()

    def interrupt(self) -> None:
        """Cut the connection from another thread: a blocked read ends at once."""
        conn = self._conn
        sock = getattr(conn, "sock", None) if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def _request(
        self,
        method: str,
        path: str,
        query: list[tuple[str, Any]] | None,
        data: bytes | None,
        content_type: str | None,
    ) -> Any:
        base_path = urlsplit(self.endpoint.server).path.rstrip("/")
        target = base_path + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": "application/json", "User-Agent": self.agent}
        headers.update(self.endpoint.auth_headers())
        if data is not None:
            headers["Content-Type"] = content_type or "application/json"
        for attempt in (1, 2):
            reused = self._used
            try:
                conn = self._connection()
                conn.request(method, target, body=data, headers=headers)
                response = conn.getresponse()
                text = response.read()
                self._used = True
                break
            except (
                http.client.RemoteDisconnected,
                BrokenPipeError,
                ConnectionResetError,
                ssl.SSLEOFError,  # TLS: the server closed a kept-alive connection
                ssl.SSLZeroReturnError,
            ):
                self.close()
                if attempt == 2 or not reused:  # a kept-alive connection the server closed
                    raise Unreachable("the connection was closed") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise Unreachable(_one_line(exc)) from None
        if not 200 <= response.status < 300:
            raise ApiError(response.status, response.reason, text.decode(errors="replace"))
        return json.loads(text) if text else None
