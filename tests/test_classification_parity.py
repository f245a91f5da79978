"""A real tritonserver answers as ``pipeline("text-classification")`` does.

The oracle is the transformers pipeline on the same checkpoint: same label
order, scores within 1e-4, for every architecture and tokenizer family,
single-label, multi-label, one-label and regression heads.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import pytest
import tritonclient.grpc as grpcclient

from conftest import CLASSIFIERS, step_model
from data.hard_texts import HARD_TEXTS
from tritonize.client import Client, LabelScore

pytestmark = pytest.mark.server

TOLERANCE = 1e-4

TEXTS = HARD_TEXTS


def _pipeline(checkpoint, **kwargs):
    from transformers import pipeline

    return pipeline("text-classification", model=str(checkpoint), top_k=None, device="cpu", **kwargs)


TIE = 1e-6  # labels whose pipeline scores are this close may come in either order


def _assert_same(served, expected, context):
    """Same labels in the same order, scores within TOLERANCE.

    The only order difference accepted is between labels that the pipeline
    itself scores as tied (within TIE): float noise may swap those.
    """
    assert len(served) == len(expected), context
    want_scores = {w["label"]: w["score"] for w in expected}
    for got, want in zip(served, expected):
        assert isinstance(got, LabelScore)
        if got.label != want["label"]:
            assert abs(want_scores.get(got.label, -1.0) - want["score"]) <= TIE, (
                f"{context}: label order {served} vs {expected}"
            )
        assert math.isclose(got.score, want_scores[got.label], abs_tol=TOLERANCE), f"{context}: {got} vs {want}"


@pytest.fixture(scope="module")
def client(served_classifiers):
    with Client(served_classifiers.url) as client:
        yield client


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_batch_matches_pipeline(served_classifiers, client, name):
    checkpoint = served_classifiers.checkpoints[name]
    expected = _pipeline(checkpoint)(TEXTS, truncation=True)
    served = client.classify(name, TEXTS)
    assert len(served) == len(TEXTS)
    for text, got, want in zip(TEXTS, served, expected):
        _assert_same(got, want, f"{name} on {text[:30]!r}")
    info = client.model_info(name)
    assert info.task == "text-classification"
    assert len(info.labels) == len(expected[0])


@pytest.mark.parametrize("name", ["bert-single", "roberta-multi", "distilbert-regression", "electra-one-label"])
def test_single_string_and_top_k(served_classifiers, client, name):
    checkpoint = served_classifiers.checkpoints[name]
    text = "What a wonderful, wonderful day."
    # top_k given at call time: the pipeline then returns one list of labels for one string
    _assert_same(client.classify(name, text), _pipeline(checkpoint)(text, top_k=None), name)
    top2 = _pipeline(checkpoint)(text, top_k=2)
    _assert_same(client.classify(name, text, top_k=2), top2, f"{name} top_k=2")
    assert len(client.classify(name, text, top_k=1)) == 1


def test_scores_follow_the_head(client):
    softmax = client.classify("bert-single", "hello there")
    assert math.isclose(sum(r.score for r in softmax), 1.0, abs_tol=1e-5)
    sigmoid = client.classify("bert-multi", "hello there")
    assert all(0.0 < r.score < 1.0 for r in sigmoid)
    assert not math.isclose(sum(r.score for r in sigmoid), 1.0, abs_tol=1e-3)
    assert [r.score for r in sigmoid] == sorted((r.score for r in sigmoid), reverse=True)


def test_truncation_at_exported_max_length(served_classifiers, client):
    checkpoint = served_classifiers.checkpoints["bert-single"]
    long_texts = [" ".join(f"word{i} and more" for i in range(n)) for n in (3, 10, 40)]
    expected = _pipeline(checkpoint)(long_texts, truncation=True, max_length=16)
    served = client.classify("bert-short", long_texts)
    for got, want in zip(served, expected):
        _assert_same(got, want, "bert-short")
    # the untruncated model sees more of the long text, so it answers differently
    full = client.classify("bert-single", long_texts[-1])
    assert [r.score for r in full] != pytest.approx([r.score for r in served[-1]], abs=1e-6)


def test_more_texts_than_max_batch_size(served_classifiers, client):
    texts = [f"sentence number {i} " * (1 + i % 7) for i in range(11)]  # bert-short: max_batch_size 4
    expected = _pipeline(served_classifiers.checkpoints["bert-single"])(texts, truncation=True, max_length=16)
    served = client.classify("bert-short", texts)
    assert len(served) == 11
    for got, want in zip(served, expected):
        _assert_same(got, want, "chunked")


@pytest.mark.parametrize("name", ["roberta-single", "deberta-v2-single", "modernbert-single"])
def test_concurrent_mixed_lengths_match_one_by_one(served_classifiers, client, name):
    """Requests of mixed lengths batched together get what they get alone."""
    texts = [("short " * (1 + (i * 7) % 23)) + f"number {i} ends {'!' * (i % 3)}" for i in range(48)]
    texts += ["Café 東京 🌸 " * k for k in (1, 5, 30)]
    alone = [client.classify(name, t) for t in texts]
    expected = _pipeline(served_classifiers.checkpoints[name])(texts, truncation=True)

    stats = grpcclient.InferenceServerClient(served_classifiers.url)
    encoder = step_model(name, "encoder")
    before = stats.get_inference_statistics(encoder, as_json=True)["model_stats"][0]

    def call(text):
        with Client(served_classifiers.url) as own:
            return own.classify(name, text)

    with ThreadPoolExecutor(max_workers=16) as pool:
        together = list(pool.map(call, texts * 2))

    after = stats.get_inference_statistics(encoder, as_json=True)["model_stats"][0]
    inferences = int(after.get("inference_count", 0)) - int(before.get("inference_count", 0))
    executions = int(after.get("execution_count", 0)) - int(before.get("execution_count", 0))
    assert inferences == 2 * len(texts)
    assert executions < inferences, "the dynamic batcher never merged concurrent requests"

    for text, got, solo, want in zip(texts * 2, together, alone * 2, expected * 2):
        _assert_same(got, [s.to_dict() for s in solo], f"{name} concurrent vs alone on {text[:20]!r}")
        _assert_same(got, want, f"{name} concurrent vs pipeline on {text[:20]!r}")
