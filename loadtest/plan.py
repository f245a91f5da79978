"""What a run does: its options, and the plan every user (local or on a worker) follows.

Nothing here imports Locust: options are checked and the server is asked what
it serves before any load is generated, so a mistake fails in seconds.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tritonize import tasks
from tritonize.loadtest.samples import DataError, Samples, builtin_samples, load_samples
from tritonize.loadtest.triton import METRICS_URL_ENV

PACINGS = ("open", "closed")


class LoadTestError(RuntimeError):
    """The load test cannot run: bad options, an unreachable server, unknown models."""


# -- option parsing ------------------------------------------------------------------
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s|ms)?", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``90``, ``90s``, ``1m30s``, ``1.5m``, ``2h``, ``500ms``."""
    value = str(text).strip()
    if not value:
        raise ValueError("empty duration")
    total, position = 0.0, 0
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, None: 1.0}
    for match in _DURATION.finditer(value):
        if match.start() != position or (match.group(2) is None and match.end() != len(value)):
            raise ValueError(f"cannot read the duration {text!r} (use e.g. 30s, 2m, 1m30s)")
        total += float(match.group(1)) * scale[match.group(2).lower() if match.group(2) else None]
        position = match.end()
    if position != len(value):
        raise ValueError(f"cannot read the duration {text!r} (use e.g. 30s, 2m, 1m30s)")
    return total


def parse_weights(text: Optional[str]) -> Dict[str, int]:
    """``classification=3,ner=1,qa=1`` -> ``{task: weight}`` (task names or aliases)."""
    weights: Dict[str, int] = {}
    if not text:
        return weights
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, number = part.partition("=")
        task = tasks.aliases().get(name.strip().lower())
        if not sep or task is None:
            raise ValueError(f"cannot read the weight {part.strip()!r}: use TASK=WEIGHT with TASK one of "
                             f"{', '.join(sorted(tasks.aliases()))}")
        try:
            weight = int(number)
        except ValueError:
            raise ValueError(f"the weight of {name.strip()} must be a whole number, got {number!r}") from None
        if weight < 0:
            raise ValueError(f"the weight of {name.strip()} must be >= 0, got {weight}")
        weights[task] = weight
    return weights


def parse_think_time(text: str) -> Tuple[float, float]:
    """``0.5`` or ``0.1-0.5`` (seconds between a user's requests, closed pacing)."""
    low, sep, high = str(text).partition("-")
    try:
        lo = float(low)
        hi = float(high) if sep else lo
    except ValueError:
        raise ValueError(f"cannot read the think time {text!r}: use SECONDS or MIN-MAX, e.g. 0.1-0.5") from None
    if lo < 0 or hi < lo:
        raise ValueError(f"the think time {text!r} must be 0 <= MIN <= MAX")
    return lo, hi


def given_metrics_url(metrics_url: Optional[str]) -> Tuple[Optional[str], str]:
    """The metrics URL(s) the user gave, and where: ``--metrics-url``, else the environment variable
    ``TRITONIZE_METRICS_URL``; (None, "") when neither is set (the run then looks for the endpoint,
    ``TritonView.discover_metrics``)."""
    if metrics_url and metrics_url.strip():
        return metrics_url.strip(), "--metrics-url"
    env = os.environ.get(METRICS_URL_ENV, "").strip()
    if env:
        return env, METRICS_URL_ENV
    return None, ""


def default_metrics_url(host: str, port: int = 8002) -> str:
    """Triton's metrics endpoint on the server(s) of ``host`` by the default port alone: comma-separated,
    one per server, when ``host`` names several (``h1:8001,h2:8001``, or ``dns:///NAME:PORT``, resolved
    now). A load test does better: ``TritonView.discover_metrics`` checks what answers."""
    from tritonize.client.endpoints import Endpoints

    try:
        pool = Endpoints(host)
        if pool.stale():
            pool.refresh()
        addresses = pool.addresses
    except ValueError:
        addresses = [host]
    return ",".join(_metrics_url(address, port) for address in addresses)


def _metrics_url(address: str, port: int) -> str:
    hostname = address.rsplit(":", 1)[0] if ":" in address and not address.endswith("]") else address
    hostname = hostname or "localhost"
    return f"http://{hostname}:{port}/metrics"


@dataclass
class LoadTestOptions:
    """Everything ``tritonize loadtest`` takes (see ``tritonize loadtest --help``)."""

    host: str = "localhost:8001"
    models: Optional[List[str]] = None
    data: Optional[Path] = None
    sla: Optional[Path] = None
    users: int = 10
    spawn_rate: float = 10.0
    run_time: float = 60.0  # seconds of load, warm-up included
    warmup: float = 0.0  # seconds at the start whose requests are not measured
    pacing: str = "closed"
    rps_per_user: float = 1.0
    think_time: Tuple[float, float] = (0.1, 0.5)
    weights: Dict[str, int] = field(default_factory=dict)
    csv_dir: Optional[Path] = None
    html: Optional[Path] = None
    metrics_url: Optional[str] = None  # default: $TRITONIZE_METRICS_URL, else found (TritonView.discover_metrics)
    timeout: float = 10.0
    attempts: int = 1
    stop_timeout: float = 15.0
    seed: int = 0
    connect_timeout: float = 5.0
    progress_every: Optional[float] = None  # seconds; default: about 10 lines per run
    # distributed
    master: bool = False
    worker: bool = False
    master_host: str = "127.0.0.1"
    master_port: int = 5557
    master_bind_host: str = "*"
    master_bind_port: int = 5557
    expect_workers: int = 1
    expect_workers_timeout: float = 60.0

    def check(self) -> None:
        if self.master and self.worker:
            raise LoadTestError("--master and --worker exclude each other")
        if self.worker:
            return  # a worker takes everything else from its master
        if self.users < 1:
            raise LoadTestError(f"--users must be at least 1, got {self.users}")
        if self.spawn_rate <= 0:
            raise LoadTestError(f"--spawn-rate must be greater than 0, got {self.spawn_rate}")
        if self.run_time <= 0:
            raise LoadTestError(f"--run-time must be greater than 0, got {self.run_time}s")
        if self.warmup < 0 or self.warmup >= self.run_time:
            raise LoadTestError(f"--warmup ({self.warmup:g}s) must be >= 0 and shorter than --run-time "
                                f"({self.run_time:g}s): the warm-up is part of the run and is not measured")
        if self.pacing not in PACINGS:
            raise LoadTestError(f"--pacing must be one of {', '.join(PACINGS)}, got {self.pacing!r}")
        if self.pacing == "open" and self.rps_per_user <= 0:
            raise LoadTestError(f"--rps-per-user must be greater than 0, got {self.rps_per_user}")
        if self.timeout <= 0:
            raise LoadTestError(f"--timeout must be greater than 0, got {self.timeout}")
        if self.attempts < 1:
            raise LoadTestError(f"--attempts must be at least 1, got {self.attempts}")
        if self.master and self.expect_workers < 1:
            raise LoadTestError(f"--expect-workers must be at least 1, got {self.expect_workers}")
        url, source = given_metrics_url(self.metrics_url)
        for one in (url or "").split(","):
            parsed = urllib.parse.urlparse(one.strip())
            if url and (parsed.scheme not in ("http", "https") or not parsed.netloc):
                raise LoadTestError(f"{source} must be an http(s) URL (several: comma-separated), e.g. "
                                    f"http://triton:8002/metrics, got {url!r}")

    @property
    def measured_seconds(self) -> float:
        return self.run_time - self.warmup


# -- the plan ----------------------------------------------------------------------
@dataclass
class Plan:
    """What every user of a run does; the master sends it to each worker as JSON."""

    host: str
    models: Dict[str, List[str]]  # task -> models
    samples: Dict[str, List[Dict[str, Optional[str]]]]  # task -> Sample.to_dict()
    weights: Dict[str, int] = field(default_factory=dict)  # task -> user class weight
    pacing: str = "closed"  # open | closed
    rps_per_user: float = 1.0  # open
    think_min: float = 0.1  # closed
    think_max: float = 0.5
    timeout: float = 10.0  # per SDK call, retries included
    attempts: int = 1  # SDK attempts on UNAVAILABLE / RESOURCE_EXHAUSTED (1 = no retry)
    seed: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Plan":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def ensembles(self) -> List[Tuple[str, str]]:
        """(model, task) of every model the run calls."""
        return [(model, task) for task, names in self.models.items() for model in names]

    def pacing_text(self) -> str:
        if self.pacing == "open":
            return f"open: {self.rps_per_user:g} requests/s per user (constant_throughput)"
        return f"closed: think time {self.think_min:g}-{self.think_max:g}s between a user's requests (between)"


def _served_models(client: Any, names: Optional[Sequence[str]]) -> Dict[str, List[str]]:
    from tritonize.client import TritonizeError

    known = tasks.names()
    models: Dict[str, List[str]] = {task: [] for task in known}
    if names:
        for name in names:
            try:
                info = client.model_info(name, refresh=True)
            except TritonizeError as exc:
                raise LoadTestError(f"--models {name}: {exc}") from exc
            if info.role not in (None, "ensemble"):
                raise LoadTestError(f"--models {name}: this is the {info.role} step of a tritonize ensemble; "
                                    "load-test the ensemble itself")
            if not info.task:
                raise LoadTestError(f"--models {name}: the server does not describe it as a tritonize model "
                                    "(no task); tritonize loadtest calls models exported by tritonize")
            if info.task not in known:
                raise LoadTestError(f"--models {name} serves {info.task!r}, which no installed task plugin "
                                    f"knows (installed: {', '.join(known)}); install the plugin that serves it")
            if not client.is_ready(name):
                raise LoadTestError(f"--models {name}: the model is not ready on {client.url}")
            if name not in models[info.task]:
                models[info.task].append(name)
        return models
    try:
        found = client.list_models()
    except TritonizeError as exc:
        raise LoadTestError(f"cannot list the models of {client.url}: {exc}") from exc
    for info in found:
        if info.ready and info.task in known:
            models[info.task].append(info.name)
    if not any(models.values()):
        raise LoadTestError(f"the server at {client.url} serves no ready tritonize model; "
                            "export one with `tritonize export` and serve it, or name models with --models")
    return models


def resolve_plan(options: LoadTestOptions) -> Plan:
    """Ask the server what to call (``--models`` or everything it serves) and pick the inputs."""
    from tritonize.client import Client

    try:
        client = Client(options.host, timeout=options.connect_timeout)
    except ValueError as exc:  # a malformed --host: say so, as for the other options
        raise LoadTestError(f"--host {options.host!r}: {exc}") from None
    with client:
        if not client.is_live(timeout=options.connect_timeout):
            raise LoadTestError(
                f"no Triton server answers at {options.host} (gRPC; waited up to {options.connect_timeout:g}s): "
                "is it running, and is that its gRPC port? Start one with `tritonize serve`, "
                "or point --host at it (HOST:PORT)"
            )
        models = _served_models(client, options.models)
    try:
        samples: Samples = load_samples(options.data) if options.data else builtin_samples()
    except DataError as exc:
        raise LoadTestError(str(exc)) from exc
    for task, names in models.items():
        if names and not samples.get(task):
            need = " and ".join(repr(k) for k in tasks.get(task).required_keywords)
            if not options.data:
                raise LoadTestError(f"the {task} plugin brings no built-in load-test inputs; give --data with "
                                    f"rows of {need}, which models {', '.join(names)} need")
            raise LoadTestError(f"--data {options.data} has no row for {task} (rows with {need}), "
                                f"which models {', '.join(names)} need")
    for task, weight in options.weights.items():
        if weight and not models.get(task):
            raise LoadTestError(f"--weights gives {task} a weight, but no model of that task is load-tested")
    active = {task: names for task, names in models.items() if names and options.weights.get(task, 1) > 0}
    if not active:
        raise LoadTestError("--weights leaves every task at weight 0: nothing to run")
    weights = {task: options.weights.get(task, 1) for task in active}
    return Plan(
        host=options.host,
        models=active,
        samples={task: [s.to_dict() for s in samples[task]] for task in active},
        weights=weights,
        pacing=options.pacing,
        rps_per_user=options.rps_per_user,
        think_min=options.think_time[0],
        think_max=options.think_time[1],
        timeout=options.timeout,
        attempts=options.attempts,
        seed=options.seed,
    )
