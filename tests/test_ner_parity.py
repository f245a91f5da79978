"""A real tritonserver finds entities exactly as ``pipeline("token-classification")`` does.

For every architecture (WordPiece, byte-level BPE and SentencePiece offsets)
and every aggregation strategy: the same entity groups, starts and ends, and
scores within 1e-4. Long texts are compared with the pipeline's own ``stride``
windows.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import pytest

from checkpoints import ARCHITECTURES
from tritonize.client import Client, Entity, TaskMismatch

pytestmark = pytest.mark.server

TOLERANCE = 1e-4
STRIDE = 128  # the export default for a 512-token model

SHORT_TEXTS = [
    "John Smith works at Acme Corporation in New York.",
    "Unbelievably, overcomplicated counterrevolutionaries reconsidered internationalization.",
    "(John), Smith's; Acme-Corp. [Paris]! \"London\"?",
    "Paris, Paris and Paris again; then London, London.",
    "José Müller met Zoë Ångström at the Café Über in Zürich.",
    "東京 and 北京 are big cities 🌸🚀 naïve façade déjà vu",
    "John   Smith\n\nworks\tat   Acme\n  in  Berlin",
    "",
    "   ",
]
LONG_TEXTS = [
    " ".join(f"Report {i}: Maria Garcia visited Toronto and met Ahmed Khan of Globex." for i in range(60)),
    "Start. " + "filler words keep going here " * 130 + "Finally Sarah Connor arrived in Los Angeles.",
]
STRATEGIES = ["none", "simple", "first", "average", "max"]


def _pipeline(checkpoint, strategy):
    from transformers import pipeline

    return pipeline("token-classification", model=str(checkpoint), aggregation_strategy=strategy, device="cpu")


def _assert_same(served, expected, context):
    assert [type(e) for e in served] == [Entity] * len(served)
    got = [e.to_dict() for e in served]
    key = "entity" if expected and "entity" in expected[0] else "entity_group"
    assert [(g.get(key), g["start"], g["end"]) for g in got] == [
        (w[key], w["start"], w["end"]) for w in expected
    ], context
    for g, w in zip(got, expected):
        assert g["word"] == w["word"], context
        assert math.isclose(g["score"], float(w["score"]), abs_tol=TOLERANCE), f"{context}: {g} vs {w}"
        if key == "entity":
            assert g["index"] == w["index"], context


@pytest.fixture(scope="module")
def client(served_ner):
    with Client(served_ner.url) as client:
        yield client


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_short_texts_match_pipeline(served_ner, client, arch, strategy):
    pipe = _pipeline(served_ner.checkpoints[arch], strategy)
    served = client.extract_entities(f"ner-{arch}", SHORT_TEXTS, aggregation_strategy=strategy)
    for text, got in zip(SHORT_TEXTS, served):
        _assert_same(got, pipe(text), f"{arch}/{strategy} on {text[:30]!r}")
        for entity in got:
            assert 0 <= entity.start <= entity.end <= len(text)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("strategy", ["simple", "first", "average", "max"])
def test_long_texts_match_pipeline_with_stride(served_ner, client, arch, strategy):
    pipe = _pipeline(served_ner.checkpoints[arch], strategy)
    tokenizer = pipe.tokenizer
    for text in LONG_TEXTS:
        assert len(tokenizer(text)["input_ids"]) > 600
        got = client.extract_entities(f"ner-{arch}", text, aggregation_strategy=strategy)
        _assert_same(got, pipe(text, stride=STRIDE), f"{arch}/{strategy} long text")
        # entities past token 512 are found, and their offsets point into the text
        cut = tokenizer(text, truncation=True, max_length=512, return_offsets_mapping=True)["offset_mapping"]
        first_window_end = max(end for _, end in cut)
        late = [e for e in got if e.start >= first_window_end]
        assert late, f"{arch}: no entity found after the first window"
        assert all(entity.end <= len(text) for entity in late)
        # (byte-level BPE can tag a lone space token, whose span is empty, as the pipeline does)
        assert any(text[entity.start:entity.end].strip() for entity in late)


def test_default_strategy_is_the_exports(served_ner, client):
    text = SHORT_TEXTS[0]
    got = client.extract_entities("ner-bert", text)
    _assert_same(got, _pipeline(served_ner.checkpoints["bert"], "simple")(text), "default")
    assert client.model_info("ner-bert").parameters["tritonize.aggregation_strategy"] == "simple"


def test_short_windows_everywhere(served_ner, client):
    """max_length 24, stride 6: every text of a few words spans several windows."""
    from transformers import pipeline

    pipe = pipeline("token-classification", model=str(served_ner.checkpoints["roberta"]),
                    aggregation_strategy="first")
    pipe.tokenizer.model_max_length = 24
    for text in SHORT_TEXTS[:7] + LONG_TEXTS[:1]:
        _assert_same(client.extract_entities("ner-short", text), pipe(text, stride=6), f"short windows {text[:20]!r}")


def test_concurrent_requests_of_mixed_lengths(served_ner, client):
    texts = (SHORT_TEXTS + LONG_TEXTS) * 3
    alone = [client.extract_entities("ner-deberta-v2", t) for t in texts]

    def call(text):
        with Client(served_ner.url) as own:
            return own.extract_entities("ner-deberta-v2", text)

    with ThreadPoolExecutor(max_workers=12) as pool:
        together = list(pool.map(call, texts))
    for text, a, b in zip(texts, alone, together):
        assert [e.to_dict()["entity_group"] for e in a] == [e.to_dict()["entity_group"] for e in b]
        assert [(e.start, e.end) for e in a] == [(e.start, e.end) for e in b], text[:30]
        assert all(math.isclose(x.score, y.score, abs_tol=1e-5) for x, y in zip(a, b))


def test_wrong_task_and_bad_strategy(served_ner, served_classifiers):
    with Client(served_ner.url) as client:
        with pytest.raises(TaskMismatch, match="serves 'token-classification'"):
            client.classify("ner-bert", "hello")
        with pytest.raises(Exception, match="aggregation_strategy must be one of"):
            client.extract_entities("ner-bert", "hello", aggregation_strategy="longest")


def test_bad_request_parameter_is_refused_and_the_server_stays_up(served_ner):
    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    raw = grpcclient.InferenceServerClient(served_ner.url)
    text = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
    text.set_data_from_numpy(np.array([[b"John Smith"]], dtype=object))
    with pytest.raises(InferenceServerException, match="aggregation_strategy='longest' is not one of"):
        raw.infer("ner-bert", [text], parameters={"aggregation_strategy": "longest"})
    assert raw.is_server_live()
    response = raw.infer("ner-bert", [text])
    assert response.as_numpy("COUNT").shape == (1, 1)


def test_cli_predict_ner(served_ner):
    import json
    import subprocess
    import sys

    text = "John Smith works at Acme Corporation in New York."
    result = subprocess.run(
        [sys.executable, "-m", "tritonize.cli", "predict", "ner-xlm-roberta", text,
         "--aggregation-strategy", "max", "--url", served_ner.url],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    expected = _pipeline(served_ner.checkpoints["xlm-roberta"], "max")(text)
    assert [(e["entity_group"], e["start"], e["end"]) for e in printed] == [
        (e["entity_group"], e["start"], e["end"]) for e in expected
    ]
