"""Postprocess step for text-classification: LOGITS -> LABELS, SCORES.

The scores follow ``pipeline("text-classification")``: softmax for
single-label models, sigmoid for multi-label (or one-label) models, the raw
logits for regression. Every label is returned, best first, ties in label
order as the pipeline's stable sort leaves them.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from tritonize_step import param, respond_each


def softmax(logits):
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-logits))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.name = args["model_name"]
        self.labels = np.array(
            [label.encode("utf-8") for label in json.loads(param(config, "tritonize.labels"))],
            dtype=object,
        )
        self.function = param(config, "tritonize.function_to_apply", "softmax")
        if self.function not in ("softmax", "sigmoid", "none"):
            raise ValueError(f"unknown tritonize.function_to_apply {self.function!r}")

    def execute(self, requests):
        return respond_each(self.name, requests, self.respond)

    def respond(self, request):
        """One request's answer (the fused layout calls it too, with the encoder's tensors)."""
        logits = pb_utils.get_input_tensor_by_name(request, "LOGITS").as_numpy().astype(np.float32)
        if self.function == "softmax":
            scores = softmax(logits)
        elif self.function == "sigmoid":
            scores = sigmoid(logits)
        else:
            scores = logits
        order = np.argsort(-scores, axis=-1, kind="stable")
        labels = self.labels[order]
        sorted_scores = np.take_along_axis(scores, order, axis=-1).astype(np.float32)
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("LABELS", labels.astype(np.object_)),
                pb_utils.Tensor("SCORES", sorted_scores),
            ]
        )
