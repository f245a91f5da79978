"""Encoder step: an ONNX Runtime session inside the Python backend.

The dynamic batcher hands over requests whose token tensors may differ in
length (the inputs allow ragged batches). Their sequences are right-padded to
the longest one, run as one batch, and split back; per-token outputs are cut
to each request's own length, so a request gets exactly what it would get
alone. A request may carry several windows per text (long texts): they are
rows of the same batch, so one long text does not stall the others.
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
        # Per output: is its 2nd axis the token axis ([batch, tokens(, labels)]: NER, QA)
        # or not ([batch, labels]: classification), and its fixed trailing dims.
        self.layout = {}
        for output in self.session.get_outputs():
            shape = list(output.shape)
            per_token = len(shape) >= 2 and not isinstance(shape[1], int)
            tail = shape[2:] if per_token else shape[1:]
            self.layout[output.name] = (per_token, tuple(d if isinstance(d, int) else 0 for d in tail))

    def execute(self, requests):
        # Each request holds [texts, tokens] or [texts, windows, tokens]; every
        # sequence becomes one row of a single ORT batch, except padded windows
        # (all-zero attention mask), which are not computed at all.
        rows_per_request, shapes, lengths = [], [], []
        feed_parts = {name: [] for name in self.input_map}
        for request in requests:
            arrays = {
                name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                for name in self.input_map
            }
            shape = arrays["ATTENTION_MASK"].shape
            length = shape[-1]
            flat = {name: a.reshape(-1, length) for name, a in arrays.items()}
            live = np.flatnonzero(flat["ATTENTION_MASK"].any(axis=1))
            rows_per_request.append(live)
            shapes.append(shape)
            lengths.append(length)
            for name in self.input_map:
                feed_parts[name].append(flat[name][live])
        longest = max(lengths)
        feed = {}
        for name, onnx_name in self.input_map.items():
            pad = self.pad_values.get(name, 0)
            parts = []
            for part, length in zip(feed_parts[name], lengths):
                part = part.astype(np.int64, copy=False)
                if length < longest:
                    part = np.pad(part, ((0, 0), (0, longest - length)), constant_values=pad)
                parts.append(part)
            feed[onnx_name] = np.concatenate(parts, axis=0)
        onnx_outputs = list(self.output_map.values())
        if feed[self.input_map["ATTENTION_MASK"]].shape[0]:
            results = dict(zip(onnx_outputs, self.session.run(onnx_outputs, feed)))
        else:  # only empty windows: nothing to compute
            results = {name: None for name in onnx_outputs}
        responses, start = [], 0
        for live, shape, length in zip(rows_per_request, shapes, lengths):
            tensors = []
            for name, onnx_name in self.output_map.items():
                tensors.append(pb_utils.Tensor(name, self._rows(results[onnx_name], onnx_name, start, live, shape, length)))
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += len(live)
        return responses

    def _rows(self, result, onnx_name, start, live, shape, length):
        """This request's outputs, reshaped to its own [texts(, windows)(, tokens), ...]."""
        per_token, tail = self.layout[onnx_name]
        rows = int(np.prod(shape[:-1]))
        if result is None:
            return np.zeros(tuple(shape[:-1]) + ((length,) if per_token else ()) + tail, dtype=np.float32)
        mine = result[start : start + len(live)]
        if per_token:
            mine = mine[:, :length]
        out = np.zeros((rows,) + mine.shape[1:], dtype=np.float32)
        out[live] = mine
        return out.reshape(tuple(shape[:-1]) + mine.shape[1:])
