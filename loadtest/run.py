"""Run a load test headless: on one machine, as a Locust master, or as a Locust worker.

``run(options)`` returns the process exit code:

* 0: the run completed and met its SLA (without an SLA: no request failed);
* 1: the SLA was breached (without an SLA: some requests failed), or users raised errors;
* 2: the run could not start: bad options, SLA or data file, no server at ``--host``,
  unknown models, workers that never connected;
* 130: interrupted (Ctrl-C); reports are still written.

Importing this module imports Locust, which monkey-patches the standard library
for gevent; ``tritonize loadtest`` imports it only when asked to run.
"""

from __future__ import annotations

# users first: Locust's monkey-patching and gRPC on gevent before anything else
from tritonize.loadtest import users as _users  # noqa: I001

import gc
import sys
import time
from pathlib import Path
from typing import IO, Any, Dict, List, Optional

import gevent
import locust.stats
from locust.env import Environment
from locust.log import setup_logging
from locust.rpc import Message
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import (
    RequestStats,
    get_error_report_summary,
    get_percentile_stats_summary,
    get_stats_summary,
    stats_history,
)

from tritonize.loadtest import reports, triton
from tritonize.loadtest.plan import LoadTestError, LoadTestOptions, Plan, given_metrics_url, resolve_plan
from tritonize.loadtest.sla import Sla, SlaError, Verdict, evaluate, format_verdict, load_sla, verdict_rows
from tritonize.loadtest.tables import table

EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

# messages between master and workers, on Locust's own channel
PLAN, RESET, STOP, STOPPED = "tritonize_plan", "tritonize_reset", "tritonize_stop", "tritonize_stopped"


def _seconds(value: float) -> str:
    return f"{value:g}s"


class Printer:
    def __init__(self, out: IO[str], err: IO[str]) -> None:
        self.out, self.err = out, err

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def progress(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()


# -- one machine, or the master ---------------------------------------------------------
class LoadTest:
    """Runs the users (locally, or on workers as the master), then measures and reports."""

    def __init__(self, options: LoadTestOptions, plan: Plan, sla: Optional[Sla], printer: Printer) -> None:
        self.options, self.plan, self.sla, self.printer = options, plan, sla, printer
        # --metrics-url, else $TRITONIZE_METRICS_URL, else found when the run starts (discover_metrics)
        self.metrics_url, self.metrics_source = given_metrics_url(options.metrics_url)
        # a call that runs when the test stops may take its whole deadline; it is waited for
        self.stop_timeout = max(options.stop_timeout, options.timeout + 1.0)
        self.environment = Environment(
            user_classes=_users.configure(plan), host=plan.host, stop_timeout=self.stop_timeout,
            locustfile="tritonize.loadtest",
        )
        self.worker_counts: Dict[str, Dict[str, Any]] = {}
        self.interrupted = False
        if options.master:
            try:
                self.runner: Any = self.environment.create_master_runner(options.master_bind_host,
                                                                         options.master_bind_port)
            except SystemExit as exc:  # Locust exits when the port is taken
                raise LoadTestError(f"cannot listen for workers on {options.master_bind_host}:"
                                    f"{options.master_bind_port}: the port is in use") from exc
            self.environment.events.worker_connect.add_listener(self._send_plan)
            self.runner.register_message(STOPPED, self._worker_stopped)
        else:
            self.runner = self.environment.create_local_runner()

    # -- master <-> workers ------------------------------------------------------------
    def _send_plan(self, client_id: str, **_: Any) -> None:
        self.runner.send_message(PLAN, self.plan.to_dict(), client_id)

    def _worker_stopped(self, environment: Any, msg: Any, **_: Any) -> None:
        self.worker_counts[msg.node_id] = dict(msg.data or {})

    def _wait_for_workers(self) -> None:
        options = self.options
        deadline = time.monotonic() + options.expect_workers_timeout
        shown = -1
        while len(self.runner.clients.ready) < options.expect_workers:
            ready = len(self.runner.clients.ready)
            if ready != shown:
                self.printer.progress(f"waiting for workers: {ready} of {options.expect_workers} connected to "
                                      f"{options.master_bind_host}:{options.master_bind_port}")
                shown = ready
            if time.monotonic() > deadline:
                raise LoadTestError(
                    f"only {ready} of {options.expect_workers} workers connected to the master at "
                    f"{options.master_bind_host}:{options.master_bind_port} within "
                    f"{options.expect_workers_timeout:g}s; start them with `tritonize loadtest --worker "
                    f"--master-host HOST --master-port {options.master_bind_port}`"
                )
            gevent.sleep(0.2)
        self.printer.progress(f"{len(self.runner.clients.ready)} workers connected")

    def _stop(self) -> None:
        if not isinstance(self.runner, MasterRunner):
            self.runner.stop()  # graceful: running requests finish (up to --stop-timeout)
            return
        # Each worker stops its users, sends its last stats, then says so: the master's
        # totals are complete when every worker has answered.
        workers = [client.id for client in self.runner.clients.all]
        self.runner.send_message(STOP, None)
        deadline = time.monotonic() + self.stop_timeout + 15
        while set(workers) - set(self.worker_counts) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        missing = sorted(set(workers) - set(self.worker_counts))
        if missing:
            self.printer.progress(f"warning: no final report from workers {', '.join(missing)}; "
                                  "the master's totals may miss their last requests")

    # -- the run -----------------------------------------------------------------------
    def _snapshot(self, view: Optional[triton.TritonView], settled: bool = False) -> Optional[triton.Snapshot]:
        if view is None:
            return None
        try:
            return view.settled_snapshot() if settled else view.snapshot()
        except Exception as exc:  # noqa: BLE001 - the load test's result stands without Triton's view
            self.printer.progress(f"warning: cannot read Triton's statistics from {self.plan.host}: {exc}")
            return None

    def _progress(self, elapsed: float, left: float, measuring: bool) -> None:
        stats = self.runner.stats.total
        phase = f"measuring, {max(0.0, left):.0f}s left" if measuring else f"warm-up, {max(0.0, left):.0f}s left"
        workers = f", {len(self.runner.clients.ready) + len(self.runner.clients.running)} workers" if isinstance(
            self.runner, MasterRunner) else ""
        p50 = stats.get_response_time_percentile(0.5) if stats.num_requests else 0
        p95 = stats.get_response_time_percentile(0.95) if stats.num_requests else 0
        self.printer.progress(
            f"[{elapsed:5.0f}s {phase}] {self.runner.user_count} users{workers}, "
            f"{stats.num_requests} requests, {stats.total_rps:.1f} req/s, p50 {p50:g} ms, p95 {p95:g} ms, "
            f"{stats.num_failures} failures"
        )

    def _header(self) -> str:
        options, plan = self.options, self.plan
        models = "; ".join(f"{task}: {', '.join(names)} (weight {plan.weights.get(task, 1)})"
                           for task, names in plan.models.items())
        where = (f"on {options.expect_workers} workers (master {options.master_bind_host}:{options.master_bind_port})"
                 if options.master else "on this machine")
        return (
            f"tritonize loadtest: {options.users} users (spawn {options.spawn_rate:g}/s) {where} against "
            f"{plan.host} for {_seconds(options.run_time)} (warm-up {_seconds(options.warmup)}, measured "
            f"{_seconds(options.measured_seconds)})\nmodels: {models}\npacing: {plan.pacing_text()}\n"
            f"inputs: {', '.join(f'{len(v)} for {k}' for k, v in plan.samples.items())}"
            f"{' from ' + str(options.data) if options.data else ' (built-in, short/medium/long)'}"
        )

    def run(self) -> int:
        options, printer = self.options, self.printer
        try:
            view: Optional[triton.TritonView] = triton.TritonView(
                self.plan.host, self.metrics_url, self.plan.ensembles, timeout=options.connect_timeout)
        except Exception as exc:  # noqa: BLE001
            printer.progress(f"warning: cannot read the ensembles' steps from {self.plan.host}: {exc}")
            view = None
        csv_writer = reports.LocustCsv(self.environment, options.csv_dir) if options.csv_dir else None
        history = gevent.spawn(stats_history, self.runner)
        try:
            if options.master:
                self._wait_for_workers()
            printer.say(self._header())
            if options.users < len(self.plan.models):
                printer.progress(f"warning: {options.users} users for {len(self.plan.models)} tasks: Locust gives "
                                 "each user one task, so some tasks get no user; raise --users")
            if view is not None:
                self._find_metrics(view)
            before = self._snapshot(view) if options.warmup == 0 else None
            gevent.spawn(self.runner.start, options.users, options.spawn_rate)
            started = time.monotonic()
            end = started + options.run_time  # moved when the warm-up ends: the measured part is run-time - warm-up
            every = options.progress_every or min(30.0, max(2.0, options.run_time / 10))
            next_progress = every
            measuring = options.warmup == 0
            try:
                while True:
                    now = time.monotonic()
                    elapsed = now - started
                    if not measuring and elapsed >= options.warmup:
                        if view is not None:
                            view.wake()
                        read = time.monotonic()
                        # Triton's counters (the metrics endpoint is read last), then at once, with
                        # no I/O in between, Locust's reset: both sides start counting together.
                        before = self._snapshot(view)
                        self._reset()
                        measuring = True
                        end = time.monotonic() + options.measured_seconds
                        next_progress = time.monotonic() - started + every
                        printer.progress(f"[{time.monotonic() - started:5.0f}s] warm-up over: Triton's counters "
                                         f"read ({time.monotonic() - read:.2f}s), Locust's stats reset; measuring "
                                         f"for {_seconds(options.measured_seconds)}")
                        continue
                    if measuring and now >= end:
                        break
                    if elapsed >= next_progress:
                        self._progress(elapsed, (end - now) if measuring else (options.warmup - elapsed), measuring)
                        next_progress += every
                    gevent.sleep(0.1)
            except KeyboardInterrupt:
                self.interrupted = True
                printer.progress("interrupted: stopping the users and writing the reports")
            printer.progress(f"[{time.monotonic() - started:5.0f}s] run time over: stopping the users "
                             f"(running requests finish, up to {_seconds(self.stop_timeout)})")
            self._stop()
            after = self._snapshot(view, settled=True)
            return self._finish(view, before if measuring else None, after, csv_writer)
        finally:
            history.kill(block=False)
            try:
                self.runner.quit()
            except Exception:  # noqa: BLE001 - quitting a runner that never started
                pass
            if view is not None:
                view.close()

    def _find_metrics(self, view: triton.TritonView) -> None:
        """Check the metrics URL given, or find each server's; say once what is missing."""
        options, printer = self.options, self.printer
        if view.metrics_url:
            try:
                triton.read_metrics(view.metrics_url, timeout=options.connect_timeout)
            except triton.TritonViewError as exc:
                printer.progress(f"warning: {exc} (from {self.metrics_source}); Locust's counts will not be "
                                 "checked against Triton's (give --metrics-url http://HOST:PORT/metrics)")
            return
        discovery = view.discover_metrics(timeout=min(options.connect_timeout, 2.0))
        self.metrics_url = view.metrics_url
        if self.metrics_url:
            self.metrics_source = "found: " + "; ".join(c.why for c in discovery.found.values())
            printer.progress(discovery.summary())
        else:
            self.metrics_source = "not found"
            printer.progress("warning: " + discovery.warning())

    def _reset(self) -> None:
        self.runner.stats.reset_all()
        if isinstance(self.runner, MasterRunner):
            self.runner.send_message(RESET, None)

    # -- results -----------------------------------------------------------------------
    def _finish(self, view: Optional[triton.TritonView], before: Optional[triton.Snapshot],
                after: Optional[triton.Snapshot], csv_writer: Optional[reports.LocustCsv]) -> int:
        options, printer, stats = self.options, self.printer, self.runner.stats
        total = stats.total
        span = (total.last_request_timestamp or total.start_time) - total.start_time
        interval = (f"after a {_seconds(options.warmup)} warm-up: {span:.1f}s from the reset to the last response"
                    if options.warmup else f"whole run: {span:.1f}s from the start to the last response")
        names = [name for name, _ in stats.entries] + ["Aggregated"]
        locust.stats.STATS_AUTORESIZE = False
        locust.stats.STATS_NAME_WIDTH = max(len(n) for n in names) + 12  # Locust pads to 80 by default
        printer.say("")
        printer.say(f"Locust ({interval}; response times in ms)")
        for line in get_stats_summary(stats, current=False):
            printer.say(line)
        printer.say("")
        for line in get_percentile_stats_summary(stats):
            printer.say(line)
        if stats.errors:
            printer.say("")
            for line in get_error_report_summary(stats):
                printer.say(line)
        exceptions = getattr(self.runner, "exceptions", {}) or {}
        if exceptions:
            printer.say("")
            printer.say("Errors raised inside users (not requests):")
            for exc in exceptions.values():
                printer.say(f"  {exc['count']}x {exc['msg']}")

        if self.worker_counts:
            printer.say("")
            printer.say(self._workers_table())

        verdict: Optional[Verdict] = None
        sla_text = ""
        if self.sla is not None:
            verdict = evaluate(self.sla, stats)
            sla_text = format_verdict(verdict, interval)
            printer.say("")
            printer.say(sla_text)

        result: Optional[triton.Breakdown] = None
        counts_text = ""
        if view is not None and before is not None and after is not None:
            result = triton.breakdown(view, before, after, stats)
            printer.say("")
            printer.say(triton.format_breakdown(result))
            note = (f"Exact for a run without warm-up. With a warm-up, a request in flight at the reset (at most "
                    f"one per user, {options.users} here) may be counted by Triton before it and by Locust after "
                    "it." if options.warmup else "")
            counts_text = triton.format_counts(triton.count_checks(result), result.metrics_error, note,
                                               tolerance=options.users if options.warmup else 0)
            printer.say("")
            printer.say(counts_text)
        else:
            printer.say("")
            printer.say("Triton's breakdown: not available (its statistics could not be read)")

        written = self._write_reports(csv_writer, verdict, result, sla_text, counts_text)
        if written:
            printer.say("")
            printer.say("Reports: " + ", ".join(str(p) for p in written))

        if self.interrupted:
            code = EXIT_INTERRUPTED
        elif verdict is not None:
            code = EXIT_OK if verdict.passed else EXIT_FAILED
        else:
            code = EXIT_FAILED if total.num_failures else EXIT_OK
        if exceptions and code == EXIT_OK:
            code = EXIT_FAILED
        printer.say("")
        if code == EXIT_OK:
            printer.say("RESULT: PASS" + (" (SLA met)" if verdict else f" ({total.num_requests} requests, no failure)"))
        elif code == EXIT_INTERRUPTED:
            printer.say("RESULT: INTERRUPTED")
        else:
            why = ("SLA breached" if verdict is not None and not verdict.passed
                   else "errors inside users" if exceptions else f"{total.num_failures} requests failed")
            printer.say(f"RESULT: FAIL ({why})")
        return code

    def _workers_table(self) -> str:
        rows = [[worker, str(data.get("requests", 0)), str(data.get("failures", 0))]
                for worker, data in sorted(self.worker_counts.items())]
        own = sum(int(d.get("requests", 0)) for d in self.worker_counts.values())
        rows.append(["sum of workers", str(own), str(sum(int(d.get("failures", 0)) for d in self.worker_counts.values()))])
        rows.append(["master (Aggregated)", str(self.runner.stats.total.num_requests),
                     str(self.runner.stats.total.num_failures)])
        return "Requests per worker (each worker's own count)\n" + table(rows, ["worker", "requests", "failures"],
                                                                        right=(1, 2))

    def _write_reports(self, csv_writer: Optional[reports.LocustCsv], verdict: Optional[Verdict],
                       result: Optional[triton.Breakdown], sla_text: str, counts_text: str) -> List[Path]:
        options = self.options
        written: List[Path] = []
        if csv_writer is not None:
            assert options.csv_dir is not None
            written.extend(csv_writer.finish())
            if result is not None:
                path = options.csv_dir / "triton_breakdown.csv"
                triton.write_breakdown_csv(result, path)
                written.append(path)
            if verdict is not None:
                path = options.csv_dir / "sla.csv"
                reports.write_sla_csv(verdict_rows(verdict), path)
                written.append(path)
            path = options.csv_dir / "summary.json"
            triton.dump_json(self._summary(verdict, result), path)
            written.append(path)
        if options.html is not None:
            reports.write_html(self.environment, options.html, result, sla_text, counts_text)
            written.append(options.html)
        return written

    def _summary(self, verdict: Optional[Verdict], result: Optional[triton.Breakdown]) -> Dict[str, Any]:
        stats = self.runner.stats
        entries = {}
        for (name, method), entry in sorted(stats.entries.items()):
            entries[name] = self._entry(entry)
        options = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.options.__dict__.items()}
        return {
            "options": options,
            "metrics": {"url": self.metrics_url, "source": self.metrics_source},
            "plan": {k: v for k, v in self.plan.to_dict().items() if k != "samples"},
            "locust": {"requests": entries, "Aggregated": self._entry(stats.total)},
            "sla": verdict_rows(verdict) if verdict is not None else None,
            "sla_passed": verdict.passed if verdict is not None else None,
            "triton": triton.breakdown_json(result) if result is not None else None,
            "counts": ([c.__dict__ for c in triton.count_checks(result)] if result is not None else None),
            "workers": self.worker_counts or None,
        }

    @staticmethod
    def _entry(entry: Any) -> Dict[str, Any]:
        return {
            "requests": entry.num_requests, "failures": entry.num_failures,
            "p50_ms": entry.get_response_time_percentile(0.5) if entry.num_requests else None,
            "p95_ms": entry.get_response_time_percentile(0.95) if entry.num_requests else None,
            "p99_ms": entry.get_response_time_percentile(0.99) if entry.num_requests else None,
            "avg_ms": entry.avg_response_time, "max_ms": entry.max_response_time, "rps": entry.total_rps,
        }


# -- a worker ---------------------------------------------------------------------------
class TritonizeWorkerRunner(WorkerRunner):
    """Locust's worker, which also takes the plan, the warm-up reset and the stop from the master.

    The messages are handled here rather than through ``register_message`` so that a
    plan sent the moment the worker connects is never dropped.
    """

    requests = 0
    failures = 0
    planned = False

    def handle_message(self, msg: Message) -> None:
        if msg.type == PLAN:
            plan = Plan.from_dict(msg.data)
            _users.configure(plan)
            self.environment.host = plan.host
            self.planned = True
        elif msg.type == RESET:
            self.stats.reset_all()
            self.requests = self.failures = 0
        elif msg.type == STOP:
            self.stop()  # graceful: running requests finish (up to the master's stop timeout)
            self._send_stats()  # the last stats first, then the word that there is nothing more
            self.send_message(STOPPED, {"requests": self.requests, "failures": self.failures})
        else:
            super().handle_message(msg)


def run_worker(options: LoadTestOptions, printer: Printer) -> int:
    environment = Environment(user_classes=list(_users.USER_CLASSES.values()), stop_timeout=options.stop_timeout,
                              locustfile="tritonize.loadtest")
    environment.stats = RequestStats(use_response_times_cache=False)
    where = f"{options.master_host}:{options.master_port}"
    printer.progress(f"worker: connecting to the Locust master at {where} ...")
    try:
        with gevent.Timeout(options.expect_workers_timeout):
            runner = environment._create_runner(TritonizeWorkerRunner, master_host=options.master_host,
                                                master_port=options.master_port)
    except (gevent.Timeout, ConnectionError) as exc:
        printer.progress(f"tritonize loadtest: error: no Locust master answered at {where} within "
                         f"{options.expect_workers_timeout:g}s ({type(exc).__name__}); start it with "
                         "`tritonize loadtest --master ...` first, and check --master-host/--master-port")
        return EXIT_ERROR

    def count(exception: Any = None, **_: Any) -> None:
        runner.requests += 1
        if exception is not None:
            runner.failures += 1

    def reset(**_: Any) -> None:
        runner.requests = runner.failures = 0

    environment.events.request.add_listener(count)
    environment.events.test_start.add_listener(reset)
    printer.progress(f"worker {runner.client_id}: connected to {where}, waiting for the master's orders")
    try:
        runner.greenlet.join()
    except KeyboardInterrupt:
        runner.quit()
        return EXIT_INTERRUPTED
    printer.say(f"worker {runner.client_id}: {runner.requests} requests, {runner.failures} failures")
    return EXIT_OK


# -- entry point ------------------------------------------------------------------------
def run(options: LoadTestOptions, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr,
        loglevel: str = "WARNING") -> int:
    """Run the load test ``options`` describe; return the process exit code."""
    printer = Printer(out, err)
    setup_logging(loglevel)
    try:
        options.check()
        if options.worker:
            return run_worker(options, printer)
        sla = load_sla(options.sla) if options.sla else None
        plan = resolve_plan(options)
        test = LoadTest(options, plan, sla, printer)
        return test.run()
    except (LoadTestError, SlaError) as exc:
        err.write(f"tritonize loadtest: error: {exc}\n")
        err.flush()
        return EXIT_ERROR
    finally:
        # A gRPC channel that is garbage-collected at interpreter exit, with gevent
        # on, can hang the process; collect every client (and the cycles that an
        # exception's traceback makes) while the hub still runs.
        gc.collect()

