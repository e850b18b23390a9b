"""examples/app/server.py run as the test kubelet runs it: a subprocess on loopback, on a
free port, ready once it says where it listens."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVER = Path(__file__).resolve().parents[2] / "examples" / "app" / "server.py"
STARTUP_TIMEOUT = 10.0


@contextmanager
def sample_app(**env: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The app's base URL and process; stopped (SIGKILL if need be) on the way out."""
    process = subprocess.Popen(
        [sys.executable, str(SERVER)],
        env={**os.environ, "BIND_ADDRESS": "127.0.0.1", "PORT": "0", **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield listening_url(process), process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def listening_url(process: subprocess.Popen[str]) -> str:
    """Waits for the "listening on <url>" line, without blocking past the deadline."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            if selector.select(left):
                line = process.stdout.readline()
                if " listening on " in line:
                    return line.split()[-1]
                if not line:
                    raise AssertionError(f"the app exited with {process.wait()}")
    raise AssertionError("the app did not start listening in time")


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body, whatever the status."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], dict]:
    status, response_headers, body = get(url, headers)
    return status, response_headers, json.loads(body)
