"""Run a model repository on the tritonserver binary that ``nvidia-pytriton`` ships.

PyTriton's own Python API is not used; its package is only the carrier of a
real tritonserver (2.51), the Python backend and the Python-backend stubs.
What the binary needs to run from a pip install (measured, see DESIGN.md):

* the stub for this interpreter copied next to ``libtriton_python.so``;
* ``LD_LIBRARY_PATH`` with ``nvidia_pytriton.libs`` and the interpreter's lib dir;
* the interpreter's ``bin`` first on ``PATH`` (that is how the stub finds our packages).

:class:`LocalServer` is a context manager: it starts the server, waits for
readiness with a timeout, and on exit stops it and removes the Python
backend's shared-memory regions, whatever state the server was in.

When a Python-backend stub dies (the out-of-memory killer, a crash, a stray
``kill``), Triton keeps answering ``Stub process '...' is not healthy.`` for
that model forever, while its health endpoints stay 200 and its log says
nothing. :class:`StubMonitor` is our own probe for that: it watches the
server's stub processes through ``/proc`` (it sends no request, so Triton's
inference counts stay exact), says which model died and why, and reloads it
through Triton's model-control API. The server is therefore started with
``--model-control-mode=explicit --load-model=*``: every model still loads at
start, and models can be unloaded and loaded again.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from tritonize.deploy.healing import HealEvent, ModelControl, StubMonitor

SHM_DIR = Path("/dev/shm")
LOGGER = logging.getLogger("tritonize.deploy")


class ServerError(RuntimeError):
    """tritonserver could not be found, started, or made ready."""


@dataclass
class TritonInstall:
    """Where the pip-installed tritonserver and its Python backend live."""

    root: Path

    @classmethod
    def find(cls) -> "TritonInstall":
        try:
            import pytriton  # noqa: F401  (only to locate the package)
        except ImportError as exc:  # pragma: no cover - depends on extras
            raise ServerError(
                "tritonserver is not installed: install the serve extra, "
                "`pip install 'tritonize[serve]'` (it brings nvidia-pytriton)"
            ) from exc
        root = Path(pytriton.__file__).parent / "tritonserver"
        binary = root / "bin" / "tritonserver"
        if not binary.is_file():
            raise ServerError(f"nvidia-pytriton is installed but {binary} is missing; reinstall it")
        return cls(root)

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def libs(self) -> Path:
        return self.root.parent.parent / "nvidia_pytriton.libs"

    def stub(self) -> Path:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = self.root / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise ServerError(f"no Python-backend stub for Python {version} in {stub.parent.parent}")
        return stub

    def make_backend_dir(self, into: Path) -> Path:
        """A backend directory whose python/ holds the backend and this interpreter's stub."""
        python_dir = into / "python"
        python_dir.mkdir(parents=True, exist_ok=True)
        src = self.root / "backends" / "python"
        for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
            shutil.copy2(src / name, python_dir / name)
        shutil.copy2(self.stub(), python_dir / "triton_python_backend_stub")
        return into


# the platforms of Triton's native backends, which the pip-installed server does not have
NATIVE_PLATFORMS = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt"}


def has_gpu() -> bool:
    """Whether this host has an NVIDIA GPU that Triton could use (its device nodes exist)."""
    return Path("/dev/nvidiactl").exists() and any(Path("/dev").glob("nvidia[0-9]*"))


def check_runs_here(model_dirs: Sequence[Path]) -> None:
    """Refuse, before starting, a repository that this server cannot load: with a clear reason per model.

    Triton would refuse too, but with a start that fails "to load all
    models" and a reason deep in its log: a ``KIND_GPU`` model on a host
    without a GPU ("invalid or unsupported gpu id"), or a native backend
    that the pip-installed server does not ship.
    """
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    gpu_models, native = [], []
    for model_dir in model_dirs:
        try:
            config = text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())
        except (text_format.ParseError, OSError):
            continue  # Triton says what is wrong with it
        if any(group.kind == mc.ModelInstanceGroup.KIND_GPU for group in config.instance_group):
            gpu_models.append(model_dir.name)
        if config.platform in NATIVE_PLATFORMS or config.backend in NATIVE_PLATFORMS.values():
            native.append(f"{model_dir.name} ({config.platform or config.backend})")
    problems = []
    if native:
        problems.append(
            f"{', '.join(native)} run in a native Triton backend that the pip-installed tritonserver does not have: "
            "serve this repository with the NGC tritonserver image (deploy/docker), or export with "
            "--backend python-onnxruntime"
        )
    if gpu_models and not has_gpu():
        problems.append(
            f"{', '.join(gpu_models)} are exported for a GPU (KIND_GPU instance groups, --device cuda) and this host "
            "has no NVIDIA GPU (no /dev/nvidia*): re-export with --device cpu, or serve them on a GPU host"
        )
    if problems:
        raise ServerError("this server cannot load the repository: " + "; ".join(problems))


_GIVEN_PORTS: set = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (for tests and ad-hoc servers), never one this process was given
    before: the kernel may hand the same ephemeral port to two binds in a row, and a server asked to put
    HTTP and gRPC on one port exits with its usage text."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


@dataclass
class LocalServer:
    """A tritonserver process serving ``repository``.

    >>> with LocalServer("model_repository") as server:
    ...     print(server.grpc_url)

    With ``heal=True`` (the default) a :class:`StubMonitor` watches the Python
    backend's stubs every ``probe_interval`` seconds and reloads a model whose
    stub died; each such event is appended to ``heal_events`` and its lines go
    to the ``tritonize.deploy`` logger and to ``on_message``.
    """

    repository: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    ready_timeout: float = 120.0
    log_verbose: int = 0
    extra_args: Sequence[str] = ()
    log_path: Optional[Path] = None
    heal: bool = True
    probe_interval: float = 1.0
    max_heals: int = 3  # deaths of one model within 5 minutes that are healed; after that it stays down
    on_message: Optional[Callable[[str], None]] = None
    # Threads of the steps, for every model served. None keeps what each model's export says
    # (ORT: the cores divided among the encoder instances; spinning on).
    threads: Optional[int] = None  # ONNX Runtime intra-op threads per encoder instance
    allow_spinning: Optional[bool] = None
    # The Rust tokenizer's own thread pool in the tokenizer steps: off by default, since the
    # encoder's threads and the other steps share the cores (benchmarks/threads.py measures both).
    tokenizers_parallelism: bool = False

    heal_events: List[HealEvent] = field(default_factory=list, init=False)
    _monitor: Optional[StubMonitor] = field(default=None, init=False, repr=False)
    _process: Optional["subprocess.Popen[bytes]"] = field(default=None, init=False, repr=False)
    _workdir: Optional[Path] = field(default=None, init=False, repr=False)
    _shm_prefix: str = field(default="", init=False, repr=False)
    _log_file: Optional[object] = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.repository = Path(self.repository).resolve()
        if self.probe_interval <= 0:
            raise ValueError(f"probe_interval must be > 0 seconds, got {self.probe_interval}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        ports = (self.http_port, self.grpc_port, self.metrics_port)
        if len(set(ports)) != len(ports):
            raise ValueError(f"the HTTP, gRPC and metrics ports must differ, got {ports}")

    # -- addresses ---------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self._client_host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def is_ready(self) -> bool:
        """Whether ``/v2/health/ready`` answers 200 now (every model loaded and ready)."""
        return self.is_running() and self.model_control().server_ready()

    def model_control(self) -> ModelControl:
        """Triton's model-repository API on this server's HTTP port."""
        return ModelControl(self.http_url, headers=self._http_headers())

    def _http_headers(self) -> Dict[str, str]:
        # --http-restricted-api=model-repository,health:KEY=VALUE: our calls must carry KEY: VALUE
        headers = {}
        for arg in self.extra_args:
            if arg.startswith("--http-restricted-api="):
                categories, _, key_value = arg.split("=", 1)[1].partition(":")
                key, _, value = key_value.partition("=")
                if {"model-repository", "health"} & set(categories.split(",")) and key:
                    headers[key] = value
        return headers

    @property
    def _model_control_mode(self) -> str:
        for arg in self.extra_args:
            if arg.startswith("--model-control-mode="):
                return arg.split("=", 1)[1]
        return "explicit"

    # -- lifecycle ---------------------------------------------------------
    def command(self, backend_dir: Path) -> List[str]:
        install = TritonInstall.find()
        return [
            str(install.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={backend_dir}",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--disable-auto-complete-config",
            "--pinned-memory-pool-byte-size=0",
            "--exit-timeout-secs=5",
            "--strict-readiness=true",
            f"--log-verbose={self.log_verbose}",
            # explicit control, every model loaded at start: healing can unload and load a model
            *(("--model-control-mode=explicit", "--load-model=*")
              if not any(a.startswith("--model-control-mode") for a in self.extra_args) else ()),
            *self.extra_args,
        ]

    def environment(self) -> dict:
        install = TritonInstall.find()
        env = dict(os.environ)
        libs = [str(install.libs), str(sysconfig.get_config_var("LIBDIR") or "")]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = ":".join(p for p in libs if p)
        # The stub runs `python` semantics from PATH: this interpreter's bin comes first.
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        env["TOKENIZERS_PARALLELISM"] = "true" if self.tokenizers_parallelism else "false"
        for name, value in (("TRITONIZE_INTRA_OP_THREADS", self.threads),
                            ("TRITONIZE_ALLOW_SPINNING", self.allow_spinning)):
            env.pop(name, None)
            if value is not None:
                env[name] = str(int(value))
        return env

    def start(self) -> "LocalServer":
        if self._process is not None:
            raise ServerError("server already started")
        if not self.repository.is_dir():
            raise ServerError(
                f"model repository {self.repository} does not exist; run `tritonize export` first"
            )
        models = [p for p in self.repository.iterdir() if (p / "config.pbtxt").is_file()]
        if not models:
            raise ServerError(
                f"model repository {self.repository} holds no model (no */config.pbtxt); "
                "run `tritonize export CHECKPOINT --task ... --name NAME` first"
            )
        check_runs_here(models)
        for port in (self.http_port, self.grpc_port, self.metrics_port):
            if port_in_use(self.host, port):
                raise ServerError(
                    f"port {port} on {self.host} is already in use; pick other ports "
                    "(--http-port/--grpc-port/--metrics-port) or stop the other server"
                )
        install = TritonInstall.find()
        self._workdir = Path(tempfile.mkdtemp(prefix="tritonize-server-"))
        self._shm_prefix = f"tritonize_{uuid.uuid4().hex[:12]}_"
        backend_dir = install.make_backend_dir(self._workdir / "backends")
        log_path = self.log_path or (self._workdir / "tritonserver.log")
        self.log_path = Path(log_path)
        self._log_file = open(self.log_path, "wb")
        self._process = subprocess.Popen(
            self.command(backend_dir),
            env=self.environment(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self._workdir,
            start_new_session=True,
        )
        try:
            self.wait_ready()
            if self.heal:
                self._start_monitor()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_monitor(self) -> None:
        if self._model_control_mode != "explicit":
            LOGGER.warning(
                "tritonize: --model-control-mode=%s was given: a model whose stub dies cannot be reloaded, "
                "so healing is off (use explicit, or heal=False to silence this)", self._model_control_mode,
            )
            return
        assert self._process is not None
        self._monitor = StubMonitor(
            self._process.pid, self.model_control(),
            probe_interval=self.probe_interval, reload_timeout=self.ready_timeout, events=self.heal_events,
            max_heals=self.max_heals,
            on_message=self.on_message, server_alive=self.is_running,
            log_size=self._log_size, log_excerpt=lambda since: self.log_excerpt(since=since),
        ).start()

    def _log_size(self) -> int:
        try:
            return Path(self.log_path).stat().st_size if self.log_path is not None else 0
        except OSError:
            return 0

    def wait_ready(self) -> None:
        url = f"http://{self._client_host}:{self.http_port}/v2/health/ready"
        deadline = time.monotonic() + self.ready_timeout
        assert self._process is not None
        while True:
            code = self._process.poll()
            if code is not None:
                raise ServerError(
                    f"tritonserver exited with code {code} before it was ready "
                    f"(repository {self.repository}):\n{self.log_excerpt()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ServerError(
                    f"tritonserver was not ready after {self.ready_timeout:.0f}s "
                    f"(repository {self.repository}); a model may be stuck loading:\n"
                    f"{self.log_excerpt()}"
                )
            time.sleep(0.1)

    def log_text(self, since: int = 0) -> str:
        """The server's log, from byte offset ``since``."""
        if self.log_path is None or not Path(self.log_path).exists():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace")

    def log_excerpt(self, limit: int = 40, since: int = 0) -> str:
        """The log lines that explain a failure: errors first, else the tail."""
        lines = self.log_text(since).splitlines()
        relevant = [
            line
            for line in lines
            if line.startswith("E")
            or "error" in line.lower()
            or "UNAVAILABLE" in line
            or "failed" in line.lower()
            or "Traceback" in line
        ]
        chosen = relevant if relevant else lines
        return "\n".join(chosen[-limit:]) or "(the server wrote no log)"

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server and remove everything it left behind. Safe to call twice."""
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.stop()  # first: the stubs that stop with the server are no deaths to heal
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # SIGINT to the server alone: it unloads the models and stops its stubs itself.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(timeout=10)
        if process is not None:
            # Stubs are in the server's process group; make sure none outlive it.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None
        if self._shm_prefix and SHM_DIR.is_dir():
            for leftover in SHM_DIR.glob(f"{self._shm_prefix}*"):
                try:
                    leftover.unlink()
                except OSError:
                    pass
        if self._workdir is not None:
            if self.log_path is not None and Path(self.log_path).parent == self._workdir:
                # keep the log readable after stop: move it next to the temp dir
                kept = Path(tempfile.gettempdir()) / f"{self._workdir.name}.log"
                try:
                    shutil.move(str(self.log_path), kept)
                    self.log_path = kept
                except OSError:
                    pass
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def shm_files(self) -> List[Path]:
        """Shared-memory regions this server's Python backend holds right now."""
        if not self._shm_prefix or not SHM_DIR.is_dir():
            return []
        return sorted(SHM_DIR.glob(f"{self._shm_prefix}*"))

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
