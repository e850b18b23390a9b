"""The plugin's own API server client (kube/apiserver.py): what it reads of a kubeconfig,
and TLS, tokens, client certificates and proxies against a local HTTPS server; plus the
one-line errors of every bad input that needs no cluster (issue 14)."""

from __future__ import annotations

import ast
import base64
import datetime as dt
import http.server
import ipaddress
import json
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from shadowroute.cli import exit_codes
from shadowroute.kube import apiserver

from .test_cli import run


def write_config(path: Path, cluster: dict, user: dict, **context: Any) -> Path:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", **context}}],
                "current-context": "c",
            }
        )
    )
    return path


# --------------------------------------------------------------------------- kubeconfig


def test_context_namespace_token_and_relative_files(tmp_path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    path = write_config(
        tmp_path / "kc", {"server": "http://127.0.0.1:1/"}, {"tokenFile": "token"}, namespace="shop"
    )
    e = apiserver.load(str(path), env={})
    assert (e.server, e.namespace) == ("http://127.0.0.1:1", "shop")
    assert e.headers == {"Authorization": "Bearer s3cret"}


def test_kubeconfig_list_merges_first_wins_and_skips_missing(tmp_path) -> None:
    a = write_config(tmp_path / "a", {"server": "http://a:1"}, {"token": "a"})
    b = tmp_path / "b.yaml"
    b.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: other\n"
        "clusters: [{name: c, cluster: {server: 'http://b:1'}}, "
        "{name: o, cluster: {server: 'http://o:1'}}]\n"
        "users: [{name: u, user: {token: b}}]\n"
        "contexts: [{name: other, context: {cluster: o, user: u, namespace: x}}]\n"
    )
    env = {"KUBECONFIG": os.pathsep.join([str(tmp_path / "missing"), str(a), str(b)])}
    assert apiserver.load(env=env).server == "http://a:1"  # a's current-context, a's cluster
    other = apiserver.load(context="other", env=env)
    assert (other.server, other.namespace, other.headers["Authorization"]) == (
        "http://o:1",
        "x",
        "Bearer a",
    )


def test_exec_plugin_gives_the_token(tmp_path) -> None:
    plugin = tmp_path / "bin" / "cred"
    plugin.parent.mkdir()
    plugin.write_text(
        f"#!{sys.executable}\nimport json, os\n"
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "print(json.dumps({'apiVersion': info['apiVersion'], 'kind': 'ExecCredential',"
        " 'status': {'token': 'from-exec-' + os.environ['WHO']}}))\n"
    )
    plugin.chmod(0o755)
    user = {"exec": {"command": "bin/cred", "env": [{"name": "WHO", "value": "me"}]}}
    e = apiserver.load(str(write_config(tmp_path / "kc", {"server": "http://h:1"}, user)), env={})
    assert e.headers["Authorization"] == "Bearer from-exec-me"


@pytest.mark.parametrize(
    ("setup", "said"),
    [
        (lambda p: None, "error: cannot load kubeconfig: {p}: no such file"),
        (
            lambda p: write_config(p, {"server": "http://h:1"}, {}) and None,
            "error: cannot load kubeconfig: no context 'nope' in {p} (it has: c)",
        ),
        (
            lambda p: write_config(p, {"server": "http://h:1"}, {"auth-provider": {"name": "gcp"}}),
            "error: cannot load kubeconfig: 'nope': auth-provider credentials are not supported",
        ),
        (
            lambda p: write_config(
                p, {"server": "https://h:1", "certificate-authority": "missing-ca.pem"}, {}
            ),
            "error: cannot load kubeconfig: 'nope': [Errno 2] No such file or directory",
        ),
        (
            lambda p: write_config(p, {"server": "http://h:1"}, {"exec": {"command": "false"}}),
            "error: cannot load kubeconfig: 'nope': exec plugin 'false' exited 1",
        ),
    ],
    ids=["missing-file", "wrong-context", "auth-provider", "missing-ca", "exec-fails"],
)
def test_bad_kubeconfigs_are_one_line_errors(tmp_path, setup, said) -> None:
    path = tmp_path / "kc"
    setup(path)
    context = "nope" if "wrong-context" in said or "'nope'" in said else None
    if "'nope':" in said:  # the context exists: name it so
        data = json.loads(path.read_text())
        data["contexts"][0]["name"] = data["current-context"] = "nope"
        path.write_text(json.dumps(data))
    argv = ["get", "--kubeconfig", str(path)] + (["--context", context] if context else [])
    code, out, err = run(*argv)
    assert code == exit_codes.ERROR and out == ""
    assert err.startswith(said.format(p=path)), err
    assert err.count("\n") == 1, err


def test_no_kubeconfig_and_not_in_a_pod(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code, _, err = run("status", "web")
    assert code == exit_codes.ERROR
    assert err == (
        f"error: no cluster to talk to: no kubeconfig at {tmp_path / 'none'} and not in a pod "
        "(set KUBECONFIG or pass --kubeconfig)\n"
    )


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (("bogus",), "error: argument COMMAND: invalid choice: 'bogus'"),
        (("get", "--bogus"), "error: unrecognized arguments: --bogus"),
        (("status",), "error: the following arguments are required: name"),
        (("get", "-o", "xml"), "error: argument -o/--output: invalid choice: 'xml'"),
        (("status", "web", "--interval", "soon"), "error: argument --interval: invalid float"),
        ((), "error: the following arguments are required: COMMAND"),
    ],
)
def test_bad_flags_and_commands_are_one_line_errors(argv, said, capsys) -> None:
    code, out, _ = run(*argv)
    err = capsys.readouterr().err  # argparse writes to sys.stderr
    assert code == exit_codes.USAGE and out == ""
    assert err.startswith(said) and re.search(
        r"\(see kubectl shadowroute( \w+)? --help\)\n$", err
    ), err
    assert err.count("\n") == 1, err


def test_connection_refused_is_one_line(tmp_path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_config(tmp_path / "kc", {"server": f"https://127.0.0.1:{port}"}, {"token": "x"})
    for argv in (("get",), ("status", "web"), ("history", "web"), ("promote", "web")):
        code, out, err = run(*argv, "--kubeconfig", str(path))
        assert code == exit_codes.ERROR and out == ""
        assert err == (
            f"error: cannot reach the API server at https://127.0.0.1:{port}: "
            "[Errno 111] Connection refused\n"
        )


READ_COMMANDS = [["get"], ["status", "w"], ["history", "w"], ["diff", "w"], ["pause", "w"]]


def test_read_commands_load_neither_pydantic_nor_the_kubernetes_client(tmp_path) -> None:
    """Issue 14: 5 s a call, nearly all imports. A refused server ends the call after
    the whole path ran: parsing, the kubeconfig, TLS, the request."""
    path = write_config(tmp_path / "kc", {"server": "https://127.0.0.1:1"}, {"token": "x"})
    heavy = ("pydantic", "kubernetes", "urllib3", "kopf", "aiohttp", "prometheus_client", "yaml")
    script = (
        "import sys\nfrom shadowroute.cli.main import main\n"
        f"for argv in {READ_COMMANDS}:\n"
        f"    main(argv + ['--kubeconfig', {str(path)!r}])\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(heavy)!r}))\n"
        "print(sorted(m for m in sys.modules if m.startswith('shadowroute.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    loaded, ours = map(ast.literal_eval, done.stdout.splitlines())
    assert loaded == [], loaded
    units = {m.split(".")[1] for m in ours}
    assert units == {"cli", "kube", "names", "reasons", "stages", "api_errors"}, ours
    assert {m for m in ours if m.startswith("shadowroute.kube.")} == {"shadowroute.kube.apiserver"}


# --------------------------------------------------------------------------- TLS


LOOP = "127.0.0.1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and the name `apiserver.test`, and a
    client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)

    def cert(cn: str, key, issuer=None, issuer_key=None, sans=None, ca=False):
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(issuer or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(issuer_key or key, hashes.SHA256())

    def save(name: str, obj) -> Path:
        if hasattr(obj, "private_bytes"):
            data = obj.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        else:
            data = obj.public_bytes(serialization.Encoding.PEM)
        (d / name).write_bytes(data)
        return d / name

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("test-ca", ca_key, ca=True)
    out = {"ca": save("ca.pem", ca)}
    for role, sans in (
        ("server", [x509.DNSName("apiserver.test"), x509.IPAddress(ipaddress.ip_address(LOOP))]),
        ("client", None),
    ):  # fmt: skip
        key = ec.generate_private_key(ec.SECP256R1())
        out[role] = save(f"{role}.pem", cert(role, key, ca.subject, ca_key, sans))
        out[f"{role}-key"] = save(f"{role}-key.pem", key)
    return out


@pytest.fixture
def https(pki) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An HTTPS server that requires a client certificate and answers every GET with
    what it saw; the list collects the requests."""
    seen: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            peer = self.connection.getpeercert()
            cn = dict(x[0] for x in peer["subject"])["commonName"] if peer else None
            seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "cn": cn})
            body = json.dumps({"kind": "List", "items": []}).encode()
            if self.path.startswith("/missing"):
                self.send_response(404)
                body = b'{"kind":"Status","reason":"NotFound","message":"gone\\nreally"}'
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["server"], pki["server-key"])
    context.load_verify_locations(pki["ca"])
    context.verify_mode = ssl.CERT_REQUIRED
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_client_certificate_token_and_ca_data(tmp_path, pki, https) -> None:
    url, seen = https
    path = write_config(
        tmp_path / "kc",
        {"server": url, "certificate-authority-data": b64(pki["ca"])},
        {
            "client-certificate-data": b64(pki["client"]),
            "client-key-data": b64(pki["client-key"]),
            "token": "t0k",
        },
    )
    api = apiserver.ApiServer(apiserver.load(str(path), env={}))
    assert api.request("GET", "/api/v1/pods", query=[("labelSelector", "a=b")])["kind"] == "List"
    assert api.request("GET", "/again") is not None  # the kept-alive connection
    assert seen == [
        {"path": "/api/v1/pods?labelSelector=a%3Db", "auth": "Bearer t0k", "cn": "client"},
        {"path": "/again", "auth": "Bearer t0k", "cn": "client"},
    ]
    with pytest.raises(apiserver.ApiError) as caught:
        api.request("GET", "/missing")
    assert caught.value.status == 404 and "gone" in caught.value.body


def test_ca_file_relative_to_the_kubeconfig_and_tls_server_name(tmp_path, pki, https) -> None:
    url, seen = https
    (tmp_path / "ca.pem").write_bytes(pki["ca"].read_bytes())
    cluster = {"server": url.replace("127.0.0.1", "localhost"), "certificate-authority": "ca.pem",
               "tls-server-name": "apiserver.test"}  # fmt: skip
    user = {"client-certificate": str(pki["client"]), "client-key": str(pki["client-key"])}
    api = apiserver.ApiServer(apiserver.load(str(write_config(tmp_path / "kc", cluster, user))))
    api.request("GET", "/ok")
    assert seen[-1]["cn"] == "client"
    # without tls-server-name, "localhost" is not a name of the certificate
    del cluster["tls-server-name"]
    api = apiserver.ApiServer(apiserver.load(str(write_config(tmp_path / "kc", cluster, user))))
    with pytest.raises(apiserver.Unreachable, match="certificate verify failed"):
        api.request("GET", "/ok")


def test_unknown_ca_fails_and_insecure_skip_tls_verify_passes(tmp_path, pki, https) -> None:
    url, seen = https
    user = {"client-certificate": str(pki["client"]), "client-key": str(pki["client-key"])}
    code, _, err = run(
        "get", "--kubeconfig", str(write_config(tmp_path / "kc", {"server": url}, user))
    )
    assert code == exit_codes.ERROR and "certificate verify failed" in err and err.count("\n") == 1
    cluster = {"server": url, "insecure-skip-tls-verify": True}
    code, _, err = run(
        "get", "-n", "x", "--kubeconfig", str(write_config(tmp_path / "kc", cluster, user))
    )
    assert seen and seen[0]["path"] == "/apis/shadowroute.io/v1alpha1/namespaces/x/shadowroutes"


def test_proxy_url_tunnels_to_the_server(tmp_path, pki, https) -> None:
    """An http:// proxy-url: the client asks the proxy to CONNECT to the server."""
    url, seen = https
    asked: list[str] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def proxy() -> None:
        conn, _ = listener.accept()
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        asked.append(head.split(b"\r\n", 1)[0].decode())
        host, port = asked[-1].split()[1].rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        socks = [conn, upstream]
        while True:
            ready, _, _ = select.select(socks, [], [], 5)
            if not ready:
                break
            for s in ready:
                data = s.recv(65536)
                if not data:
                    return
                (upstream if s is conn else conn).sendall(data)

    threading.Thread(target=proxy, daemon=True).start()
    cluster = {"server": url, "certificate-authority": str(pki["ca"]),
               "proxy-url": f"http://127.0.0.1:{listener.getsockname()[1]}"}  # fmt: skip
    user = {"client-certificate": str(pki["client"]), "client-key": str(pki["client-key"])}
    api = apiserver.ApiServer(apiserver.load(str(write_config(tmp_path / "kc", cluster, user))))
    api.request("GET", "/through")
    api.close()
    listener.close()
    assert asked == [f"CONNECT {url.removeprefix('https://')} HTTP/1.0"]
    assert seen[-1]["path"] == "/through"


# --------------------------------------------------------------------------- expiring credentials


@pytest.fixture
def plain_http() -> Iterator[tuple[str, list[str | None], set[str]]]:
    """An HTTP server that answers 200 to the tokens in `valid`, else 401; `seen`
    collects the Authorization header of every request."""
    seen: list[str | None] = []
    valid: set[str] = set()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            auth = self.headers.get("Authorization")
            seen.append(auth)
            ok = auth in {f"Bearer {t}" for t in valid}
            body = b'{"kind":"List","items":[]}' if ok else b'{"kind":"Status","code":401}'
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen, valid
    server.shutdown()
    server.server_close()


def test_a_401_runs_the_exec_plugin_again_and_retries_once(tmp_path, plain_http) -> None:
    """Issue 15: the operator keeps one client for days; an exec plugin's token expires
    (EKS: 15 minutes), and the answer 401 must renew it, not fail every request."""
    url, seen, valid = plain_http
    counter = tmp_path / "runs"
    plugin = tmp_path / "plugin.sh"
    plugin.write_text(
        "#!/bin/sh\necho x >> " + str(counter) + "\n"
        "n=$(wc -l < " + str(counter) + ")\n"
        'printf \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
        '"status":{"token":"t%s"}}\' "$n"\n'
    )
    plugin.chmod(0o755)
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin)}}
    api = apiserver.ApiServer(
        apiserver.load(str(write_config(tmp_path / "kc", {"server": url}, user)), env={})
    )
    valid.add("t1")
    api.request("GET", "/a")
    valid.clear()
    valid.add("t2")  # t1 expired; the plugin's next run gives t2
    api.request("GET", "/b")
    assert seen == ["Bearer t1", "Bearer t1", "Bearer t2"]
    valid.clear()  # nothing is valid: one reload, one retry, then the 401 is the answer
    with pytest.raises(apiserver.ApiError) as caught:
        api.request("GET", "/c")
    assert caught.value.status == 401 and seen[-2:] == ["Bearer t2", "Bearer t3"]


def test_a_token_file_is_read_again_once_a_minute(tmp_path, plain_http, monkeypatch) -> None:
    """A service account's token is rotated by the kubelet in its file."""
    url, seen, valid = plain_http
    (tmp_path / "token").write_text("old\n")
    path = write_config(tmp_path / "kc", {"server": url}, {"tokenFile": "token"})
    api = apiserver.ApiServer(apiserver.load(str(path), env={}))
    valid.update({"old", "new"})
    api.request("GET", "/a")
    (tmp_path / "token").write_text("new\n")
    api.request("GET", "/b")  # within the minute: the token read last
    clock = time.monotonic() + apiserver.TOKEN_REREAD_SECONDS + 1
    monkeypatch.setattr(apiserver.time, "monotonic", lambda: clock)
    api.request("GET", "/c")
    assert seen == ["Bearer old", "Bearer old", "Bearer new"]


def test_kopf_logs_in_with_what_the_client_read(tmp_path, pki) -> None:
    """kopf's watches and the operator's requests use one reading of the kubeconfig."""
    from shadowroute.handlers import connection_info

    cluster = {"server": "https://127.0.0.1:1", "certificate-authority-data": b64(pki["ca"])}
    user = {"client-certificate": str(pki["client"]), "client-key": str(pki["client-key"]),
            "token": "t0k"}  # fmt: skip
    info = connection_info(
        apiserver.load(str(write_config(tmp_path / "kc", cluster, user, namespace="shop")))
    )
    assert (info.server, info.scheme, info.token, info.default_namespace) == (
        "https://127.0.0.1:1",
        "Bearer",
        "t0k",
        "shop",
    )
    assert info.ca_data == pki["ca"].read_text() and not info.insecure
    assert info.certificate_data == pki["client"].read_text()
    assert info.private_key_data == pki["client-key"].read_text()


def test_the_operator_process_never_imports_the_kubernetes_client() -> None:
    """Issue 15: kopf imports it whenever it is installed (this venv has it for the
    tests): 33 MiB of the operator's memory for nothing."""
    script = (
        "import sys\nfrom shadowroute import __main__ as m\n"
        "m.keep_out_the_kubernetes_client()\n"
        "import kopf, shadowroute.handlers, shadowroute.services\n"
        "print(sorted(n for n, mod in sys.modules.items() if n.split('.')[0] in "
        "('kubernetes', 'urllib3') and mod is not None))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
