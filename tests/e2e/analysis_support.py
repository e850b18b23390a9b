"""What the analysis tests need besides the cluster: the traffic simulator, a webhook
receiver, a Prometheus of their own (to stop and start), and a way to ask Prometheus."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cluster import free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} not ready after {timeout}s")
        time.sleep(0.2)


def instant(prometheus: str, query: str) -> dict[str, Any]:
    """One instant query against a real Prometheus: its whole JSON answer."""
    data = urllib.parse.urlencode({"query": query}).encode()
    try:
        with urllib.request.urlopen(f"{prometheus}/api/v1/query", data, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


class Simulator:
    """hack/traffic_sim.py as a child process, registered with a Prometheus."""

    def __init__(self, kubeconfig: str, namespaces: str, targets: Path, log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "hack" / "traffic_sim.py"), "--kubeconfig", kubeconfig,
             "--namespace", namespaces, "--targets-dir", str(targets), "--tick", "0.25",
             "--max-runtime", "3600", "--verbose"],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while "serving metrics" not in log.read_text():
            assert self.proc.poll() is None, f"simulator exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, "simulator did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Receiver:
    """A webhook endpoint on loopback that keeps every JSON body it is sent, by path."""

    def __init__(self) -> None:
        got: list[tuple[str, Any]] = []
        self.got = got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                got.append((self.path, json.loads(body or b"null")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[Any]:
        return [body for p, body in list(self.got) if p == path]

    def stop(self) -> None:
        self.server.shutdown()


class OwnPrometheus:
    """A second, private Prometheus (Debian's binary), scraping the same file_sd
    targets as the shared one: it can be stopped and started without disturbing anyone
    else. Same port and data directory across restarts, as a restarted pod would have."""

    def __init__(self, targets: Path, workdir: Path) -> None:
        exe = shutil.which("prometheus") or "/usr/bin/prometheus"
        assert Path(exe).exists(), "prometheus is not installed (hack/install-deps.sh)"
        self.exe, self.dir = exe, workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "file-sd",
                    "file_sd_configs": [
                        {"files": [str(targets / "*.json")], "refresh_interval": "1s"}
                    ],
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(json.dumps(config))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.dir / "prometheus.log").open("ab")
        self.proc = subprocess.Popen(
            [self.exe, f"--config.file={self.dir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.dir / 'data'}", "--storage.tsdb.retention.time=1h",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_http(f"{self.url}/-/ready")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
