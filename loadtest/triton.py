"""Triton's view of a load test: where the time goes, and what it counted.

Two sources, read before and after the measured interval:

* the **metrics endpoint** (Prometheus text, ``http://HOST:8002/metrics``; given, or found
  by ``TritonView.discover_metrics``):
  ``nv_inference_request_success`` / ``_failure``, ``nv_inference_count`` and
  ``nv_inference_exec_count`` per model. Locust's count of successful requests
  is compared with the ensembles' ``nv_inference_request_success``;
* the **model statistics API** (``get_inference_statistics`` over gRPC): for each
  step of each ensemble (tokenizer, encoder, postprocess) the cumulative queue,
  compute-input, compute-infer and compute-output nanoseconds, the number of
  inferences and of executions (so the average batch the dynamic batcher formed).

The difference of two snapshots is what happened in between.
"""

from __future__ import annotations

import csv
import html
import http.client
import ipaddress
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from tritonize.loadtest.tables import table

ROLES = ("tokenizer", "encoder", "postprocess", "pipeline")
COUNTERS = (
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
)
_SAMPLE = re.compile(r'^(?P<metric>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class TritonViewError(RuntimeError):
    """The metrics endpoint or the statistics API could not be read."""


# -- the metrics endpoint --------------------------------------------------------------
def parse_metrics(text: str, names: Sequence[str] = COUNTERS) -> Dict[Tuple[str, str], float]:
    """``{(metric, model): value}`` for the wanted counters (summed over versions)."""
    values: Dict[Tuple[str, str], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match or match.group("metric") not in names:
            continue
        labels = dict(_LABEL.findall(match.group("labels")))
        model = labels.get("model")
        if model is None:
            continue
        key = (match.group("metric"), model)
        values[key] = values.get(key, 0.0) + float(match.group("value"))
    return values


def _reason(exc: BaseException) -> str:
    """A short reason for a failed read: ``connection refused``, ``timed out``, ``HTTP 404 Not Found``."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror[:1].lower() + reason.strerror[1:]
    if isinstance(reason, http.client.HTTPException):
        return f"not an HTTP/1.1 answer ({type(reason).__name__})"
    return str(reason) or type(reason).__name__


_READ_ERRORS = (urllib.error.URLError, OSError, ValueError, http.client.HTTPException)


def _get(url: str, timeout: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode("utf-8", "replace")


def fetch_metrics_text(url: str, timeout: float = 5.0) -> str:
    """The text of one metrics endpoint."""
    try:
        return _get(url, timeout)
    except _READ_ERRORS as exc:
        raise TritonViewError(f"cannot read Triton's metrics endpoint {url}: {_reason(exc)}") from exc


def read_metrics(url: str, timeout: float = 5.0) -> Dict[Tuple[str, str], float]:
    """The counters at ``url``; several URLs, comma-separated (one per server), are summed."""
    total: Dict[Tuple[str, str], float] = {}
    for one in [u.strip() for u in url.split(",") if u.strip()]:
        for key, value in parse_metrics(fetch_metrics_text(one, timeout)).items():
            total[key] = total.get(key, 0.0) + value
    return total


# -- finding the metrics endpoint -----------------------------------------------------------
# Triton does not say over gRPC or HTTP where its metrics listener is: the candidates are the
# tritonserver processes of this machine (their command line names both ports), then the
# conventions (gRPC port + 1, as in 8001 -> 8002; Triton's default 8002). A candidate counts
# only when it answers with Triton's counters of this server's own ensembles.
METRICS_URL_ENV = "TRITONIZE_METRICS_URL"
DEFAULT_METRICS_PORT = 8002
DEFAULT_GRPC_PORT = 8001


@dataclass
class MetricsCandidate:
    url: str  # empty: the server has no metrics endpoint (see ``why``)
    why: str  # where the guess comes from
    outcome: str = "not tried"  # "" once accepted, else why it was not taken


@dataclass
class MetricsDiscovery:
    """What was tried for each gRPC address, and what was found."""

    tried: Dict[str, List[MetricsCandidate]]  # gRPC address -> candidates, in the order tried
    found: Dict[str, MetricsCandidate]  # gRPC address -> the accepted one

    @property
    def url(self) -> Optional[str]:
        """One URL per server, comma-separated; None unless every server's endpoint was found (a
        count check over some of the servers would compare Locust's total with part of Triton's)."""
        if not self.tried or set(self.found) != set(self.tried):
            return None
        return ",".join(self.found[address].url for address in self.tried)

    def summary(self) -> str:
        return "; ".join(f"Triton's metrics endpoint for {address}: {found.url} ({found.why})"
                         for address, found in self.found.items())

    def warning(self) -> str:
        missing = []
        for address, candidates in self.tried.items():
            if address in self.found:
                continue
            attempts = "; ".join(f"{c.url} ({c.why}): {c.outcome}" if c.url else f"{c.why}"
                                 for c in candidates) or "no candidate"
            missing.append(f"{address} (tried {attempts})")
        found = (f" (found for {', '.join(f'{a}: {c.url}' for a, c in self.found.items())}, but a count over "
                 "some of the servers would not be the fleet's)") if self.found else ""
        return (f"Triton's metrics endpoint was not found for {'; for '.join(missing)}{found}; Locust's counts "
                "will not be checked against Triton's. Give --metrics-url http://HOST:PORT/metrics (one per "
                f"server, comma-separated, in --host's order) or set {METRICS_URL_ENV}")


def _split_address(address: str) -> Tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``host`` -> (host as written in a URL, port)."""
    if address.startswith("["):
        closing = address.find("]")
        host, tail = address[:closing + 1], address[closing + 1:].lstrip(":")
    elif address.count(":") == 1:
        host, _, tail = address.partition(":")
    else:
        host, tail = address, ""
    return host or "localhost", int(tail) if tail.isdigit() else DEFAULT_GRPC_PORT


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def is_this_machine(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine: a loopback address, or one that a
    socket here can bind to."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, _, _, _, sockaddr in infos:
        try:
            if ipaddress.ip_address(str(sockaddr[0]).split("%")[0]).is_loopback:
                return True
        except ValueError:
            continue
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((sockaddr[0], 0))
            return True
        except OSError:
            continue
    return False


def _flags(argv: Sequence[str]) -> Dict[str, str]:
    """``--name=value`` and ``--name value`` of a command line."""
    flags: Dict[str, str] = {}
    for index, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        name, sep, value = arg[2:].partition("=")
        if not sep and index + 1 < len(argv) and not argv[index + 1].startswith("--"):
            value = argv[index + 1]
        flags[name] = value
    return flags


def local_tritonservers(grpc_port: int, proc: Path = Path("/proc")) -> List[Tuple[int, Dict[str, str]]]:
    """(pid, flags) of every tritonserver process on this machine whose gRPC port is ``grpc_port``,
    read from ``/proc/PID/cmdline`` (none where there is no ``/proc``)."""
    found = []
    try:
        entries = [entry for entry in os.listdir(proc) if entry.isdigit()]
    except OSError:
        return []
    for entry in sorted(entries, key=int):
        try:
            argv = (proc / entry / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
        except OSError:
            continue
        if not argv or os.path.basename(argv[0]) != "tritonserver":
            continue
        flags = _flags(argv[1:])
        port = flags.get("grpc-port", str(DEFAULT_GRPC_PORT))
        if port.isdigit() and int(port) == grpc_port:
            found.append((int(entry), flags))
    return found


def metrics_candidates(address: str) -> List[MetricsCandidate]:
    """Where the metrics endpoint of the Triton server at gRPC ``address`` may be, most likely first."""
    host, port = _split_address(address)
    candidates: List[MetricsCandidate] = []
    if is_this_machine(host):
        for pid, flags in local_tritonservers(port):
            if flags.get("allow-metrics", "true").lower() in ("false", "0", "off", "no"):
                candidates.append(MetricsCandidate(
                    "", f"tritonserver pid {pid} on this machine serves gRPC port {port} with "
                        "--allow-metrics=false: it has no metrics endpoint", "metrics switched off"))
                continue
            metrics_port = flags.get("metrics-port", str(DEFAULT_METRICS_PORT))
            bound = flags.get("metrics-address", "") or flags.get("http-address", "")
            url_host = host if bound in ("", "0.0.0.0", "::", "[::]") else _url_host(bound)
            if metrics_port.isdigit():
                candidates.append(MetricsCandidate(
                    f"http://{url_host}:{metrics_port}/metrics",
                    f"the --metrics-port of tritonserver pid {pid} on this machine, which serves gRPC port {port}"))
    candidates.append(MetricsCandidate(f"http://{host}:{port + 1}/metrics", f"gRPC port {port} + 1"))
    candidates.append(MetricsCandidate(f"http://{host}:{DEFAULT_METRICS_PORT}/metrics",
                                       "Triton's default metrics port"))
    unique: List[MetricsCandidate] = []
    for candidate in candidates:
        if not candidate.url or candidate.url not in [c.url for c in unique]:
            unique.append(candidate)
    return unique


# -- the statistics API ----------------------------------------------------------------
@dataclass
class StepStats:
    """Cumulative counters of one model, as ``get_inference_statistics`` reports them."""

    success: int = 0
    success_ns: int = 0
    fail: int = 0
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    inference_count: int = 0
    execution_count: int = 0

    @classmethod
    def from_json(cls, stats: Mapping[str, Any]) -> "StepStats":
        inference = stats.get("inference_stats", {})

        def part(name: str, key: str) -> int:
            return int(inference.get(name, {}).get(key, 0) or 0)

        return cls(
            success=part("success", "count"),
            success_ns=part("success", "ns"),
            fail=part("fail", "count"),
            queue_ns=part("queue", "ns"),
            compute_input_ns=part("compute_input", "ns"),
            compute_infer_ns=part("compute_infer", "ns"),
            compute_output_ns=part("compute_output", "ns"),
            inference_count=int(stats.get("inference_count", 0) or 0),
            execution_count=int(stats.get("execution_count", 0) or 0),
        )

    def __sub__(self, other: "StepStats") -> "StepStats":
        return StepStats(**{k: getattr(self, k) - getattr(other, k) for k in asdict(self)})


@dataclass
class Snapshot:
    """Everything Triton counted up to one moment."""

    taken_at: float
    stats: Dict[str, StepStats]
    metrics: Optional[Dict[Tuple[str, str], float]]  # None: the endpoint was not reachable
    metrics_error: str = ""


@dataclass
class EnsembleLayout:
    """An ensemble and its steps (from its config's ``ensemble_scheduling``)."""

    model: str
    task: str
    steps: List[Tuple[str, str]] = field(default_factory=list)  # (role, model name)


class TritonView:
    """Reads both sources for the given ensembles; ``snapshot()`` before and after.

    ``grpc_url`` may name several servers (``"h1:8001,h2:8001"``, ``"dns:///NAME:PORT"``,
    as the SDK takes them) and ``metrics_url`` several endpoints, comma-separated: the
    counters of all are summed, the fleet's view of the run. They serve one repository,
    so the ensembles' steps are read from the first.
    """

    def __init__(self, grpc_url: str, metrics_url: Optional[str], ensembles: Sequence[Tuple[str, str]],
                 timeout: float = 10.0) -> None:
        import tritonclient.grpc as grpcclient

        from tritonize.client.endpoints import Endpoints

        self.grpc_url = grpc_url
        self.metrics_url = metrics_url
        self.metrics_missing = "no metrics URL given"  # why there is no metrics_url, in the count table
        self.timeout = timeout
        pool = Endpoints(grpc_url)
        if pool.stale():
            pool.refresh()
        self.addresses = pool.addresses
        self._clients = [grpcclient.InferenceServerClient(url=address) for address in self.addresses]
        self._client = self._clients[0]
        self.layouts = [self._layout(model, task) for model, task in ensembles]

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def _layout(self, model: str, task: str) -> EnsembleLayout:
        config = self._client.get_model_config(model, as_json=True, client_timeout=self.timeout)["config"]
        steps = []
        for step in config.get("ensemble_scheduling", {}).get("step", []):
            name = str(step["model_name"])
            try:
                step_config = self._client.get_model_config(name, as_json=True, client_timeout=self.timeout)
                role = step_config["config"].get("parameters", {}).get("tritonize.role", {}).get("string_value", "")
            except Exception:  # noqa: BLE001 - a step without a readable config still gets a row
                role = ""
            if not role:
                role = next((r for r in ROLES if name.endswith("_" + r)), "step")
            steps.append((role, name))
        return EnsembleLayout(model, task, steps)

    @property
    def models(self) -> List[str]:
        return [name for layout in self.layouts for name in [layout.model, *[s for _, s in layout.steps]]]

    def _read_one(self, client: Any, name: str) -> StepStats:
        response = client.get_inference_statistics(name, as_json=True, client_timeout=self.timeout)
        total = StepStats()
        for entry in response.get("model_stats", []):  # one entry per version
            one = StepStats.from_json(entry)
            total = StepStats(**{k: getattr(total, k) + getattr(one, k) for k in asdict(total)})
        return total

    def _read_server(self, client: Any) -> Dict[str, StepStats]:
        """One server's counters of every model, from one call (all models at one moment, one round trip)."""
        response = client.get_inference_statistics("", as_json=True, client_timeout=self.timeout)
        found: Dict[str, StepStats] = {}
        for entry in response.get("model_stats", []):  # one entry per model version
            name = str(entry.get("name", ""))
            one = StepStats.from_json(entry)
            if name in found:
                one = StepStats(**{k: getattr(found[name], k) + getattr(one, k) for k in asdict(one)})
            found[name] = one
        for name in self.models:  # a server that answers only per model
            if name not in found:
                found[name] = self._read_one(client, name)
        return {name: found[name] for name in self.models}

    def read_stats(self) -> Dict[str, StepStats]:
        """Every model's counters, summed over the servers."""
        total: Dict[str, StepStats] = {}
        for client in self._clients:
            for name, one in self._read_server(client).items():
                before = total.get(name)
                total[name] = one if before is None else StepStats(
                    **{k: getattr(before, k) + getattr(one, k) for k in asdict(one)})
        return total

    def _check_metrics(self, client: Any, url: str, timeout: float, attempts: int = 3) -> str:
        """'' when ``url`` is the metrics endpoint of ``client``'s server, else why not: it must answer
        with Triton's counters, and count each ensemble's successes as the statistics API does."""
        models = [layout.model for layout in self.layouts]
        reason = ""
        for attempt in range(attempts):
            low = {m: self._read_one(client, m).success for m in models}
            try:
                text = _get(url, timeout)
            except _READ_ERRORS as exc:
                return _reason(exc)
            if "nv_inference_request_success" not in text:
                return "answers, but not with Triton's metrics (no nv_inference_request_success)"
            counts = parse_metrics(text, ("nv_inference_request_success",))
            high = {m: self._read_one(client, m).success for m in models}
            missing = [m for m in models if ("nv_inference_request_success", m) not in counts]
            if missing:
                return f"Triton's metrics, without {', '.join(missing)}: another server's"
            off = [f"{m}: {counts[('nv_inference_request_success', m)]:.0f} there, {high[m]} here" for m in models
                   if not low[m] <= counts[("nv_inference_request_success", m)] <= high[m]]
            if not off:
                return ""
            reason = f"Triton's metrics, but not this server's successes ({'; '.join(off)})"
            time.sleep(0.2)  # a counter may be updated a moment after the statistics
        return reason

    def discover_metrics(self, timeout: float = 2.0) -> MetricsDiscovery:
        """Find each server's metrics endpoint (``metrics_candidates``), set ``metrics_url`` when every
        server's was found, and say what was tried."""
        tried: Dict[str, List[MetricsCandidate]] = {}
        found: Dict[str, MetricsCandidate] = {}
        for address, client in zip(self.addresses, self._clients):
            tried[address] = []
            for candidate in metrics_candidates(address):
                tried[address].append(candidate)
                if not candidate.url:
                    continue
                try:
                    candidate.outcome = self._check_metrics(client, candidate.url, timeout)
                except Exception as exc:  # noqa: BLE001 - the statistics API failed: nothing to compare with
                    candidate.outcome = f"cannot compare with the statistics API: {exc}"
                if not candidate.outcome:
                    found[address] = candidate
                    break
        discovery = MetricsDiscovery(tried, found)
        self.metrics_url = discovery.url
        if self.metrics_url is None:
            self.metrics_missing = "Triton's metrics endpoint was not found (see the warning at the start)"
        return discovery

    def wake(self) -> None:
        """One cheap call first: under gevent, the first call on a channel that sat idle
        during the warm-up can take seconds; the snapshot right after is then quick."""
        for client in self._clients:
            try:
                client.is_server_live(client_timeout=self.timeout)
            except Exception:  # noqa: BLE001 - the snapshot reports what is wrong
                pass

    def snapshot(self) -> Snapshot:
        """The statistics API (slow: a call per model), then the metrics endpoint (one read)."""
        stats = self.read_stats()
        now = time.time()
        if not self.metrics_url:
            return Snapshot(now, stats, None, self.metrics_missing)
        try:
            return Snapshot(now, stats, read_metrics(self.metrics_url))
        except TritonViewError as exc:
            return Snapshot(now, stats, None, str(exc))

    def settled_snapshot(self, attempts: int = 10, pause: float = 0.2) -> Snapshot:
        """A snapshot taken once Triton's counters stop moving (a response can reach the
        client a moment before Triton updates its counters); at most ``attempts`` reads."""
        last = self.snapshot()
        for _ in range(attempts):
            time.sleep(pause)
            again = self.snapshot()
            if again.stats == last.stats and again.metrics == last.metrics:
                return again
            last = again
        return last


# -- the breakdown -----------------------------------------------------------------------
@dataclass
class BreakdownRow:
    request_name: str  # the Locust request name of the ensemble (task:model)
    model: str  # the Triton model of this row
    role: str  # ensemble | tokenizer | encoder | postprocess
    requests: int  # successful requests (statistics API)
    failures: int
    avg_request_ms: Optional[float]  # ensemble: Triton's end-to-end time per request
    queue_ms: Optional[float]  # per request
    compute_input_ms: Optional[float]
    compute_infer_ms: Optional[float]
    compute_output_ms: Optional[float]
    compute_ms: Optional[float]  # input + infer + output, per request
    executions: int
    inferences: int
    avg_batch: Optional[float]  # inferences / executions: the batch the dynamic batcher formed
    metrics_success: Optional[int] = None  # nv_inference_request_success (metrics endpoint)
    metrics_failure: Optional[int] = None
    metrics_inferences: Optional[int] = None  # nv_inference_count
    metrics_executions: Optional[int] = None  # nv_inference_exec_count
    locust_requests: Optional[int] = None  # ensemble rows: what Locust measured for this name
    locust_failures: Optional[int] = None
    locust_p50_ms: Optional[float] = None
    locust_p95_ms: Optional[float] = None
    locust_p99_ms: Optional[float] = None


@dataclass
class Breakdown:
    seconds: float
    rows: List[BreakdownRow]
    metrics_error: str = ""

    def ensemble_rows(self) -> List[BreakdownRow]:
        return [row for row in self.rows if row.role == "ensemble"]


def _per(ns: int, count: int) -> Optional[float]:
    return ns / count / 1e6 if count else None


def breakdown(view: TritonView, before: Snapshot, after: Snapshot, locust_stats: Any = None,
              request_type: str = "grpc") -> Breakdown:
    """What Triton did between two snapshots, with Locust's numbers beside each ensemble."""
    rows: List[BreakdownRow] = []
    metrics_ok = before.metrics is not None and after.metrics is not None
    for layout in view.layouts:
        request_name = f"{layout.task}:{layout.model}"
        for role, model in [("ensemble", layout.model), *layout.steps]:
            delta = after.stats.get(model, StepStats()) - before.stats.get(model, StepStats())
            count = delta.success
            compute = delta.compute_input_ns + delta.compute_infer_ns + delta.compute_output_ns
            row = BreakdownRow(
                request_name=request_name, model=model, role=role, requests=count, failures=delta.fail,
                avg_request_ms=_per(delta.success_ns, count),
                queue_ms=_per(delta.queue_ns, count) if role != "ensemble" else None,
                compute_input_ms=_per(delta.compute_input_ns, count) if role != "ensemble" else None,
                compute_infer_ms=_per(delta.compute_infer_ns, count) if role != "ensemble" else None,
                compute_output_ms=_per(delta.compute_output_ns, count) if role != "ensemble" else None,
                compute_ms=_per(compute, count) if role != "ensemble" else None,
                executions=delta.execution_count, inferences=delta.inference_count,
                avg_batch=(delta.inference_count / delta.execution_count
                           if delta.execution_count and role != "ensemble" else None),
            )
            if metrics_ok:
                assert before.metrics is not None and after.metrics is not None
                row.metrics_success = int(after.metrics.get(("nv_inference_request_success", model), 0)
                                          - before.metrics.get(("nv_inference_request_success", model), 0))
                row.metrics_failure = int(after.metrics.get(("nv_inference_request_failure", model), 0)
                                          - before.metrics.get(("nv_inference_request_failure", model), 0))
                row.metrics_inferences = int(after.metrics.get(("nv_inference_count", model), 0)
                                             - before.metrics.get(("nv_inference_count", model), 0))
                row.metrics_executions = int(after.metrics.get(("nv_inference_exec_count", model), 0)
                                             - before.metrics.get(("nv_inference_exec_count", model), 0))
            if role == "ensemble" and locust_stats is not None:
                entry = locust_stats.entries.get((request_name, request_type)) if hasattr(
                    locust_stats.entries, "get") else None
                if entry is not None and entry.num_requests:
                    row.locust_requests = int(entry.num_requests)
                    row.locust_failures = int(entry.num_failures)
                    row.locust_p50_ms = float(entry.get_response_time_percentile(0.50))
                    row.locust_p95_ms = float(entry.get_response_time_percentile(0.95))
                    row.locust_p99_ms = float(entry.get_response_time_percentile(0.99))
                else:
                    row.locust_requests, row.locust_failures = 0, 0
            rows.append(row)
    error = "" if metrics_ok else (after.metrics_error or before.metrics_error)
    return Breakdown(after.taken_at - before.taken_at, rows, error)


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else (f"{value:.2f}" if value < 100 else f"{value:.0f}")


def _int(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.0f}"


def format_breakdown(result: Breakdown) -> str:
    """Where the time goes: Locust's percentiles beside Triton's per-step queue, compute and batch."""
    rows = []
    for row in result.rows:
        if row.role == "ensemble":
            label = row.request_name
            locust = [str(row.locust_requests if row.locust_requests is not None else "-"),
                      _int(row.locust_p50_ms), _int(row.locust_p95_ms), _int(row.locust_p99_ms)]
        else:
            label = f"  {row.role}: {row.model}"
            locust = ["", "", "", ""]
        rows.append([
            label, *locust, str(row.requests), _ms(row.avg_request_ms),
            "" if row.role == "ensemble" else _ms(row.queue_ms), "" if row.role == "ensemble" else _ms(row.compute_ms),
            str(row.executions) if row.role != "ensemble" else "",
            f"{row.avg_batch:.2f}" if row.avg_batch is not None else "",
        ])
    header = ["request / step", "locust n", "p50 ms", "p95 ms", "p99 ms", "triton n", "triton avg ms",
              "queue ms", "compute ms", "executions", "avg batch"]
    text = (f"Where the time goes: Locust's percentiles beside Triton's view of the same interval "
            f"({result.seconds:.1f}s between Triton's snapshots)\n"
            "(triton avg ms: Triton's time per request, from arrival to response; queue and compute ms: per "
            "request in that step; avg batch: requests per execution the dynamic batcher formed)\n")
    return text + table(rows, header, right=tuple(range(1, 11)))


# -- counts: nothing lost, nothing invented ---------------------------------------------------
@dataclass
class CountCheck:
    request_name: str
    model: str
    locust_success: int
    triton_success: Optional[int]  # metrics endpoint; None when unreachable

    @property
    def equal(self) -> Optional[bool]:
        return None if self.triton_success is None else self.locust_success == self.triton_success


def count_checks(result: Breakdown) -> List[CountCheck]:
    checks = []
    for row in result.ensemble_rows():
        locust = (row.locust_requests or 0) - (row.locust_failures or 0)
        checks.append(CountCheck(row.request_name, row.model, locust, row.metrics_success))
    return checks


def format_counts(checks: Sequence[CountCheck], metrics_error: str = "", note: str = "",
                  tolerance: int = 0) -> str:
    """Locust's successes beside Triton's; ``tolerance``: a difference that is explained (warm-up)."""

    def verdict(locust: int, triton: Optional[int]) -> str:
        if triton is None:
            return "not checked"
        if locust == triton:
            return "equal"
        if abs(locust - triton) <= tolerance:
            return f"{locust - triton:+d} (requests in flight at the reset)"
        return f"DIFFERENT by {locust - triton:+d}"

    rows = []
    for check in checks:
        triton = "-" if check.triton_success is None else str(check.triton_success)
        rows.append([check.request_name, str(check.locust_success), triton,
                     verdict(check.locust_success, check.triton_success)])
    if checks and all(c.triton_success is not None for c in checks):
        locust_total = sum(c.locust_success for c in checks)
        triton_total = sum(c.triton_success or 0 for c in checks)
        rows.append(["total", str(locust_total), str(triton_total), verdict(locust_total, triton_total)])
    text = ("Successful requests: Locust's count beside Triton's nv_inference_request_success "
            "(metrics endpoint, same interval)\n")
    text += table(rows, ["request", "locust", "triton", ""], right=(1, 2))
    if metrics_error:
        text += f"\n(not checked: {metrics_error})"
    if note:
        text += f"\n{note}"
    return text


# -- reports ---------------------------------------------------------------------------------
CSV_COLUMNS = [
    "request_name", "model", "role", "requests", "failures", "avg_request_ms", "queue_ms", "compute_input_ms",
    "compute_infer_ms", "compute_output_ms", "compute_ms", "executions", "inferences", "avg_batch",
    "metrics_success", "metrics_failure", "metrics_inferences", "metrics_executions", "locust_requests", "locust_failures", "locust_p50_ms",
    "locust_p95_ms", "locust_p99_ms",
]


def write_breakdown_csv(result: Breakdown, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in result.rows:
            data = asdict(row)
            writer.writerow({k: ("" if data[k] is None else (round(data[k], 4) if isinstance(data[k], float)
                                                             else data[k])) for k in CSV_COLUMNS})


def breakdown_json(result: Breakdown) -> Dict[str, Any]:
    return {"seconds": result.seconds, "metrics_error": result.metrics_error,
            "rows": [asdict(row) for row in result.rows]}


def breakdown_html(result: Breakdown, sla_text: str = "", counts_text: str = "") -> str:
    """An HTML section with the breakdown table (and the SLA and count tables as text)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in [
        "request / step", "locust n", "p50 ms", "p95 ms", "p99 ms", "triton n", "triton avg ms", "queue ms",
        "compute ms", "executions", "avg batch"])
    body = []
    for row in result.rows:
        ensemble = row.role == "ensemble"
        cells = [
            row.request_name if ensemble else f"&nbsp;&nbsp;{html.escape(row.role)}: {html.escape(row.model)}",
            str(row.locust_requests if ensemble and row.locust_requests is not None else ""),
            _int(row.locust_p50_ms) if ensemble else "", _int(row.locust_p95_ms) if ensemble else "",
            _int(row.locust_p99_ms) if ensemble else "", str(row.requests), _ms(row.avg_request_ms),
            "" if ensemble else _ms(row.queue_ms), "" if ensemble else _ms(row.compute_ms),
            "" if ensemble else str(row.executions),
            "" if row.avg_batch is None else f"{row.avg_batch:.2f}",
        ]
        style = ' style="font-weight:bold"' if ensemble else ""
        body.append(f"<tr{style}>" + "".join(
            f"<td>{c if i == 0 and not ensemble else html.escape(c)}</td>" for i, c in enumerate(cells)) + "</tr>")
    pre = "".join(f"<pre>{html.escape(t)}</pre>" for t in (sla_text, counts_text) if t)
    return (
        '<section id="tritonize-triton-breakdown" style="font-family:sans-serif;margin:2em">'
        f"<h2>Triton: where the time goes ({result.seconds:.1f}s measured)</h2>"
        "<p>Locust's percentiles beside Triton's own view of the same interval: the model statistics API "
        "(queue and compute time per request in each step, executions, the average batch the dynamic "
        "batcher formed) and the metrics endpoint.</p>"
        '<table border="1" cellpadding="4" style="border-collapse:collapse;text-align:right">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{pre}</section>"
    )


def write_html(result: Breakdown, path: Path, sla_text: str = "", counts_text: str = "") -> None:
    """A standalone HTML page with the breakdown (``REPORT.triton.html``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>tritonize load test: Triton breakdown"
            f"</title></head><body>{breakdown_html(result, sla_text, counts_text)}</body></html>")
    path.write_text(page, encoding="utf-8")


def append_to_locust_html(path: Path, section: str) -> bool:
    """Add ``section`` at the end of Locust's HTML report body; False if it has no ``</body>``."""
    text = path.read_text(encoding="utf-8")
    index = text.rfind("</body>")
    if index < 0:
        return False
    path.write_text(text[:index] + section + text[index:], encoding="utf-8")
    return True


def dump_json(data: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
