"""Sentence pairs: ``text-classification`` with the optional ``TEXT_PAIR`` answers as the pipeline does.

The oracle is ``pipeline("text-classification")`` given ``{"text": a,
"text_pair": b}`` on the same checkpoint: the pair tokenized as
``tokenizer(text=a, text_pair=b, truncation=True, max_length=...)``
(``longest_first``), segment ids set for the models that have them. A request
without ``TEXT_PAIR`` stays a single-text classification, for our SDK and for
any KServe v2 client. One real tritonserver serves every model of this file.
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import Served, serve_exports, tiny_classifier
from tritonize.client import AsyncClient, Client, InvalidInput, LabelScore

pytestmark = pytest.mark.server

TOLERANCE = 1e-4
TIE = 1e-6  # labels the pipeline scores this close may come in either order

# name -> (checkpoint of conftest.CLASSIFIERS, layout, export options)
MODELS = {
    "pair-bert": ("bert-single", "fused", {}),
    "pair-bert-steps": ("bert-single", "steps", {}),
    "pair-albert": ("albert-single", "steps", {}),
    "pair-electra": ("electra-single", "fused", {}),
    "pair-roberta": ("roberta-single", "steps", {}),
    "pair-distilbert": ("distilbert-single", "fused", {}),
    "pair-deberta-v2": ("deberta-v2-single", "fused", {}),
    "pair-xlm-roberta": ("xlm-roberta-single", "steps", {}),
    # a short max length: most pairs are cut, longest_first
    "pair-bert-short": ("bert-single", "fused", {"max_length": 16, "max_batch_size": 4, "max_text_chars": 300}),
    "pair-albert-short": ("albert-single", "steps", {"max_length": 16, "max_batch_size": 4}),
    "pair-roberta-short": ("roberta-single", "fused", {"max_length": 16}),
}
FULL = [name for name, (_, _, options) in MODELS.items() if "max_length" not in options]
SHORT = [name for name, (_, _, options) in MODELS.items() if "max_length" in options]
LEGACY = "pair-legacy"  # an ensemble as a tritonize without sentence pairs wrote it: TEXT only

LONG_A = " ".join(["The committee reviewed the quarterly numbers again and again."] * 60)  # past 512 tokens
LONG_B = " ".join(["A second opinion came in late, and it disagreed with the first."] * 60)
PAIRS = [
    ("A man is playing a guitar.", "Someone is playing music."),
    ("The cat sat on the mat.", "The cat sat on the mat."),
    ("Café au lait at the Hôtel — naïve façade, déjà vu!", "東京 and 北京 are big cities 🌸🚀"),
    ("Is an empty pair a single text?", ""),  # yes, in the pipeline: text_pair="" encodes as no pair
    ("", "only the second text"),
    ("tokenization  with   odd\tspacing", "and\nnewlines"),
    (LONG_A, "A short hypothesis."),  # longest_first cuts the long first text
    ("A short premise.", LONG_B),
    (LONG_A, LONG_B),  # both, one token at a time from the longer
]
# at max length 16: the first longer, the second longer, both long, one of them empty
SHORT_PAIRS = [
    ("a very long first sentence that goes on and on about the weather", "short one"),
    ("the first one", "a very long second sentence that goes on and on about the weather"),
    ("word1 and more word2 and more word3 and more", "word4 and more word5 and more word6 and more"),
    ("the quick brown fox jumps over the lazy dog twice today and then once more", ""),
    ("hi", "there"),
]


@lru_cache(maxsize=None)
def _pipeline(checkpoint: str):
    from transformers import pipeline

    return pipeline("text-classification", model=checkpoint, top_k=None, device="cpu")


def _pair(text, pair):
    return text if pair is None else {"text": text, "text_pair": pair}


def _expected(served: Served, name: str, texts, pairs, **kwargs):
    """What the pipeline answers, one list of labels per item; ``max_length`` as the model was exported."""
    checkpoint, _, options = MODELS.get(name, ("bert-single", "fused", {}))
    if "max_length" in options:
        kwargs.setdefault("max_length", options["max_length"])
    items = [_pair(t, p) for t, p in zip(texts, pairs)]
    return _pipeline(str(served.checkpoints[checkpoint]))(items, truncation=True, **kwargs)


def _assert_same(served, expected, context):
    """Same labels in the same order (but for labels the pipeline scores as tied), scores within TOLERANCE."""
    assert len(served) == len(expected), context
    want_scores = {w["label"]: w["score"] for w in expected}
    for got, want in zip(served, expected):
        assert isinstance(got, LabelScore), context
        if got.label != want["label"]:
            assert abs(want_scores.get(got.label, -1.0) - want["score"]) <= TIE, f"{context}: {served} vs {expected}"
        assert math.isclose(got.score, want_scores[got.label], abs_tol=TOLERANCE), f"{context}: {got} vs {want}"


def _retire_text_pair(repository, name: str) -> None:
    """Rewrite ensemble ``name`` as before sentence pairs: TEXT its one input (its step keeps an optional one)."""
    from tritonize.exporters import configs

    path = repository / name / "config.pbtxt"
    config = configs.read_config(path)
    kept = [tensor for tensor in config.input if tensor.name != "TEXT_PAIR"]
    del config.input[:]
    config.input.extend(kept)
    for step in config.ensemble_scheduling.step:
        step.input_map.pop("TEXT_PAIR", None)
    configs.write_config(repository / name, config)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    from tritonize.exporters.export import ExportOptions, export
    import io

    repository = tmp_path_factory.mktemp("pairs") / "model_repository"
    checkpoints = {checkpoint: tiny_classifier(checkpoint) for checkpoint, _, _ in MODELS.values()}
    export(ExportOptions(str(checkpoints["bert-single"]), "text-classification", LEGACY, repository),
           stream=io.StringIO())
    _retire_text_pair(repository, LEGACY)
    exports = [
        ExportOptions(str(checkpoints[checkpoint]), "text-classification", name, repository, layout=layout,
                      **options)
        for name, (checkpoint, layout, options) in MODELS.items()
    ]
    yield from serve_exports(repository, exports, checkpoints)


@pytest.fixture(scope="module")
def client(served) -> Iterator[Client]:
    with Client(served.url) as client:
        yield client


def _raw(url, model, texts, pairs=None):
    """A plain KServe v2 request (tritonclient, no SDK): TEXT, and TEXT_PAIR when ``pairs`` is given."""
    triton = grpcclient.InferenceServerClient(url)
    inputs = []
    for name, items in (("TEXT", texts), ("TEXT_PAIR", pairs)):
        if items is None:
            continue
        array = np.array([[t if isinstance(t, bytes) else t.encode("utf-8")] for t in items], dtype=np.object_)
        tensor = grpcclient.InferInput(name, list(array.shape), "BYTES")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = triton.infer(model, inputs)
    labels, scores = result.as_numpy("LABELS"), result.as_numpy("SCORES")
    return [[LabelScore(label.decode("utf-8"), float(score)) for label, score in zip(row_l, row_s)]
            for row_l, row_s in zip(labels, scores)]


# -- parity ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FULL)
def test_pairs_match_the_pipeline(served, client, name):
    texts, pairs = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    expected = _expected(served, name, texts, pairs)
    got = client.classify(name, texts, text_pair=pairs)
    assert len(got) == len(PAIRS)
    for (a, b), row, want in zip(PAIRS, got, expected):
        _assert_same(row, want, f"{name} on ({a[:20]!r}, {b[:20]!r})")


@pytest.mark.parametrize("name", ["pair-bert", "pair-bert-steps", "pair-roberta", "pair-albert"])
def test_one_pair_and_top_k(served, client, name):
    checkpoint = str(served.checkpoints[MODELS[name][0]])
    item = {"text": "A soccer game with multiple males playing.", "text_pair": "Some men are playing a sport."}
    _assert_same(client.classify(name, item["text"], text_pair=item["text_pair"]),
                 _pipeline(checkpoint)(item, truncation=True), name)
    top2 = _pipeline(checkpoint)(item, truncation=True, top_k=2)
    _assert_same(client.classify(name, item["text"], text_pair=item["text_pair"], top_k=2), top2, f"{name} top_k=2")


@pytest.mark.parametrize("name", SHORT)
def test_truncation_is_longest_first_at_the_exported_max_length(served, client, name):
    from transformers import AutoTokenizer

    max_length = MODELS[name][2]["max_length"]
    tokenizer = AutoTokenizer.from_pretrained(str(served.checkpoints[MODELS[name][0]]))
    # the data needs truncation, and longest_first cuts otherwise than only_second would
    assert all(len(tokenizer(a, b)["input_ids"]) > max_length for a, b in SHORT_PAIRS[:4])
    a, b = SHORT_PAIRS[1]
    assert (tokenizer(a, b, truncation=True, max_length=max_length)["input_ids"]
            != tokenizer(a, b, truncation="only_second", max_length=max_length)["input_ids"])
    texts, pairs = [a for a, _ in SHORT_PAIRS], [b for _, b in SHORT_PAIRS]
    expected = _expected(served, name, texts, pairs)
    for (a, b), row, want in zip(SHORT_PAIRS, client.classify(name, texts, text_pair=pairs), expected):
        _assert_same(row, want, f"{name} on ({a[:20]!r}, {b[:20]!r})")


def test_segment_ids_reach_the_encoder(served, client):
    """The oracle tells segment ids apart: BERT answers otherwise with them all 0, and the server as with them."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    checkpoint = str(served.checkpoints["bert-single"])
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    a, b = PAIRS[0]
    encoded = tokenizer(a, b, return_tensors="pt")
    assert encoded["token_type_ids"].sum() > 0
    with torch.no_grad():
        with_types = model(**encoded).logits
        without = model(**{**encoded, "token_type_ids": torch.zeros_like(encoded["token_type_ids"])}).logits
    assert (with_types - without).abs().max() > 1e-3
    for name in ("pair-bert", "pair-bert-steps"):
        _assert_same(client.classify(name, a, text_pair=b), _pipeline(checkpoint)(_pair(a, b)), name)


def test_a_pair_is_not_a_single_text(served, client):
    """A pair answers otherwise than its first text alone, or the two joined into one text."""
    a, b = PAIRS[0]
    pair = client.classify("pair-bert", a, text_pair=b)
    for single in (client.classify("pair-bert", a), client.classify("pair-bert", f"{a} {b}")):
        assert [r.score for r in pair] != pytest.approx([r.score for r in single], abs=1e-4)


# -- pairs and single texts together -------------------------------------------------------------
@pytest.mark.parametrize("name", ["pair-bert-short", "pair-albert-short", "pair-deberta-v2"])
def test_one_call_mixing_pairs_and_single_texts(served, client, name):
    """None in text_pair: that text alone, as the pipeline classifies a str beside dicts; chunked past
    max_batch_size, order kept."""
    texts = [a for a, _ in SHORT_PAIRS] * 2 + ["a single text", "another one"]
    pairs = [b for _, b in SHORT_PAIRS] + [None] * 3 + [b for _, b in SHORT_PAIRS[3:]] + [None, "and its pair"]
    assert len(texts) == len(pairs) == 12
    expected = _expected(served, name, texts, pairs)
    got = client.classify(name, texts, text_pair=pairs)
    assert len(got) == len(texts)
    for text, pair, row, want in zip(texts, pairs, got, expected):
        _assert_same(row, want, f"{name} on ({text[:20]!r}, {pair!r:.20})")


@pytest.mark.parametrize("name", ["pair-bert-steps", "pair-bert", "pair-roberta-short"])
def test_concurrent_pairs_and_singles_each_right(served, name):
    """Requests with and without TEXT_PAIR in flight together: each is tokenized as what it is."""
    items = [(a, b) for a, b in PAIRS[:6]] + [(a, None) for a, _ in PAIRS[:6]]
    items += [(f"sentence {i} " * (1 + i % 5), None if i % 2 else f"pair {i} " * (1 + i % 3)) for i in range(20)]
    texts, pairs = [t for t, _ in items], [p for _, p in items]
    expected = _expected(served, name, texts, pairs)

    stats = grpcclient.InferenceServerClient(served.url)
    encoder = f"{name}_encoder" if MODELS[name][1] == "steps" else f"{name}_pipeline"
    before = stats.get_inference_statistics(encoder, as_json=True)["model_stats"][0]

    def call(item):
        with Client(served.url) as own:
            return own.classify(name, item[0], text_pair=item[1])

    with ThreadPoolExecutor(max_workers=16) as pool:
        together = list(pool.map(call, items * 3))

    after = stats.get_inference_statistics(encoder, as_json=True)["model_stats"][0]
    inferences = int(after.get("inference_count", 0)) - int(before.get("inference_count", 0))
    executions = int(after.get("execution_count", 0)) - int(before.get("execution_count", 0))
    assert inferences == 3 * len(items)
    if MODELS[name][1] == "steps":  # the encoder's inputs are always there: pairs and singles batch together
        assert executions < inferences, "the dynamic batcher never merged concurrent requests"
    for (text, pair), got, want in zip(items * 3, together, expected * 3):
        _assert_same(got, want, f"{name} concurrent on ({text[:20]!r}, {pair!r:.20})")


def test_async_client_pairs(served):
    texts, pairs = [a for a, _ in PAIRS[:4]], [b for _, b in PAIRS[:4]]
    expected = _expected(served, "pair-electra", texts, pairs)

    async def main():
        async with AsyncClient(served.url) as client:
            many = await client.classify("pair-electra", texts, text_pair=pairs)
            one = await client.classify("pair-electra", texts[0], text_pair=pairs[0], top_k=1)
            return many, one

    many, one = asyncio.run(main())
    for row, want in zip(many, expected):
        _assert_same(row, want, "async")
    assert len(one) == 1 and one[0].label == expected[0][0]["label"]


# -- any KServe v2 client --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pair-bert", "pair-bert-steps"])
def test_text_pair_is_an_optional_ensemble_input(served, name):
    triton = grpcclient.InferenceServerClient(served.url)
    inputs = {i["name"]: i for i in triton.get_model_config(name, as_json=True)["config"]["input"]}
    assert set(inputs) == {"TEXT", "TEXT_PAIR"}
    assert inputs["TEXT_PAIR"].get("optional") is True and not inputs["TEXT"].get("optional")
    assert inputs["TEXT_PAIR"]["data_type"] == "TYPE_STRING" and inputs["TEXT_PAIR"]["dims"] == ["1"]
    metadata = {i["name"]: i for i in triton.get_model_metadata(name, as_json=True)["inputs"]}
    assert metadata["TEXT_PAIR"]["datatype"] == "BYTES"


@pytest.mark.parametrize("name", ["pair-bert", "pair-bert-steps", "pair-roberta"])
def test_plain_kserve_requests(served, name):
    """Without TEXT_PAIR a request is a single text; with it, a pair: the SDK is not needed for either."""
    texts, pairs = [a for a, _ in PAIRS[:5]], [b for _, b in PAIRS[:5]]
    for got, want in zip(_raw(served.url, name, texts), _expected(served, name, texts, [None] * 5)):
        _assert_same(got, want, f"{name} raw single")
    for got, want in zip(_raw(served.url, name, texts, pairs), _expected(served, name, texts, pairs)):
        _assert_same(got, want, f"{name} raw pair")


@pytest.mark.parametrize("name", ["pair-bert", "pair-bert-steps"])
def test_bad_text_pair_tensors_are_invalid_arg(served, name):
    with pytest.raises(InferenceServerException) as mismatch:
        _raw(served.url, name, ["one", "two"], ["only one"])
    assert mismatch.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "batch size" in mismatch.value.message()
    with pytest.raises(InferenceServerException) as utf8:
        _raw(served.url, name, ["fine"], [b"\xff\xfe not utf-8"])
    assert utf8.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "'TEXT_PAIR'[0] is not valid UTF-8" in utf8.value.message()


def test_a_long_text_pair_is_refused_alone(served, client):
    with pytest.raises(InvalidInput, match=r"'TEXT_PAIR'\[0\] has 301 characters"):
        client.classify("pair-bert-short", "fine", text_pair="x" * 301)
    assert client.classify("pair-bert-short", "fine", text_pair="x" * 300)


# -- wrong arguments -------------------------------------------------------------------------------
@pytest.mark.parametrize("texts, text_pair, message", [
    (["a", "b"], ["x"], "texts has 2, text_pair 1"),
    (["a"], ["x", "y"], "texts has 1, text_pair 2"),
    ([], ["x"], "texts has 0, text_pair 1"),
    (["a", "b"], "x", "text_pair must be a list of 2 str"),
    ("a", ["x"], "text_pair must be a str when texts is a str, got list"),
    ("a", 3, "text_pair must be a str when texts is a str, got int"),
    (["a"], [b"x"], r"text_pair\[0\] must be a str or None, got bytes; decode it"),
    (["a", "b"], ["x", 2], r"text_pair\[1\] must be a str or None, got int"),
    (["a"], b"x", "text_pair must be a str or a list of str, got bytes"),
    (["a"], {"x"}, "text_pair must be a str or a list of str, got set"),
    (["a"], {"text_pair": "x"}, "text_pair must be a str or a list of str, got dict"),
    (["a"], 7, "text_pair must be a str or a list of str, got int"),
    (["a"], ["\ud800"], r"text_pair\[0\] contains a lone surrogate"),
    ("a", "\ud800", "text_pair contains a lone surrogate"),
])
def test_wrong_text_pair_is_refused_before_sending(texts, text_pair, message):
    from tritonize.deploy import free_port

    # no server on that port: a call that sent anything would fail with ServerUnavailable instead
    with Client(f"127.0.0.1:{free_port()}", timeout=5) as nowhere:
        with pytest.raises(InvalidInput, match=message):
            nowhere.classify("any", texts, text_pair=text_pair)

    async def call():
        async with AsyncClient(f"127.0.0.1:{free_port()}", timeout=5) as nowhere:
            await nowhere.classify("any", texts, text_pair=text_pair)

    with pytest.raises(InvalidInput, match=message):
        asyncio.run(call())


def test_text_pair_to_a_model_without_pairs(served, client):
    """A model exported before sentence pairs: the SDK refuses a pair before sending it, Triton refuses a raw
    one; its single texts work as ever."""
    with pytest.raises(InvalidInput, match=r"'pair-legacy' .* takes no text_pair: .* no TEXT_PAIR input") as info:
        client.classify(LEGACY, "a", text_pair="b")
    assert info.value.model == LEGACY
    with pytest.raises(InferenceServerException) as raw:
        _raw(served.url, LEGACY, ["a"], ["b"])
    assert raw.value.status() == "StatusCode.INVALID_ARGUMENT"
    _assert_same(client.classify(LEGACY, "a"), _expected(served, LEGACY, ["a"], [None])[0], "legacy single")
    assert client.classify(LEGACY, ["a", "b"], text_pair=[None, None])  # no pair: nothing to refuse



# -- the accuracy gate's evaluation inputs -----------------------------------------------------------
def test_eval_texts_may_hold_pairs(tmp_path):
    """``--eval-texts`` JSON Lines take ``{"text", "text_pair"}``: the gate's pipeline answers them as pairs."""
    import json

    from tritonize.exporters import accuracy, plugins
    from tritonize.exporters.checkpoint import ExportError, open_checkpoint
    from tritonize.exporters.tasks.base import ExportSpec
    from transformers import AutoModelForSequenceClassification

    task = plugins.get_task("text-classification")
    path = tmp_path / "eval.jsonl"
    lines = [json.dumps({"text": a, "text_pair": b}) for a, b in PAIRS[:3]] + ["a plain line", '{"text": "alone"}']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    inputs = accuracy.read_eval_set(task, path).inputs
    assert inputs == [{"text": a, "text_pair": b} for a, b in PAIRS[:3]] + ["a plain line", "alone"]

    checkpoint_dir = tiny_classifier("bert-single")
    spec = ExportSpec("gate", task.name, open_checkpoint(str(checkpoint_dir)), 1, 1, 512)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint_dir).eval()
    want = [rows[0]["label"] for rows in _pipeline(str(checkpoint_dir))(inputs, truncation=True)]
    assert accuracy.answers(task, model, spec, inputs) == want

    path.write_text(json.dumps({"text": "a", "text_pair": 3}) + "\n", encoding="utf-8")
    with pytest.raises(ExportError, match=r"line 1: expected \"text\" and \"text_pair\" strings"):
        accuracy.read_eval_set(task, path)


def test_predict_sends_pairs_with_inputs_text_text_pair(served):
    """`tritonize predict MODEL A B C D --inputs text,text_pair`: the texts fill TEXT and TEXT_PAIR in turn."""
    import json
    import subprocess
    import sys

    checkpoint = str(served.checkpoints[MODELS["pair-bert"][0]])
    items = [{"text": "A soccer game with multiple males playing.", "text_pair": "Some men are playing a sport."},
             {"text": "A man is eating.", "text_pair": "Nobody eats."}]
    result = subprocess.run(
        [sys.executable, "-m", "tritonize.cli", "predict", "pair-bert", *[v for i in items for v in i.values()],
         "--inputs", "text,text_pair", "--param", "top_k=2", "--url", served.url],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = json.loads(result.stdout)
    expected = _pipeline(checkpoint)(items, truncation=True, top_k=2)
    assert [[r["label"] for r in row] for row in printed] == [[r["label"] for r in row] for row in expected]
    for row, want in zip(printed, expected):
        for got, w in zip(row, want):
            assert abs(got["score"] - w["score"]) < TOLERANCE
    odd = subprocess.run([sys.executable, "-m", "tritonize.cli", "predict", "pair-bert", "one", "--inputs",
                          "text,text_pair", "--url", served.url], capture_output=True, text=True, timeout=120)
    assert odd.returncode == 2 and "groups of 2: TEXT TEXT_PAIR" in odd.stderr
    unknown = subprocess.run([sys.executable, "-m", "tritonize.cli", "predict", "pair-bert", "one", "--inputs",
                              "text,pair", "--url", served.url], capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and "text-classification takes text, text_pair" in unknown.stderr
