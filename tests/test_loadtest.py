"""Locust load tests against a real tritonserver: SLA gate, distributed mode, counts.

Every run is the real command, `tritonize loadtest ...`, in a subprocess (Locust
monkey-patches the standard library for gevent, which must not happen inside
pytest). Runs are short (a few seconds, a few users) and bounded by timeouts.
The oracles are independent of the code under test: Triton's own metrics
endpoint, read here before and after a run, and each worker's own count.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

from tritonize.deploy import free_port

pytestmark = pytest.mark.server

GENEROUS_SLA = """\
Aggregated:
  p50_ms: 20000
  p95_ms: 30000
  p99_ms: 30000
  max_fail_ratio: 0
  min_rps: 0.5
"text-classification:bert-single":
  p95_ms: 30000
  max_fail_ratio: 0.0
"""

IMPOSSIBLE_SLA = """\
Aggregated:
  p50_ms: 0.001
  max_fail_ratio: 0.5
"""


def loadtest(*args: str, timeout: float = 60, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "TRITONIZE_METRICS_URL"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tritonize.cli", "loadtest", *args],
        capture_output=True, text=True, timeout=timeout, env=environment,
    )


def locust_rows(directory: Path) -> Dict[str, Dict[str, str]]:
    with (directory / "locust_stats.csv").open(newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def triton_counter(metrics_url: str, metric: str = "nv_inference_request_success") -> Dict[str, float]:
    """Read Triton's metrics endpoint directly (the oracle; not the loadtest's own parser)."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    values: Dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(rf'{metric}\{{model="([^"]+)",version="[^"]*"\}} (\S+)$', line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values


def common(served, *models: str, users: int = 3, run_time: str = "5s") -> List[str]:
    return ["--host", served.url, "--metrics-url", served.server.metrics_url, "--models", *models,
            "--users", str(users), "--spawn-rate", str(users), "--run-time", run_time,
            "--think-time", "0.05-0.15"]


def test_a_generous_sla_passes_and_writes_the_reports(served_classifiers, tmp_path):
    sla = tmp_path / "sla.yaml"
    sla.write_text(GENEROUS_SLA)
    reports, html = tmp_path / "reports", tmp_path / "report.html"
    result = loadtest(*common(served_classifiers, "bert-single", run_time="6s"), "--warmup", "1s",
                      "--sla", str(sla), "--csv", str(reports), "--html", str(html))
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "SLA PASSED" in out and "RESULT: PASS" in out
    assert "warm-up over" in result.stderr and "Locust's stats reset" in result.stderr
    sla_table = out[out.index("SLA (after a 1s warm-up"):]
    for metric in ("p50_ms", "p95_ms", "p99_ms", "max_fail_ratio", "min_rps"):
        assert re.search(rf"^Aggregated\s+{metric}\s.*PASS$", sla_table, re.M), metric
    # Triton's breakdown comes after the SLA table, one row per step of the ensemble
    assert out.index("Where the time goes") > out.index("SLA PASSED")
    for role in ("tokenizer", "encoder", "postprocess"):
        assert f"  {role}: bert-single_{role}" in out

    rows = locust_rows(reports)
    total = rows["Aggregated"]
    assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0
    assert int(rows["text-classification:bert-single"]["Request Count"]) == int(total["Request Count"])
    for name in ("locust_stats_history.csv", "locust_failures.csv", "locust_exceptions.csv", "sla.csv",
                 "summary.json"):
        assert (reports / name).is_file(), name
    with (reports / "triton_breakdown.csv").open(newline="") as handle:
        breakdown = list(csv.DictReader(handle))
    assert [r["role"] for r in breakdown] == ["ensemble", "tokenizer", "encoder", "postprocess"]
    assert [r["model"] for r in breakdown] == ["bert-single", "bert-single_tokenizer", "bert-single_encoder",
                                               "bert-single_postprocess"]
    for step in breakdown[1:]:
        assert int(step["requests"]) > 0 and int(step["executions"]) > 0
        assert float(step["avg_batch"]) >= 1.0
        assert float(step["queue_ms"]) >= 0 and float(step["compute_ms"]) > 0
    page = html.read_text()
    assert "tritonize-triton-breakdown" in page and "bert-single_encoder" in page
    summary = json.loads((reports / "summary.json").read_text())
    assert summary["sla_passed"] is True


def test_an_impossible_sla_fails_with_the_breach_table(served_classifiers, tmp_path):
    sla = tmp_path / "sla.yaml"
    sla.write_text(IMPOSSIBLE_SLA)
    result = loadtest(*common(served_classifiers, "bert-single", users=2, run_time="3s"), "--sla", str(sla))
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert re.search(r"^name\s+metric\s+limit\s+measured\s+result", out, re.M)
    row = re.search(r"^Aggregated\s+p50_ms\s+<= 0\.001\s+(\S+)\s+FAIL", out, re.M)
    assert row and float(row.group(1)) > 0.001
    assert re.search(r"^Aggregated\s+max_fail_ratio\s+.*PASS", out, re.M)
    assert "SLA FAILED: 1 of 2 checks breached" in out
    assert "RESULT: FAIL (SLA breached)" in out


def test_one_master_two_workers(served_classifiers, tmp_path):
    port = free_port()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tritonize.cli", "loadtest", "--worker", "--master-host", "127.0.0.1",
             "--master-port", str(port), "--expect-workers-timeout", "30s"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(2)
    ]
    try:
        reports = tmp_path / "reports"
        master = loadtest(*common(served_classifiers, "bert-single", users=4, run_time="5s"), "--master",
                          "--expect-workers", "2", "--master-bind-host", "127.0.0.1", "--master-bind-port",
                          str(port), "--expect-workers-timeout", "30s", "--csv", str(reports), timeout=90)
        outputs = [worker.communicate(timeout=30) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)
    assert master.returncode == 0, master.stdout + master.stderr
    counts: List[Tuple[int, int]] = []
    for (stdout, stderr), worker in zip(outputs, workers):
        assert worker.returncode == 0, stdout + stderr
        match = re.search(r"^worker \S+: (\d+) requests, (\d+) failures$", stdout, re.M)
        assert match, stdout + stderr
        counts.append((int(match.group(1)), int(match.group(2))))
    assert all(requests > 0 for requests, _ in counts), counts
    total = locust_rows(reports)["Aggregated"]
    assert int(total["Request Count"]) == sum(requests for requests, _ in counts)
    assert int(total["Failure Count"]) == sum(failures for _, failures in counts) == 0


def test_a_server_that_is_not_there_fails_fast_naming_the_host(tmp_path):
    port = free_port()
    started = time.monotonic()
    result = loadtest("--host", f"127.0.0.1:{port}", "--users", "2", "--run-time", "5s", timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    assert elapsed < 10, elapsed
    assert f"127.0.0.1:{port}" in result.stderr
    assert "no Triton server answers" in result.stderr
    assert "Traceback" not in result.stderr


def test_locust_counts_exactly_what_triton_counts(served_ner, tmp_path):
    """Nothing lost, nothing invented: successes in Locust = the ensembles' nv_inference_request_success."""
    data = tmp_path / "texts.csv"
    with data.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text"])
        writer.writerow(["Hi, I'm Agnieszka Kowalczyk from Columbus."])
        writer.writerow(["Ship it to 2741 Maple Grove Road, Columbus, OH 43215 please. " * 12])
        writer.writerow(["nothing personal here"])
    models = ["ner-bert", "ner-roberta"]
    reports = tmp_path / "reports"
    before = triton_counter(served_ner.server.metrics_url)
    result = loadtest(*common(served_ner, *models, users=4, run_time="5s"), "--data", str(data),
                      "--csv", str(reports))
    after = triton_counter(served_ner.server.metrics_url)
    for _ in range(20):  # Triton may update a counter a moment after the response left
        if after == triton_counter(served_ner.server.metrics_url):
            break
        time.sleep(0.1)
        after = triton_counter(served_ner.server.metrics_url)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = locust_rows(reports)
    for model in models:
        row = rows[f"token-classification:{model}"]
        locust_success = int(row["Request Count"]) - int(row["Failure Count"])
        triton_success = int(after.get(model, 0) - before.get(model, 0))
        assert locust_success > 0
        assert locust_success == triton_success, (model, locust_success, triton_success)
    assert re.search(r"^total\s+(\d+)\s+\1\s+equal$", result.stdout, re.M), result.stdout


def test_question_answering_from_a_jsonl_file_in_open_pacing(served_qa, tmp_path):
    data = tmp_path / "pairs.jsonl"
    pairs = [
        {"question": "How much was refunded?", "context": "The refund of EUR 89.00 was approved on Monday."},
        {"question": "Who inspected the car?",
         "context": "The field engineer, Priya Raghunathan, inspected the car in Phoenix. " * 40},
        {"text": "a text row is ignored by question-answering users"},
    ]
    data.write_text("\n".join(json.dumps(p) for p in pairs) + "\n")
    result = loadtest("--host", served_qa.url, "--metrics-url", served_qa.server.metrics_url,
                      "--models", "qa-bert", "--users", "3", "--spawn-rate", "3", "--run-time", "4s",
                      "--pacing", "open", "--rps-per-user", "4", "--data", str(data))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pacing: open: 4 requests/s per user" in result.stdout
    requests = int(re.search(r"^grpc\s+question-answering:qa-bert\s+(\d+)", result.stdout, re.M).group(1))
    # open pacing: at most 4 requests/s per user over 4 s (plus the first one of each user)
    assert 0 < requests <= 3 * (4 * 4 + 1)
    assert "qa-bert_pipeline" in result.stdout  # the fused layout: one step


def test_bad_sla_and_data_files_are_refused_clearly(served_classifiers, tmp_path):
    from tritonize.loadtest.samples import DataError, load_samples
    from tritonize.loadtest.sla import SlaError, load_sla

    cases = {
        "Aggregated:\n  p95: 10\n": "unknown metric 'p95'",
        "Aggregated:\n  p95_ms: -5\n": "p95_ms must be greater than 0, got -5",
        "Aggregated:\n  max_fail_ratio: 1.5\n": "must be in [0, 1], got 1.5",
        "Aggregated:\n  min_rps: fast\n": "min_rps must be a number, got 'fast'",
        "Aggregated:\n  p50_ms: true\n": "p50_ms must be a number, got True",
        "- p95_ms: 10\n": "an SLA file is a mapping",
        "Aggregated: 10\n": "give a mapping of limits",
        "": "the SLA file is empty",
        "Aggregated: [\n": "is not valid YAML",
    }
    for number, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"sla{number}.yaml"
        path.write_text(text)
        with pytest.raises(SlaError, match=re.escape(message)):
            load_sla(path)
    assert {(l.name, l.metric) for l in load_sla(_write(tmp_path / "ok.yaml", GENEROUS_SLA)).limits} >= {
        ("Aggregated", "p95_ms"), ("text-classification:bert-single", "max_fail_ratio")}

    with pytest.raises(DataError, match=r"pairs\.jsonl:2: a question-answering row needs 'question' and 'context'"):
        load_samples(_write(tmp_path / "pairs.jsonl", '{"text": "fine"}\n{"question": "only a question"}\n'))
    with pytest.raises(DataError, match="header must name a 'text' column"):
        load_samples(_write(tmp_path / "rows.csv", "sentence\nhello\n"))

    # the command refuses a bad SLA file before any load, with the file's name and exit code 2
    bad = _write(tmp_path / "bad.yaml", "Aggregated:\n  p95: 10\n")
    result = loadtest("--host", served_classifiers.url, "--models", "bert-single", "--sla", str(bad))
    assert result.returncode == 2
    assert f"{bad}: 'Aggregated': unknown metric 'p95'" in result.stderr
    # and models it does not serve, by name
    result = loadtest("--host", served_classifiers.url, "--models", "no-such-model", "--run-time", "2s")
    assert result.returncode == 2 and "no-such-model" in result.stderr


def test_sla_files_with_metrics_at_the_top_level_and_their_mistakes(tmp_path):
    import yaml

    from tritonize.loadtest.sla import SlaError, load_sla

    # metrics at the top level are the limits of all requests together
    sla = load_sla(_write(tmp_path / "top.yaml", "p95_ms: 250\nmax_fail_ratio: 0.01\nmin_rps: 2\n"))
    assert [(l.name, l.metric, l.value) for l in sla.limits] == [
        ("Aggregated", "p95_ms", 250.0), ("Aggregated", "max_fail_ratio", 0.01), ("Aggregated", "min_rps", 2.0)]
    # ... and are checked like any limit, saying where
    with pytest.raises(SlaError, match=r"top level \(limits of Aggregated\): p95_ms must be greater than 0, got -5 "
                                       r"\(e\.g\. p95_ms: 250"):
        load_sla(_write(tmp_path / "neg.yaml", "p95_ms: -5\n"))

    # metrics mixed with request names: refused, showing this very file in the accepted shape
    mixed = _write(tmp_path / "mixed.yaml", "p95_ms: 250\nmax_fail_ratio: 0.01\n"
                                            "text-classification:sentiment:\n  p50_ms: 40\n\"*\":\n  p99_ms: 900\n")
    with pytest.raises(SlaError) as refused:
        load_sla(mixed)
    message = str(refused.value)
    assert message.startswith(f"{mixed}: the top level mixes metrics (p95_ms, max_fail_ratio) with request names")
    assert "only metrics at the top level" in message and "only names, each with its limits" in message
    example = yaml.safe_load(message.split("reads:\n", 1)[1])  # the example is YAML, and a valid SLA
    assert example == {"Aggregated": {"p95_ms": 250, "max_fail_ratio": 0.01},
                       "text-classification:sentiment": {"p50_ms": 40}, "*": {"p99_ms": 900}}
    fixed = load_sla(_write(tmp_path / "fixed.yaml", message.split("reads:\n", 1)[1]))
    assert {(l.name, l.metric) for l in fixed.limits} == {
        ("Aggregated", "p95_ms"), ("Aggregated", "max_fail_ratio"), ("text-classification:sentiment", "p50_ms"),
        ("*", "p99_ms")}

    # a misspelt metric at the top level, alone or beside names, is named as such, with the near ones
    for text in ("p59_ms: 250\n", "Aggregated:\n  p95_ms: 250\np59_ms: 300\n", "p59_ms:\n"):
        with pytest.raises(SlaError, match=r"top level: unknown metric 'p59_ms' \(did you mean p95_ms / .*p50_ms"):
            load_sla(_write(tmp_path / "typo.yaml", text))
    with pytest.raises(SlaError, match=r"'Aggregated': unknown metric 'p95' \(did you mean p95_ms\?\)"):
        load_sla(_write(tmp_path / "typo2.yaml", "Aggregated:\n  p95: 10\n"))
    # a name without limits: the shape it needs, written out; a word that is no metric is told so
    with pytest.raises(SlaError) as refused:
        load_sla(_write(tmp_path / "name.yaml", "latency: 250\n"))
    assert "'latency': give a mapping of limits under the name, got 250; e.g.\n\n  latency:\n    p95_ms: 250" in str(
        refused.value)
    assert "'latency' is not a metric either" in str(refused.value)
    # a list: both shapes, as YAML
    with pytest.raises(SlaError, match=r"got a list \(YAML '- ' items\)\. It takes one of two shapes: metrics at "
                                       r"the top level.*\n\n  p95_ms: 250\n"):
        load_sla(_write(tmp_path / "list.yaml", "- p95_ms: 10\n"))


class Forward:
    """Listens on a port of 127.0.0.1 and passes every connection on to ``target_port``: the server as
    a client sees it through a port mapping (a container's, a Kubernetes Service's), bytes unchanged."""

    def __init__(self, target_port: int, port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(64)
        self.port = port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                conn.close()
                continue
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for one in (source, sink):
                try:
                    one.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def two_free_ports() -> int:
    """A port P of 127.0.0.1 such that P and P + 1 are both free now."""
    from tritonize.deploy import free_port
    from tritonize.deploy.local import port_in_use

    for _ in range(200):
        port = free_port()
        if port < 65535 and not port_in_use("127.0.0.1", port + 1):
            return port
    raise RuntimeError("no two free neighbouring ports")


@pytest.fixture(scope="module")
def one_model_servers(served_classifiers, tmp_path_factory) -> Iterator[Dict[str, object]]:
    """Two more tritonservers serving a copy of distilbert-single (fused) from served_classifiers: one
    with its metrics endpoint on a port of its own, one with metrics switched off."""
    from tritonize.deploy import LocalServer, free_port

    repository = tmp_path_factory.mktemp("one-model") / "model_repository"
    for name in ("distilbert-single", "distilbert-single_pipeline"):
        shutil.copytree(served_classifiers.repository / name, repository / name)
    servers = {
        "metrics": LocalServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                               heal=False, ready_timeout=120),
        "no-metrics": LocalServer(repository, http_port=free_port(), grpc_port=free_port(),
                                  metrics_port=free_port(), heal=False, ready_timeout=120,
                                  extra_args=("--allow-metrics=false",)),
    }
    try:
        for server in servers.values():
            server.start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def quick(host: str, *extra: str) -> List[str]:
    return ["--host", host, "--models", "distilbert-single", "--users", "2", "--spawn-rate", "2",
            "--run-time", "3s", "--think-time", "0.05-0.15", *extra]


def test_each_servers_metrics_endpoint_is_found_from_its_process(served_classifiers, one_model_servers, tmp_path):
    """No --metrics-url: two servers, neither on :8002, each found by its own tritonserver process, and
    the counts agree; the SLA file has its metrics at the top level, and gates the run."""
    other = one_model_servers["metrics"]
    sla = _write(tmp_path / "sla.yaml", "p95_ms: 30000\nmax_fail_ratio: 0\n")
    reports = tmp_path / "reports"
    result = loadtest(*quick(f"{served_classifiers.url},{other.grpc_url}", "--sla", str(sla), "--csv", str(reports)))
    assert result.returncode == 0, result.stdout + result.stderr
    for server in (served_classifiers.server, other):
        assert re.search(rf"Triton's metrics endpoint for {re.escape(server.grpc_url)}: "
                         rf"{re.escape(server.metrics_url)} \(the --metrics-port of tritonserver pid {server.pid} ",
                         result.stderr), result.stderr
    assert "warning" not in result.stderr
    assert re.search(r"^total\s+(\d+)\s+\1\s+equal$", result.stdout, re.M), result.stdout
    for metric in ("p95_ms", "max_fail_ratio"):
        assert re.search(rf"^Aggregated\s+{metric}\s.*PASS$", result.stdout, re.M), result.stdout
    summary = json.loads((reports / "summary.json").read_text())
    assert summary["metrics"]["url"] == f"{served_classifiers.server.metrics_url},{other.metrics_url}"


def test_the_metrics_endpoint_by_the_port_convention_and_by_the_environment(served_classifiers, tmp_path):
    """A server seen through port mappings (gRPC on P, metrics on P + 1, as 8001 and 8002) is found by the
    convention; TRITONIZE_METRICS_URL is taken as given. A top-level SLA that cannot be met exits 1."""
    server = served_classifiers.server
    port = two_free_ports()
    grpc, metrics = Forward(server.grpc_port, port), Forward(server.metrics_port, port + 1)
    try:
        result = loadtest(*quick(f"127.0.0.1:{port}"))
    finally:
        grpc.close()
        metrics.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert (f"Triton's metrics endpoint for 127.0.0.1:{port}: http://127.0.0.1:{port + 1}/metrics "
            f"(gRPC port {port} + 1)") in result.stderr, result.stderr
    assert re.search(r"^total\s+(\d+)\s+\1\s+equal$", result.stdout, re.M), result.stdout

    sla = _write(tmp_path / "sla.yaml", "p50_ms: 0.001\n")
    result = loadtest(*quick(served_classifiers.url, "--sla", str(sla)),
                      env={"TRITONIZE_METRICS_URL": server.metrics_url})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Triton's metrics endpoint for" not in result.stderr  # given, not looked for
    assert re.search(r"^Aggregated\s+p50_ms\s+<= 0\.001\s+\S+\s+FAIL", result.stdout, re.M), result.stdout
    assert re.search(r"^total\s+(\d+)\s+\1\s+equal$", result.stdout, re.M), result.stdout

    bad = loadtest(*quick(served_classifiers.url), env={"TRITONIZE_METRICS_URL": "triton:8002"})
    assert bad.returncode == 2 and "TRITONIZE_METRICS_URL must be an http(s) URL" in bad.stderr


def test_no_metrics_endpoint_warns_once_with_what_was_tried(one_model_servers):
    server = one_model_servers["no-metrics"]
    host, port = server.grpc_url.rsplit(":", 1)
    result = loadtest(*quick(server.grpc_url))
    assert result.returncode == 0, result.stdout + result.stderr  # the load test itself stands
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    warning = warnings[0]
    assert warning.startswith(f"warning: Triton's metrics endpoint was not found for {server.grpc_url} (tried ")
    assert (f"tritonserver pid {server.pid} on this machine serves gRPC port {port} with --allow-metrics=false"
            in warning)
    assert f"http://{host}:{int(port) + 1}/metrics (gRPC port {port} + 1): " in warning
    assert f"http://{host}:8002/metrics (Triton's default metrics port): " in warning
    assert "Give --metrics-url http://HOST:PORT/metrics" in warning and "TRITONIZE_METRICS_URL" in warning
    assert "(not checked: Triton's metrics endpoint was not found" in result.stdout


def test_the_package_stays_light():
    code = ("import sys, tritonize.loadtest, tritonize.loadtest.sla, tritonize.loadtest.plan, tritonize.cli\n"
            "print(','.join(m for m in ('locust', 'gevent', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
