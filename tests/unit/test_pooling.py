"""The feature-extraction postprocess's pooling, without a server, against sentence-transformers' own modules.

``exporters/backend/postprocess_feature_extraction.py`` is imported as the
Python backend imports it (its folder on ``sys.path``, no
``triton_python_backend_utils``); the oracle is sentence-transformers'
``Pooling`` and ``Normalize`` modules and ``torch.nn.functional.normalize``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

BACKEND = Path(__file__).resolve().parents[2] / "exporters" / "backend"


@pytest.fixture(scope="module")
def step():
    sys.path.insert(0, str(BACKEND))
    try:
        yield importlib.import_module("postprocess_feature_extraction")
    finally:
        sys.path.remove(str(BACKEND))


def _batch(seed=0, lengths=(1, 3, 17, 40), width=40, hidden=24):
    """Token vectors of texts of very different lengths, right-padded, the padding filled with large noise."""
    rng = np.random.default_rng(seed)
    hidden_states = rng.normal(size=(len(lengths), width, hidden)).astype(np.float32)
    mask = np.zeros((len(lengths), width), dtype=np.int64)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
        hidden_states[row, n:] = rng.normal(scale=1e3, size=(width - n, hidden))  # must never leak into a mean
    return hidden_states, mask


def _sentence_transformers(hidden_states, mask, mode, normalize):
    import torch
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

    features = {"token_embeddings": torch.from_numpy(hidden_states), "attention_mask": torch.from_numpy(mask)}
    features = Pooling(hidden_states.shape[-1], pooling_mode=mode)(features)
    if normalize:
        features = Normalize()(features)
    return features["sentence_embedding"].numpy()


@pytest.mark.parametrize("mode", ["cls", "mean"])
@pytest.mark.parametrize("normalize", [False, True])
def test_pooling_matches_sentence_transformers(step, mode, normalize):
    hidden_states, mask = _batch()
    got = step.embed(hidden_states, mask, mode, normalize)
    want = _sentence_transformers(hidden_states, mask, mode, normalize)
    assert got.dtype == np.float32 and got.shape == want.shape == (4, 24)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_padding_does_not_leak_into_the_mean(step):
    hidden_states, mask = _batch()
    together = step.mean_pooling(hidden_states, mask)
    for row, n in enumerate(mask.sum(axis=1)):
        alone = step.mean_pooling(hidden_states[row:row + 1, :n], mask[row:row + 1, :n])
        np.testing.assert_allclose(together[row], alone[0], rtol=0, atol=1e-6)
        np.testing.assert_allclose(together[row], hidden_states[row, :n].mean(axis=0), rtol=0, atol=1e-5)


def test_cls_is_the_first_token(step):
    hidden_states, mask = _batch()
    np.testing.assert_array_equal(step.cls_pooling(hidden_states, mask), hidden_states[:, 0])


def test_normalize_as_torch(step):
    import torch

    vectors = np.array([[3.0, 4.0], [0.0, 0.0], [1e-13, 0.0], [-2.0, 1e-7]], dtype=np.float32)
    want = torch.nn.functional.normalize(torch.from_numpy(vectors), p=2, dim=-1).numpy()
    np.testing.assert_allclose(step.l2_normalize(vectors), want, rtol=0, atol=1e-7)
    assert np.all(step.l2_normalize(vectors)[1] == 0.0)  # a zero vector stays zero, no NaN


def test_a_row_without_tokens_is_zero_not_nan(step):
    hidden_states, mask = _batch(lengths=(0, 5))
    for mode in ("cls", "mean"):
        out = step.embed(hidden_states, mask, mode, normalize=True)
        assert np.isfinite(out).all()
    np.testing.assert_array_equal(step.mean_pooling(hidden_states, mask)[0], np.zeros(24, dtype=np.float32))


def test_refusals(step):
    hidden_states, mask = _batch()
    with pytest.raises(ValueError, match="pooling 'max' is not one of cls, mean"):
        step.embed(hidden_states, mask, "max")
    with pytest.raises(step.RequestError, match=r"do not agree"):
        step.embed(hidden_states, mask[:, :5], "mean")
    with pytest.raises(step.RequestError, match=r"expected \[texts, tokens, hidden\]"):
        step.embed(hidden_states[0], mask[0], "mean")


def test_accuracy_gate_agreement_is_a_cosine():
    """The export gate counts a variant's embedding as agreeing with the pipeline's at cosine >= 0.999."""
    from tritonize.exporters.accuracy import compare
    from tritonize.exporters.tasks.feature_extraction import MIN_COSINE, EmbeddingKey

    base = np.array([0.3, -1.2, 0.5, 2.0])
    drift = np.array([1.0, 0.2, -0.4, 0.1])
    near = base + 0.01 * drift  # cosine ~0.99998
    far = base + 0.5 * drift  # cosine ~0.95
    cosine = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert cosine(base, near) > MIN_COSINE > cosine(base, far)
    key = lambda v: EmbeddingKey(tuple(float(x) for x in v))  # noqa: E731
    result = compare([key(base), key(base), key(3 * base)], [key(near), key(far), key(base)], ["a", "b", "c"])
    assert (result.agreed, result.total) == (2, 3)  # the direction counts, not the scale
    assert "'b'" in result.examples[0] and "(4 dims)" in result.examples[0]
    assert not key(base).agrees(key(base[:3]))
