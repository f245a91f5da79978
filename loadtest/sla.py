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

A file with metrics at the top level (``p95_ms: 250``, ``max_fail_ratio: 0.01``) holds the
limits of ``Aggregated``; a file that mixes top-level metrics with request names is refused,
and the message shows it rewritten with the metrics under ``Aggregated``.

Latency limits are upper bounds in milliseconds, ``max_fail_ratio`` is an upper
bound on failures / requests (0..1), ``min_rps`` a lower bound on requests per
second over the measured interval. The numbers are read from Locust's own stats
(``StatsEntry``) after the warm-up, so they are the same as in Locust's CSV and
HTML reports.

This module does not import Locust: it reads any object with Locust's
``RequestStats`` shape, so it can be checked without starting a load test.
"""

from __future__ import annotations

import difflib
import math
import re
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
# an example value of each kind of metric, for the messages
_EXAMPLE = {"latency": 250, "ratio": 0.01, "throughput": 20}
_SHAPES = (
    "It takes one of two shapes: metrics at the top level, the limits of all requests "
    "together (Aggregated):\n\n  p95_ms: 250\n  max_fail_ratio: 0.01\n\nor request names (TASK:MODEL, "
    "Aggregated, or \"*\" for each name), each with a mapping of limits:\n\n  Aggregated:\n    p95_ms: 250\n"
    "  text-classification:sentiment:\n    p50_ms: 40"
)


def _example(metric: str) -> str:
    return f"{metric}: {_EXAMPLE[METRICS[metric][0]]}"


def _yaml_key(key: str) -> str:
    """``key`` as a YAML mapping key: plain where YAML reads it back as is, else double-quoted (JSON)."""
    import json

    plain = re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*", key) and not key.endswith(":")
    return key if plain else json.dumps(key)


def _yaml_value(value: Any) -> str:
    import json

    if isinstance(value, bool) or value is None or isinstance(value, (str, list, dict)):
        return json.dumps(value, default=str)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _yaml(document: Mapping[str, Mapping[str, Any]], indent: str = "  ") -> str:
    """A two-level mapping as block YAML (what the messages show; no PyYAML needed)."""
    lines = []
    for name, metrics in document.items():
        lines.append(f"{indent}{_yaml_key(name)}:")
        lines.extend(f"{indent}  {_yaml_key(str(metric))}: {_yaml_value(value)}" for metric, value in metrics.items())
    return "\n".join(lines)


def _distance(a: str, b: str) -> int:
    """Edits from ``a`` to ``b`` (insert, delete, substitute, swap two neighbours)."""
    rows = [list(range(len(b) + 1))] + [[i] + [0] * len(b) for i in range(1, len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            rows[i][j] = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                rows[i][j] = min(rows[i][j], rows[i - 2][j - 2] + 1)
    return rows[len(a)][len(b)]


def close_metrics(word: str, limit: int = 3) -> List[str]:
    """The known metrics ``word`` was probably meant to be, nearest first (``difflib``'s matches,
    ranked by edit distance, a swap of two neighbours counting as one edit: p59_ms -> p95_ms)."""
    word = word.strip().lower()
    matches = difflib.get_close_matches(word, list(METRICS), n=len(METRICS), cutoff=0.6)
    ranked = sorted(matches, key=lambda m: (_distance(word, m), sorted(m) != sorted(word), matches.index(m)))
    return ranked[:limit]


def _unknown_metric(where: str, metric: Any) -> SlaError:
    guesses = close_metrics(str(metric))
    guess = f" (did you mean {' / '.join(guesses)}?)" if guesses else ""
    return SlaError(f"{where}: unknown metric {metric!r}{guess}; known metrics: {', '.join(METRICS)} "
                    f"(e.g. {_example(guesses[0] if guesses else 'p95_ms')})")


def _number(where: str, metric: str, value: Any) -> float:
    kind, _, description = METRICS[metric]
    hint = f" (e.g. {_example(metric)}; {description})"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SlaError(f"{where}: {metric} must be a number, got {value!r}{hint}")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise SlaError(f"{where}: {metric} must be a finite number, got {value!r}{hint}")
    if kind == "ratio":
        if not 0.0 <= number <= 1.0:
            raise SlaError(f"{where}: {metric} is a ratio of failed requests and must be in [0, 1], got {value!r}"
                           f" (e.g. {_example(metric)} for at most 1% failed; 0 for none)")
    elif number <= 0:
        raise SlaError(f"{where}: {metric} must be greater than 0, got {value!r}{hint}")
    return number


def _limits_of(where: str, name: str, metrics: Mapping[Any, Any]) -> List[Limit]:
    limits = []
    for metric, value in metrics.items():
        if metric not in METRICS:
            raise _unknown_metric(where, metric)
        limits.append(Limit(name, str(metric), _number(where, str(metric), value)))
    return limits


def parse_sla(data: Any, source: str = "<sla>") -> Sla:
    """Check and read the YAML document ``data`` (already loaded) of an SLA file.

    Two shapes are read: request names, each with a mapping of limits (``Aggregated: {p95_ms: 250}``),
    or metrics at the top level (``p95_ms: 250``), which are the limits of ``Aggregated``. A file that
    mixes the two is refused, with the file rewritten in the first shape as the example.
    """
    if data is None:
        raise SlaError(f"{source}: the SLA file is empty; give at least one limit. " + _SHAPES)
    if not isinstance(data, Mapping):
        got = "a list (YAML '- ' items)" if isinstance(data, list) else f"{type(data).__name__} {data!r}"
        raise SlaError(f"{source}: an SLA file is a mapping, got {got}. " + _SHAPES)
    if not data:
        raise SlaError(f"{source}: the SLA file is an empty mapping; give at least one limit. " + _SHAPES)
    top_metrics = {key: value for key, value in data.items() if isinstance(key, str) and key in METRICS}
    names = {key: value for key, value in data.items() if key not in top_metrics}
    # a top-level key that is neither a metric nor a name with limits: a misspelt metric, most often
    for key, value in names.items():
        if not isinstance(key, str) or not key.strip():
            raise SlaError(f"{source}: request names are non-empty strings such as 'text-classification:sentiment' "
                           f"or 'Aggregated', got {key!r}. An SLA file is a mapping. " + _SHAPES)
        if isinstance(value, Mapping) and value:
            continue
        if not isinstance(value, Mapping) and close_metrics(key):
            raise _unknown_metric(f"{source}: top level", key)
        example = _yaml({key.strip(): {"p95_ms": 250, "max_fail_ratio": 0.01}})
        got = "no limits" if value is None or isinstance(value, Mapping) else f"{value!r}"
        is_name = key.strip().lower() in _AGGREGATED_ALIASES or key.strip() == EVERY or ":" in key
        note = ("" if is_name else f"\n\n({key!r} is not a metric either; known metrics: {', '.join(METRICS)}. "
                "Metrics at the top level, e.g. 'p95_ms: 250', are the limits of Aggregated.)")
        raise SlaError(f"{source}: {key!r}: give a mapping of limits under the name, got {got}; e.g.\n\n"
                       f"{example}{note}")
    if top_metrics and names:
        merged: Dict[str, Dict[str, Any]] = {}
        for key, value in names.items():
            name = AGGREGATED if key.strip().lower() in _AGGREGATED_ALIASES else key.strip()
            merged.setdefault(name, {}).update(value)
        aggregated = dict(merged.pop(AGGREGATED, {}))
        for metric, value in top_metrics.items():
            aggregated.setdefault(metric, value)
        example = _yaml({AGGREGATED: aggregated, **merged})
        raise SlaError(
            f"{source}: the top level mixes metrics ({', '.join(top_metrics)}) with request names "
            f"({', '.join(repr(n) for n in names)}). Either give only metrics at the top level (they are the "
            "limits of all requests together, Aggregated), or only names, each with its limits; this file, "
            f"with its top-level metrics under Aggregated, reads:\n\n{example}"
        )
    if top_metrics:
        return Sla(_limits_of(f"{source}: top level (limits of {AGGREGATED})", AGGREGATED, top_metrics), source)
    limits: List[Limit] = []
    for raw_name, metrics in data.items():
        name = AGGREGATED if raw_name.strip().lower() in _AGGREGATED_ALIASES else raw_name.strip()
        limits.extend(_limits_of(f"{source}: {raw_name!r}", name, metrics))
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
