"""The fill-mask postprocess logic, without a server: against ``pipeline("fill-mask")`` on the same logits.

``exporters/backend/postprocess_fill_mask.py`` is imported as the Python
backend imports it (its folder on ``sys.path``, no
``triton_python_backend_utils``); its plain functions get the PyTorch model's
logits, and their answer must be the pipeline's, field for field.
"""

from __future__ import annotations

import logging
import math
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from checkpoints import make_tiny_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "exporters" / "backend"))

import postprocess_fill_mask as logic  # noqa: E402
from tritonize_step import RequestError  # noqa: E402

CACHE = REPO_ROOT / ".cache" / "test-checkpoints"
ARCHS = ("bert", "roberta", "xlm-roberta")  # WordPiece, byte-level BPE, Unigram
TEXTS = [
    "The capital of France is {m}.",
    "{m}",
    "He said it is n't fine , is n't it ? I 'm sure he 's {m} .",
    "I {m} it, it's {m} good!",
    "{m} {p} {m} of it",
]


@lru_cache(maxsize=None)
def pipe_of(arch: str, clean_up: bool = False):
    from transformers import pipeline

    logging.getLogger("transformers").setLevel(logging.ERROR)
    pipe = pipeline("fill-mask", model=str(make_tiny_checkpoint(arch, CACHE / f"fill-mask-{arch}", "fill-mask")),
                    device="cpu")
    pipe.tokenizer.clean_up_tokenization_spaces = clean_up
    return pipe


@lru_cache(maxsize=None)
def backend_tokenizer(arch: str):
    """The tokenizer as the served step loads it (tokenizer.json written at export)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(pipe_of(arch).tokenizer.backend_tokenizer.to_str())
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def texts_for(pipe, templates):
    tok = pipe.tokenizer
    return [t.replace("{m}", tok.mask_token).replace("{p}", tok.pad_token) for t in templates]


@lru_cache(maxsize=None)
def model_logits(arch, text):
    import torch

    pipe = pipe_of(arch)
    encoded = pipe.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return encoded["input_ids"][0].numpy(), pipe.model(**encoded).logits[0].numpy()


def served_answer(pipe, arch, text, top_k=None, targets=None, pad=0):
    """``fill_masks`` on the model's logits of ``text`` (with ``pad`` padding tokens after it), pipeline-shaped."""
    tok = pipe.tokenizer
    ids, logits = model_logits(arch, text)
    length = len(ids)
    if pad:
        ids = np.concatenate([ids, np.full(pad, tok.pad_token_id)])
        logits = np.concatenate([logits, np.random.default_rng(0).normal(size=(pad, logits.shape[1]))]).astype(
            np.float32)
    target_ids = None if targets is None else logic.target_ids(backend_tokenizer(arch), targets)[0]
    k = logic.effective_top_k(top_k or logic.DEFAULT_TOP_K, target_ids, logits.shape[-1])
    masks = logic.fill_masks(backend_tokenizer(arch), ids, logits, tok.mask_token_id, tok.pad_token_id, k,
                             target_ids, tok.clean_up_tokenization_spaces, length=length)
    masks = [[dict(score=s, token=t, token_str=ts, sequence=q) for s, t, ts, q in fillers] for fillers in masks]
    return masks[0] if len(masks) == 1 else masks


def assert_same(got, want, context):
    if isinstance(want, dict):
        assert (got["token"], got["token_str"], got["sequence"]) == (want["token"], want["token_str"],
                                                                       want["sequence"]), f"{context}: {got} vs {want}"
        assert math.isclose(got["score"], want["score"], abs_tol=1e-6), f"{context}: {got} vs {want}"
        return
    assert len(got) == len(want), context
    for g, w in zip(got, want):
        assert_same(g, w, context)


@pytest.mark.parametrize("arch", ARCHS)
def test_fill_masks_matches_pipeline(arch):
    pipe = pipe_of(arch)
    long_word = "counterrevolutionaries"
    for text in texts_for(pipe, TEXTS):
        for kwargs in ({}, {"top_k": 1}, {"top_k": 3}, {"targets": ["the", long_word, "the", "paris"]},
                       {"targets": "the", "top_k": 3}):
            want = pipe(text, **kwargs)
            assert_same(served_answer(pipe, arch, text, **kwargs), want, f"{arch} {kwargs} {text!r}")
            # padding after the text (a batch padded to its longest text) changes nothing
            assert_same(served_answer(pipe, arch, text, pad=7, **kwargs), want, f"{arch} padded {kwargs} {text!r}")


@pytest.mark.parametrize("arch", ARCHS)
def test_clean_up_tokenization_spaces_matches_pipeline(arch):
    pipe = pipe_of(arch, clean_up=True)
    assert pipe.tokenizer.clean_up_tokenization_spaces
    for text in texts_for(pipe, TEXTS):
        assert_same(served_answer(pipe, arch, text, top_k=3), pipe(text, top_k=3), f"{arch} clean-up {text!r}")


def test_clean_up_tokenization_is_transformers():
    from transformers import PreTrainedTokenizerBase

    for text in ["a . b ? c ! d , e ' f n't g 'm h 's i 've j 're", " .. ,, ' ' n'tn't", "", "no artifacts"]:
        assert logic.clean_up_tokenization(text) == PreTrainedTokenizerBase.clean_up_tokenization(text)


@pytest.mark.parametrize("arch", ARCHS)
def test_target_ids_are_the_pipelines(arch):
    pipe = pipe_of(arch)
    tokenizer = backend_tokenizer(arch)
    raw = pipe.tokenizer.convert_ids_to_tokens(300)
    for targets in (["the"], "the", ["paris", "the", raw, "counterrevolutionaries", "the", "x", "y", "z"], [raw]):
        ids, _ = logic.target_ids(tokenizer, targets)
        assert ids.tolist() == pipe.get_target_ids(targets).tolist(), targets  # the same order decides ties
    ids, replaced = logic.target_ids(tokenizer, ["counterrevolutionaries", "", raw])  # raw: in the vocabulary
    assert [target for target, _ in replaced] == ["counterrevolutionaries", ""]
    assert replaced[1][1] is None and replaced[0][1] == pipe.tokenizer.convert_ids_to_tokens(
        pipe.tokenizer("counterrevolutionaries", add_special_tokens=False)["input_ids"][0])
    with pytest.raises(ValueError, match="At least one target"):
        pipe.get_target_ids([""])
    with pytest.raises(RequestError, match="leaves no token to score"):
        logic.target_ids(tokenizer, [""])


def test_a_text_without_mask_has_no_fillers():
    pipe = pipe_of("bert")
    ids = np.array(pipe.tokenizer("no mask here")["input_ids"])
    assert logic.fill_masks(backend_tokenizer("bert"), ids, np.zeros((len(ids), 10), np.float32),
                            pipe.tokenizer.mask_token_id, pipe.tokenizer.pad_token_id, 5) == []


def test_top_k_is_capped_by_targets_and_refused_past_the_vocabulary():
    assert logic.effective_top_k(5, np.array([3, 4]), 100) == 2
    assert logic.effective_top_k(5, None, 100) == 5
    assert logic.effective_top_k(100, None, 100) == 100
    with pytest.raises(RequestError, match="top_k=101 is more than the model's vocabulary"):
        logic.effective_top_k(101, None, 100)


def test_targets_parameter():
    assert logic.check_targets("targets", '["a", "b"]') == ["a", "b"]
    assert logic.check_targets("targets", "the") == ["the"]
    assert logic.check_targets("targets", "3") == ["3"]
    assert logic.check_targets("targets", ["x"]) == ["x"]
    for bad, message in (("[]", "empty list"), ("[1]", "JSON list of strings"), ({"a": 1}, "JSON list of strings")):
        with pytest.raises(RequestError, match=message):
            logic.check_targets("targets", bad)


def test_output_arrays_pad_the_masks_axis():
    results = [[[(0.5, 7, "a", "x a"), (0.25, 8, "b", "x b")]],
               [[(0.4, 1, "c", "c [MASK]"), (0.3, 2, "d", "d [MASK]")], [(0.2, 3, "é", "[MASK] é"), (0.1, 4, "f", "f")]]]
    arrays = logic.output_arrays(results, 2)
    assert arrays["SCORE"].shape == arrays["TOKEN"].shape == arrays["SEQUENCE"].shape == (2, 2, 2)
    assert arrays["SCORE"].dtype == np.float32 and arrays["TOKEN"].dtype == np.int64
    assert arrays["COUNT"].tolist() == [[1], [2]]
    assert arrays["TOKEN"][0].tolist() == [[7, 8], [-1, -1]]
    assert arrays["TOKEN_STR"][1, 1, 0] == "é".encode("utf-8")
    assert arrays["SEQUENCE"][0, 1, 0] == b""
