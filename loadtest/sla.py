"""SLA files: latency, failure and throughput limits, checked against Locust's stats.

An SLA file is YAML: a mapping from a Locust request name (``TASK:MODEL``, e.g.
``text-classification:sentiment``), ``Aggregated`` (all requests together; ``total``
is accepted too) or ``*`` (every request name, one by one) to limits::

    Aggregated:
      p95_ms: 250
      max_fail_ratio: 0.01
      min_rps: 20
    text-classification:sentiment:
      p50_ms: 40
      p99_ms: 200

Latency limits are upper bounds in milliseconds, ``max_fail_ratio`` is an upper
bound on failures / requests (0..1), ``min_rps`` a lower bound on requests per
second over the measured interval. The numbers are read from Locust's own stats
(``StatsEntry``) after the warm-up, so they are the same as in Locust's CSV and
HTML reports.

This module does not import Locust: it reads any object with Locust's
``RequestStats`` shape, so it can be checked without starting a load test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from tritonize.loadtest.tables import table

AGGREGATED = "Aggregated"
EVERY = "*"
_AGGREGATED_ALIASES = ("aggregated", "total")

# metric -> (kind, percentile or None, description)
METRICS: Dict[str, Tuple[str, Optional[float], str]] = {
    "p50_ms": ("latency", 0.50, "50th percentile response time, ms (upper bound)"),
    "p75_ms": ("latency", 0.75, "75th percentile response time, ms (upper bound)"),
    "p90_ms": ("latency", 0.90, "90th percentile response time, ms (upper bound)"),
    "p95_ms": ("latency", 0.95, "95th percentile response time, ms (upper bound)"),
    "p99_ms": ("latency", 0.99, "99th percentile response time, ms (upper bound)"),
    "p999_ms": ("latency", 0.999, "99.9th percentile response time, ms (upper bound)"),
    "avg_ms": ("latency", None, "mean response time, ms (upper bound)"),
    "max_ms": ("latency", None, "slowest response, ms (upper bound)"),
    "max_fail_ratio": ("ratio", None, "failed / all requests, 0..1 (upper bound)"),
    "min_rps": ("throughput", None, "requests per second over the measured interval (lower bound)"),
}


class SlaError(ValueError):
    """The SLA file is missing, not YAML, or not a valid SLA."""


@dataclass(frozen=True)
class Limit:
    name: str  # request name, "Aggregated" or "*"
    metric: str
    value: float

    @property
    def is_lower_bound(self) -> bool:
        return self.metric.startswith("min_")


@dataclass
class Sla:
    limits: List[Limit] = field(default_factory=list)
    source: str = "<sla>"

    @property
    def names(self) -> List[str]:
        return sorted({limit.name for limit in self.limits})


@dataclass(frozen=True)
class Check:
    name: str
    metric: str
    limit: float
    measured: Optional[float]  # None: no request of that name was measured
    passed: bool
    note: str = ""


@dataclass
class Verdict:
    checks: List[Check]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> List[Check]:
        return [check for check in self.checks if not check.passed]


# -- reading ----------------------------------------------------------------------
def _number(where: str, metric: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SlaError(f"{where}: {metric} must be a number, got {value!r}")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise SlaError(f"{where}: {metric} must be a finite number, got {value!r}")
    kind = METRICS[metric][0]
    if kind == "ratio":
        if not 0.0 <= number <= 1.0:
            raise SlaError(f"{where}: {metric} is a ratio of failed requests and must be in [0, 1], got {value!r}")
    elif number <= 0:
        raise SlaError(f"{where}: {metric} must be greater than 0, got {value!r}")
    return number


def parse_sla(data: Any, source: str = "<sla>") -> Sla:
    """Check and read the YAML document ``data`` (already loaded) of an SLA file."""
    if data is None:
        raise SlaError(f"{source}: the SLA file is empty; give at least one name with one limit, "
                       f"e.g. 'Aggregated: {{p95_ms: 250}}'")
    if not isinstance(data, Mapping):
        raise SlaError(f"{source}: an SLA file is a mapping of request names to limits, got {type(data).__name__}")
    limits: List[Limit] = []
    for raw_name, metrics in data.items():
        if not isinstance(raw_name, str) or not raw_name.strip():
            raise SlaError(f"{source}: request names must be non-empty strings, got {raw_name!r}")
        name = AGGREGATED if raw_name.strip().lower() in _AGGREGATED_ALIASES else raw_name.strip()
        where = f"{source}: {raw_name!r}"
        if not isinstance(metrics, Mapping) or not metrics:
            raise SlaError(f"{where}: give a mapping of limits (e.g. {{p95_ms: 250}}), got {metrics!r}")
        for metric, value in metrics.items():
            if metric not in METRICS:
                raise SlaError(f"{where}: unknown metric {metric!r}; known metrics: {', '.join(METRICS)}")
            limits.append(Limit(name, str(metric), _number(where, str(metric), value)))
    return Sla(limits, source)


def load_sla(path: Union[str, Path]) -> Sla:
    """Read and check an SLA file (YAML)."""
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on extras
        raise SlaError("reading SLA files needs PyYAML: pip install 'tritonize[loadtest]'") from exc
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SlaError(f"cannot read the SLA file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SlaError(f"{path} is not valid YAML: {exc}") from exc
    return parse_sla(data, str(path))


# -- checking ---------------------------------------------------------------------
def measure(entry: Any, metric: str) -> Optional[float]:
    """``metric`` of a Locust ``StatsEntry``; None when it saw no request."""
    if not entry.num_requests:
        return None
    kind, percentile, _ = METRICS[metric]
    if percentile is not None:
        return float(entry.get_response_time_percentile(percentile))
    if metric == "avg_ms":
        return float(entry.avg_response_time)
    if metric == "max_ms":
        return float(entry.max_response_time)
    if metric == "max_fail_ratio":
        return float(entry.fail_ratio)
    if metric == "min_rps":
        return float(entry.total_rps)
    raise SlaError(f"unknown metric {metric!r}")  # pragma: no cover - METRICS is checked at load


def evaluate(sla: Sla, stats: Any, request_type: str = "grpc") -> Verdict:
    """Check every limit of ``sla`` against Locust's ``RequestStats``."""
    by_name = {name: entry for (name, method), entry in stats.entries.items() if method == request_type}
    checks: List[Check] = []
    for limit in sla.limits:
        if limit.name == AGGREGATED:
            targets: Iterable[Tuple[str, Any]] = [(AGGREGATED, stats.total)]
        elif limit.name == EVERY:
            targets = sorted(by_name.items()) or [(EVERY, None)]
        else:
            targets = [(limit.name, by_name.get(limit.name))]
        for name, entry in targets:
            measured = None if entry is None else measure(entry, limit.metric)
            if measured is None:
                if entry is None and limit.name not in (AGGREGATED, EVERY):
                    known = ", ".join(sorted(by_name)) or "none"
                    note = f"no request of this name was measured (measured: {known})"
                else:
                    note = "no request was measured"
                checks.append(Check(name, limit.metric, limit.value, None, False, note))
                continue
            passed = measured >= limit.value if limit.is_lower_bound else measured <= limit.value
            checks.append(Check(name, limit.metric, limit.value, measured, passed))
    return Verdict(checks)


# -- printing ---------------------------------------------------------------------
def _fmt(value: Optional[float], metric: str) -> str:
    if value is None:
        return "-"
    if metric == "max_fail_ratio":
        return f"{value:.4f}"
    if metric == "min_rps":
        return f"{value:.1f}"
    return f"{value:g}" if value == int(value) else f"{value:.3g}"


def format_verdict(verdict: Verdict, interval: str = "") -> str:
    """The SLA table: one row per check, PASS or FAIL, and a last line that says which."""
    rows = []
    for check in verdict.checks:
        bound = ">=" if check.metric.startswith("min_") else "<="
        measured = _fmt(check.measured, check.metric)
        rows.append([check.name, check.metric, f"{bound} {_fmt(check.limit, check.metric)}", measured,
                     "PASS" if check.passed else "FAIL", check.note])
    title = "SLA" + (f" ({interval})" if interval else "")
    text = title + "\n" + table(rows, ["name", "metric", "limit", "measured", "result", ""], right=(3,))
    failed = verdict.failed
    if failed:
        text += f"\nSLA FAILED: {len(failed)} of {len(verdict.checks)} checks breached: " + "; ".join(
            f"{c.name} {c.metric} {_fmt(c.measured, c.metric)} (limit {_fmt(c.limit, c.metric)})" for c in failed
        )
    else:
        text += f"\nSLA PASSED: all {len(verdict.checks)} checks within limits"
    return text


def verdict_rows(verdict: Verdict) -> List[Dict[str, Any]]:
    """The checks as dicts (for sla.csv and summary.json)."""
    return [
        {"name": c.name, "metric": c.metric, "limit": c.limit, "measured": c.measured,
         "result": "PASS" if c.passed else "FAIL", "note": c.note}
        for c in verdict.checks
    ]
