"""A server that heals and says so: a Python-backend stub that dies is noticed, named and reloaded.

Everything runs against a real tritonserver; stubs are killed with SIGKILL,
which is what the kernel's out-of-memory killer sends. The oracles are the
kernel (/proc, wait statuses), Triton's own endpoints (readiness, the
repository index, inference statistics) and the answers the model gave
before it was killed.
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import List, Optional

import pytest

from conftest import python_model, tiny_classifier
from tritonize.client import Client, RetryPolicy, TritonizeError
from tritonize.deploy import LocalServer, free_port
from tritonize.deploy.healing import _read_stat, describe_exit
from tritonize.exporters.export import ExportOptions, export

server = pytest.mark.server  # the tests that start a real tritonserver

TEXTS = ["The refund arrived quickly, thank you.", "Nobody answered my ticket for a week."]
PROBE = 0.2  # seconds: the tests probe faster than the default 1.0


def _ports() -> dict:
    return {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}


def _stub_pid(server_pid: int, model: str) -> int:
    """The pid of ``model``'s stub, found in /proc independently of the monitor: a child of the server
    whose command line runs REPOSITORY/MODEL/1/model.py."""
    needle = f"/{model}/1/model.py".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == server_pid and b"triton_python_backend_stub" in cmdline and needle in cmdline:
            return int(entry.name)
    raise AssertionError(f"no live stub of {model!r} among the children of tritonserver {server_pid}")


def _labels(results) -> list:
    return [[(r.label, round(r.score, 4)) for r in per_text] for per_text in results]


def _inference_counts(server: LocalServer) -> dict:
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/stats", timeout=5) as response:
        stats = json.loads(response.read())
    return {m["name"]: m["inference_count"] for m in stats["model_stats"]}


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    repository = tmp_path_factory.mktemp("healing") / "repo"
    export(ExportOptions(str(tiny_classifier("bert-single")), "text-classification", "clf", repository),
           stream=io.StringIO())
    return repository


@pytest.fixture(scope="module")
def healing_server(repository):
    messages: List[str] = []
    server = LocalServer(repository, probe_interval=PROBE, on_message=messages.append, **_ports())
    server.messages = messages  # type: ignore[attr-defined]  (what the callback received)
    with server:
        yield server


# -- the probe's view of dead processes, checked against the kernel ------------------------------


def _zombie_status(command: list) -> Optional[int]:
    """Run ``command``, let it end unreaped, and read its wait status from /proc as the monitor does."""
    child = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stat = _read_stat(child.pid)
            if stat is not None and stat[0] == "Z":
                return stat[2]
            time.sleep(0.01)
        raise AssertionError(f"{command} did not end")
    finally:
        child.wait()


def test_causes_are_read_from_the_kernel():
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.1)
        os.kill(sleeper.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (_read_stat(sleeper.pid) or ("?",))[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        killed = _read_stat(sleeper.pid)[2]
    finally:
        sleeper.wait()
    assert describe_exit(killed).startswith("killed by signal 9 (SIGKILL")
    assert "out-of-memory" in describe_exit(killed)
    assert describe_exit(_zombie_status(["sh", "-c", "exit 3"])) == "exited with code 3"
    assert describe_exit(_zombie_status(["sh", "-c", "kill -SEGV $$"])).startswith("killed by signal 11 (SIGSEGV")
    assert "unknown" in describe_exit(None)


def test_serve_flags():
    from tritonize.cli import _build_parser

    parser = _build_parser()
    args = parser.parse_args(["serve"])
    assert (args.no_heal, args.probe_interval) == (False, 1.0)
    args = parser.parse_args(["serve", "--no-heal", "--probe-interval", "0.25"])
    assert (args.no_heal, args.probe_interval) == (True, 0.25)
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--probe-interval", "0"])
    with pytest.raises(ValueError, match="probe_interval"):
        LocalServer(".", probe_interval=0)


# -- healing a real server ------------------------------------------------------------------------


@server
def test_the_probe_sends_no_inference(healing_server):
    """The monitor only reads /proc: Triton's inference counts stay exact (the load tests compare them)."""
    with Client(healing_server.grpc_url) as client:
        client.classify("clf", TEXTS)
    # Triton books a request's statistics a moment after its answer: wait until every step has it
    deadline = time.monotonic() + 10
    while (len(set((before := _inference_counts(healing_server)).values())) > 1 or 0 in before.values()) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(PROBE * 6)
    assert _inference_counts(healing_server) == before
    assert set(healing_server._monitor.stubs) >= {"clf_pipeline_0_0"}  # the fused layout: one stub


@server
def test_killed_encoder_stub_is_healed_under_load(healing_server, caplog):
    caplog.set_level(logging.INFO, logger="tritonize.deploy")
    server = healing_server
    events_before = len(server.heal_events)
    with Client(server.grpc_url) as client:
        expected = _labels(client.classify("clf", TEXTS, top_k=None))

    outcomes: "queue.Queue[tuple]" = queue.Queue()
    stop = threading.Event()

    def load(worker: int) -> None:
        # workers 0-3 never retry (every failure is seen); 4-5 use the SDK's default policy
        policy = RetryPolicy(attempts=1) if worker < 4 else RetryPolicy()
        with Client(server.grpc_url, retry=policy, timeout=10) as client:
            for _ in range(2000):  # bounded: a few hundred calls at most in practice
                if stop.is_set():
                    return
                started = time.monotonic()
                try:
                    got = _labels(client.classify("clf", TEXTS, top_k=None))
                    outcomes.put(("ok", got == expected, started, time.monotonic(), worker))
                    if healed_at and started > healed_at[0]:
                        answered_after_heal.set()
                except TritonizeError as exc:
                    outcomes.put(("error", type(exc).__name__, started, time.monotonic(), worker))
                except Exception as exc:  # anything else is a bug: counted, and the test fails
                    outcomes.put(("unexpected", repr(exc), started, time.monotonic(), worker))

    readiness: List[tuple] = []
    healed_at: List[float] = []
    answered_after_heal = threading.Event()

    def watch_readiness() -> None:
        while not stop.is_set():
            readiness.append((time.monotonic(), server.is_ready()))
            time.sleep(0.01)

    workers = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(6)]
    watcher = threading.Thread(target=watch_readiness, daemon=True)
    for thread in (*workers, watcher):
        thread.start()
    time.sleep(0.5)

    pid = _stub_pid(server.pid, "clf_pipeline")
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    # one call with the SDK's defaults, sent while the model is dead: it must ride through the heal (the load's
    # own retrying calls may all have been inside the stub, lost, and ended at their deadline)
    rider: List[tuple] = []

    def ride() -> None:
        with Client(server.grpc_url, timeout=15) as client:
            started = time.monotonic()
            try:
                rider.append((started, _labels(client.classify("clf", TEXTS, top_k=None)) == expected))
            except TritonizeError as exc:
                rider.append((started, repr(exc)))

    rider_thread = threading.Thread(target=ride, daemon=True)
    rider_thread.start()

    # the model answers again, correctly, within a few seconds of the kill
    answered_at = None
    with Client(server.grpc_url, retry=RetryPolicy(attempts=1), timeout=5) as probe_client:
        while time.monotonic() - killed_at < 20:
            try:
                if len(server.heal_events) > events_before and \
                        _labels(probe_client.classify("clf", TEXTS, top_k=None)) == expected:
                    answered_at = time.monotonic()
                    break
            except TritonizeError:
                pass
            time.sleep(0.05)
    assert answered_at is not None, f"not answering 20s after the kill; events: {server.heal_events}"
    # the load goes on against the healed model. Calls that were inside the stub when it died are lost
    # by Triton and end at their deadline (10 s): with the fused layout that may be every worker's call.
    healed_at.append(answered_at)
    answered_after_heal.wait(timeout=15)
    time.sleep(0.5)
    stop.set()
    for thread in (*workers, watcher):
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in workers), "a load thread hung"

    recovery = answered_at - killed_at
    assert recovery < 10, f"took {recovery:.1f}s to answer again"

    # the event names the model, the stub and the signal
    event = server.heal_events[events_before]
    assert (event.model, event.instance, event.pid, event.ok) == ("clf_pipeline", "clf_pipeline_0_0", pid, True)
    assert "signal 9" in event.cause and "SIGKILL" in event.cause
    assert event.last_rss_bytes and event.last_rss_bytes > 1 << 20
    assert 0 < event.seconds < 10 and event.unavailable_seconds is not None
    assert "clf" in event.reloaded and "clf_pipeline" in event.reloaded
    assert len(server.heal_events) == events_before + 1, "one death, one heal"

    # one line said so, in the log and through the callback, then one said it was back
    died = [r.getMessage() for r in caplog.records if "died" in r.getMessage()]
    assert len(died) == 1, died
    assert f"model 'clf_pipeline' (instance clf_pipeline_0_0, stub pid {pid}) died: killed by signal 9" in died[0]
    assert "last RSS" in died[0] and died[0].endswith("reloading it")
    assert any("model 'clf_pipeline' reloaded and ready in" in m for m in server.messages)
    assert died[0] in server.messages

    # the server said it was not ready while the model reloaded, and ready again after
    during = [ready for at, ready in readiness if killed_at <= at <= answered_at]
    assert False in during, "readiness never went false during the reload"
    assert readiness[-1][1] is True

    # every call was answered: correctly, or with an SDK error; none lost, none hung
    results = []
    while not outcomes.empty():
        results.append(outcomes.get())
    ok = [r for r in results if r[0] == "ok"]
    errors = [r for r in results if r[0] == "error"]
    unexpected = [r for r in results if r[0] == "unexpected"]
    assert len(ok) + len(errors) == len(results) and not unexpected, unexpected[:3]
    assert all(r[1] for r in ok), "a successful call returned a wrong result"
    assert any(r[2] > answered_at for r in ok), "no load call succeeded after the heal"
    assert all(r[3] - r[2] < 15 for r in results), "a call outlived its deadline"
    assert [r for r in errors if r[4] < 4], "the kill should have failed some calls that do not retry"
    # With the SDK's default policy, a call that starts after the kill rides through the heal. One that was
    # inside the stub when it died is lost by Triton (the old instance never answers it): the SDK ends it at its
    # deadline with DeadlineExceeded, a clear error, and nothing else.
    retried_errors = [r for r in errors if r[4] >= 4]
    assert not [r for r in retried_errors if r[2] > killed_at], "a retried call that started after the kill failed"
    assert all(r[1] == "DeadlineExceeded" for r in retried_errors), retried_errors
    rider_thread.join(timeout=20)
    assert rider and rider[0][1] is True, f"a call sent while the model was dead failed: {rider}"
    assert rider[0][0] < answered_at, "the riding call started after the model was back"
    assert _stub_pid(server.pid, "clf_pipeline") != pid


@server
def test_a_model_someone_else_unloads_is_left_alone(healing_server):
    server = healing_server
    control = server.model_control()
    events_before = len(server.heal_events)
    control.unload("clf_pipeline")
    deadline = time.monotonic() + 30
    while control.states()["clf_pipeline"] != "UNAVAILABLE" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(PROBE * 5)
    assert control.states()["clf_pipeline"] == "UNAVAILABLE", "the monitor must not load what was unloaded"
    control.load("clf_pipeline", timeout=60)  # a reload by someone else: new stubs, no death
    time.sleep(PROBE * 5)
    assert len(server.heal_events) == events_before
    with Client(server.grpc_url) as client:
        assert len(client.classify("clf", TEXTS)) == 2


ECHO = (
    "import triton_python_backend_utils as pb_utils\n"
    "class TritonPythonModel:\n"
    "    def execute(self, requests):\n"
    "        return [pb_utils.InferenceResponse([pb_utils.Tensor('Y', pb_utils.get_input_tensor_by_name(r, 'X')"
    ".as_numpy())]) for r in requests]\n"
)


@server
def test_a_reload_that_fails_is_reported_with_the_log(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tritonize.deploy")
    repository = tmp_path / "repo"
    python_model(repository, "echo", ECHO)
    with LocalServer(repository, probe_interval=PROBE, ready_timeout=60, **_ports()) as server:
        pid = _stub_pid(server.pid, "echo")
        # the model cannot load any more (say its weights were deleted), then its stub dies
        (repository / "echo" / "1" / "model.py").write_text(
            "class TritonPythonModel:\n"
            "    def initialize(self, args):\n"
            "        raise RuntimeError('weights are gone for the test')\n"
        )
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not server.heal_events and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.heal_events, "the death was not noticed"
        event = server.heal_events[0]
        assert (event.model, event.pid, event.ok) == ("echo", pid, False)
        assert "weights are gone for the test" in event.error
        failed = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(failed) == 1
        assert "model 'echo' could not be reloaded" in failed[0].getMessage()
        assert "weights are gone for the test" in failed[0].getMessage()  # the server log's excerpt
        assert not server.is_ready()
        time.sleep(PROBE * 5)
        assert len(server.heal_events) == 1, "a model that failed to load is not retried in a loop"


@server
def test_without_healing_a_dead_stub_stays_dead(tmp_path):
    """The problem healing solves, as Triton 2.51 has it: errors forever, health still 200."""
    repository = tmp_path / "repo"
    python_model(repository, "echo", ECHO)
    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    with LocalServer(repository, heal=False, ready_timeout=60, **_ports()) as server:
        assert server._monitor is None
        client = grpcclient.InferenceServerClient(server.grpc_url)
        tensor = grpcclient.InferInput("X", [1, 1], "FP32")
        tensor.set_data_from_numpy(np.array([[2.0]], np.float32))
        assert client.infer("echo", [tensor]).as_numpy("Y").tolist() == [[2.0]]
        os.kill(_stub_pid(server.pid, "echo"), signal.SIGKILL)
        time.sleep(PROBE * 5)
        for _ in range(2):
            with pytest.raises(InferenceServerException, match="not healthy"):
                client.infer("echo", [tensor], client_timeout=20)
        assert server.is_ready(), "Triton still says it is ready"
        assert server.heal_events == []
        client.close()


# -- the command line -----------------------------------------------------------------------------


@server
def test_cli_serve_heals_and_says_so_on_stderr(repository):
    ports = _ports()
    serve = subprocess.Popen(
        [sys.executable, "-m", "tritonize.cli", "serve", "--repository", str(repository),
         "--http-port", str(ports["http_port"]), "--grpc-port", str(ports["grpc_port"]),
         "--metrics-port", str(ports["metrics_port"]), "--probe-interval", str(PROBE)],
        stderr=subprocess.PIPE, text=True,
    )
    lines: "queue.Queue[str]" = queue.Queue()

    def read_stderr() -> None:
        for line in serve.stderr:
            lines.put(line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    seen: List[str] = []

    def wait_for(text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if serve.poll() is not None:
                    break
                continue
            seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} not on stderr after {timeout}s:\n{''.join(seen)}")

    def predict() -> list:
        done = subprocess.run(
            [sys.executable, "-m", "tritonize.cli", "predict", "clf", TEXTS[0],
             "--url", f"127.0.0.1:{ports['grpc_port']}"],
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    try:
        banner = wait_for("tritonserver ready", 120)
        server_pid = int(banner.split("(pid ")[1].split(")")[0])
        wait_for("healing: a model whose stub dies is reloaded", 10)
        before = predict()
        pid = _stub_pid(server_pid, "clf_pipeline")
        os.kill(pid, signal.SIGKILL)
        died = wait_for("died", 20)
        assert died.startswith(f"tritonize: model 'clf_pipeline' (instance clf_pipeline_0_0, stub pid {pid}) died: "
                               "killed by signal 9")
        wait_for("tritonize: model 'clf_pipeline' reloaded and ready in", 30)
        after = predict()
        assert [r["label"] for r in after] == [r["label"] for r in before]
        assert after[0]["score"] == pytest.approx(before[0]["score"], abs=1e-5)
    finally:
        serve.send_signal(signal.SIGINT)
        code = serve.wait(timeout=60)
    assert code == 0
    assert not Path(f"/proc/{server_pid}").exists()


@server
def test_a_model_that_keeps_dying_is_not_reloaded_forever(repository):
    """After max_heals deaths within the window, the monitor says so once and leaves the model down."""
    messages: List[str] = []
    with LocalServer(repository, probe_interval=PROBE, max_heals=1, on_message=messages.append, **_ports()) as server:
        assert server.pid is not None
        os.kill(_stub_pid(server.pid, "clf_pipeline"), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (server.heal_events and server.heal_events[-1].ok):
            time.sleep(PROBE)
        assert len(server.heal_events) == 1 and server.heal_events[0].ok
        time.sleep(PROBE * 3)
        os.kill(_stub_pid(server.pid, "clf_pipeline"), signal.SIGKILL)  # the healed one dies too
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("not reloading it again" in m for m in messages):
            time.sleep(PROBE)
        time.sleep(PROBE * 5)
        assert len(server.heal_events) == 1, "a second death within the window must not be healed"
        given_up = [m for m in messages if "not reloading it again" in m]
        assert len(given_up) == 1 and "'clf_pipeline' died 2 times" in given_up[0], messages
