"""TensorRT: the encoder as a ``tensorrt_plan`` model, its engine built on the GPU that serves it.

A TensorRT engine is specific to the GPU model and the TensorRT version that
built it, so the export does not build one: it writes the validated ONNX
graph into ``NAME_encoder/1/model.onnx`` beside a config whose
``default_model_filename`` is ``model.plan``, and records the optimization
profile (rows and tokens, min/opt/max) and the precision in its parameters.
``tritonize build-engines REPOSITORY`` then builds ``model.plan`` on the
serving GPU (an init container in Kubernetes; ``deploy/kubernetes``). Until
it has run, Triton refuses to load the model (no ``model.plan``).

Inputs stay int64, as in the ONNX graph: TensorRT 10 (NGC tritonserver
24.05 and later) has int64 I/O tensors; ``build-engines`` checks the engine.
"""

from __future__ import annotations

import json

from tritonize.exporters import configs
from tritonize.exporters.formats.onnx import NativeFormat, trt_profile

PARAM_PROFILE = "tritonize.trt_profile"  # JSON: input -> {min, opt, max} shapes [rows, tokens]
ENGINE_FILE = "model.plan"


class TensorRTFormat(NativeFormat):
    """Triton's ``tensorrt_plan`` platform on a GPU (the NGC container)."""

    name = "tensorrt"
    platform = "tensorrt_plan"
    default_model_filename = ENGINE_FILE
    gpu_only = True

    def native_config(self, spec, encoder, outputs, model_name):  # type: ignore[override]
        config = super().native_config(spec, encoder, outputs, model_name)
        configs.set_parameters(config, {
            PARAM_PROFILE: json.dumps(trt_profile(spec, list(encoder.input_names), config.max_batch_size)),
        })
        return config
