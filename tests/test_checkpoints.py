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
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    pipeline,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checkpoints import (  # noqa: E402
    ARCHITECTURES,
    MODERNBERT_LOCAL_ATTENTION,
    STAMP_NAME,
    make_tiny_checkpoint,
    tiny_checkpoint,
)

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
    "deberta": ("[CLS]", "[SEP]"),
    "modernbert": ("[CLS]", "[SEP]"),
}
BYTE_LEVEL = {"roberta", "deberta", "modernbert"}
MAX_LENGTH = {"modernbert": 8192}  # the others: 512
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
    assert tokenizer.model_max_length == MAX_LENGTH.get(arch, 512)
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
    if arch in BYTE_LEVEL:
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


MASKED_TEXTS = [
    "The movie was {mask} wonderful.",
    "I love this {mask}!",
    "Angela Merkel met {mask} in Berlin on Monday.",
    "The train to Zürich was {mask} again.",
    "{mask}",
    "東京 {mask} 北京 🌸",
]
# the space before the mask token is part of it (lstrip) where the released tokenizer does so
MASK_EATS_SPACE = {"roberta", "xlm-roberta", "albert", "deberta", "modernbert"}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_fill_mask_top5_are_apart_and_follow_the_context(checkpoint_root, arch):
    path = _checkpoint(checkpoint_root, arch, "fill-mask")
    model = AutoModelForMaskedLM.from_pretrained(path).eval()
    assert type(model).__name__.endswith("ForMaskedLM")
    # the decoder is the word embeddings, as in the released checkpoints
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.mask_token is not None and tokenizer.mask_token_id is not None
    assert tokenizer.added_tokens_decoder[tokenizer.mask_token_id].lstrip is (arch in MASK_EATS_SPACE)
    if arch in MASK_EATS_SPACE:  # no lone space piece ("Ġ", "▁") before the mask
        ids = tokenizer(f"a {tokenizer.mask_token} b")["input_ids"]
        assert tokenizer.convert_ids_to_tokens(ids)[ids.index(tokenizer.mask_token_id) - 1] in ("a", "▁a")

    fill = pipeline("fill-mask", model=str(path))
    firsts = set()
    for template in MASKED_TEXTS:
        text = template.format(mask=tokenizer.mask_token)
        enc = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits[0]
        position = int((enc["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0, 0])
        top = logits[position].topk(6)
        # the top-5 (and the sixth) are well apart: their order does not hang on float noise
        assert (top.values[:-1] - top.values[1:]).min() > 1e-3, (text, top.values)
        predictions = fill(text)
        assert [p["token"] for p in predictions] == top.indices[:5].tolist()
        probs = logits[position].softmax(-1)
        assert [p["score"] for p in predictions] == pytest.approx(probs[top.indices[:5]].tolist(), abs=1e-5)
        assert predictions[0]["score"] < 0.99  # not saturated
        firsts.add(predictions[0]["token"])
    assert len(firsts) >= len(MASKED_TEXTS) // 2, "the head predicts the same token whatever the context"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_feature_extraction_is_the_bare_encoder(checkpoint_root, arch):
    path = _checkpoint(checkpoint_root, arch, "feature-extraction")
    config = AutoConfig.from_pretrained(path)
    model, info = AutoModel.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert config.architectures == [type(model).__name__] and type(model).__name__.endswith("Model")
    tokenizer = AutoTokenizer.from_pretrained(path)
    extract = pipeline("feature-extraction", model=str(path))
    features = [torch.tensor(extract(text)[0]) for text in SENTENCES[:2]]
    for text, got in zip(SENTENCES, features):
        with torch.no_grad():
            expected = model.eval()(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]
        assert got.shape == expected.shape == (len(tokenizer(text)["input_ids"]), 32)
        assert torch.allclose(got, expected, atol=1e-5)
    # the output depends on the text, not only on the position
    assert (features[0][0] - features[1][0]).abs().max() > 1e-2


def test_modernbert_is_rotary_with_local_attention_and_no_token_types(checkpoint_root):
    path = _checkpoint(checkpoint_root, "modernbert", "token-classification")
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "modernbert" and config.max_position_embeddings == 8192
    assert config.num_hidden_layers == 2 and config.global_attn_every_n_layers == 2  # one global, one local layer
    assert config.local_attention == MODERNBERT_LOCAL_ATTENTION
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert type(tokenizer).__name__ == "PreTrainedTokenizerFast"
    assert tokenizer.model_input_names == ["input_ids", "attention_mask"]
    assert "token_type_ids" not in tokenizer("Who?", "Me.")
    assert [tokenizer.unk_token, tokenizer.mask_token] == ["[UNK]", "[MASK]"]

    # The sliding window is real: with a window as long as the model, long texts change, short ones do not.
    windowed = AutoModel.from_pretrained(path).eval()
    unwindowed = AutoModel.from_pretrained(path, local_attention=8192).eval()
    assert windowed.layers[1].attn.local_attention == (MODERNBERT_LOCAL_ATTENTION // 2,) * 2
    assert windowed.layers[0].attn.local_attention == (-1, -1)  # the global layer
    for text, longer in (("Hello world!", False), (" ".join(SENTENCES), True)):
        enc = tokenizer(text, return_tensors="pt")
        assert (enc["input_ids"].shape[1] > MODERNBERT_LOCAL_ATTENTION // 2 + 1) is longer
        with torch.no_grad():
            a, b = (m(**enc).last_hidden_state for m in (windowed, unwindowed))
        assert bool((a - b).abs().max() > 1e-4) is longer


def test_tiny_checkpoint_caches_by_arguments(tmp_path):
    path = tiny_checkpoint("modernbert", "fill-mask", root=tmp_path)
    assert path == tmp_path / "fill-mask-modernbert"
    assert json.loads((path / STAMP_NAME).read_text())["task"] == "fill-mask"
    assert tiny_checkpoint("bert", "text-classification", num_labels=5, root=tmp_path) == (
        tmp_path / "text-classification-bert-num_labels=5"
    )
    assert tiny_checkpoint("modernbert", "fill-mask", root=tmp_path) == path  # reused


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
