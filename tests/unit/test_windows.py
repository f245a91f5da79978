"""The tokenizer step's windows and pairs against the transformers tokenizer, without a server."""

from __future__ import annotations

import json

import numpy as np
import pytest


def _step(tmp_path, tokenizer, *, windows, stride=0, max_length=16, outputs=("INPUT_IDS", "ATTENTION_MASK")):
    from tokenizer import TritonPythonModel

    version = tmp_path / "1"
    version.mkdir(exist_ok=True)
    tokenizer.backend_tokenizer.save(str(version / "tokenizer.json"))
    parameters = {"tritonize.max_length": max_length, "tritonize.windows": int(windows), "tritonize.stride": stride,
                  "tritonize.pad_token_id": tokenizer.pad_token_id}
    config = {"parameters": {k: {"string_value": str(v)} for k, v in parameters.items()},
              "input": [{"name": "TEXT"}], "output": [{"name": n} for n in outputs]}
    step = TritonPythonModel()
    step.initialize({"model_config": json.dumps(config), "model_name": "t", "model_repository": str(tmp_path),
                     "model_version": "1"})
    return step


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    corpus = ["the quick brown fox jumps over the lazy dog", "a stitch in time saves nine",
              "Café au lait, s'il vous plaît", "東京 is lovely in spring"] * 10
    backend.train_from_iterator(corpus, trainers.WordPieceTrainer(
        vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"]))
    cls, sep = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    backend.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]")


TEXT = "the quick brown fox jumps over the lazy dog, a stitch in time saves nine; Café au lait 東京 " * 3


@pytest.mark.parametrize("stride", [0, 3, 7])
def test_windows_are_the_tokenizers_overflowing_windows(tmp_path, tokenizer, stride):
    step = _step(tmp_path, tokenizer, windows=True, stride=stride)
    (windows,) = step._encode([TEXT])
    expected = tokenizer(TEXT, truncation=True, max_length=16, stride=stride, return_overflowing_tokens=True,
                         return_offsets_mapping=True)
    assert len(windows) == len(expected["input_ids"]) > 3
    for window, ids, offsets in zip(windows, expected["input_ids"], expected["offset_mapping"]):
        assert window.ids == ids and [tuple(o) for o in window.offsets] == [tuple(o) for o in offsets]
    # the request's tensors: [texts, windows, tokens], padded windows with an all-zero mask
    arrays = step.arrays([windows, windows[:1]])
    assert arrays["INPUT_IDS"].shape == (2, len(windows), 16)
    assert arrays["ATTENTION_MASK"][1, 1:].sum() == 0 and arrays["ATTENTION_MASK"][1, 0].sum() == len(windows[0].ids)


def test_pairs_are_truncated_longest_first_with_segment_ids(tmp_path, tokenizer):
    step = _step(tmp_path, tokenizer, windows=False, outputs=("INPUT_IDS", "ATTENTION_MASK", "TOKEN_TYPE_IDS"))
    pairs = [("a stitch in time", TEXT), (TEXT, "the lazy dog"), ("short", "pair")]
    encoded = step._encode(pairs)
    arrays = step.arrays(encoded)
    for row, (a, b) in enumerate(pairs):
        expected = tokenizer(a, b, truncation=True, max_length=16)
        n = len(expected["input_ids"])
        assert arrays["INPUT_IDS"][row, :n].tolist() == expected["input_ids"]
        assert arrays["TOKEN_TYPE_IDS"][row, :n].tolist() == expected["token_type_ids"]
        assert arrays["ATTENTION_MASK"][row].sum() == n
    assert np.any(arrays["TOKEN_TYPE_IDS"] == 1)
