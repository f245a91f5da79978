"""The real fine-tuned PII NER model (Rampart, CC-BY-4.0) served = the pipeline, on 60 realistic texts."""

from __future__ import annotations

import math

import pytest

from data.pii_texts import PII_TEXTS
from tritonize.client import Client

pytestmark = pytest.mark.server


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_rampart_matches_pipeline(served_rampart, strategy):
    from transformers import pipeline

    assert len(PII_TEXTS) >= 50
    pipe = pipeline("token-classification", model=str(served_rampart.checkpoints["pii"]),
                    aggregation_strategy=strategy, device="cpu")
    key = "entity" if strategy == "none" else "entity_group"
    with Client(served_rampart.url) as client:
        served = client.extract_entities("pii", PII_TEXTS, aggregation_strategy=strategy)
    found = 0
    for text, got in zip(PII_TEXTS, served):
        expected = pipe(text)
        got_dicts = [e.to_dict() for e in got]
        assert [(g[key], g["start"], g["end"], g["word"]) for g in got_dicts] == [
            (w[key], w["start"], w["end"], w["word"]) for w in expected
        ], text
        for g, w in zip(got_dicts, expected):
            assert math.isclose(g["score"], float(w["score"]), abs_tol=1e-4), (text, g, w)
        found += bool(got)
    assert found >= 50  # a real model: most of these texts do hold PII it detects


def test_first_strategy_gives_whole_words(served_rampart):
    """Rampart tags word-pieces with B-: `simple` splits a surname, `first` keeps it whole."""
    text = "Please call Agnieszka Kowalczyk back at 555-0134."
    with Client(served_rampart.url) as client:
        first = client.extract_entities("pii", text, aggregation_strategy="first")
        simple = client.extract_entities("pii", text, aggregation_strategy="simple")
    surnames = [e for e in first if e.label == "SURNAME"]
    assert any(text[e.start:e.end] == "Kowalczyk" for e in surnames), first
    assert len([e for e in simple if e.label == "SURNAME"]) > len(surnames)
