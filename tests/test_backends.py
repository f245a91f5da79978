"""Devices and encoder formats: every config of every task x format x device parses as Triton's ModelConfig,
and the native formats' BLS layout answers as the transformers pipelines do.

Triton's native onnxruntime_onnx and tensorrt_plan backends exist only in the NGC container, so the served
test swaps the native encoder model for ``tests/standin/model.py``: a Python model that serves the same
contract (the ONNX graph's inputs as [rows, tokens], its outputs by name) with ONNX Runtime. Everything else
(tokenizer, token-budget scheduler, BLS requests of at most max_batch_size rows, postprocess) is the
exported code, on a real tritonserver.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, serve_exports, tiny_classifier, tiny_ner, tiny_qa
from tritonize.exporters import configs
from tritonize.exporters.checkpoint import ExportError
from tritonize.exporters.export import ExportOptions, export
from tritonclient.grpc import model_config_pb2 as mc

TASKS = {
    "text-classification": lambda: tiny_classifier("bert-single"),
    "token-classification": lambda: tiny_ner("bert"),
    "question-answering": lambda: tiny_qa("deberta-v2"),
}
FORMATS = ("python-onnxruntime", "onnxruntime", "tensorrt")
DEVICES = ("cpu", "cuda", "cuda:1")
GPU = mc.ModelInstanceGroup.KIND_GPU


def _configs(repository: Path) -> dict:
    """Every config.pbtxt of the repository, parsed as ModelConfig (a parse error fails the test)."""
    return {path.parent.name: configs.read_config(path) for path in sorted(repository.glob("*/config.pbtxt"))}


def _params(config: mc.ModelConfig) -> dict:
    return configs.parameters_of(config)


def _kinds(config: mc.ModelConfig) -> list:
    return [(group.kind, list(group.gpus)) for group in config.instance_group]


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("backend", FORMATS)
def test_every_config_parses_for_each_device(task, backend, tmp_path):
    checkpoint = str(TASKS[task]())
    for device in DEVICES:
        repository = tmp_path / device.replace(":", "-")
        options = ExportOptions(checkpoint, task, "m", repository, backend=backend, device=device)
        if backend == "tensorrt" and device == "cpu":
            with pytest.raises(ExportError, match="runs only on GPUs: add --device cuda"):
                export(options, stream=io.StringIO())
            continue
        result = export(options, stream=io.StringIO())
        found = _configs(repository)
        assert sorted(found) == sorted(result.models)
        gpu = [] if device in ("cpu", "cuda") else [1]
        want_kind = GPU if device != "cpu" else mc.ModelInstanceGroup.KIND_CPU
        ensemble = found["m"]
        assert ensemble.platform == "ensemble" and _params(ensemble)["tritonize.device"] == device
        if backend == "python-onnxruntime":  # the fused pipeline runs the encoder: it is the GPU model
            assert result.models == ["m", "m_pipeline"]
            assert _kinds(found["m_pipeline"]) == [(want_kind, gpu)]
            continue
        # native: the pipeline tokenizes and schedules on the CPU, the encoder model is the GPU's
        assert result.models == ["m", "m_pipeline", "m_encoder"]
        pipeline, encoder = found["m_pipeline"], found["m_encoder"]
        assert _kinds(pipeline) == [(mc.ModelInstanceGroup.KIND_CPU, [])]
        assert _kinds(encoder) == [(want_kind, gpu)]
        assert encoder.platform == {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}[backend]
        assert encoder.default_model_filename == ("model.plan" if backend == "tensorrt" else "model.onnx")
        assert (repository / "m_encoder" / "1" / "model.onnx").is_file()
        assert [i.name for i in encoder.input] == [i for i in ("input_ids", "attention_mask", "token_type_ids")
                                                  if i in {x.name for x in encoder.input}]
        steps = json.loads((repository / "m_pipeline" / "1" / "steps.json").read_text())
        step = {k: v["string_value"] for k, v in steps["encoder"]["parameters"].items()}
        assert step["tritonize.encoder_model"] == "m_encoder"
        assert step["tritonize.max_run_rows"] == str(encoder.max_batch_size)
        layout = json.loads(step["tritonize.encoder_layout"])
        assert set(layout) == {o.name for o in encoder.output}
        per_token = {name: value[0] for name, value in layout.items()}
        assert per_token == {"text-classification": {"logits": False},
                             "token-classification": {"logits": True},
                             "question-answering": {"start_logits": True, "end_logits": True}}[task]
        if backend == "tensorrt":
            profile = json.loads(_params(encoder)["tritonize.trt_profile"])
            assert set(profile) == {i.name for i in encoder.input}
            for shapes in profile.values():
                assert shapes["min"] == [1, 1] and shapes["max"][0] == encoder.max_batch_size
                assert shapes["max"][1] >= int(_params(ensemble)["tritonize.max_length"])


def test_device_and_precision_errors(tmp_path):
    checkpoint = str(tiny_classifier("bert-single"))
    cases = [
        (dict(device="tpu"), "--device: device 'tpu' is not cpu, cuda or cuda:N"),
        (dict(precision="fp16"), "--precision fp16 is for GPUs"),
        (dict(precision="bf16"), "--precision 'bf16' is not one of fp32, fp16"),
        (dict(device="cuda", precision="fp16", optimize="O2"), "does not combine with --optimize"),
        (dict(trt_accelerator=True, device="cuda"), "--trt-accelerator is for --backend onnxruntime"),
        (dict(backend="onnxruntime", trt_accelerator=True), "--trt-accelerator is for --backend onnxruntime"),
        # no onnxruntime-gpu here: the fp16 graph cannot be gated, so nothing is written
        (dict(device="cuda", precision="fp16"), "gates it on a GPU, with ONNX Runtime's CUDAExecutionProvider"),
    ]
    for options, message in cases:
        with pytest.raises(ExportError, match=message.replace("(", r"\(").replace(")", r"\)")):
            export(ExportOptions(checkpoint, "text-classification", "m", tmp_path / "repo", **options),
                   stream=io.StringIO())
    assert not (tmp_path / "repo" / "m").exists()


def test_native_windowed_tasks_need_the_fused_layout(tmp_path):
    with pytest.raises(ExportError, match=r"takes \[rows, tokens\].*use --layout fused"):
        export(ExportOptions(str(tiny_ner("bert")), "token-classification", "m", tmp_path / "repo",
                             backend="onnxruntime", layout="steps"), stream=io.StringIO())


def test_native_text_classification_in_the_steps_layout(tmp_path):
    repository = tmp_path / "repo"
    result = export(ExportOptions(str(tiny_classifier("bert-single")), "text-classification", "m", repository,
                                  backend="onnxruntime", layout="steps", threads=2), stream=io.StringIO())
    found = _configs(repository)
    assert sorted(found) == sorted(result.models) == ["m", "m_encoder", "m_postprocess", "m_tokenizer"]
    encoder = found["m_encoder"]
    assert encoder.platform == "onnxruntime_onnx"
    assert _params(encoder)["intra_op_thread_count"] == "2"  # the ORT backend's own parameter
    assert _params(found["m_tokenizer"])["tritonize.pad_to_multiple_of"] == "32"


def test_the_local_server_refuses_gpu_and_native_models_clearly(tmp_path):
    """This host has no GPU and the pip-installed server no native backends: serve says so, per model."""
    from tritonize.deploy.local import LocalServer, ServerError

    checkpoint = str(tiny_classifier("bert-single"))
    gpu = tmp_path / "gpu"
    export(ExportOptions(checkpoint, "text-classification", "g", gpu, device="cuda:0"), stream=io.StringIO())
    with pytest.raises(ServerError, match=r"g_pipeline are exported for a GPU .* has no NVIDIA GPU"):
        LocalServer(gpu).start()
    native = tmp_path / "native"
    export(ExportOptions(checkpoint, "text-classification", "n", native, backend="onnxruntime"), stream=io.StringIO())
    with pytest.raises(ServerError, match=r"n_encoder \(onnxruntime_onnx\) run in a native Triton backend"):
        LocalServer(native).start()


def test_build_engines_without_tensorrt_is_a_clear_error(tmp_path):
    repository = tmp_path / "repo"
    export(ExportOptions(str(tiny_qa("bert")), "question-answering", "q", repository, backend="tensorrt",
                         device="cuda", precision="fp16"), stream=io.StringIO())
    cli = [sys.executable, "-m", "tritonize.cli", "build-engines", str(repository)]
    dry = subprocess.run(cli + ["--dry-run"], capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    command = dry.stdout.strip()
    assert command.startswith(f"trtexec --onnx={repository / 'q_encoder' / '1' / 'model.onnx'}")
    assert "--fp16" in command and "--maxShapes=input_ids:32x" in command
    real = subprocess.run(cli, capture_output=True, text=True)
    assert real.returncode == 2
    assert "TensorRT is not installed here" in real.stderr and "Traceback" not in real.stderr
    assert not (repository / "q_encoder" / "1" / "model.plan").exists()
    missing = subprocess.run(cli + ["--model", "nope"], capture_output=True, text=True)
    assert missing.returncode == 2 and "no tensorrt_plan model named nope" in missing.stderr


# -- the BLS layout, served ------------------------------------------------------------------------------

def _stand_in(repository: Path, model: str) -> None:
    """Serve the native encoder ``model`` with the Python stand-in (same inputs, outputs, batching)."""
    config = configs.read_config(repository / model / "config.pbtxt")
    assert config.platform == "onnxruntime_onnx"
    config.platform = ""
    config.backend = "python"
    config.ClearField("default_model_filename")
    configs.write_config(repository / model, config)
    shutil.copy2(REPO_ROOT / "tests" / "standin" / "model.py", repository / model / "1" / "model.py")


@pytest.fixture(scope="module")
def served_native(tmp_path_factory):
    repository = tmp_path_factory.mktemp("native") / "model_repository"
    checkpoints = {"clf": tiny_classifier("roberta-single"), "ner": tiny_ner("bert"), "qa": tiny_qa("xlm-roberta")}
    exports = [
        ExportOptions(str(checkpoints["clf"]), "text-classification", "clf", repository, backend="onnxruntime"),
        # no token budget, 4 rows per BLS request: the native encoder's max_batch_size is what cuts the runs
        ExportOptions(str(checkpoints["ner"]), "token-classification", "ner", repository, backend="onnxruntime",
                      max_batch_size=4, max_batch_tokens=0),
        ExportOptions(str(checkpoints["qa"]), "question-answering", "qa", repository, backend="onnxruntime",
                      max_batch_size=4),
    ]
    log = io.StringIO()
    for options in exports:
        export(options, stream=log)
    for name in checkpoints:
        _stand_in(repository, f"{name}_encoder")
    yield from serve_exports(repository, [], checkpoints)


@pytest.mark.server
def test_native_bls_layout_answers_as_the_pipelines(served_native):
    from transformers import pipeline

    import test_ner_parity as ner
    import test_qa_parity as qa
    from tritonize.client import Client

    checkpoints = served_native.checkpoints
    texts = ["I love this.", "Terrible, never again!", "ok " * 300]
    clf_pipe = pipeline("text-classification", model=str(checkpoints["clf"]), device="cpu")
    ner_pipe = ner._pipeline(checkpoints["ner"], "simple")
    qa_pipe = qa._pipeline(checkpoints["qa"])
    with Client(served_native.url) as client:
        for text, got in zip(texts, client.classify("clf", texts, top_k=1)):
            want = clf_pipe(text, truncation=True)[0]
            assert got[0].label == want["label"] and abs(got[0].score - want["score"]) < 1e-4
        for text in ner.LONG_TEXTS:  # several windows each, the pipeline's stride
            ner._assert_same(client.extract_entities("ner", text, aggregation_strategy="simple"),
                             ner_pipe(text, stride=ner.STRIDE), text[:40])
        for text in ner.SHORT_TEXTS:
            ner._assert_same(client.extract_entities("ner", text, aggregation_strategy="simple"),
                             ner_pipe(text), text[:40])
        for question, context in qa.CASES:
            qa._assert_same(client.answer("qa", question=question, context=context),
                            qa_pipe(question=question, context=context), question)
    # the long texts went through the native encoder in runs of at most its max_batch_size (4) rows
    statistics = _inference_stats(served_native.server.http_url, "ner_encoder")
    # (Triton refuses a request of more than max_batch_size rows, so every answer above proves the cut)
    assert statistics["inference_count"] > statistics["execution_count"] >= 2


def _inference_stats(http_url: str, model: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://{http_url}/v2/models/{model}/stats") as response:
        stats = json.loads(response.read())["model_stats"][0]
    return {"inference_count": int(stats["inference_count"]), "execution_count": int(stats["execution_count"])}
