"""The local tritonserver: readiness with a timeout, clear failures, nothing left behind."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import python_model, tiny_classifier
from tritonize.deploy import LocalServer, ServerError, free_port
from tritonize.exporters.export import ExportOptions, export

pytestmark = pytest.mark.server


def _ports() -> dict:
    return {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}


def _processes_mentioning(text: str) -> list:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and str(os.getpid()) != entry.name:
            found.append((entry.name, cmdline))
    return found


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    repository = tmp_path_factory.mktemp("served") / "repo"
    export(ExportOptions(str(tiny_classifier("albert-single")), "text-classification", "clf", repository),
           stream=io.StringIO())
    return repository


def test_stop_leaves_no_process_and_no_shared_memory(repository):
    server = LocalServer(repository, **_ports())
    with server:
        pid = server.pid
        shm = server.shm_files()
        assert shm, "the Python backend should hold shared-memory regions while serving"
        prefix = shm[0].name.split("_")[0] + "_" + shm[0].name.split("_")[1]
        assert _processes_mentioning(prefix), "stubs should be running"
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert not any(p.exists() for p in shm)
    assert _processes_mentioning(prefix) == []


def test_model_that_fails_to_load_is_reported_with_the_log(tmp_path):
    repository = tmp_path / "repo"
    python_model(repository, "broken", (
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        "        raise RuntimeError('deliberately broken model for the test')\n"
    ))
    server = LocalServer(repository, ready_timeout=60, **_ports())
    with pytest.raises(ServerError, match="deliberately broken model") as caught:
        server.start()
    assert "exited with code" in str(caught.value)
    assert not server.is_running()


def test_readiness_wait_has_a_timeout(tmp_path):
    repository = tmp_path / "repo"
    python_model(repository, "slow", (
        "import time\n"
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        "        time.sleep(60)\n"
    ))
    server = LocalServer(repository, ready_timeout=3, **_ports())
    started = time.monotonic()
    with pytest.raises(ServerError, match="not ready after 3s"):
        server.start()
    assert time.monotonic() - started < 40
    assert not server.is_running()


def test_missing_or_empty_repository(tmp_path):
    with pytest.raises(ServerError, match="does not exist"):
        LocalServer(tmp_path / "nothing", **_ports()).start()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ServerError, match="holds no model"):
        LocalServer(tmp_path / "empty", **_ports()).start()


def test_port_in_use_is_named(repository):
    ports = _ports()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports["grpc_port"]))
        busy.listen()
        with pytest.raises(ServerError, match=f"port {ports['grpc_port']} .* already in use"):
            LocalServer(repository, **ports).start()


def test_cli_serve_predict_and_ctrl_c(repository):
    from transformers import pipeline

    ports = _ports()
    serve = subprocess.Popen(
        [sys.executable, "-m", "tritonize.cli", "serve", "--repository", str(repository),
         "--http-port", str(ports["http_port"]), "--grpc-port", str(ports["grpc_port"]),
         "--metrics-port", str(ports["metrics_port"])],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        banner = []
        while time.monotonic() < deadline:
            line = serve.stderr.readline()
            banner.append(line)
            if "tritonserver ready" in line or not line:
                break
        assert "tritonserver ready" in "".join(banner), "".join(banner)
        server_pid = int(banner[-1].split("(pid ")[1].split(")")[0])

        text = "Serving through the command line works."
        predicted = subprocess.run(
            [sys.executable, "-m", "tritonize.cli", "predict", "clf", text,
             "--url", f"127.0.0.1:{ports['grpc_port']}"],
            capture_output=True, text=True, timeout=60,
        )
        assert predicted.returncode == 0, predicted.stderr
        served = json.loads(predicted.stdout)
        expected = pipeline("text-classification", model=str(tiny_classifier("albert-single")))(text, top_k=None)
        assert [r["label"] for r in served] == [r["label"] for r in expected]
        assert served[0]["score"] == pytest.approx(expected[0]["score"], abs=1e-4)
    finally:
        serve.send_signal(signal.SIGINT)
        code = serve.wait(timeout=60)
    assert code == 0
    assert not Path(f"/proc/{server_pid}").exists()


def test_cli_serve_exits_non_zero_when_a_model_fails(tmp_path):
    repository = tmp_path / "repo"
    python_model(repository, "broken", (
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        "        raise ValueError('cannot load: missing vocabulary')\n"
    ))
    ports = _ports()
    result = subprocess.run(
        [sys.executable, "-m", "tritonize.cli", "serve", "--repository", str(repository),
         "--http-port", str(ports["http_port"]), "--grpc-port", str(ports["grpc_port"]),
         "--metrics-port", str(ports["metrics_port"]), "--ready-timeout", "60"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert "cannot load: missing vocabulary" in result.stderr


def test_models_load_at_start_under_explicit_model_control(tmp_path):
    """Explicit model control, every model loaded at start: what lets a dead model be reloaded."""
    command = LocalServer(tmp_path, **_ports()).command(tmp_path / "backends")
    assert "--model-control-mode=explicit" in command and "--load-model=*" in command
    # a mode the caller chose is kept as it is (healing is then off: it needs explicit control)
    polled = LocalServer(tmp_path, extra_args=["--model-control-mode=poll"], **_ports()).command(tmp_path)
    assert [a for a in polled if a.startswith("--model-control-mode")] == ["--model-control-mode=poll"]
    assert "--load-model=*" not in polled


def test_ports_must_differ_and_free_ports_are_never_handed_out_twice(tmp_path):
    """tritonserver asked for HTTP and gRPC on one port exits with its usage text: refused before it starts."""
    with pytest.raises(ValueError, match="ports must differ"):
        LocalServer(tmp_path, http_port=18000, grpc_port=18000, metrics_port=18002)
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
