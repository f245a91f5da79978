"""Encoder step: an ONNX Runtime session inside the Python backend.

The dynamic batcher hands over requests whose token tensors may differ in
length (the inputs allow ragged batches). They are right-padded to the
longest one, run as one batch, and split back; per-token outputs are cut to
each request's own length, so a request gets exactly what it would get alone.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def _param(config, key, default=None):
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return default if value is None else value


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        # Triton tensor name -> ONNX tensor name
        self.input_map = json.loads(_param(config, "tritonize.encoder_inputs"))
        self.output_map = json.loads(_param(config, "tritonize.encoder_outputs"))
        self.pad_values = {"INPUT_IDS": int(_param(config, "tritonize.pad_token_id", "0"))}
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = int(_param(config, "tritonize.intra_op_threads", "0"))
        if threads > 0:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
            device = int(args.get("model_instance_device_id", 0))
            providers = [("CUDAExecutionProvider", {"device_id": device}), "CPUExecutionProvider"]
        self.session = ort.InferenceSession(
            os.path.join(version_dir, "model.onnx"), sess_options=options, providers=providers
        )
        onnx_inputs = {i.name for i in self.session.get_inputs()}
        self.input_map = {k: v for k, v in self.input_map.items() if v in onnx_inputs}

    def execute(self, requests):
        per_request = []
        for request in requests:
            arrays = {
                name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                for name in self.input_map
            }
            per_request.append(arrays)
        lengths = [next(iter(a.values())).shape[1] for a in per_request]
        sizes = [next(iter(a.values())).shape[0] for a in per_request]
        longest = max(lengths)
        feed = {}
        for name, onnx_name in self.input_map.items():
            pad = self.pad_values.get(name, 0)
            parts = []
            for arrays, length in zip(per_request, lengths):
                array = arrays[name].astype(np.int64, copy=False)
                if length < longest:
                    array = np.pad(array, ((0, 0), (0, longest - length)), constant_values=pad)
                parts.append(array)
            feed[onnx_name] = np.concatenate(parts, axis=0)
        onnx_outputs = list(self.output_map.values())
        results = dict(zip(onnx_outputs, self.session.run(onnx_outputs, feed)))
        responses, start = [], 0
        for size, length in zip(sizes, lengths):
            tensors = []
            for name, onnx_name in self.output_map.items():
                value = results[onnx_name][start : start + size]
                if value.ndim >= 2 and value.shape[1] == longest and self._per_token(onnx_name):
                    value = value[:, :length]
                tensors.append(pb_utils.Tensor(name, np.ascontiguousarray(value, dtype=np.float32)))
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def _per_token(self, onnx_name):
        for output in self.session.get_outputs():
            if output.name == onnx_name:
                return len(output.shape) >= 2 and not isinstance(output.shape[1], int)
        return False
