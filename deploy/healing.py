"""Watching the Python-backend stubs of a local tritonserver, and healing a dead one.

When a stub process dies (the out-of-memory killer, a crash), Triton answers
``Stub process '...' is not healthy.`` to every request of that model while
its health endpoints stay green and its log says nothing. :class:`StubMonitor`
reads ``/proc`` every ``probe_interval`` seconds (no inference is sent, so
Triton's statistics stay exact), and when a stub of a READY model is gone or
a zombie it logs one line naming the model and the cause it can see, unloads
the model through Triton's model-control API (the ensemble that uses it is
then not ready) and loads it again.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

STUB_BINARY = "triton_python_backend_stub"
LOGGER = logging.getLogger("tritonize.deploy")

# -- watching the Python-backend stubs -------------------------------------------


@dataclass(frozen=True)
class StubProcess:
    """One Python-backend stub, a child process of tritonserver, as ``/proc`` shows it."""

    pid: int
    model: str  # the Triton model it serves: the folder above the version folder of its model.py
    instance: str  # Triton's instance name, e.g. ``clf_encoder_0_0``
    rss_bytes: Optional[int] = None

    @classmethod
    def from_argv(cls, pid: int, argv: Sequence[str], rss_bytes: Optional[int] = None) -> Optional["StubProcess"]:
        """Parse a stub's command line; None when ``argv`` is not a stub's.

        Measured on tritonserver 2.51: ``[.../triton_python_backend_stub, REPO/MODEL/VERSION/model.py,
        shm_region, shm_default_size, shm_growth, parent_pid, backend_dir, health_shm_key, INSTANCE, ...]``.
        """
        if len(argv) < 9 or Path(argv[0]).name != STUB_BINARY:
            return None
        model = Path(argv[1]).parent.parent.name
        if not model or not argv[8]:
            return None
        return cls(pid=pid, model=model, instance=argv[8], rss_bytes=rss_bytes)


@dataclass(frozen=True)
class ChildProcess:
    """What one probe reads about a child of the server: its state, and for a zombie its wait status."""

    pid: int
    state: str  # the state letter of /proc/PID/stat: R, S, D, Z ...
    wait_status: Optional[int]  # field 52 of /proc/PID/stat (raw wait status), meaningful for a zombie
    stub: Optional[StubProcess]  # None for a zombie (its cmdline is empty) or a process that is no stub

    @property
    def zombie(self) -> bool:
        return self.state in ("Z", "X")


def _read_stat(pid: int) -> Optional[tuple]:
    """``(state, ppid, wait_status)`` from /proc/PID/stat, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read().decode(errors="replace")
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may itself hold spaces or ')'
    fields = text[text.rfind(")") + 2:].split()
    if len(fields) < 2:
        return None
    wait_status = int(fields[49]) if len(fields) >= 50 and fields[49].lstrip("-").isdigit() else None
    return fields[0], int(fields[1]), wait_status


def _rss_bytes(pid: int) -> Optional[int]:
    """Resident set size (VmRSS) of ``pid``, from /proc/PID/statm."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def server_children(server_pid: int) -> Dict[int, ChildProcess]:
    """Every child process of ``server_pid``, stubs and zombies included. Reads /proc only."""
    children: Dict[int, ChildProcess] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return children
    for name in entries:
        if not name.isdigit():
            continue
        pid = int(name)
        stat = _read_stat(pid)
        if stat is None or stat[1] != server_pid:
            continue
        state, _, wait_status = stat
        stub = None
        if state not in ("Z", "X"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    argv = [part.decode(errors="replace") for part in cmdline.read().split(b"\0")]
            except OSError:
                continue  # it exited between the two reads: the next probe sees what became of it
            stub = StubProcess.from_argv(pid, argv, _rss_bytes(pid))
        children[pid] = ChildProcess(pid, state, wait_status, stub)
    return children


def describe_exit(wait_status: Optional[int]) -> str:
    """Why a process ended, from its raw wait status (field 52 of /proc/PID/stat)."""
    if wait_status is None:
        return "exited (its exit status was already collected, so the cause is unknown)"
    if os.WIFSIGNALED(wait_status):
        number = os.WTERMSIG(wait_status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        core = ", core dumped" if os.WCOREDUMP(wait_status) else ""
        if number == signal.SIGKILL:
            return f"killed by signal {number} (SIGKILL: the kernel's out-of-memory killer sends this{core})"
        return f"killed by signal {number} ({name}{core})"
    if os.WIFEXITED(wait_status):
        return f"exited with code {os.WEXITSTATUS(wait_status)}"
    return f"ended with wait status {wait_status}"


def format_bytes(size: Optional[int]) -> str:
    if size is None:
        return "unknown"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


@dataclass(frozen=True)
class DeadStub:
    """A stub the monitor had seen alive and now finds dead."""

    model: str
    instance: str
    pid: int
    cause: str
    last_rss_bytes: Optional[int]


@dataclass
class HealEvent:
    """One death of a model's stub, and what its reload did."""

    model: str
    instance: str  # the first dead instance; ``dead`` lists them all
    pid: int
    cause: str
    last_rss_bytes: Optional[int]
    detected_at: float  # time.time() when the probe saw the death
    seconds: float  # from the probe seeing the death to the model (and its ensembles) being ready again
    ok: bool
    unavailable_seconds: Optional[float] = None  # how long the model was unloaded (not ready) while it reloaded
    reloaded: List[str] = field(default_factory=list)  # every model the reload brought back (ensembles too)
    error: str = ""  # why the reload failed, when ok is False
    old_unloaded: Optional[bool] = None  # whether Triton finished unloading the dead instance before the load
    dead: List[DeadStub] = field(default_factory=list)


class ModelControlError(RuntimeError):
    """Triton's model-control API refused or failed a request."""


class ModelControl:
    """The few calls of Triton's HTTP model-repository API that healing needs."""

    def __init__(self, http_url: str, headers: Optional[Dict[str, str]] = None, timeout: float = 10.0) -> None:
        self.base = f"http://{http_url}"
        self.headers = dict(headers or {})
        self.timeout = timeout

    def _post(self, path: str, timeout: Optional[float] = None) -> bytes:
        request = urllib.request.Request(
            f"{self.base}{path}", data=b"{}", method="POST",
            headers={"Content-Type": "application/json", **self.headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            try:
                body = json.loads(body).get("error", body)
            except (ValueError, AttributeError):
                pass
            raise ModelControlError(f"POST {path} answered HTTP {exc.code}: {body}") from None
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            raise ModelControlError(f"POST {path} failed: {exc}") from None

    def states(self) -> Dict[str, str]:
        """``{model: state}`` from the repository index; READY when any version is READY."""
        states: Dict[str, str] = {}
        for entry in json.loads(self._post("/v2/repository/index") or b"[]"):
            name, state = entry.get("name", ""), entry.get("state", "UNAVAILABLE") or "UNAVAILABLE"
            if states.get(name) != "READY":
                states[name] = state
        return states

    def unload(self, model: str) -> None:
        self._post(f"/v2/repository/models/{model}/unload")

    def load(self, model: str, timeout: float) -> None:
        self._post(f"/v2/repository/models/{model}/load", timeout=timeout)

    def server_ready(self) -> bool:
        request = urllib.request.Request(f"{self.base}/v2/health/ready", headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False


class StubMonitor:
    """Notices a dead Python-backend stub, says so, and reloads its model.

    Every ``probe_interval`` seconds, in its own thread, it lists the server's
    children in ``/proc`` and remembers each stub instance's pid and RSS. When
    an instance it has seen is a zombie or gone (and no new stub serves that
    instance) while its model is READY in the repository index, it logs one
    line naming the model and the cause, unloads the model (the ensembles that
    use it are unloaded with it, and the server is not ready meanwhile), waits
    up to ``unload_grace`` seconds for the unload, loads it again (Triton loads
    the ensembles back, and loads beside an old instance that never finishes
    unloading, which 2.51 does once a request met the dead stub) and logs how
    long that took. A model that is not READY is left alone: someone else is
    unloading or reloading it. Deaths before :meth:`start` are not seen.
    """

    def __init__(
        self,
        server_pid: int,
        control: ModelControl,
        *,
        probe_interval: float = 1.0,
        reload_timeout: float = 120.0,
        unload_grace: float = 0.5,
        max_heals: int = 3,
        heal_window: float = 300.0,
        events: Optional[List[HealEvent]] = None,
        on_message: Optional[Callable[[str], None]] = None,
        server_alive: Callable[[], bool] = lambda: True,
        log_size: Callable[[], int] = lambda: 0,
        log_excerpt: Callable[[int], str] = lambda since: "",
    ) -> None:
        if probe_interval <= 0:
            raise ValueError(f"probe_interval must be > 0 seconds, got {probe_interval}")
        self.server_pid = server_pid
        self.control = control
        self.probe_interval = probe_interval
        self.reload_timeout = reload_timeout
        self.unload_grace = unload_grace
        self.max_heals = max_heals
        self.heal_window = heal_window
        self._given_up: set = set()
        self.events: List[HealEvent] = events if events is not None else []
        self.on_message = on_message
        self.server_alive = server_alive
        self.log_size = log_size
        self.log_excerpt = log_excerpt
        self._known: Dict[str, StubProcess] = {}  # instance -> the stub last seen alive for it
        self._known_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- thread ------------------------------------------------------------
    def start(self) -> "StubMonitor":
        self.probe()  # learn the stubs now, so that a death right after start is noticed
        self._thread = threading.Thread(target=self._run, name=f"tritonize-stub-monitor-{self.server_pid}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.probe_interval):
            if not self.server_alive():
                return
            try:
                self.probe()
            except Exception:  # pragma: no cover - the monitor must never die silently
                LOGGER.exception("tritonize: the stub monitor's probe failed; it keeps probing")

    @property
    def stubs(self) -> Dict[str, StubProcess]:
        """The stubs last seen alive, by instance name."""
        with self._known_lock:
            return dict(self._known)

    # -- one probe ---------------------------------------------------------
    def probe(self) -> List[HealEvent]:
        """Look once; heal what died. Returns the heal events of this probe."""
        children = server_children(self.server_pid)
        live = {c.stub.instance: c.stub for c in children.values() if c.stub is not None}
        dead: Dict[str, List[DeadStub]] = {}
        for instance, seen in self._known.items():
            if instance in live:
                continue  # alive, or replaced by a new stub (someone reloaded the model)
            child = children.get(seen.pid)
            if child is not None and not child.zombie:
                continue  # still running; it just cannot be read as a stub right now
            cause = describe_exit(child.wait_status if child is not None else None)
            dead.setdefault(seen.model, []).append(DeadStub(seen.model, instance, seen.pid, cause, seen.rss_bytes))
        with self._known_lock:
            self._known.update(live)
        if not dead:
            return []
        try:
            states = self.control.states()
        except ModelControlError:
            return []  # the server does not answer right now: look again at the next probe
        events = []
        for model, stubs in dead.items():
            if states.get(model) != "READY" or self._stop.is_set():
                # not ours: someone is unloading or reloading it (or we are stopping)
                self._forget(model)
                continue
            if self._crash_loop(model):
                continue
            events.append(self.heal(model, stubs, states))
        return events

    def _crash_loop(self, model: str) -> bool:
        """A model that died ``max_heals`` times within ``heal_window`` seconds is not reloaded again."""
        if model in self._given_up:
            return True
        now = time.time()
        recent = [e for e in self.events if e.model == model and now - e.detected_at <= self.heal_window]
        if len(recent) < self.max_heals:
            return False
        self._given_up.add(model)
        self._forget(model)
        self._say(logging.ERROR, (
            f"tritonize: model '{model}' died {len(recent) + 1} times within {self.heal_window:.0f}s; "
            "not reloading it again (a request or the memory limit keeps killing it). "
            "Fix the cause, then reload it or restart the server."
        ))
        return True

    def _forget(self, model: str) -> None:
        with self._known_lock:
            for instance in [i for i, s in self._known.items() if s.model == model]:
                del self._known[instance]

    def _say(self, level: int, line: str) -> None:
        LOGGER.log(level, "%s", line)
        if self.on_message is not None:
            try:
                self.on_message(line)
            except Exception:  # pragma: no cover - a faulty callback must not stop healing
                LOGGER.exception("tritonize: the on_message callback failed")

    def _wait_for(self, what: str, done: Callable[[Dict[str, str]], bool], timeout: float,
                  raise_on_timeout: bool = True) -> Dict[str, str]:
        """Poll the repository index until ``done(states)``; the last states seen."""
        deadline = time.monotonic() + timeout
        while True:
            if self._stop.is_set():
                raise ModelControlError("the server is stopping")
            states = self.control.states()
            if done(states) or (time.monotonic() > deadline and not raise_on_timeout):
                return states
            if time.monotonic() > deadline:
                raise ModelControlError(f"{what} did not happen within {timeout:.0f}s (states: {states})")
            time.sleep(0.02)

    # -- healing -----------------------------------------------------------
    def heal(self, model: str, stubs: List[DeadStub], states: Dict[str, str]) -> HealEvent:
        first = stubs[0]
        detected_at, started = time.time(), time.monotonic()
        log_mark = self.log_size()
        others = "".join(f"; also instance {s.instance} (stub pid {s.pid}): {s.cause}" for s in stubs[1:])
        self._say(logging.WARNING, (
            f"tritonize: model '{model}' (instance {first.instance}, stub pid {first.pid}) died: {first.cause}, "
            f"last RSS {format_bytes(first.last_rss_bytes)}{others}; reloading it"
        ))
        ready_before = sorted(name for name, state in states.items() if state == "READY")
        event = HealEvent(model, first.instance, first.pid, first.cause, first.last_rss_bytes, detected_at,
                          seconds=0.0, ok=False, dead=list(stubs))
        unload_sent = time.monotonic()
        try:
            self.control.unload(model)
            # The unload returns at once and the model turns UNLOADING, then UNAVAILABLE. Measured on
            # 2.51: once a request has met the dead stub, the old instance never finishes unloading;
            # a load then still brings up a new one. So wait a little for the unload, then load anyway.
            self._wait_for(f"unloading '{model}'", lambda s: s.get(model) != "READY", self.reload_timeout)
            unloaded = self._wait_for(f"unloading '{model}'", lambda s: s.get(model) not in ("READY", "UNLOADING"),
                                      self.unload_grace, raise_on_timeout=False)
            event.old_unloaded = unloaded.get(model) not in ("READY", "UNLOADING")
            if not event.old_unloaded:
                LOGGER.debug("tritonize: the dead instance of '%s' is still unloading after %.1fs; loading a new "
                             "one beside it (Triton keeps the old one until the server stops)", model,
                             self.unload_grace)
            event.reloaded = sorted({model} | {name for name in ready_before if unloaded.get(name) != "READY"})
            self.control.load(model, timeout=self.reload_timeout)
            # loading the step brings back the ensembles that use it; load any that did not come back
            states = self._wait_for(f"loading '{model}'", lambda s: s.get(model) == "READY", self.reload_timeout)
            for name in event.reloaded:  # only what our unload took down
                if states.get(name) != "READY" and self.control.states().get(name) != "READY":
                    self.control.load(name, timeout=self.reload_timeout)
            self._wait_for("the models to be ready again",
                           lambda s: all(s.get(n) == "READY" for n in event.reloaded), self.reload_timeout)
            event.ok = True
            event.unavailable_seconds = time.monotonic() - unload_sent
        except ModelControlError as exc:
            event.error = str(exc)
        event.seconds = time.monotonic() - started
        self._forget(model)  # its other instances stopped too: learn the new stubs at the next probe
        self.events.append(event)
        if event.ok:
            self._say(logging.INFO, f"tritonize: model '{model}' reloaded and ready in {event.seconds:.1f}s")
        elif self._stop.is_set():
            self._say(logging.INFO, f"tritonize: reload of model '{model}' stopped: the server is stopping")
        else:
            self._say(logging.ERROR, (
                f"tritonize: model '{model}' could not be reloaded after its stub died: {event.error}. "
                f"It stays unavailable; fix the cause and restart the server. Server log:\n"
                f"{self.log_excerpt(log_mark)}"
            ))
        return event
