"""The native encoder's stand-in for this machine, where Triton's onnxruntime_onnx backend does not exist.

Tests swap ``NAME_encoder``'s ``platform: "onnxruntime_onnx"`` for this
Python model, which serves the very same contract: the ONNX graph's own
input names as ``[rows, tokens]`` int64, its outputs by name, batched by
Triton (which enforces ``max_batch_size``), one ONNX Runtime run per request. So the BLS path
(tokenizer -> scheduler -> BLS request -> postprocess) runs for real against
the exported graph; only Triton's C++ ORT backend is not exercised.
"""

import json
import os

import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(version_dir, "model.onnx")
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            feed = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs}
            wanted = request.requested_output_names() or self.outputs
            results = self.session.run(list(wanted), feed)
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(name, value) for name, value in zip(wanted, results)]))
        return responses
