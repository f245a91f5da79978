"""``tritonize tune``: a real search on a real server, a winner written with --apply, and answers unchanged."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_classifier, tiny_ner
from tritonize.exporters import configs
from tritonize.exporters.export import ExportOptions, export
from tritonize.loadtest.knobs import PARAM_TUNED, Ensemble, Knobs, TuneError

TEXTS = ["I love this.", "Terrible, never again!", "fine " * 40, "ok"]


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tritonize.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def _params(path: Path) -> dict:
    return configs.parameters_of(configs.read_config(path))


@pytest.mark.parametrize("layout", ["fused", "steps"])
def test_knobs_become_the_configs_of_every_step(tmp_path, layout):
    repository = tmp_path / "repo"
    export(ExportOptions(str(tiny_ner("bert")), "token-classification", "m", repository, layout=layout,
                         max_batch_size=16), stream=io.StringIO())
    ensemble = Ensemble(repository, "m")
    base = ensemble.current()
    assert base == Knobs(instances=1, max_batch_size=16, queue_delay_us=0, graph="fp32")
    knobs = base.with_(instances=2, max_batch_size=8, queue_delay_us=500, preferred=(4, 8, 32), threads=1,
                       budget=2048)
    ensemble.write(repository, knobs, record={"at": "now"})
    again = Ensemble(repository, "m")
    assert again.current() == knobs.with_(preferred=(4, 8))  # a preferred size past max_batch_size is dropped
    assert configs.read_config(repository / "m" / "config.pbtxt").max_batch_size == 8
    for model in again.steps:
        config = configs.read_config(repository / model / "config.pbtxt")
        assert (config.max_batch_size, config.instance_group[0].count) == (8, 2)
        assert config.dynamic_batching.max_queue_delay_microseconds == 500
        assert json.loads(_params(repository / model / "config.pbtxt")[PARAM_TUNED]) == {"at": "now"}
    encoder = configs.parameters_of(again.encoder_config())
    assert encoder["tritonize.intra_op_threads"] == "1" and encoder["tritonize.max_batch_tokens"] == "2048"
    assert encoder["tritonize.max_rows"] == str(8 * 256)  # max_batch_size x --max-windows
    if layout == "fused":  # every step's own config in steps.json moved with it
        steps = json.loads((repository / "m_pipeline" / "1" / "steps.json").read_text())
        assert {role: (s["max_batch_size"], s["instance_group"][0]["count"]) for role, s in steps.items()} == {
            "tokenizer": (8, 2), "encoder": (8, 2), "postprocess": (8, 2)}


def test_tune_refuses_what_it_cannot_tune(tmp_path):
    repository = tmp_path / "repo"
    export(ExportOptions(str(tiny_classifier("bert-single")), "text-classification", "m", repository),
           stream=io.StringIO())
    with pytest.raises(TuneError, match="is not an ensemble"):
        Ensemble(repository, "m_pipeline")
    with pytest.raises(TuneError, match="no model 'nope'"):
        Ensemble(repository, "nope")
    bad_sla = tmp_path / "sla.yaml"
    bad_sla.write_text("Aggregated:\n  p59_ms: 10\n")
    result = _cli("tune", str(repository), "--model", "m", "--sla", str(bad_sla))
    assert result.returncode == 2 and "p59_ms" in result.stderr and "Traceback" not in result.stderr
    sla = tmp_path / "good.yaml"
    sla.write_text("Aggregated:\n  p95_ms: 500\n")
    result = _cli("tune", str(repository), "--model", "m", "--sla", str(sla), "--concurrency", "4,x")
    assert result.returncode == 2 and "--concurrency takes whole numbers" in result.stderr


@pytest.mark.server
def test_tune_finds_a_config_applies_it_and_the_answers_stay_the_pipelines(tmp_path):
    from transformers import pipeline

    from tritonize.client import Client
    from tritonize.deploy import LocalServer, free_port

    checkpoint = tiny_classifier("bert-single")
    repository = tmp_path / "repo"
    export(ExportOptions(str(checkpoint), "text-classification", "m", repository), stream=io.StringIO())
    sla = tmp_path / "sla.yaml"
    sla.write_text("Aggregated:\n  p95_ms: 2000\n  max_fail_ratio: 0\n")
    out = tmp_path / "report"
    result = _cli("tune", str(repository), "--model", "m", "--sla", str(sla), "--budget", "45s",
                  "--concurrency", "1,4", "--seconds", "1.5", "--warmup", "0.5", "--out", str(out), "--apply")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["candidates"] >= 3 and summary["throughput_rps"] > 0 and summary["gain"] > 0
    # progress said which candidate ran and how much budget was left
    assert "[tune 1, baseline," in result.stderr and "of the budget left]" in result.stderr
    assert "measured in the same run" in result.stderr
    # the report: a row per candidate, a plot
    rows = (out / "tune.csv").read_text().splitlines()
    assert len(rows) == summary["candidates"] + 1 and "best_rps" in rows[0]
    assert (out / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --apply wrote the winner, with what was measured
    ensemble = Ensemble(repository, "m")
    winner = Knobs(**{**summary["winner"], "preferred": tuple(summary["winner"]["preferred"])})
    assert ensemble.current() == winner
    record = json.loads(_params(repository / "m" / "config.pbtxt")[PARAM_TUNED])
    assert record["knobs"] == summary["winner"] and record["throughput_rps"] == summary["throughput_rps"]
    assert record["sla"] == str(sla) and record["baseline_rps"] == summary["baseline_rps"]
    assert not [p for p in tmp_path.iterdir() if "tritonize-" in p.name]  # written as export writes
    # the server loads it, and the answers are the pipeline's
    pipe = pipeline("text-classification", model=str(checkpoint), device="cpu")
    with LocalServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()) as server:
        with Client(server.grpc_url) as client:
            for text, got in zip(TEXTS, client.classify("m", TEXTS, top_k=1)):
                want = pipe(text, truncation=True)[0]
                assert got[0].label == want["label"] and abs(got[0].score - want["score"]) < 1e-4


def test_a_graph_variant_is_installed_with_its_gate_record(tmp_path):
    """--graphs: a variant's model.onnx and its gate record replace the served graph's."""
    checkpoint = str(tiny_classifier("bert-single"))
    served, variant = tmp_path / "served", tmp_path / "variant"
    export(ExportOptions(checkpoint, "text-classification", "m", served), stream=io.StringIO())
    export(ExportOptions(checkpoint, "text-classification", "m", variant, optimize="O1", min_agreement=0.0),
           stream=io.StringIO())
    ensemble = Ensemble(served, "m")
    ensemble.write(served, ensemble.current().with_(graph="O1"), graphs={"O1": variant / "m_pipeline" / "1"})
    onnx = "model.onnx"
    assert (served / "m_pipeline" / "1" / onnx).read_bytes() == (variant / "m_pipeline" / "1" / onnx).read_bytes()
    again = Ensemble(served, "m")
    assert again.current().graph == "O1"
    for model in ("m", "m_pipeline"):
        params = _params(served / model / "config.pbtxt")
        assert params["tritonize.graph"] == "O1" and "tritonize.agreement" in params


@pytest.mark.server
def test_tune_on_a_running_server_puts_its_configs_back(tmp_path):
    """--url: candidates are loaded into a running server through its model-control API; without --apply
    the repository's configs are as they were, and the server serves them."""
    from tritonize.client import Client
    from tritonize.deploy import LocalServer, free_port

    repository = tmp_path / "repo"
    export(ExportOptions(str(tiny_classifier("bert-single")), "text-classification", "m", repository),
           stream=io.StringIO())
    def files():  # what the export wrote (the stubs add __pycache__ beside their code)
        return {p: p.read_bytes() for p in sorted(repository.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}

    before = files()
    sla = tmp_path / "sla.yaml"
    sla.write_text("p95_ms: 2000\n")  # metrics at the top level: the limits of Aggregated
    with LocalServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()) as server:
        result = _cli("tune", str(repository), "--model", "m", "--sla", str(sla), "--budget", "20s",
                      "--concurrency", "2", "--seconds", "1", "--warmup", "0.5", "--out", str(tmp_path / "out"),
                      "--url", server.grpc_url, "--http-url", server.http_url, "--metrics-url", server.metrics_url)
        assert result.returncode == 0, result.stderr[-3000:]
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["candidates"] >= 2
        assert files() == before  # the original configs, put back byte for byte
        with Client(server.grpc_url) as client:  # and loaded again: the server answers
            assert client.classify("m", "I love this.", top_k=1)[0].label
