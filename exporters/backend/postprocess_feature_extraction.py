"""Postprocess step for feature-extraction: token vectors -> one sentence embedding per text.

It does what sentence-transformers' ``Pooling`` and ``Normalize`` modules do
(and ``pipeline("feature-extraction")`` followed by the same pooling):

* ``cls``: the vector of each text's first attended token (its ``[CLS]`` /
  ``<s>``; the tokenizer step pads on the right, so position 0);
* ``mean``: the mean of the vectors of the attended tokens only: padding never
  counts, whatever the other texts of the batch are (the sum over the mask,
  divided by the number of attended tokens, at least 1e-9);
* ``normalize``: each vector divided by its L2 norm, at least 1e-12, as
  ``torch.nn.functional.normalize`` does (a zero vector stays zero).

Inputs: ``ATTENTION_MASK`` ``[b, tokens]`` and ``LAST_HIDDEN_STATE``
``[b, tokens, hidden]``; output ``EMBEDDING`` ``[b, hidden]`` (fp32). The
export's pooling is in ``tritonize.pooling`` and its normalization in
``tritonize.normalize``; a request may set ``normalize`` (true or false)
through its parameters. The logic is in plain numpy functions, importable
without a server (tests/unit/test_pooling.py).
"""

import numpy as np

from tritonize_step import RequestError, Step, flag

POOLING_MODES = ("cls", "mean")
MEAN_EPS = 1e-9  # sentence-transformers' clamp of the token count
NORM_EPS = 1e-12  # torch.nn.functional.normalize's


def _check(hidden, mask):
    hidden = np.asarray(hidden)
    mask = np.asarray(mask)
    if hidden.ndim != 3:
        raise RequestError(f"input 'LAST_HIDDEN_STATE' has shape {list(hidden.shape)}; expected [texts, tokens, hidden]")
    if mask.shape != hidden.shape[:2]:
        raise RequestError(
            f"inputs 'ATTENTION_MASK' {list(mask.shape)} and 'LAST_HIDDEN_STATE' {list(hidden.shape)} do not "
            "agree: the mask must be [texts, tokens] of the hidden states"
        )
    return hidden, mask


def cls_pooling(hidden, mask):
    """The vector of each row's first attended token ([b, tokens, hidden], [b, tokens] -> [b, hidden])."""
    hidden, mask = _check(hidden, mask)
    first = np.argmax(mask != 0, axis=1)  # 0 for a row with no attended token, as torch's argmax gives
    return hidden[np.arange(hidden.shape[0]), first].astype(np.float32)


def mean_pooling(hidden, mask):
    """The mean of each row's attended token vectors; padding does not count."""
    hidden, mask = _check(hidden, mask)
    weights = (mask != 0).astype(np.float64)[:, :, None]
    total = (hidden.astype(np.float64) * weights).sum(axis=1)
    count = np.maximum(weights.sum(axis=1), MEAN_EPS)
    return (total / count).astype(np.float32)


def l2_normalize(vectors, eps=NORM_EPS):
    """``torch.nn.functional.normalize(vectors, p=2, dim=-1)``: each row over max(its L2 norm, eps)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.sqrt(np.square(vectors.astype(np.float64)).sum(axis=-1, keepdims=True))
    return (vectors / np.maximum(norms, eps)).astype(np.float32)


def pool(hidden, mask, mode):
    if mode == "cls":
        return cls_pooling(hidden, mask)
    if mode == "mean":
        return mean_pooling(hidden, mask)
    raise ValueError(f"pooling {mode!r} is not one of {', '.join(POOLING_MODES)}")


def embed(hidden, mask, pooling="mean", normalize=False):
    """Sentence embeddings [b, hidden] (fp32) of token vectors [b, tokens, hidden] and their mask [b, tokens]."""
    vectors = pool(hidden, mask, pooling)
    return l2_normalize(vectors) if normalize else vectors


class TritonPythonModel(Step):
    config_parameters = {
        "pooling": ("tritonize.pooling", str, "mean"),
        "normalize": ("tritonize.normalize", bool, False),
    }
    request_parameters = {"normalize": flag}

    def setup(self):
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"{self.name}: tritonize.pooling {self.pooling!r} is not one of {', '.join(POOLING_MODES)}")

    def preprocess(self, request):
        return self.tensor(request, "LAST_HIDDEN_STATE"), self.tensor(request, "ATTENTION_MASK")

    def forward(self, inputs, normalize=False):
        hidden, mask = inputs
        return embed(hidden, mask, self.pooling, normalize)

    def postprocess(self, vectors):
        return {"EMBEDDING": np.ascontiguousarray(vectors, dtype=np.float32)}
