"""ONNX encoders: in ONNX Runtime inside the Python backend, or in Triton's native ORT backend."""

from __future__ import annotations

import shutil
from pathlib import Path

from tritonize import protocol
from tritonize.exporters import configs
from tritonize.exporters.backend import install_step
from tritonize.exporters.configs import Tensor
from tritonize.exporters.formats.base import ENCODER_INPUTS, EncoderStep, FormatPlugin
from tritonize.exporters.onnx_export import OnnxEncoder
from tritonize.exporters.tasks.base import ExportSpec

def _copy_onnx(encoder: OnnxEncoder, version_dir: Path) -> None:
    version_dir.mkdir(parents=True, exist_ok=True)
    for path in encoder.path.parent.glob("model.onnx*"):
        shutil.copy2(path, version_dir / path.name)


def _dims(rank: int, windowed: bool = False) -> tuple:
    return (-1,) * (max(rank - 1, 1) + int(windowed))


def _common_parameters(spec: ExportSpec) -> dict:
    return {
        protocol.PARAM_TASK: spec.task,
        protocol.PARAM_ROLE: "encoder",
        "tritonize.pad_token_id": str(spec.checkpoint.tokenizer.pad_token_id or 0),
        protocol.PARAM_INTRA_OP_THREADS: "auto" if spec.threads is None else str(spec.threads),
        protocol.PARAM_ALLOW_SPINNING: "1" if spec.allow_spinning else "0",
        **spec.graph,
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


class PythonOnnxRuntimeFormat(FormatPlugin):
    """ONNX Runtime in a Python-backend model: runs on the pip-installed tritonserver.

    Its inputs allow ragged batches: the dynamic batcher merges requests of
    different token lengths and the model pads them together, so batching
    does not depend on requests having the same shape.
    """

    name = "python-onnxruntime"
    supports_windows = True
    supports_fused = True

    def write_encoder(self, spec, encoder, outputs, model_dir, model_name):  # type: ignore[override]
        inputs = {onnx: ENCODER_INPUTS[onnx] for onnx in encoder.input_names}
        windowed = spec.windowed
        spec_dims = (-1, -1) if windowed else (-1,)
        config = configs.model_config(
            model_name,
            backend="python",
            max_batch_size=spec.max_batch_size,
            inputs=[Tensor(name, "int64", spec_dims, ragged=True) for name in inputs.values()],
            outputs=[
                Tensor(name, "fp32", _dims(encoder.output_ranks[onnx], windowed))
                for name, onnx in outputs.items()
            ],
            parameters={
                **_common_parameters(spec),
                **_limits(spec),
                "tritonize.encoder_inputs": {triton: onnx for onnx, triton in inputs.items()},
                "tritonize.encoder_outputs": dict(outputs),
            },
        )
        configs.add_dynamic_batching(config, spec.batcher)
        configs.add_instances(config, spec.instances)
        _copy_onnx(encoder, model_dir / "1")
        install_step("encoder_onnxruntime.py", model_dir / "1")
        identity_in = {name: name for name in inputs.values()}
        identity_out = {name: name for name in outputs}
        return EncoderStep(config, identity_in, identity_out)


class NativeOnnxRuntimeFormat(FormatPlugin):
    """Triton's native ``onnxruntime_onnx`` platform (the NGC container).

    The native backend batches only requests of the same shape, so the
    tokenizer pads to multiples of 32 tokens: requests of similar length
    land in the same bucket and batch together.
    """

    name = "onnxruntime"
    pad_to_multiple_of = 32
    runs_locally = False

    def write_encoder(self, spec, encoder, outputs, model_dir, model_name):  # type: ignore[override]
        config = configs.model_config(
            model_name,
            platform="onnxruntime_onnx",
            max_batch_size=spec.max_batch_size,
            inputs=[Tensor(name, "int64", (-1,)) for name in encoder.input_names],
            outputs=[
                Tensor(onnx, "fp32", _dims(encoder.output_ranks[onnx])) for onnx in outputs.values()
            ],
            parameters=_common_parameters(spec),
        )
        configs.add_dynamic_batching(config, spec.batcher)
        configs.add_instances(config, spec.instances)
        _copy_onnx(encoder, model_dir / "1")
        input_map = {onnx: ENCODER_INPUTS[onnx] for onnx in encoder.input_names}
        output_map = {onnx: name for name, onnx in outputs.items()}
        return EncoderStep(config, input_map, output_map)
