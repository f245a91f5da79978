"""Graph variants (optimum's ORTOptimizer and ORTQuantizer) behind the accuracy gate, and threads.

Real parts throughout: tiny checkpoints exported with optimum, the gate's
reference is ``transformers.pipeline`` on the PyTorch checkpoint, the variants
are served by a real tritonserver, and what the session got is read back from
ONNX Runtime (its own session options) and from the stub processes.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import pytest

from conftest import tiny_classifier, tiny_ner
from tritonize import protocol
from tritonize.client import Client
from tritonize.exporters import accuracy, variants
from tritonize.exporters.checkpoint import ExportError
from tritonize.exporters.eval_data import PAIRS, TEXTS
from tritonize.exporters.export import ExportOptions, export
from tritonize.exporters.plugins import get_task

server = pytest.mark.server


def _params(path: Path) -> dict:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    config = text_format.Parse(path.read_text(), mc.ModelConfig())
    return {k: v.string_value for k, v in config.parameters.items()}


# -- the evaluation set ------------------------------------------------------------------------------
def test_eval_texts_as_lines_json_lines_and_pairs(tmp_path):
    text = get_task("text-classification")
    plain = tmp_path / "plain.txt"
    plain.write_text("first text\n\n  second one  \n{\"text\": \"third\"}\n", encoding="utf-8")
    assert accuracy.read_eval_set(text, plain).inputs == ["first text", "  second one  ", "third"]
    qa = get_task("question-answering")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"question": "Who?", "context": "Ann did."}) + "\n")
    assert accuracy.read_eval_set(qa, pairs).inputs == [{"question": "Who?", "context": "Ann did."}]
    pairs.write_text("just a line, no context\n")
    with pytest.raises(ExportError, match=r"pairs.jsonl, line 1: expected a JSON object with \"question\""):
        accuracy.read_eval_set(qa, pairs)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(ExportError, match="broken.jsonl, line 2: not valid JSON"):
        accuracy.read_eval_set(text, broken)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ExportError, match="holds no evaluation inputs"):
        accuracy.read_eval_set(text, empty)
    with pytest.raises(ExportError, match="cannot read it"):
        accuracy.read_eval_set(text, tmp_path / "missing.txt")
    default = accuracy.read_eval_set(text, None)
    assert default.source == accuracy.DEFAULT_SET and len(default.inputs) == len(TEXTS) == 100
    assert len(accuracy.read_eval_set(qa, None).inputs) == len(PAIRS) == 100


def test_bad_variant_options_are_refused_before_any_work(tmp_path):
    checkpoint = str(tiny_classifier("bert-single"))
    cases = [
        (dict(optimize="O4"), "--optimize 'O4' is not one of O1, O2, O3 (O4 is fp16 for GPUs: --device cuda"),
        (dict(quantize="int4"), "--quantize 'int4' is not one of int8"),
        (dict(quantize="int8", quantize_for="sse"), "--quantize-for 'sse' is not one of"),
        (dict(quantize_for="avx2"), "--quantize-for and --int8-recipe need --quantize int8"),
        (dict(quantize="int8", int8_recipe="magic"), "--int8-recipe 'magic' is not one of per-channel,"),
        (dict(min_agreement=1.5), "--min-agreement must be between 0 and 1"),
        (dict(threads=0), "--threads must be at least 1"),
        (dict(layout="one"), "--layout 'one' is not one of fused, steps"),
        (dict(backend="tensorrt"), "runs only on GPUs"),
    ]
    for extra, message in cases:
        with pytest.raises(ExportError, match=re.escape(message)):
            export(ExportOptions(checkpoint, "text-classification", "m", tmp_path / "r", **extra),
                   stream=io.StringIO())
        assert not (tmp_path / "r").exists()


def test_int8_recipes_keep_the_sensitive_matmuls_in_fp32(tmp_path):
    """The recipes find the FFN output (after GELU), the FFN input and the edge layers in the graph."""
    import onnx

    from tritonize.exporters.checkpoint import open_checkpoint
    from tritonize.exporters.onnx_export import build_encoder

    checkpoint = open_checkpoint(str(tiny_classifier("bert-single")))
    encoder, _ = build_encoder(checkpoint, get_task("text-classification"), tmp_path, 64, 1e-4)
    matmuls = [n.name for n in onnx.load(str(encoder.path)).graph.node if n.op_type == "MatMul"]
    layers = {int(m.group(1)) for n in matmuls if (m := re.search(r"layer\.(\d+)/", n))}
    by_name = {r.name: set(variants.fp32_nodes(encoder.path, r)) for r in variants.INT8_RECIPES}
    assert by_name["per-channel"] == set()
    ffn_out = by_name["per-channel, FFN output fp32"]
    assert ffn_out == {n for n in matmuls if n.endswith("/output/dense/MatMul") and "attention" not in n}
    assert len(ffn_out) == len(layers) >= 2
    edges = by_name["per-channel, FFN output, first and last layer fp32"] - ffn_out
    assert edges and {int(re.search(r"layer\.(\d+)/", n).group(1)) for n in edges} == {min(layers), max(layers)}
    ffn_in = set(matmuls) - by_name["per-channel, FFN input only"]
    assert ffn_in == {n for n in matmuls if n.endswith("/intermediate/dense/MatMul")}
    assert variants.detect_target() in variants.CPU_TARGETS
    assert [r.reduce_range for r in variants.recipes_for("avx512_vnni")] == [False] * 4
    assert any(r.reduce_range for r in variants.recipes_for("avx2"))


# -- the gate -----------------------------------------------------------------------------------------
def test_the_gate_refuses_a_variant_below_min_agreement_and_writes_nothing(tmp_path):
    """First the rate plain per-channel int8 reaches on the tiny model; then the same export with a threshold
    above it. (Pinned to one recipe: the ladder's last recipes keep this tiny model's answers exact.)"""
    checkpoint = str(tiny_classifier("roberta-single"))
    accepted = export(ExportOptions(checkpoint, "text-classification", "q", tmp_path / "probe",
                                    quantize="int8", int8_recipe="per-channel", min_agreement=0.0),
                      stream=io.StringIO())
    reached = float(accepted.graph[protocol.PARAM_AGREEMENT])
    assert reached < 1.0, "int8 answered exactly as fp32 on every text: the threshold below cannot be forced"
    repository = tmp_path / "repo"
    export(ExportOptions(checkpoint, "text-classification", "kept", repository), stream=io.StringIO())
    before = sorted(p.relative_to(repository) for p in repository.rglob("*"))
    stream = io.StringIO()
    threshold = min(1.0, reached + 0.005)
    with pytest.raises(ExportError) as refused:
        export(ExportOptions(checkpoint, "text-classification", "q", repository, quantize="int8",
                             int8_recipe="per-channel", min_agreement=threshold), stream=stream)
    message = str(refused.value)
    assert f"below --min-agreement {threshold:.2%}" in message and "on 100 evaluation inputs (built-in set)" in message
    assert f"[per-channel: {round(reached * 100)}/100 ({reached:.2%})]" in message
    assert "Nothing was written" in message and "pipeline" in message
    assert sorted(p.relative_to(repository) for p in repository.rglob("*")) == before
    assert not (repository / "q").exists()

    # the whole ladder at the same threshold: a recipe that keeps more in fp32 passes, and says so
    result = export(ExportOptions(checkpoint, "text-classification", "q", repository, quantize="int8",
                                  min_agreement=threshold), stream=io.StringIO())
    assert float(result.graph[protocol.PARAM_AGREEMENT]) >= threshold
    assert result.graph[protocol.PARAM_INT8_RECIPE] != "per-channel"
    assert _params(repository / "q_pipeline" / "config.pbtxt")[protocol.PARAM_INT8_RECIPE] == \
        result.graph[protocol.PARAM_INT8_RECIPE]


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """An int8 classifier and an O2 NER model, each through the gate on its own evaluation file, served."""
    from tritonize.deploy import LocalServer, free_port

    root = tmp_path_factory.mktemp("gated")
    repository = root / "repo"
    clf_texts = root / "clf.txt"
    clf_texts.write_text("\n".join(TEXTS[:60]), encoding="utf-8")
    ner_texts = root / "ner.jsonl"
    ner_texts.write_text("\n".join(json.dumps({"text": t}) for t in TEXTS[30:90]), encoding="utf-8")
    results = {
        "clf-int8": export(ExportOptions(str(tiny_classifier("bert-single")), "text-classification", "clf-int8",
                                         repository, quantize="int8", eval_texts=clf_texts, min_agreement=0.0),
                           stream=io.StringIO()),
        "ner-o2": export(ExportOptions(str(tiny_ner("bert")), "token-classification", "ner-o2", repository,
                                       optimize="O2", eval_texts=ner_texts, min_agreement=0.5),
                         stream=io.StringIO()),
    }
    with LocalServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()) as served:
        yield served, results, {"clf-int8": TEXTS[:60], "ner-o2": TEXTS[30:90]}


@server
def test_an_accepted_variant_is_served_and_agrees_at_the_recorded_rate(gated):
    from transformers import pipeline

    served, results, texts = gated
    with Client(served.grpc_url) as client:
        # int8 classifier: the served top label against the PyTorch pipeline's, text by text
        result = results["clf-int8"]
        assert result.graph[protocol.PARAM_GRAPH] == "int8"
        assert result.graph[protocol.PARAM_INT8_RECIPE] == "per-channel"  # min 0: the first recipe passes
        recorded = float(result.graph[protocol.PARAM_AGREEMENT])
        pipe = pipeline("text-classification", model=str(tiny_classifier("bert-single")), device="cpu")
        want = [r["label"] for r in pipe(texts["clf-int8"], truncation=True)]
        got = [r[0].label for r in client.classify("clf-int8", texts["clf-int8"])]
        served_rate = sum(g == w for g, w in zip(got, want)) / len(want)
        assert abs(served_rate - recorded) <= 1 / len(want) + 1e-9, (served_rate, recorded)

        # O2 NER: (entity_group, start, end) of every text
        result = results["ner-o2"]
        recorded = float(result.graph[protocol.PARAM_AGREEMENT])
        assert result.graph[protocol.PARAM_GRAPH] == "O2" and recorded >= 0.5
        pipe = pipeline("token-classification", model=str(tiny_ner("bert")), aggregation_strategy="simple",
                        device="cpu")
        want = [sorted((e["entity_group"], e["start"], e["end"]) for e in r)
                for r in pipe(texts["ner-o2"], stride=min(128, pipe.tokenizer.model_max_length // 4))]
        got = [sorted((e.label, e.start, e.end) for e in r) for r in client.extract_entities("ner-o2", texts["ner-o2"])]
        served_rate = sum(g == w for g, w in zip(got, want)) / len(want)
        assert abs(served_rate - recorded) <= 1 / len(want) + 1e-9, (served_rate, recorded)

        # what the gate measured is in the configs and in the model's metadata the SDK reads
        for name, result in results.items():
            for model in (name, f"{name}_pipeline"):
                params = _params(served.repository / model / "config.pbtxt")
                assert params[protocol.PARAM_GRAPH] == result.graph[protocol.PARAM_GRAPH], model
                assert params[protocol.PARAM_AGREEMENT] == result.graph[protocol.PARAM_AGREEMENT], model
                assert params[protocol.PARAM_EVAL_INPUTS] == "60", model
                assert params[protocol.PARAM_EVAL_SOURCE].endswith((".txt", ".jsonl")), model


def test_the_cli_summary_records_the_variant(tmp_path):
    import subprocess
    import sys

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS[:20]))
    done = subprocess.run(
        [sys.executable, "-m", "tritonize.cli", "export", str(tiny_classifier("bert-single")),
         "--task", "text-classification", "--name", "o1", "--repository", str(tmp_path / "r"),
         "--optimize", "O1", "--eval-texts", str(texts), "--min-agreement", "0.9"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["graph"] == "O1" and summary["eval_inputs"] == 20 and summary["eval_source"] == str(texts)
    assert 0.9 <= summary["agreement"] <= 1.0
    assert "O1 graph agrees with the pipeline on" in done.stderr
    assert "[7/7]" in done.stderr


# -- threads ----------------------------------------------------------------------------------------
def _session_lines(log: str, model: str) -> list:
    return re.findall(rf'"{re.escape(model)}: ONNX Runtime session on \w+, intra_op_num_threads=(\d+), '
                      rf'allow_spinning=(\d)"', log)


def _stub_environ(server_pid: int, model: str) -> dict:
    from tritonize.deploy.healing import server_children

    for child in server_children(server_pid).values():
        if child.stub is not None and child.stub.model == model:
            raw = Path(f"/proc/{child.pid}/environ").read_bytes().split(b"\0")
            return dict(e.decode().split("=", 1) for e in raw if b"=" in e)
    raise AssertionError(f"no stub of {model}")


@server
def test_threads_reach_the_session(tmp_path):
    """--threads at export, then ``tritonize serve --threads`` over it; ORT reports what it got."""
    from tritonize.deploy import LocalServer, free_port

    repository = tmp_path / "repo"
    checkpoint = str(tiny_classifier("bert-single"))
    export(ExportOptions(checkpoint, "text-classification", "one", repository, threads=1), stream=io.StringIO())
    export(ExportOptions(checkpoint, "text-classification", "auto", repository, layout="steps", instances=2,
                         allow_spinning=False), stream=io.StringIO())
    cores = len(os.sched_getaffinity(0))

    def serve(**options):
        server = LocalServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                             **options)
        with server:
            with Client(server.grpc_url) as client:
                assert client.classify("one", "fine") and client.classify("auto", "fine")
            time.sleep(0.2)
            return server.log_path.read_text(), _stub_environ(server.pid, "one_pipeline")

    log, environ = serve()
    assert _session_lines(log, "one_pipeline") == [("1", "1")]
    # auto: the cores divided among the two encoder instances; the export turned spinning off
    assert _session_lines(log, "auto_encoder") == [(str(max(1, cores // 2)), "0")] * 2
    assert environ["TOKENIZERS_PARALLELISM"] == "false" and "TRITONIZE_INTRA_OP_THREADS" not in environ

    log, environ = serve(threads=3, allow_spinning=True, tokenizers_parallelism=True)
    assert _session_lines(log, "one_pipeline") == [("3", "1")]
    assert _session_lines(log, "auto_encoder") == [("3", "1")] * 2
    assert environ["TOKENIZERS_PARALLELISM"] == "true" and environ["TRITONIZE_INTRA_OP_THREADS"] == "3"


def test_serve_thread_flags():
    from tritonize.cli import _build_parser

    args = _build_parser().parse_args(["serve"])
    assert (args.threads, args.spin, args.tokenizers_parallelism) == (None, None, False)
    args = _build_parser().parse_args(["serve", "--threads", "2", "--spin", "off", "--tokenizers-parallelism"])
    assert (args.threads, args.spin, args.tokenizers_parallelism) == (2, "off", True)
    with pytest.raises(SystemExit):
        _build_parser().parse_args(["serve", "--threads", "0"])


def test_a_task_without_an_ortmodel_class_gets_a_clear_error(tmp_path):
    """A third-party task plugin that names no optimum ORTModel cannot be gated: say so, no traceback."""
    task = type(get_task("text-classification"))()
    task.ort_model_class = ""
    with pytest.raises(ExportError, match="names no optimum ORTModel class"):
        accuracy.variant_answers(task, tmp_path / "model.onnx", None, ["text"])


def test_the_cli_prints_only_its_json_summary_on_stdout(tmp_path):
    """ONNX Runtime's fusion code print()s notes on DeBERTa's graph: they go to stderr, so `| jq` keeps working."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "tritonize.cli", "export", str(tiny_classifier("deberta-single")),
         "--task", "text-classification", "--name", "d", "--repository", str(tmp_path / "repo"),
         "--optimize", "O2"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert summary["name"] == "d" and summary["graph"] == "O2" and summary["task"] == "text-classification"
