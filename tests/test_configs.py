"""Every generated config.pbtxt is a valid Triton ``ModelConfig`` with the served contract."""

from __future__ import annotations

import io
import json

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from conftest import tiny_classifier
from tritonize.exporters.export import ExportOptions, export


@pytest.fixture(scope="module", params=["python-onnxruntime", "onnxruntime"])
def exported(request, tmp_path_factory):
    repository = tmp_path_factory.mktemp(request.param) / "repo"
    checkpoint = tiny_classifier("roberta-multi")
    export(
        ExportOptions(str(checkpoint), "text-classification", "clf", repository,
                      backend=request.param, max_batch_size=8, instances=2, layout="steps"),
        stream=io.StringIO(),
    )
    configs = {}
    for path in sorted(repository.glob("*/config.pbtxt")):
        # strict parse: an unknown field or a wrong type raises
        configs[path.parent.name] = text_format.Parse(path.read_text(), mc.ModelConfig())
    return request.param, repository, configs


def test_four_models_all_parse(exported):
    _, _, configs = exported
    assert sorted(configs) == ["clf", "clf_encoder", "clf_postprocess", "clf_tokenizer"]
    for name, config in configs.items():
        assert config.name == name
        assert config.max_batch_size == 8


def test_ensemble_contract(exported):
    _, _, configs = exported
    ensemble = configs["clf"]
    assert ensemble.platform == "ensemble"
    (text, pair) = ensemble.input
    assert (text.name, text.data_type, list(text.dims), text.optional) == ("TEXT", mc.TYPE_STRING, [1], False)
    assert (pair.name, pair.data_type, list(pair.dims), pair.optional) == ("TEXT_PAIR", mc.TYPE_STRING, [1], True)
    outputs = {o.name: (o.data_type, list(o.dims)) for o in ensemble.output}
    assert outputs == {"LABELS": (mc.TYPE_STRING, [-1]), "SCORES": (mc.TYPE_FP32, [-1])}
    params = {k: v.string_value for k, v in ensemble.parameters.items()}
    assert params["tritonize.task"] == "text-classification"
    assert len(json.loads(params["tritonize.labels"])) == 4
    assert params["tritonize.function_to_apply"] == "sigmoid"
    steps = [s.model_name for s in ensemble.ensemble_scheduling.step]
    assert steps == ["clf_tokenizer", "clf_encoder", "clf_postprocess"]


def test_labels_are_the_checkpoints(exported):
    from transformers import AutoConfig

    _, _, configs = exported
    config = AutoConfig.from_pretrained(tiny_classifier("roberta-multi"))
    params = {k: v.string_value for k, v in configs["clf"].parameters.items()}
    assert json.loads(params["tritonize.labels"]) == [config.id2label[i] for i in range(config.num_labels)]


def test_every_ensemble_tensor_is_produced_before_it_is_consumed(exported):
    _, _, configs = exported
    ensemble = configs["clf"]
    available = {i.name for i in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        assert set(step.input_map) == {i.name for i in model.input}, step.model_name
        assert set(step.input_map.values()) <= available, step.model_name
        assert set(step.output_map) == {o.name for o in model.output}, step.model_name
        available |= set(step.output_map.values())
    assert {o.name for o in ensemble.output} <= available


def test_batching_and_instances(exported):
    backend, repository, configs = exported
    for name in ("clf_tokenizer", "clf_encoder", "clf_postprocess"):
        assert configs[name].HasField("dynamic_batching"), name
        assert configs[name].instance_group[0].count == 2
    encoder = configs["clf_encoder"]
    if backend == "python-onnxruntime":
        assert encoder.backend == "python"
        assert all(i.allow_ragged_batch for i in encoder.input)
        assert (repository / "clf_encoder" / "1" / "model.py").is_file()
    else:
        assert encoder.platform == "onnxruntime_onnx"
        assert {i.name for i in encoder.input} >= {"input_ids", "attention_mask"}
        tokenizer_params = {k: v.string_value for k, v in configs["clf_tokenizer"].parameters.items()}
        assert int(tokenizer_params["tritonize.pad_to_multiple_of"]) > 0
    assert (repository / "clf_encoder" / "1" / "model.onnx").is_file()


def test_tokenizer_json_neither_pads_nor_truncates(exported):
    _, repository, _ = exported
    saved = json.loads((repository / "clf_tokenizer" / "1" / "tokenizer.json").read_text())
    assert saved["truncation"] is None
    assert saved["padding"] is None


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    repository = tmp_path_factory.mktemp("fused") / "repo"
    result = export(
        ExportOptions(str(tiny_classifier("roberta-multi")), "text-classification", "clf", repository,
                      max_batch_size=8, instances=2, threads=3),
        stream=io.StringIO(),
    )
    configs = {path.parent.name: text_format.Parse(path.read_text(), mc.ModelConfig())
               for path in sorted(repository.glob("*/config.pbtxt"))}
    return result, repository, configs


def test_the_fused_layout_is_the_default_and_one_stub(fused):
    """One step model runs the three steps; the ensemble and its tensors are those of the steps layout."""
    result, repository, configs = fused
    assert result.models == ["clf", "clf_pipeline"] and sorted(configs) == ["clf", "clf_pipeline"]
    ensemble, pipeline = configs["clf"], configs["clf_pipeline"]
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == ["clf_pipeline"]
    assert [(i.name, list(i.dims), i.optional) for i in pipeline.input] == [("TEXT", [1], False),
                                                                          ("TEXT_PAIR", [1], True)]
    assert {o.name for o in pipeline.output} == {o.name for o in ensemble.output} == {"LABELS", "SCORES"}
    assert pipeline.backend == "python" and pipeline.HasField("dynamic_batching")
    assert pipeline.instance_group[0].count == 2
    params = {k: v.string_value for k, v in pipeline.parameters.items()}
    assert params["tritonize.role"] == "pipeline" and params["tritonize.layout"] == "fused"
    assert params["tritonize.intra_op_threads"] == "3" and params["tritonize.allow_spinning"] == "1"
    assert {k: v.string_value for k, v in ensemble.parameters.items()}["tritonize.layout"] == "fused"
    files = {p.name for p in (repository / "clf_pipeline" / "1").iterdir()}
    assert files >= {"model.py", "tokenizer_step.py", "encoder_step.py", "postprocess_step.py",
                     "tritonize_step.py", "model.onnx", "tokenizer.json", "steps.json"}


def test_the_fused_layout_keeps_each_steps_own_config(fused):
    """steps.json holds the three steps' configs, as the steps layout would write them."""
    _, repository, _ = fused
    steps = json.loads((repository / "clf_pipeline" / "1" / "steps.json").read_text())
    assert sorted(steps) == ["encoder", "postprocess", "tokenizer"]
    roles = {role: config["parameters"]["tritonize.role"]["string_value"] for role, config in steps.items()}
    assert roles == {"tokenizer": "tokenizer", "encoder": "encoder", "postprocess": "postprocess"}
    assert [o["name"] for o in steps["tokenizer"]["output"]] == [i["name"] for i in steps["encoder"]["input"]]
    assert [i["name"] for i in steps["postprocess"]["input"]] == [o["name"] for o in steps["encoder"]["output"]]
    assert steps["encoder"]["instance_group"][0]["count"] == 2
