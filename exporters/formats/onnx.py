"""ONNX encoders: in ONNX Runtime inside the Python backend, or in Triton's native ORT backend."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from tritonclient.grpc import model_config_pb2 as mc

from tritonize import protocol
from tritonize.exporters import configs
from tritonize.exporters.backend import install_step
from tritonize.exporters.configs import Tensor
from tritonize.exporters.formats.base import ENCODER_INPUTS, EncoderStep, FormatPlugin
from tritonize.exporters.onnx_export import OnnxEncoder
from tritonize.exporters.tasks.base import ExportSpec


def copy_onnx(encoder: OnnxEncoder, version_dir: Path) -> None:
    version_dir.mkdir(parents=True, exist_ok=True)
    for path in encoder.path.parent.glob("model.onnx*"):
        shutil.copy2(path, version_dir / path.name)


def _dims(rank: int, windowed: bool = False) -> tuple:
    return (-1,) * (max(rank - 1, 1) + int(windowed))


def output_layout(encoder: OnnxEncoder) -> Dict[str, list]:
    """Per ONNX output: ``[per_token, tail]``, as the encoder step reads it from a session.

    ``per_token``: the 2nd axis is the token axis ([batch, tokens(, labels)]:
    NER, QA) rather than fixed ([batch, labels]: classification); ``tail``:
    the fixed trailing dims (0 where symbolic). The BLS layout records it,
    since the Python step has no session of its own to ask.
    """
    import onnx

    graph = onnx.load(str(encoder.path), load_external_data=False).graph
    layout = {}
    for output in graph.output:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in output.type.tensor_type.shape.dim]
        per_token = len(dims) >= 2 and dims[1] is None
        tail = dims[2:] if per_token else dims[1:]
        layout[output.name] = [per_token, [d or 0 for d in tail]]
    return layout


def _common_parameters(spec: ExportSpec) -> dict:
    return {
        protocol.PARAM_TASK: spec.task,
        protocol.PARAM_ROLE: "encoder",
        "tritonize.pad_token_id": str(spec.checkpoint.tokenizer.pad_token_id or 0),
        protocol.PARAM_INTRA_OP_THREADS: "auto" if spec.threads is None else str(spec.threads),
        protocol.PARAM_ALLOW_SPINNING: "1" if spec.allow_spinning else "0",
        protocol.PARAM_DEVICE: str(spec.device),
        protocol.PARAM_PRECISION: spec.precision,
        **spec.graph,
        **spec.encoder_parameters,
    }


def _limits(spec: ExportSpec) -> dict:
    """What the encoder checks in every request, and its token budget."""
    config = spec.checkpoint.config
    windows = spec.limits.max_windows if spec.windowed else 1
    budget = spec.limits.max_batch_tokens
    return {
        "tritonize.vocab_size": str(getattr(config, "vocab_size", 0) or 0),
        "tritonize.type_vocab_size": str(getattr(config, "type_vocab_size", 0) or 0),
        "tritonize.max_positions": str(spec.checkpoint.max_length()),
        "tritonize.max_rows": str(spec.max_batch_size * windows if windows else 0),
        "tritonize.max_batch_tokens": "auto" if budget is None else str(budget),
    }


def python_encoder_config(spec: ExportSpec, encoder: OnnxEncoder, outputs: Mapping[str, str], model_name: str,
                          native: Optional[mc.ModelConfig] = None) -> mc.ModelConfig:
    """The Python encoder step's config: the token-budget scheduler over ONNX Runtime, or, with ``native``,
    over BLS requests to that native encoder model (``tritonize.encoder_model``)."""
    inputs = {onnx: ENCODER_INPUTS[onnx] for onnx in encoder.input_names}
    windowed = spec.windowed
    parameters = {
        **_common_parameters(spec),
        **_limits(spec),
        "tritonize.encoder_inputs": {triton: onnx for onnx, triton in inputs.items()},
        "tritonize.encoder_outputs": dict(outputs),
    }
    if native is not None:
        parameters.update({
            protocol.PARAM_ENCODER_MODEL: native.name,
            "tritonize.encoder_layout": output_layout(encoder),
            "tritonize.max_run_rows": str(native.max_batch_size),
        })
    config = configs.model_config(
        model_name,
        backend="python",
        max_batch_size=spec.max_batch_size,
        inputs=[Tensor(name, "int64", (-1, -1) if windowed else (-1,), ragged=True) for name in inputs.values()],
        outputs=[Tensor(name, "fp32", _dims(encoder.output_ranks[onnx], windowed)) for name, onnx in outputs.items()],
        parameters=parameters,
    )
    configs.add_dynamic_batching(config, spec.batcher)
    # with a native encoder the GPU work is that model's; the scheduler itself is CPU work
    configs.add_instances(config, spec.instances, configs.CPU if native is not None else spec.device)
    return config


class PythonOnnxRuntimeFormat(FormatPlugin):
    """ONNX Runtime in a Python-backend model: runs on the pip-installed tritonserver, CPU or CUDA EP.

    Its inputs allow ragged batches: the dynamic batcher merges requests of
    different token lengths and the model pads them together, so batching
    does not depend on requests having the same shape.
    """

    name = "python-onnxruntime"
    supports_windows = True
    supports_fused = True

    def write_encoder(self, spec, encoder, outputs, model_dir, model_name):  # type: ignore[override]
        config = python_encoder_config(spec, encoder, outputs, model_name)
        copy_onnx(encoder, model_dir / "1")
        install_step("encoder_onnxruntime.py", model_dir / "1")
        return EncoderStep(config, {t.name: t.name for t in config.input}, {name: name for name in outputs})


class NativeFormat(FormatPlugin):
    """An encoder in one of Triton's native backends: a model of its own, ``NAME_encoder``.

    Its inputs are the ONNX graph's (``input_ids``, ``attention_mask``, ...)
    as ``[batch, tokens]``, which cannot hold the ``[texts, windows, tokens]``
    of NER and QA. So in the fused layout the Python step ``NAME_pipeline``
    tokenizes, runs its token-budget scheduler, and sends each run to
    ``NAME_encoder`` as one BLS request of at most ``max_batch_size`` rows; then
    postprocesses. Every task works this way. The steps layout (tokenizer ->
    native encoder -> postprocess in the ensemble) is there for
    text-classification, whose texts are one row each.
    """

    runs_locally = False
    supports_windows = True  # through the BLS pipeline
    supports_fused = True
    in_process = False
    platform: str = ""
    default_model_filename: str = "model.onnx"

    def native_config(self, spec: ExportSpec, encoder: OnnxEncoder, outputs: Mapping[str, str],
                      model_name: str) -> mc.ModelConfig:
        config = configs.model_config(
            model_name,
            platform=self.platform,
            max_batch_size=spec.max_batch_size,
            inputs=[Tensor(name, "int64", (-1,)) for name in encoder.input_names],
            outputs=[Tensor(onnx, "fp32", _dims(encoder.output_ranks[onnx])) for onnx in outputs.values()],
            parameters=_common_parameters(spec),
        )
        config.default_model_filename = self.default_model_filename
        configs.add_dynamic_batching(config, spec.batcher)
        configs.add_instances(config, spec.instances, spec.device)
        return config

    def write_encoder(self, spec, encoder, outputs, model_dir, model_name):  # type: ignore[override]
        config = self.native_config(spec, encoder, outputs, model_name)
        copy_onnx(encoder, model_dir / "1")
        input_map = {onnx: ENCODER_INPUTS[onnx] for onnx in encoder.input_names}
        output_map = {onnx: name for name, onnx in outputs.items()}
        return EncoderStep(config, input_map, output_map)


class NativeOnnxRuntimeFormat(NativeFormat):
    """Triton's native ``onnxruntime_onnx`` platform (the NGC container), CPU or GPU.

    On a GPU, ``--trt-accelerator`` turns on ONNX Runtime's TensorRT execution
    provider through ``optimization.execution_accelerators`` (FP16 with
    ``--precision fp16``). In the steps layout the tokenizer pads to multiples
    of 32 tokens, because the native backend batches only requests of the same
    shape: requests of similar length land in the same bucket.
    """

    name = "onnxruntime"
    pad_to_multiple_of = 32
    platform = "onnxruntime_onnx"

    def native_config(self, spec, encoder, outputs, model_name):  # type: ignore[override]
        config = super().native_config(spec, encoder, outputs, model_name)
        if spec.threads is not None:  # the ORT backend's own parameters
            configs.set_parameters(config, {"intra_op_thread_count": str(spec.threads),
                                            "inter_op_thread_count": "1"})
        if spec.trt_accelerator:
            accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add()
            accelerator.name = "tensorrt"
            accelerator.parameters["precision_mode"] = "FP16" if spec.precision == "fp16" else "FP32"
            accelerator.parameters["max_workspace_size_bytes"] = str(4 << 30)
        return config


def trt_profile(spec: ExportSpec, input_names: List[str], max_rows: int) -> Dict[str, Dict[str, list]]:
    """The TensorRT optimization profile: 1..max_rows rows, 1..max length tokens (opt: half the rows, 128)."""
    longest = spec.checkpoint.max_length()
    opt = [max(1, max_rows // 2), min(128, longest)]
    return {name: {"min": [1, 1], "opt": opt, "max": [max_rows, longest]} for name in input_names}
