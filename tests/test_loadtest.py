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
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Tuple

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


def loadtest(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tritonize.cli", "loadtest", *args],
        capture_output=True, text=True, timeout=timeout,
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

    with pytest.raises(DataError, match=r"pairs\.jsonl:2: a question-answering row needs both"):
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


def test_the_package_stays_light():
    code = ("import sys, tritonize.loadtest, tritonize.loadtest.sla, tritonize.loadtest.plan, tritonize.cli\n"
            "print(','.join(m for m in ('locust', 'gevent', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
