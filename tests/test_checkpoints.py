"""Tests for the tiny offline checkpoints in tests/checkpoints.py.

The oracles are the transformers pipelines and model classes loading the
directory on their own, and the text itself for offsets.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from pathlib import Path

import pytest
import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    pipeline,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checkpoints import ARCHITECTURES, STAMP_NAME, make_tiny_checkpoint  # noqa: E402

transformers.logging.set_verbosity_error()

SENTENCES = [
    "I love this phone, it is absolutely wonderful!",
    "The train to Zürich was late again.",
    "Angela Merkel met Emmanuel Macron in Berlin on Monday.",
]
# Double space, accent, CJK, emoji, punctuation, a contraction, a number.
OFFSETS_TEXT = "Hello  world, café 東京 😀 naïve don't 3.14!"
# (first, last) special tokens of a single sequence, as in the released checkpoints.
SPECIAL_TOKENS = {
    "bert": ("[CLS]", "[SEP]"),
    "distilbert": ("[CLS]", "[SEP]"),
    "electra": ("[CLS]", "[SEP]"),
    "roberta": ("<s>", "</s>"),
    "xlm-roberta": ("<s>", "</s>"),
    "deberta-v2": ("[CLS]", "[SEP]"),
    "albert": ("[CLS]", "[SEP]"),
}
LOWERCASED = {"bert", "distilbert", "electra", "albert"}


@pytest.fixture(scope="module")
def checkpoint_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-checkpoints")


def _checkpoint(root: Path, arch: str, task: str = "text-classification", **kwargs) -> Path:
    name = "-".join([arch, task, *(f"{k}={v}" for k, v in sorted(kwargs.items()))])
    return make_tiny_checkpoint(arch, root / name, task, **kwargs)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_text_classification_pipeline_gives_softmax_over_all_labels(checkpoint_root, arch):
    path = _checkpoint(checkpoint_root, arch)
    classifier = pipeline("text-classification", model=str(path), top_k=None)
    results = classifier(SENTENCES)

    config = AutoConfig.from_pretrained(path)
    assert config.num_labels == 3
    assert set(config.id2label.values()) == {"negative", "neutral", "positive"}
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    for sentence, result in zip(SENTENCES, results):
        assert len(result) == 3
        assert {r["label"] for r in result} == {"negative", "neutral", "positive"}
        scores = [r["score"] for r in result]
        assert sum(scores) == pytest.approx(1.0, abs=1e-5)
        assert scores == sorted(scores, reverse=True)
        with torch.no_grad():
            logits = model(**tokenizer(sentence, return_tensors="pt")).logits[0]
        # Logits are well apart, so label order does not hang on rounding.
        gaps = (logits[:, None] - logits[None, :]).abs() + torch.eye(3) * 1e9
        assert gaps.min() > 1e-3, logits
        # Same as softmax over the model's own logits.
        probs = logits.softmax(-1)
        expected = {config.id2label[i]: p for i, p in enumerate(probs.tolist())}
        assert {r["label"]: r["score"] for r in result} == pytest.approx(expected, abs=1e-5)
    # The output depends on the input: the head is not left giving every text the same scores.
    by_label = [{r["label"]: r["score"] for r in result} for result in results]
    assert max(abs(by_label[0][k] - by_label[1][k]) for k in by_label[0]) > 1e-2


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_tokenizer_adds_special_tokens_at_both_ends(checkpoint_root, arch):
    tokenizer = AutoTokenizer.from_pretrained(_checkpoint(checkpoint_root, arch))
    first, last = SPECIAL_TOKENS[arch]

    ids = tokenizer("Hello world")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == first and tokens[-1] == last
    assert first not in tokens[1:-1] and last not in tokens[1:-1]
    assert tokenizer.cls_token == first and tokenizer.sep_token == last
    assert tokenizer.model_max_length == 512
    assert tokenizer.is_fast

    pair = tokenizer.convert_ids_to_tokens(tokenizer("Who?", "Me.")["input_ids"])
    assert pair[0] == first and pair[-1] == last and pair.count(last) == (3 if first == "<s>" else 2)


def _byte_level_surface(token: str) -> str | None:
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    byte_of = {char: byte for byte, char in bytes_to_unicode().items()}
    try:
        return bytes(byte_of[c] for c in token).decode("utf-8").lstrip(" ")
    except UnicodeDecodeError:
        return None  # part of a multi-byte character


def _surface(arch: str, token: str) -> str | None:
    """What the token stands for in the (normalised) text, without its word-boundary mark."""
    if arch in ("bert", "distilbert", "electra"):
        return token.removeprefix("##")
    if arch == "roberta":
        return _byte_level_surface(token)
    return token.replace("▁", "")


def _normalise(arch: str, text: str) -> str:
    if arch not in LOWERCASED:
        return text
    decomposed = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_offsets_map_tokens_to_their_substrings(checkpoint_root, arch):
    tokenizer = AutoTokenizer.from_pretrained(_checkpoint(checkpoint_root, arch))
    text = OFFSETS_TEXT
    enc = tokenizer(text, return_offsets_mapping=True)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    offsets = enc["offset_mapping"]
    assert offsets[0] == (0, 0) and offsets[-1] == (0, 0)  # special tokens

    # Every word of the text is covered, from its first to its last character,
    # by the tokens that overlap it, and no token spans two words.
    words = [m.span() for m in re.finditer(r"\w+|[^\w\s]", text)]
    pieces = [(s, e) for s, e in offsets[1:-1] if text[s:e].strip()]
    for s, e in pieces:
        stripped = text[s:e].strip()
        s += text[s:e].index(stripped)
        e = s + len(stripped)
        assert sum(1 for ws, we in words if s < we and ws < e) >= 1
        assert " " not in text[s:e], (arch, text[s:e])
    for ws, we in words:
        covering = [(s, e) for s, e in pieces if s < we and ws < e]
        assert covering, (arch, text[ws:we])
        assert min(s for s, _ in covering) <= ws and max(e for _, e in covering) >= we

    # Each token's surface is the substring its offsets point at.
    checked = 0
    for token, (s, e) in zip(tokens[1:-1], offsets[1:-1]):
        surface = _surface(arch, token)
        if not surface:
            continue  # lone "▁"/"Ġ", or one byte of a multi-byte character
        assert _normalise(arch, text[s:e].strip()) == surface, (arch, token, text[s:e])
        checked += 1
    assert checked >= 10

    # The accented, CJK and emoji characters are located exactly.
    for needle in ("café", "東", "京", "😀", "3"):
        start = text.index(needle)
        assert any(s <= start < e for s, e in offsets[1:-1]), (arch, needle)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_multi_label_problem_type_is_stored_and_used(checkpoint_root, arch):
    path = _checkpoint(checkpoint_root, arch, problem_type="multi_label_classification", num_labels=4)
    assert json.loads((path / "config.json").read_text())["problem_type"] == "multi_label_classification"
    config = AutoConfig.from_pretrained(path)
    assert config.num_labels == 4 and len(set(config.id2label.values())) == 4

    result = pipeline("text-classification", model=str(path), top_k=None)([SENTENCES[0]])[0]
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        logits = model(**AutoTokenizer.from_pretrained(path)(SENTENCES[0], return_tensors="pt")).logits[0]
    expected = {config.id2label[i]: p for i, p in enumerate(logits.sigmoid().tolist())}
    assert {r["label"]: r["score"] for r in result} == pytest.approx(expected, abs=1e-5)
    assert sum(r["score"] for r in result) != pytest.approx(1.0, abs=1e-3)  # sigmoid, not softmax


def test_regression_has_one_output_and_raw_scores(checkpoint_root):
    path = _checkpoint(checkpoint_root, "bert", problem_type="regression")
    config = AutoConfig.from_pretrained(path)
    assert config.num_labels == 1 and config.problem_type == "regression"
    result = pipeline("text-classification", model=str(path), top_k=None)(SENTENCES)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        logits = model(**AutoTokenizer.from_pretrained(path)(SENTENCES, padding=True, return_tensors="pt")).logits
    assert [r[0]["score"] for r in result] == pytest.approx(logits[:, 0].tolist(), abs=1e-5)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_token_classification_uses_bio_labels(checkpoint_root, arch):
    path = _checkpoint(checkpoint_root, arch, "token-classification")
    config = AutoConfig.from_pretrained(path)
    labels = [config.id2label[i] for i in range(config.num_labels)]
    assert labels == ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    assert config.label2id == {label: i for i, label in enumerate(labels)}

    text = SENTENCES[2]
    entities = pipeline("token-classification", model=str(path), aggregation_strategy="simple")(text)
    assert entities, "a random head with seven labels tags something"
    for entity in entities:
        assert entity["entity_group"] in {"PER", "ORG", "LOC"}
        assert 0 <= entity["start"] < entity["end"] <= len(text)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_question_answering_returns_a_span_of_the_context(checkpoint_root, arch):
    path = _checkpoint(checkpoint_root, arch, "question-answering")
    assert type(AutoModelForQuestionAnswering.from_config(AutoConfig.from_pretrained(path))).__name__.endswith(
        "ForQuestionAnswering"
    )
    context = "William Shakespeare wrote Hamlet around 1600 in London."
    answer = pipeline("question-answering", model=str(path))(question="Who wrote Hamlet?", context=context)
    assert context[answer["start"] : answer["end"]] == answer["answer"]
    assert answer["answer"].strip() and 0.0 < answer["score"] <= 1.0


def test_build_is_deterministic_and_cached(tmp_path):
    first = make_tiny_checkpoint("xlm-roberta", tmp_path / "a", seed=7)
    second = make_tiny_checkpoint("xlm-roberta", tmp_path / "b", seed=7)
    for name in ("tokenizer.json", "model.safetensors", "config.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name

    # Same arguments: the directory is reused as it is.
    mtime = (first / "model.safetensors").stat().st_mtime_ns
    assert make_tiny_checkpoint("xlm-roberta", first, seed=7) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == mtime

    # Other arguments: rebuilt in place.
    make_tiny_checkpoint("xlm-roberta", first, seed=8)
    assert json.loads((first / STAMP_NAME).read_text())["seed"] == 8
    assert (first / "model.safetensors").read_bytes() != (second / "model.safetensors").read_bytes()


def test_refuses_to_overwrite_a_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        make_tiny_checkpoint("bert", tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arch": "gpt2"}, "unknown architecture"),
        ({"task": "summarization"}, "unknown task"),
        ({"task": "token-classification", "num_labels": 4}, "odd num_labels"),
        ({"task": "question-answering", "problem_type": "regression"}, "only applies to text-classification"),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_tiny_checkpoint(kwargs.pop("arch", "bert"), tmp_path / "x", **kwargs)
