"""The test kubelet's termination messages (hack/test_kubelet.py): with
terminationMessagePolicy FallbackToLogsOnError a container that exits non-zero gets the
tail of its run's output as state.terminated.message (and lastState.terminated.message
once restarting), cut as a kubelet cuts it; with File (the default) it gets none. The
tail is a pure function; the rest runs on a PodRunner around a pod dict, without a
cluster (the one real-process test runs a Python one-liner)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from .hack_scripts import load

kubelet = load("test_kubelet")

LINES = kubelet.MAX_MESSAGE_LOG_LINES
BYTES = kubelet.MAX_MESSAGE_LOG_BYTES


def test_the_limits_are_the_kubelets() -> None:
    # kubecontainer.MaxContainerTerminationMessageLogLines / ...LogLength
    assert (LINES, BYTES) == (80, 2048)


# --------------------------------------------------------------------------- the tail


def test_only_the_last_80_lines_are_kept() -> None:
    out = b"".join(f"line {i}\n".encode() for i in range(100))
    message = kubelet.termination_message(out)
    assert message == "".join(f"line {i}\n" for i in range(20, 100))
    assert message.count("\n") == LINES


def test_a_last_line_without_a_newline_counts_as_a_line() -> None:
    out = b"".join(f"line {i}\n".encode() for i in range(99)) + b"line 99"
    assert kubelet.termination_message(out) == (
        "".join(f"line {i}\n" for i in range(20, 99)) + "line 99"
    )


def test_fewer_lines_are_kept_whole() -> None:
    assert kubelet.termination_message(b"a\nb\n") == "a\nb\n"
    assert kubelet.termination_message(b"\n\nboom") == "\n\nboom"


def test_of_the_80_lines_only_the_last_2048_bytes_are_kept() -> None:
    out = b"".join(bytes([ord("a") + i]) * 499 + b"\n" for i in range(10))  # 5000 bytes
    message = kubelet.termination_message(out)
    assert message.encode() == out[-BYTES:]
    # The byte cut applies to the 80 lines, not to the whole output.
    long_then_short = b"x" * 5000 + b"\n" + b"".join(b"%d\n" % i for i in range(80))
    assert kubelet.termination_message(long_then_short) == "".join(f"{i}\n" for i in range(80))


def test_empty_output_gives_an_empty_message() -> None:
    assert kubelet.termination_message(b"") == ""


def test_invalid_utf8_is_replaced_also_where_the_cut_splits_a_character() -> None:
    assert kubelet.termination_message(b"bad \xff\xfe byte\n") == "bad \ufffd\ufffd byte\n"
    message = kubelet.termination_message("é".encode() * 1500)  # 3000 bytes, é is 2
    assert message == "é" * 1024  # 2048 bytes: the cut falls between two characters
    message = kubelet.termination_message(b"x" + "é".encode() * 1500)
    assert message == "é" * 1024
    message = kubelet.termination_message("€".encode() * 1000)  # 3000 bytes, € is 3
    # 2048 = 2 + 3 * 682: the two stray bytes of a split character, one U+FFFD each
    assert message == "\ufffd\ufffd" + "€" * 682


@given(st.lists(st.binary(max_size=60) | st.sampled_from([b"", b"\n", b"\xff"]), max_size=200))
def test_the_message_is_the_last_lines_then_the_last_bytes(parts: list[bytes]) -> None:
    out = b"\n".join(parts)
    body, newline = (out[:-1], b"\n") if out.endswith(b"\n") else (out, b"")
    expected = (b"\n".join(body.split(b"\n")[-LINES:]) + newline)[-BYTES:]
    message = kubelet.termination_message(out)
    assert message == expected.decode("utf-8", errors="replace")
    # What read_termination_message reads of a long log is enough.
    assert kubelet.termination_message(out[-(BYTES + 1) :]) == message


def test_the_message_is_read_from_the_offset_of_the_run_on(tmp_path: Path) -> None:
    log = tmp_path / "ns_p_c.log"
    earlier = b"earlier run\n" * 500
    log.write_bytes(earlier + b"this run\nfailed\n")
    assert kubelet.read_termination_message(log, len(earlier)) == "this run\nfailed\n"
    assert kubelet.read_termination_message(log, log.stat().st_size) == ""
    log.write_bytes(earlier + b"y" * 3000)
    assert kubelet.read_termination_message(log, len(earlier)) == "y" * BYTES
    missing = kubelet.read_termination_message(tmp_path / "gone.log", 0)
    assert missing.startswith("Error on reading termination message from logs: ")


# --------------------------------------------------------------------------- exited()


def runner(tmp_path: Path, policy: str | None, restart_policy: str = "Never", output=b""):
    """A PodRunner of one container that has run once and written `output` (after what
    an earlier run wrote), not started: exited() is called by the test."""
    container = {"name": "c", "image": "shadowroute.local/sample-app:v1"}
    if policy is not None:
        container["terminationMessagePolicy"] = policy
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
        "spec": {"nodeName": "n", "containers": [container], "restartPolicy": restart_policy},
    }
    r = kubelet.PodRunner(None, pod, "10.244.130.9")
    c = r.containers[0]
    c.argv = ["true"]  # prepared: it can start
    c.log_path = tmp_path / "ns_p_c.log"
    c.log_path.write_bytes(b"an earlier run\n" + output)
    c.log_offset = len(b"an earlier run\n")
    c.started_at = "2024-01-01T00:00:00Z"
    return r, c


@pytest.mark.parametrize(
    "policy, code, message",
    [
        ("FallbackToLogsOnError", 1, "step 2\ntraceback: boom\n"),
        ("FallbackToLogsOnError", -9, "step 2\ntraceback: boom\n"),  # killed by a signal
        ("FallbackToLogsOnError", 0, None),
        ("File", 1, None),
        (None, 1, None),  # File is the default
        ("File", 0, None),
    ],
)
def test_only_fallback_to_logs_on_error_and_a_failed_exit_give_a_message(
    tmp_path: Path, policy: str | None, code: int, message: str | None
) -> None:
    r, c = runner(tmp_path, policy, output=b"step 2\ntraceback: boom\n")
    r.exited(c, code, time.monotonic())
    assert c.terminated is not None and c.terminated["exitCode"] == code
    assert c.terminated.get("message") == message
    [status] = r.status()["containerStatuses"]
    assert status["state"] == {"terminated": c.terminated}
    assert status["lastState"] == {}, "nothing ran before"


def test_a_failed_run_that_printed_nothing_gets_no_message(tmp_path: Path) -> None:
    r, c = runner(tmp_path, "FallbackToLogsOnError")
    r.exited(c, 1, time.monotonic())
    assert "message" not in c.terminated


def test_a_restarting_container_shows_the_message_as_its_last_state(tmp_path: Path) -> None:
    r, c = runner(tmp_path, "FallbackToLogsOnError", "OnFailure", output=b"boom\n")
    r.exited(c, 3, time.monotonic())
    [status] = r.status()["containerStatuses"]
    assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["lastState"]["terminated"]["message"] == "boom\n"
    assert r.pod_phase() == "Running"


# --------------------------------------------------------------------------- real runs


def test_each_run_of_a_real_process_gets_the_tail_of_its_own_output(tmp_path: Path) -> None:
    """Two runs of a process that fails, in one log file: each message is its own run's,
    and after the restart the first run's is the lastState."""
    script = "import sys; print('run', sys.argv[1]); print('boom'); sys.exit(int(sys.argv[2]))"
    fake = SimpleNamespace(log_dir=tmp_path, linked_services=lambda pod: [])
    r, c = runner(tmp_path, "FallbackToLogsOnError", "OnFailure")
    c.log_path.unlink()
    c.image = kubelet.Image(program=(sys.executable, "-c", script))
    r.kubelet = fake

    def run(args: list[str], code: int) -> None:
        c.argv = [*c.image.program, *args]
        r.start_container(c)
        assert c.process is not None
        c.process.wait(30)
        r.step()
        assert c.process is None and c.terminated["exitCode"] == code

    run(["1", "4"], 4)
    assert c.terminated["message"] == "run 1\nboom\n"
    run(["2", "5"], 5)
    assert c.terminated["message"] == "run 2\nboom\n"
    assert (tmp_path / "ns_p_c.log").read_bytes() == b"run 1\nboom\nrun 2\nboom\n"
    run(["3", "0"], 0)
    [status] = r.status()["containerStatuses"]
    assert status["state"]["terminated"]["reason"] == "Completed"
    assert "message" not in status["state"]["terminated"]
    assert status["lastState"]["terminated"]["message"] == "run 2\nboom\n"
