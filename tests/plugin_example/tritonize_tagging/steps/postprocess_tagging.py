"""Postprocess step of text-tagging: LOGITS -> the labels whose sigmoid score passes the threshold.

Built on tritonize's step base (``tritonize_step.Step``, copied beside this
file at export): the config is read once, the request's ``threshold`` is
checked in one place, and a bad request fails alone with INVALID_ARG.
"""

import numpy as np

from tritonize_step import RequestError, Step


def threshold_check(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise RequestError(f"request parameter {name} must be a number in [0, 1], got {value!r}")
    return float(value)


def tags(logits, labels, threshold):
    """Per row: (labels, scores) of the labels scoring at least ``threshold``, best first."""
    scores = 1.0 / (1.0 + np.exp(-logits.astype(np.float32)))
    rows = []
    for row in scores:
        order = [i for i in np.argsort(-row, kind="stable") if row[i] >= threshold]
        rows.append(([labels[i] for i in order], [float(row[i]) for i in order]))
    return rows


class TritonPythonModel(Step):
    config_parameters = {"labels": ("tritonize.labels", "json", []), "threshold": ("tagging.threshold", float, 0.5)}
    request_parameters = {"threshold": threshold_check}

    def preprocess(self, request):
        return self.tensor(request, "LOGITS")

    def forward(self, logits, threshold):
        return tags(logits, self.labels, threshold)

    def postprocess(self, rows):
        width = max([len(names) for names, _ in rows] + [0])
        names = np.full((len(rows), width), b"", dtype=object)
        scores = np.zeros((len(rows), width), dtype=np.float32)
        for r, (row_names, row_scores) in enumerate(rows):
            names[r, : len(row_names)] = [n.encode("utf-8") for n in row_names]
            scores[r, : len(row_scores)] = row_scores
        count = np.array([[len(n)] for n, _ in rows], dtype=np.int64)
        return {"TAGS": names, "SCORES": scores, "COUNT": count}
