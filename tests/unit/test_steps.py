"""The steps' logic against transformers' own functions, on numpy arrays: no server, no stub."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_the_step_modules_import_without_the_python_backend():
    import postprocess_question_answering
    import postprocess_text_classification
    import postprocess_token_classification
    import tritonize_step

    assert tritonize_step.pb_utils is None
    assert issubclass(postprocess_text_classification.TritonPythonModel, tritonize_step.Step)
    assert postprocess_question_answering.decode_spans and postprocess_token_classification.EntityDecoder


def test_span_decoding_is_the_pipelines():
    from transformers.pipelines.question_answering import decode_spans as reference

    from postprocess_question_answering import decode_spans

    rng = np.random.default_rng(0)
    for n, topk, max_len in ((12, 1, 5), (30, 7, 15), (8, 100, 3), (16, 16 * 16, 16)):
        start = rng.random((1, n))
        end = rng.random((1, n))
        undesired = (rng.random(n) > 0.3).astype(np.int64)
        undesired[0] = 0
        ours = decode_spans(start, end, topk, max_len, undesired)
        theirs = reference(start, end, min(topk, n * n - 1) if topk >= n * n else topk, max_len, undesired)
        if topk < n * n:
            for a, b in zip(ours, theirs):
                np.testing.assert_array_equal(a, b)
        else:  # the pipeline's argpartition fails at k == n*n; ours returns every span, best first
            assert len(ours[0]) >= len(theirs[0])


def test_classification_scores_and_order_are_the_pipelines():
    import torch

    from postprocess_text_classification import ranked, scores_of

    logits = np.array([[0.1, 2.0, 2.0, -1.0], [3.0, -2.0, 0.5, 0.5]], dtype=np.float32)
    labels = np.array([b"a", b"b", b"c", b"d"], dtype=object)
    np.testing.assert_allclose(scores_of(logits, "softmax"), torch.softmax(torch.tensor(logits), -1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(scores_of(logits, "sigmoid"), torch.sigmoid(torch.tensor(logits)).numpy(), rtol=1e-6)
    assert scores_of(logits, "none") is logits
    names, scores = ranked(scores_of(logits, "softmax"), labels)
    assert names[0].tolist() == [b"b", b"c", b"a", b"d"]  # the tie keeps label order
    assert names[1].tolist() == [b"a", b"c", b"d", b"b"]
    assert (np.diff(scores, axis=-1) <= 0).all()


def _wordpiece(words):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    from tokenizers import decoders

    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_entity_aggregation_is_the_pipelines(strategy):
    import torch
    from transformers import BertConfig, BertForTokenClassification, PreTrainedTokenizerFast, TokenClassificationPipeline

    from postprocess_token_classification import EntityDecoder

    tokenizer = _wordpiece(["john", "smith", "works", "at", "ac", "##me", "corp", "in", "new", "york", "."])
    labels = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]")
    config = BertConfig(vocab_size=fast.vocab_size, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=8, id2label=dict(enumerate(labels)),
                        label2id={l: i for i, l in enumerate(labels)})
    pipe = TokenClassificationPipeline(model=BertForTokenClassification(config).eval(), tokenizer=fast)
    text = "John Smith works at Acme Corp in New York."
    encoding = tokenizer.encode(text)
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(len(encoding.ids), len(labels))) * 3).astype(np.float32)
    ids = np.array(encoding.ids)
    offsets = np.array(encoding.offsets)
    special = np.array(encoding.special_tokens_mask)

    scores = torch.softmax(torch.tensor(logits), -1).numpy()
    from transformers.pipelines.token_classification import AggregationStrategy

    chosen = AggregationStrategy(strategy)
    pre = pipe.gather_pre_entities(text, ids, scores, offsets, special, chosen)
    expected = [e for e in pipe.aggregate(pre, chosen)
                if e.get("entity", e.get("entity_group")) not in ("O",)]
    assert expected  # random logits over seven labels: entities to compare
    found = EntityDecoder(tokenizer, labels, 1).entities(text, [(ids, offsets, special, logits)], strategy, ["O"])
    key = "entity" if strategy == "none" else "entity_group"
    assert [(e[key], e["word"], e["start"], e["end"]) for e in found] == \
        [(e[key], e["word"], e["start"], e["end"]) for e in expected]
    np.testing.assert_allclose([e["score"] for e in found], [float(e["score"]) for e in expected], atol=1e-6)


class _Request:
    """What the step base reads of a request: its KServe v2 parameters."""

    def __init__(self, parameters):
        self._parameters = json.dumps(parameters)

    def parameters(self):
        return self._parameters


def test_request_parameters_are_checked_in_one_place():
    from tritonize_step import RequestError, Step, flag, one_of, positive_int, string_list, typed_param

    class Demo(Step):
        config_parameters = {"top_k": ("tritonize.top_k", int, 1), "labels": ("tritonize.labels", "json", []),
                             "strategy": ("tritonize.strategy", str, "simple"), "ok": ("x.ok", bool, False)}
        request_parameters = {"top_k": positive_int, "strategy": one_of("simple", "first"), "ok": flag,
                              "labels": string_list}

    config = {"parameters": {"tritonize.top_k": {"string_value": "3"}, "tritonize.labels": {"string_value": '["a"]'},
                             "x.ok": {"string_value": "true"}}}
    step = Demo()
    step.initialize({"model_config": json.dumps(config), "model_name": "demo", "model_repository": "/r",
                     "model_version": "1"})
    assert (step.top_k, step.labels, step.strategy, step.ok) == (3, ["a"], "simple", True)
    assert step.sanitize_parameters(_Request({})) == {"top_k": 3, "strategy": "simple", "ok": True, "labels": ["a"]}
    assert step.sanitize_parameters(_Request({"top_k": "5", "ok": "false", "labels": '["x", "y"]', "other": 1})) == \
        {"top_k": 5, "strategy": "simple", "ok": False, "labels": ["x", "y"]}
    for given, message in (({"top_k": 0}, "top_k must be an integer >= 1, got 0"),
                           ({"top_k": True}, "top_k must be an integer >= 1, got True"),
                           ({"strategy": "max"}, "strategy='max' is not one of simple, first"),
                           ({"ok": "maybe"}, "ok must be true or false, got 'maybe'"),
                           ({"labels": "[1]"}, "labels must be a JSON list of strings")):
        with pytest.raises(RequestError, match=message.replace("[", r"\[")):
            step.sanitize_parameters(_Request(given))
    with pytest.raises(RequestError, match="not valid JSON"):
        step.sanitize_parameters(type("R", (), {"parameters": lambda self: "{"})())
    assert typed_param({"parameters": {}}, "missing", int, 7) == 7
