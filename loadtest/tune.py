"""``tritonize tune``: the fastest configuration of an ensemble that still meets the SLA, measured end to end.

For each candidate setting of the knobs (``loadtest/knobs.py``) the ensemble
is reloaded with those configs and loaded through the ensemble, exactly as
``tritonize loadtest`` loads it (the same Locust users on the SDK, the same
SLA evaluation), at rising concurrency until the SLA breaks. A candidate's
figure is the highest throughput at which it met the SLA, with that run's
p50/p95/p99.

The search spends the budget where it pays:

1. the current config first (the baseline, measured in the same run as
   everything it is compared with);
2. a coarse pass: each knob moved alone to each of its other values, the
   knobs taken in turn (instances, threads, queue delay, token budget,
   max_batch_size, graph, preferred batch sizes), so that a short budget
   still tries every knob once;
3. refinement around the front: the best value of every knob that helped,
   combined; pairs of the best changes; then the neighbours of the best.

It stops when the budget is spent (a candidate is started only if the
average candidate so far still fits), or at Ctrl-C, and reports the best
found so far either way. Own server: the ensemble's models are copied (hard
links) into a scratch repository served by a local tritonserver. ``--url``:
a running server in explicit model-control mode, whose repository this is,
gets each candidate's configs written into the repository and reloaded
through the model-control API; the original configs are put back at the end
(unless ``--apply``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tritonize.loadtest.knobs import Ensemble, Knobs, TuneError

DEFAULT_CONCURRENCY = (1, 4, 16, 64)
FINALISTS = 3  # the current config and the two best others
CONFIRM_ROUNDS = 2
KNOB_ORDER = ("instances", "threads", "queue_delay_us", "budget", "max_batch_size", "graph", "preferred")


# -- results ------------------------------------------------------------------------------
@dataclass
class Level:
    """One load at one concurrency."""

    concurrency: int
    rps: float
    p50_ms: Optional[float]
    p95_ms: Optional[float]
    p99_ms: Optional[float]
    requests: int
    failures: int
    passed: bool


@dataclass
class Candidate:
    knobs: Knobs
    stage: str  # baseline | coarse | refine
    levels: List[Level] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""
    #: the finalists' loads again, at their best concurrency, interleaved with each other's
    confirmations: List[Level] = field(default_factory=list)

    @property
    def best(self) -> Optional[Level]:
        """The highest throughput at which the SLA held."""
        passed = [level for level in self.levels if level.passed]
        return max(passed, key=lambda level: level.rps) if passed else None

    @property
    def score(self) -> float:
        """The best throughput meeting the SLA; for a finalist, the median with its confirmations (a
        confirmation that breached the SLA counts 0), so one lucky run does not win."""
        best = self.best
        if best is None:
            return 0.0
        runs = [best.rps, *(level.rps if level.passed else 0.0 for level in self.confirmations)]
        return statistics.median(runs)


def pareto(candidates: Sequence[Candidate]) -> List[Candidate]:
    """The candidates no other beats on both throughput (higher) and p95 (lower), by throughput."""
    scored = [(c, c.score, c.best.p95_ms) for c in candidates if c.best is not None and c.best.p95_ms is not None]
    front = []
    for c, rps, p95 in scored:
        dominated = any(o is not c and o_rps >= rps and o_p95 <= p95 and (o_rps > rps or o_p95 < p95)
                        for o, o_rps, o_p95 in scored)
        if not dominated:
            front.append(c)
    return sorted(front, key=lambda c: c.score)


# -- the search ---------------------------------------------------------------------------
def alternatives(base: Knobs, cores: int, max_positions: int, graphs: Sequence[str]) -> Dict[str, List[Any]]:
    """The values each knob may take (a short list each: the search combines them, never all of them)."""
    budgets = sorted({None, *(b for b in (512, 1024, 2048, 4096) if b >= max_positions)} - {base.budget},
                     key=lambda b: -1 if b is None else b)
    return {
        "instances": [n for n in (1, 2, 4) if n <= max(1, cores)],
        "threads": [None, *(t for t in (1, 2, 4) if t <= max(1, cores))],
        "queue_delay_us": [0, 1000, 5000],
        "budget": [base.budget, *budgets],
        "max_batch_size": [8, 32, 64],
        "graph": [base.graph, *(g for g in graphs if g != base.graph)],
        "preferred": [(), (4, 8)],
    }


def coarse(base: Knobs, values: Dict[str, List[Any]]) -> List[Knobs]:
    """Each knob moved alone to each other value, the knobs taken in turn (round robin)."""
    queues = {k: [v for v in values[k] if v != getattr(base, k)] for k in KNOB_ORDER}
    out: List[Knobs] = []
    while any(queues.values()):
        for knob in KNOB_ORDER:
            if queues[knob]:
                out.append(base.with_(**{knob: queues[knob].pop(0)}))
    return out


def refine(base: Knobs, done: Sequence[Candidate], values: Dict[str, List[Any]]) -> List[Knobs]:
    """Around the front: the best value of every knob that helped, combined; pairs of the best changes;
    then the neighbours (one step along each knob's list) of the best so far."""
    baseline = next((c.score for c in done if c.knobs == base), 0.0)
    gains: Dict[str, Tuple[float, Any]] = {}
    for c in done:
        changed = [k for k in KNOB_ORDER if getattr(c.knobs, k) != getattr(base, k)]
        if len(changed) == 1 and c.score > baseline * 1.02:
            knob = changed[0]
            if knob not in gains or c.score > gains[knob][0]:
                gains[knob] = (c.score, getattr(c.knobs, knob))
    ranked = sorted(gains.items(), key=lambda item: -item[1][0])
    out: List[Knobs] = []
    if len(ranked) > 1:
        out.append(base.with_(**{k: v for k, (_, v) in ranked}))
    for i in range(len(ranked)):
        for j in range(i + 1, min(len(ranked), 3)):
            out.append(base.with_(**{ranked[i][0]: ranked[i][1][1], ranked[j][0]: ranked[j][1][1]}))
    best = max(done, key=lambda c: c.score).knobs if done else base
    for knob in KNOB_ORDER:
        options = values[knob]
        current = getattr(best, knob)
        if current in options:
            at = options.index(current)
            for k in (at - 1, at + 1):
                if 0 <= k < len(options):
                    out.append(best.with_(**{knob: options[k]}))
    return out


# -- measuring ----------------------------------------------------------------------------
@dataclass
class Measure:
    """How each load is run: ``tritonize loadtest``'s machinery, quiet, one concurrency at a time."""

    host: str
    metrics_url: Optional[str]
    model: str
    sla_path: Path
    seconds: float = 8.0
    warmup: float = 2.0
    inputs: Optional[Path] = None
    timeout: float = 10.0

    def level(self, users: int, work: Path) -> Tuple[Level, bool]:
        """One load at ``users``; returns it and whether it was interrupted (Ctrl-C)."""
        from tritonize.loadtest.plan import LoadTestOptions, resolve_plan
        from tritonize.loadtest.run import EXIT_INTERRUPTED, LoadTest, Printer
        from tritonize.loadtest.sla import load_sla

        out = work / f"users-{users}"
        options = LoadTestOptions(
            host=self.host, models=[self.model], data=self.inputs, sla=self.sla_path, users=users,
            spawn_rate=float(max(users, 10)), run_time=self.warmup + self.seconds, warmup=self.warmup,
            think_time=(0.0, 0.0), csv_dir=out, metrics_url=self.metrics_url, timeout=self.timeout,
            attempts=1, stop_timeout=self.timeout + 1,
        )
        options.check()
        test = LoadTest(options, resolve_plan(options), load_sla(self.sla_path), Printer(io.StringIO(), io.StringIO()))
        code = test.run()
        summary = json.loads((out / "summary.json").read_text())
        total = summary["locust"]["Aggregated"]
        level = Level(users, float(total["rps"] or 0.0), total["p50_ms"], total["p95_ms"], total["p99_ms"],
                      int(total["requests"]), int(total["failures"]),
                      bool(summary["sla_passed"]) and int(total["requests"]) > 0)
        return level, code == EXIT_INTERRUPTED


class Reloader:
    """Puts a candidate's configs in place and has the server load them."""

    def __init__(self, ensemble: Ensemble, root: Path, control: Any, graphs: Dict[str, Path]) -> None:
        self.ensemble, self.root, self.control, self.graphs = ensemble, root, control, graphs

    def __call__(self, knobs: Knobs) -> None:
        self.ensemble.write(self.root, knobs, self.graphs)
        for model in [*self.ensemble.steps, self.ensemble.name]:  # steps first: the ensemble follows them
            self.control.load(model, timeout=300)


# -- the run ------------------------------------------------------------------------------
@dataclass
class TuneOptions:
    repository: Path
    model: str
    sla: Path
    budget: float = 600.0
    concurrency: Tuple[int, ...] = DEFAULT_CONCURRENCY
    inputs: Optional[Path] = None
    apply: bool = False
    url: Optional[str] = None  # a running server (gRPC); its HTTP address in http_url
    http_url: Optional[str] = None
    metrics_url: Optional[str] = None
    out: Path = Path("tune-report")
    seconds: float = 8.0
    warmup: float = 2.0
    checkpoint: Optional[str] = None  # with graphs: export these variants behind the gate
    graphs: Tuple[str, ...] = ()

    def check(self) -> None:
        from tritonize.loadtest.sla import load_sla

        if not Path(self.repository).is_dir():
            raise TuneError(f"model repository {self.repository} does not exist")
        if self.budget <= 0:
            raise TuneError(f"--budget must be more than 0, got {self.budget:g}s")
        if not self.concurrency or any(c < 1 for c in self.concurrency):
            raise TuneError(f"--concurrency takes whole numbers of at least 1, e.g. 1,4,16,64; got "
                            f"{','.join(map(str, self.concurrency)) or 'nothing'}")
        if self.seconds <= 0 or self.warmup < 0:
            raise TuneError("--seconds must be more than 0 and --warmup at least 0")
        if self.graphs and not self.checkpoint:
            raise TuneError("--graphs needs --checkpoint: each graph variant is exported (behind the accuracy "
                            "gate) from the checkpoint")
        load_sla(self.sla)  # an SLA file that does not parse fails now, not after the first candidate


@dataclass
class TuneResult:
    candidates: List[Candidate]
    baseline: Candidate
    winner: Optional[Candidate]
    interrupted: bool
    confirmed: bool = False  # the winner and the baseline were measured again, interleaved
    written: List[Path] = field(default_factory=list)

    @property
    def gain(self) -> Optional[float]:
        if self.winner is None or not self.baseline.score:
            return None
        return self.winner.score / self.baseline.score


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def export_graphs(options: TuneOptions, ensemble: Ensemble, work: Path, say: Callable[[str], None]) -> Dict[str, Path]:
    """Each ``--graphs`` variant exported from ``--checkpoint`` behind the accuracy gate: name -> version dir."""
    from tritonize.exporters.checkpoint import ExportError
    from tritonize.exporters.export import ExportOptions, export
    from tritonize import protocol

    kinds = {"fp32": {}, "O1": {"optimize": "O1"}, "O2": {"optimize": "O2"}, "O3": {"optimize": "O3"},
             "int8": {"quantize": "int8"}, "O2+int8": {"optimize": "O2", "quantize": "int8"}}
    found: Dict[str, Path] = {}
    max_length = int(ensemble.config.parameters[protocol.PARAM_MAX_LENGTH].string_value or 0)
    for graph in options.graphs:
        if graph not in kinds:
            raise TuneError(f"--graphs: {graph!r} is not one of {', '.join(kinds)}")
        repository = work / "graphs" / graph.replace("+", "-")
        say(f"tune: exporting the {graph} graph of {options.checkpoint} (behind the accuracy gate) ...")
        try:
            export(ExportOptions(str(options.checkpoint), ensemble.task, ensemble.name, repository,
                                 max_length=max_length or None, layout=ensemble.layout, **kinds[graph]),
                   stream=io.StringIO())
        except ExportError as exc:
            say(f"tune: the {graph} graph is left out: {str(exc)[:300]}")
            continue
        found[graph] = repository / ensemble.encoder_model / "1"
    return found


def tune(options: TuneOptions, say: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)
         ) -> TuneResult:
    import tritonize.loadtest.run  # noqa: F401  (Locust's monkey-patching before any server or thread)

    options.check()
    ensemble = Ensemble(Path(options.repository), options.model)
    base = ensemble.current()
    started = time.monotonic()
    deadline = started + options.budget
    with tempfile.TemporaryDirectory(prefix="tritonize-tune-") as tmp:
        work = Path(tmp)
        graphs = export_graphs(options, ensemble, work, say) if options.graphs else {}
        values = alternatives(base, _cores(), ensemble.max_positions(), sorted(graphs))
        if options.url:
            result = _search_on(options, ensemble, base, values, graphs, work, deadline, say,
                                host=options.url, http=options.http_url or _http_of(options.url),
                                root=Path(options.repository), restore=True)
        else:
            from tritonize.deploy import LocalServer, free_port

            root = work / "repository"
            root.mkdir()
            ensemble.copy_into(root)
            say(f"tune: serving a copy of {options.model} on a local tritonserver ...")
            server = LocalServer(root, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                                 heal=False, ready_timeout=300)
            with server:
                result = _search_on(options, ensemble, base, values, graphs, work, deadline, say,
                                    host=server.grpc_url, http=server.http_url, root=root, restore=False,
                                    metrics_url=server.metrics_url)
        if options.apply and result.winner is not None:
            result.written.extend(apply(options, ensemble, result, graphs))
    result.written[:0] = report(options, result, say)
    return result


def _http_of(grpc_url: str) -> str:
    host, _, port = grpc_url.rpartition(":")
    return f"{host}:{int(port) - 1}" if port.isdigit() else grpc_url


def _search_on(options: TuneOptions, ensemble: Ensemble, base: Knobs, values: Dict[str, List[Any]],
               graphs: Dict[str, Path], work: Path, deadline: float, say: Callable[[str], None], *, host: str,
               http: str, root: Path, restore: bool, metrics_url: Optional[str] = None) -> TuneResult:
    from tritonize.deploy.healing import ModelControl

    control = ModelControl(http)
    reload = Reloader(ensemble, root, control, graphs)
    original = ensemble.config_files() if restore else {}
    measure = Measure(host, options.metrics_url or metrics_url, options.model, Path(options.sla),
                      options.seconds, options.warmup, options.inputs)
    done: List[Candidate] = []
    seen = set()
    interrupted = False
    # kept for the confirmation: the finalists measured again, CONFIRM_ROUNDS rounds each
    one_load = options.warmup + options.seconds + 3.0
    reserve = min(CONFIRM_ROUNDS * FINALISTS * one_load, 0.3 * (deadline - time.monotonic()))
    queue: List[Tuple[Knobs, str]] = [(base, "baseline")] + [(k, "coarse") for k in coarse(base, values)]
    refined = False
    try:
        while not interrupted:
            if not queue:
                if refined:
                    break
                refined = True
                queue = [(k, "refine") for k in refine(base, done, values)]
                continue
            knobs, stage = queue.pop(0)
            if knobs in seen:
                continue
            left = deadline - time.monotonic() - reserve
            typical = sum(c.seconds for c in done) / len(done) if done else 0.0
            if done and left < typical * 0.75:
                say(f"tune: budget spent ({_clock(left)} left, a candidate takes about {_clock(typical)})")
                break
            seen.add(knobs)
            candidate = Candidate(knobs, stage)
            say(f"[tune {len(done) + 1}, {stage}, {_clock(left)} of the budget left] {knobs.label()}")
            t0 = time.monotonic()
            try:
                reload(knobs)
                levels = sorted(options.concurrency)
                while levels:
                    users = levels.pop(0)
                    level, interrupted = measure.level(users, work / f"candidate-{len(done) + 1}")
                    candidate.levels.append(level)
                    say(f"    {users:>3} users: {level.rps:8.1f} req/s, p50 {_ms(level.p50_ms)}, "
                        f"p95 {_ms(level.p95_ms)}, p99 {_ms(level.p99_ms)}, {level.failures} failures: "
                        f"{'SLA met' if level.passed else 'SLA breached'}")
                    if interrupted:
                        break
                    if not level.passed:
                        # once between the last concurrency that met the SLA and this one (4 -> 16: 8)
                        met = [lv.concurrency for lv in candidate.levels if lv.passed]
                        middle = round(math.sqrt(met[-1] * users)) if met else 0
                        tried = {lv.concurrency for lv in candidate.levels}
                        levels = [middle] if met and met[-1] < middle < users and middle not in tried else []
            except KeyboardInterrupt:
                interrupted = True
            except Exception as exc:  # noqa: BLE001 - a candidate the server refuses is reported, not fatal
                candidate.error = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
                say(f"    failed: {candidate.error}")
            candidate.seconds = time.monotonic() - t0
            if interrupted:
                say("tune: interrupted: keeping the best found so far")
                if candidate.levels and not candidate.error:
                    done.append(candidate)
                break
            done.append(candidate)
        if not interrupted:
            interrupted = confirm(done, base, reload, measure, work, deadline, say)
    except KeyboardInterrupt:
        interrupted = True
        say("tune: interrupted: keeping the best found so far")
    finally:
        if restore:  # a running server: put the original files back, byte for byte, and load them
            try:
                for path, data in original.items():
                    if not path.is_file() or path.read_bytes() != data:
                        path.write_bytes(data)
                for model in [*ensemble.steps, ensemble.name]:
                    control.load(model, timeout=300)
            except Exception as exc:  # noqa: BLE001
                say(f"tune: warning: could not load the original configs again: {exc}")
    baseline = next(c for c in done if c.knobs == base) if any(c.knobs == base for c in done) else Candidate(base, "baseline")
    passing = [c for c in done if c.best is not None]
    # once the finalists were measured again, the winner is one of them: their medians are the fair
    # comparison, and a candidate's single best run must not beat them by luck
    confirmed = [c for c in passing if c.confirmations]
    pool = confirmed if len(confirmed) >= 2 else passing
    winner = max(pool, key=lambda c: c.score) if pool else None
    return TuneResult(done, baseline, winner, interrupted, confirmed=len(confirmed) >= 2)


def confirm(done: List[Candidate], base: Knobs, reload: Callable[[Knobs], None], measure: Measure, work: Path,
            deadline: float, say: Callable[[str], None]) -> bool:
    """Measure the current config and the best others again at their best concurrency, in alternating
    order, while the budget lasts; returns whether it was interrupted."""
    baseline = next((c for c in done if c.knobs == base), None)
    others = sorted((c for c in done if c.best is not None and c is not baseline), key=lambda c: -c.score)
    finalists = [c for c in [baseline, *others[:FINALISTS - 1]] if c is not None and c.best is not None]
    if len(finalists) < 2:
        return False
    say(f"tune: confirming {len(finalists)} finalists, {CONFIRM_ROUNDS} rounds, interleaved")
    for round_ in range(CONFIRM_ROUNDS):
        order = finalists if round_ % 2 == 0 else finalists[::-1]
        for c in order:
            if round_ > 0 and time.monotonic() > deadline:  # every finalist gets one more run, budget or not
                say("tune: budget spent during the confirmation")
                return False
            assert c.best is not None
            try:
                reload(c.knobs)
                level, interrupted = measure.level(c.best.concurrency, work / f"confirm-{round_}-{id(c)}")
            except Exception as exc:  # noqa: BLE001 - the search's figures stand; say why they are unconfirmed
                say(f"tune: the confirmation stopped: {str(exc).splitlines()[0][:300]}")
                return False
            c.confirmations.append(level)
            say(f"    {c.knobs.label()}: {level.rps:.1f} req/s at {level.concurrency} users, p95 "
                f"{_ms(level.p95_ms)}: {'SLA met' if level.passed else 'SLA breached'}")
            if interrupted:
                return True
    return False


def _ms(value: Optional[float]) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f} ms"


# -- reporting ----------------------------------------------------------------------------
def report(options: TuneOptions, result: TuneResult, say: Callable[[str], None]) -> List[Path]:
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    front = {id(c) for c in pareto(result.candidates)}
    rows = []
    for index, c in enumerate(result.candidates, 1):
        best = c.best
        rows.append({
            "candidate": index, "stage": c.stage, **{k: _cell(v) for k, v in c.knobs.as_dict().items()},
            "best_rps": round(best.rps, 2) if best else "", "score_rps": round(c.score, 2),
            "confirmations": json.dumps([round(level.rps, 2) for level in c.confirmations]),
            "concurrency": best.concurrency if best else "",
            "p50_ms": _num(best.p50_ms if best else None), "p95_ms": _num(best.p95_ms if best else None),
            "p99_ms": _num(best.p99_ms if best else None), "pareto": id(c) in front,
            "winner": c is result.winner, "baseline": c is result.baseline, "seconds": round(c.seconds, 1),
            "levels": json.dumps([level.__dict__ for level in c.levels]), "error": c.error,
        })
    csv_path = out / "tune.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["candidate"])
        writer.writeheader()
        writer.writerows(rows)
    written = [csv_path]
    plot_path = plot(result, out / "tune.png", options)
    if plot_path is not None:
        written.append(plot_path)
    say("")
    say(f"tune: {len(result.candidates)} candidates measured{' (interrupted)' if result.interrupted else ''}; "
        f"the highest throughput that meets {options.sla}:")
    for row in sorted(rows, key=lambda r: -(r["score_rps"] or 0))[:10]:
        mark = "*" if row["winner"] else ("=" if row["baseline"] else " ")
        knobs = result.candidates[row["candidate"] - 1].knobs.label()
        confirmed = " (median with its confirmations)" if row["confirmations"] != "[]" else ""
        say(f"  {mark} {str(row['score_rps'] or 'never met'):>10} req/s at {row['concurrency'] or '-':>3} users, "
            f"p95 {row['p95_ms'] or '-':>7} ms: {knobs}{confirmed}")
    base = result.baseline
    if result.winner is None:
        say("tune: no candidate met the SLA at any concurrency: loosen the SLA, or lower --concurrency")
    else:
        gain = result.gain
        how = ("medians of the finalists, measured again interleaved" if result.confirmed
               else "unconfirmed: the budget ran out before the finalists were measured again")
        say(f"tune: winner {result.winner.knobs.label()}: {result.winner.score:.1f} req/s vs the current config's "
            f"{base.score:.1f} req/s" + (f": {gain:.2f}x, measured in the same run ({how})" if gain else
                                         " (the current config never met the SLA)"))
    say("tune: wrote " + ", ".join(str(p) for p in written))
    return written


def _cell(value: Any) -> Any:
    if value is None:
        return "auto"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "-"
    return value


def _num(value: Optional[float]) -> Any:
    return "" if value is None else round(float(value), 2)


def plot(result: TuneResult, path: Path, options: TuneOptions) -> Optional[Path]:
    """Throughput against p95 for every candidate (each load faint; its figure bold: the best load that met
    the SLA, at the median of its runs for a finalist), the Pareto front."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(figsize=(8, 5.5), dpi=110)
    for c in result.candidates:
        points = [(level.p95_ms, level.rps) for level in sorted(c.levels, key=lambda lv: lv.concurrency)
                  if level.p95_ms is not None]
        if points:
            axes.plot(*zip(*points), color="0.8", linewidth=0.8, marker=".", markersize=4, zorder=1)
        best = c.best
        if best is not None and best.p95_ms is not None:
            axes.scatter([best.p95_ms], [c.score], s=22, color="tab:blue", zorder=2)
    front = [c for c in pareto(result.candidates)]
    if front:
        xs = [c.best.p95_ms for c in front]  # type: ignore[union-attr]
        ys = [c.score for c in front]
        axes.plot(xs, ys, color="tab:orange", linewidth=1.6, marker="o", label="Pareto front", zorder=3)
    for c, style, label in ((result.baseline, dict(marker="s", color="black"), "current config"),
                            (result.winner, dict(marker="*", color="tab:red", s=180), "winner")):
        if c is not None and c.best is not None and c.best.p95_ms is not None:
            axes.scatter([c.best.p95_ms], [c.score], zorder=4, label=label, **{"s": 70, **style})
    limit = _p95_limit(Path(options.sla))
    if limit:
        axes.axvline(limit, color="tab:red", linestyle="--", linewidth=1, label=f"SLA p95 {limit:g} ms")
    axes.set_xlabel("p95 latency (ms)")
    axes.set_ylabel("throughput meeting the SLA (requests/s)")
    axes.set_title(f"tritonize tune: {options.model}, {len(result.candidates)} candidates")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _p95_limit(sla_path: Path) -> Optional[float]:
    from tritonize.loadtest.sla import load_sla

    try:
        sla = load_sla(sla_path)
    except Exception:  # noqa: BLE001
        return None
    limits = [limit.value for limit in sla.limits if limit.metric == "p95_ms"]
    return min(limits) if limits else None


# -- applying -----------------------------------------------------------------------------
def apply(options: TuneOptions, ensemble: Ensemble, result: TuneResult, graphs: Dict[str, Path]) -> List[Path]:
    """Write the winner into the repository, all or nothing (as export does), with what was measured."""
    from tritonize.exporters.writer import RepositoryWriter

    winner = result.winner
    assert winner is not None and winner.best is not None
    best = winner.best
    record = {
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sla": str(options.sla),
        "knobs": winner.knobs.as_dict(),
        "tuned": [k for k in winner.knobs.as_dict() if getattr(winner.knobs, k) != getattr(result.baseline.knobs, k)],
        "throughput_rps": round(winner.score, 2), "best_run_rps": round(best.rps, 2), "concurrency": best.concurrency,
        "p50_ms": _num(best.p50_ms), "p95_ms": _num(best.p95_ms), "p99_ms": _num(best.p99_ms),
        "baseline_rps": round(result.baseline.score, 2), "gain": round(result.gain, 3) if result.gain else None,
        "candidates": len(result.candidates), "confirmed": result.confirmed,
    }
    writer = RepositoryWriter(Path(options.repository))
    with writer.transaction() as staging:
        for model in ensemble.models:
            target = staging.model_dir(model)
            import shutil

            shutil.copytree(ensemble.repository / model, target, dirs_exist_ok=True)
        ensemble.write(staging.root, winner.knobs, graphs, record)
    if options.url:  # the running server serves the repository: load the winner
        from tritonize.deploy.healing import ModelControl

        control = ModelControl(options.http_url or _http_of(options.url))
        for model in [*ensemble.steps, ensemble.name]:
            control.load(model, timeout=300)
    return [Path(options.repository) / model / "config.pbtxt" for model in ensemble.models]


def parse_concurrency(text: str) -> Tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise TuneError(f"--concurrency takes whole numbers separated by commas, e.g. 1,4,16,64; got {text!r}") from None
    return values

