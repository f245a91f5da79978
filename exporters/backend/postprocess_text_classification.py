"""Postprocess step for text-classification: LOGITS -> LABELS, SCORES.

The scores follow ``pipeline("text-classification")``: softmax for
single-label models, sigmoid for multi-label (or one-label) models, the raw
logits for regression. Every label is returned, best first, ties in label
order as the pipeline's stable sort leaves them.
"""

import numpy as np

from tritonize_step import Step


def softmax(logits):
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-logits))


def scores_of(logits, function):
    """The pipeline's scores: ``function`` is softmax, sigmoid or none."""
    if function == "softmax":
        return softmax(logits)
    if function == "sigmoid":
        return sigmoid(logits)
    return logits


def ranked(scores, labels):
    """Every label of each row, best first (ties in label order, as the pipeline's stable sort)."""
    order = np.argsort(-scores, axis=-1, kind="stable")
    return labels[order], np.take_along_axis(scores, order, axis=-1).astype(np.float32)


class TritonPythonModel(Step):
    config_parameters = {
        "label_names": ("tritonize.labels", "json", []),
        "function": ("tritonize.function_to_apply", str, "softmax"),
    }

    def setup(self):
        if self.function not in ("softmax", "sigmoid", "none"):
            raise ValueError(f"unknown tritonize.function_to_apply {self.function!r}")
        self.labels = np.array([label.encode("utf-8") for label in self.label_names], dtype=object)

    def preprocess(self, request):
        return self.tensor(request, "LOGITS").astype(np.float32)

    def forward(self, logits):
        return ranked(scores_of(logits, self.function), self.labels)

    def postprocess(self, results):
        labels, scores = results
        return {"LABELS": labels.astype(np.object_), "SCORES": scores}
