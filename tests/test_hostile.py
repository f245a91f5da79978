"""Hostile input against the real servers of the session fixtures.

Every case gets either a clear error with the right code (gRPC
``INVALID_ARGUMENT`` / HTTP 400, SDK ``InvalidInput``), with a message that
names what was wrong and holds no traceback or file path, or a defined answer
that is the transformers pipeline's. The server stays up throughout, and the
last test checks that every model of the three fixtures still answers a
normal request exactly as its pipeline does.

Raw ``tritonclient.grpc`` / ``tritonclient.http`` requests are used for the
wire-level cases (bytes that no SDK would send), the SDK for the rest.
"""

from __future__ import annotations

import functools
import math
import re
import threading
import time
import warnings

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from checkpoints import ARCHITECTURES
from conftest import CLASSIFIERS, QA_ARCHITECTURES, step_model
from tritonize.client import Client, InvalidInput

pytestmark = pytest.mark.server

TOLERANCE = 1e-4
TIE = 1e-6
GRPC_INVALID = "StatusCode.INVALID_ARGUMENT"
MEGABYTE_TEXT = "lorem ipsum " * 83_334  # 1,000,008 characters
DEFAULT_MAX_TEXT_CHARS = 100_000

RTL_AND_ZALGO = [
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "שלום עולם! זה טקסט בעברית.",
    "John Smith قال: שלום (Acme) 123",
    "\u202eevil\u202c override \u200f\u200e marks",
    "Z̷̢̛̖̪a̸̡̛̗l̶̨̺̓g̴̱̈́o̵̧͝ ̶̛̜t̴̰̾e̷̡͗x̸̖͠t̴̢̏ J̵o̶h̵n̸",
    "a" + "\u0301" * 200 + " b" + "\u0336" * 50,  # one letter under 200 combining marks
]
NUL_TEXTS = ["a\x00b", "\x00", "John\x00Smith works at Acme\x00", "trailing nuls\x00\x00", "\x00\x00\x00 lead"]
EMPTYISH = ["", " ", "   \t\n  ", "\u00a0\u2003"]  # empty, space, mixed whitespace, unicode spaces

_PATH = re.compile(r"(?:[A-Za-z]:)?(?:/[\w.+@-]+){2,}")


# -- helpers --------------------------------------------------------------------------------
def assert_clean(message: str) -> None:
    """An error message for a user: no traceback, no source file, no file path."""
    assert "Traceback" not in message, message
    assert ".py" not in message, message
    assert not _PATH.search(message), message


def grpc_error(call) -> str:
    """Run ``call``; it must fail with gRPC INVALID_ARGUMENT. Returns the message."""
    with pytest.raises(InferenceServerException) as info:
        call()
    assert str(info.value.status()) == GRPC_INVALID, (info.value.status(), info.value.message())
    message = info.value.message()
    assert_clean(message)
    return message


def http_error(call) -> str:
    """Run ``call``; it must fail with HTTP 400. Returns the message."""
    with pytest.raises(InferenceServerException) as info:
        call()
    assert str(info.value.status()) == "400", (info.value.status(), info.value.message())
    message = info.value.message()
    assert_clean(message)
    return message


def texts_array(texts) -> np.ndarray:
    items = [t if isinstance(t, bytes) else t.encode("utf-8") for t in texts]
    array = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        array[i, 0] = item
    return array


def grpc_input(name, array, datatype="BYTES"):
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def http_input(name, array, datatype="BYTES"):
    tensor = httpclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=True)
    return tensor


def still_serving(url: str) -> None:
    raw = grpcclient.InferenceServerClient(url)
    assert raw.is_server_live() and raw.is_server_ready()


def config_parameter(raw, model: str, key: str) -> str:
    config = raw.get_model_config(model, as_json=True)["config"]
    return config["parameters"][key]["string_value"]


# -- oracles --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _pipeline(task: str, checkpoint: str, max_length: int = 0, **kwargs):
    from transformers import pipeline

    if task == "text-classification":
        kwargs["top_k"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = pipeline(task, model=checkpoint, device="cpu", **kwargs)
    if max_length:
        pipe.tokenizer.model_max_length = max_length
    return pipe


def classification_oracle(checkpoint, texts, max_length=0):
    pipe = _pipeline("text-classification", str(checkpoint))
    extra = {"max_length": max_length} if max_length else {}
    result = pipe(list(texts), truncation=True, **extra)
    return [r if isinstance(r, list) else [r] for r in result]


def ner_oracle(checkpoint, text, strategy="simple", max_length=0, stride=None):
    pipe = _pipeline("token-classification", str(checkpoint), max_length, aggregation_strategy=strategy)
    return pipe(text, **({"stride": stride} if stride is not None else {}))


def qa_oracle(checkpoint, question, context, max_length=0, **kwargs):
    """The pipeline's answers. Where the pipeline itself crashes on ``top_k`` (its ``decode_spans``
    calls argpartition with kth equal to the number of candidates), the answers it gives one
    ``top_k`` higher, cut to ``top_k``: the same candidates, ranked the same way."""
    pipe = _pipeline("question-answering", str(checkpoint), max_length)
    try:
        result = pipe(question=question, context=context, **kwargs)
    except ValueError as exc:
        if "kth" not in str(exc):
            raise
        top_k = kwargs.get("top_k", 1)
        result = pipe(question=question, context=context, **{**kwargs, "top_k": top_k + 1})
        result = (result if isinstance(result, list) else [result])[:top_k]
    return result if isinstance(result, list) else [result]


def assert_same_labels(served, expected, context):
    """``served``: LabelScore objects or (label, score) pairs; same order but for pipeline ties."""
    got = [(s.label, s.score) if hasattr(s, "label") else s for s in served]
    assert len(got) == len(expected), context
    want = {w["label"]: w["score"] for w in expected}
    for (label, score), w in zip(got, expected):
        if label != w["label"]:
            assert abs(want.get(label, -1.0) - w["score"]) <= TIE, f"{context}: {got} vs {expected}"
        assert math.isclose(score, want[label], abs_tol=TOLERANCE), f"{context}: {got} vs {expected}"


def assert_same_entities(served, expected, context):
    got = [e.to_dict() for e in served]
    key = "entity" if expected and "entity" in expected[0] else "entity_group"
    assert [(g.get(key), g["start"], g["end"], g["word"]) for g in got] == [
        (w[key], w["start"], w["end"], w["word"]) for w in expected
    ], context
    for g, w in zip(got, expected):
        assert math.isclose(g["score"], float(w["score"]), abs_tol=TOLERANCE), f"{context}: {g} vs {w}"


def assert_same_answers(served, expected, context):
    """``served``: an Answer, a list of them, or None (no answer: the pipeline's ``[]``)."""
    served = [] if served is None else served if isinstance(served, list) else [served]
    got = [a.to_dict() if hasattr(a, "to_dict") else a for a in served]
    assert [(g["answer"], g["start"], g["end"]) for g in got] == [
        (e["answer"], e["start"], e["end"]) for e in expected
    ], f"{context}: {got} vs {expected}"
    for g, e in zip(got, expected):
        assert math.isclose(g["score"], e["score"], abs_tol=TOLERANCE), f"{context}: {got} vs {expected}"


# -- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def classifiers(served_classifiers):
    with Client(served_classifiers.url, timeout=120) as client:
        yield served_classifiers, client


@pytest.fixture(scope="module")
def ner(served_ner):
    with Client(served_ner.url, timeout=120) as client:
        yield served_ner, client


@pytest.fixture(scope="module")
def qa(served_qa):
    with Client(served_qa.url, timeout=120) as client:
        yield served_qa, client


def _grpc(served):
    return grpcclient.InferenceServerClient(served.url)


def _http(served):
    return httpclient.InferenceServerClient(served.server.http_url, network_timeout=60.0)


# -- empty and whitespace-only texts ---------------------------------------------------------
@pytest.mark.parametrize("name", ["bert-single", "roberta-single", "deberta-v2-single", "xlm-roberta-multi",
                                  "albert-single", "distilbert-regression", "electra-one-label"])
def test_empty_and_whitespace_texts_classify_as_the_pipeline(classifiers, name):
    served, client = classifiers
    expected = classification_oracle(served.checkpoints[name], EMPTYISH)
    for text, got, want in zip(EMPTYISH, client.classify(name, EMPTYISH), expected):
        assert_same_labels(got, want, f"{name} on {text!r}")
    # the same bytes straight on the wire
    response = _grpc(served).infer(name, [grpc_input("TEXT", texts_array(EMPTYISH))])
    labels, scores = response.as_numpy("LABELS"), response.as_numpy("SCORES")
    for row, want in enumerate(expected):
        assert_same_labels(list(zip((label.decode() for label in labels[row]), scores[row].tolist())), want,
                           f"raw {name} on {EMPTYISH[row]!r}")
    assert client.classify(name, []) == []


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_empty_and_whitespace_texts_find_what_the_pipeline_finds(ner, arch):
    served, client = ner
    for text, got in zip(EMPTYISH, client.extract_entities(f"ner-{arch}", EMPTYISH)):
        assert_same_entities(got, ner_oracle(served.checkpoints[arch], text), f"{arch} on {text!r}")


def test_empty_question_or_context_is_refused_as_the_pipeline_refuses_it(qa):
    served, client = qa
    raw, http = _grpc(served), _http(served)
    pipe = _pipeline("question-answering", str(served.checkpoints["bert"]))
    for question, context, name in (("", "Some context.", "QUESTION"), ("Who?", "", "CONTEXT")):
        with pytest.raises(ValueError, match=f"`{name.lower()}` cannot be empty"):
            pipe(question=question, context=context)
        inputs = lambda module: [  # noqa: E731
            module("QUESTION", texts_array([question])), module("CONTEXT", texts_array([context]))]
        for message in (grpc_error(lambda: raw.infer("qa-bert", inputs(grpc_input))),
                        http_error(lambda: http.infer("qa-bert", inputs(http_input)))):
            assert f"'{name}'[0] is empty" in message, message
        with pytest.raises(InvalidInput, match=f"'{name}'"):
            client.answer("qa-bert", question=question, context=context)
    # the second pair of a batch is the empty one: the message says which
    message = grpc_error(lambda: raw.infer("qa-bert", [
        grpc_input("QUESTION", texts_array(["Who?", "What?"])), grpc_input("CONTEXT", texts_array(["Ann.", ""]))]))
    assert "'CONTEXT'[1] is empty" in message
    still_serving(served.url)


@pytest.mark.parametrize("arch", ["bert", "roberta", "xlm-roberta", "deberta-v2"])
def test_whitespace_only_context_or_question_gets_the_pipelines_answer(qa, arch):
    """A whitespace-only context has no token to answer with. The pipeline then gives no answer
    (``[]``) or the empty answer at 0..0 with score 0, as its argpartition happens to break the tie
    between all-zero span scores; with handle_impossible_answer, the null answer (score 1). We give
    the same. Where the pipeline crashes (``2 * top_k + 10`` equal to the number of span candidates:
    argpartition's kth out of bounds; e.g. "q" / "a b" on BERT at top_k=13), we answer; the oracle is
    then the pipeline one top_k higher, which ranks the same candidates (all of them)."""
    served, client = qa
    checkpoint = served.checkpoints[arch]
    for question, context in (("Who?", "   "), ("Who?", "\n\t \u00a0"), ("   ", "Ann met Bob in Paris."),
                              ("q", "a b")):
        for kwargs in ({}, {"top_k": 3}, {"handle_impossible_answer": True}, {"top_k": 13}):
            got = client.answer(f"qa-{arch}", question=question, context=context, **kwargs)
            assert_same_answers(got, qa_oracle(checkpoint, question, context, **kwargs),
                                f"{arch} {kwargs} on {question!r}/{context!r}")
    if arch == "bert":  # the upstream crash that the oracle works around is real
        with pytest.raises(ValueError, match="kth"):
            _pipeline("question-answering", str(checkpoint))(question="q", context="a b", top_k=13)


# -- size limits ----------------------------------------------------------------------------
def _assert_too_long(message, name, index=0):
    assert f"'{name}'[{index}]" in message, message
    assert f"{len(MEGABYTE_TEXT):,}" in message and f"{DEFAULT_MAX_TEXT_CHARS:,}" in message, message
    assert "--max-text-chars" in message, message


def test_one_megabyte_text_is_refused_quickly_naming_the_limit(classifiers, ner, qa):
    (served_c, client_c), (served_n, client_n), (served_q, client_q) = classifiers, ner, qa
    cases = [
        (served_c, "bert-single", lambda m: [m("TEXT", texts_array([MEGABYTE_TEXT]))], "TEXT"),
        (served_n, "ner-bert", lambda m: [m("TEXT", texts_array(["ok", MEGABYTE_TEXT]))], "TEXT"),
        (served_q, "qa-bert", lambda m: [m("QUESTION", texts_array(["What?"])),
                                         m("CONTEXT", texts_array([MEGABYTE_TEXT]))], "CONTEXT"),
        (served_q, "qa-roberta", lambda m: [m("QUESTION", texts_array([MEGABYTE_TEXT])),
                                            m("CONTEXT", texts_array(["short"]))], "QUESTION"),
    ]
    for served, model, inputs, name in cases:
        index = 1 if model == "ner-bert" else 0
        assert config_parameter(_grpc(served), step_model(model, "tokenizer"), "tritonize.max_text_chars") == "100000"
        started = time.monotonic()
        _assert_too_long(grpc_error(lambda: _grpc(served).infer(model, inputs(grpc_input))), name, index)
        _assert_too_long(http_error(lambda: _http(served).infer(model, inputs(http_input))), name, index)
        assert time.monotonic() - started < 5.0, f"{model}: refusing 1 MB took {time.monotonic() - started:.1f}s"
    started = time.monotonic()
    with pytest.raises(InvalidInput, match="--max-text-chars"):
        client_c.classify("roberta-single", MEGABYTE_TEXT)
    with pytest.raises(InvalidInput, match="--max-text-chars"):
        client_n.extract_entities("ner-xlm-roberta", MEGABYTE_TEXT)
    with pytest.raises(InvalidInput, match="--max-text-chars"):
        client_q.answer("qa-deberta-v2", question="What?", context=MEGABYTE_TEXT)
    assert time.monotonic() - started < 5.0
    for served in (served_c, served_n, served_q):
        still_serving(served.url)


def test_text_just_under_the_char_limit_is_answered(classifiers):
    served, client = classifiers
    text = ("word " * 20_000)[: DEFAULT_MAX_TEXT_CHARS]
    assert len(text) == DEFAULT_MAX_TEXT_CHARS
    got = client.classify("bert-single", text)
    assert_same_labels(got, classification_oracle(served.checkpoints["bert-single"], [text])[0], "100k chars")


def test_more_windows_than_the_limit_is_refused(ner, qa):
    """ner-short (24-token windows, stride 6) and qa-small-windows (48-token windows) need far
    more than the default 256 windows for a text well under the character limit."""
    (served_n, client_n), (served_q, client_q) = ner, qa
    text = "Maria Garcia visited Toronto and met Ahmed Khan. " * 1_200  # 58,800 characters
    assert len(text) < DEFAULT_MAX_TEXT_CHARS
    cases = [
        (served_n, "ner-short", lambda m: [m("TEXT", texts_array([text]))], "'TEXT'[0]"),
        (served_q, "qa-small-windows", lambda m: [m("QUESTION", texts_array(["Who?"])),
                                                  m("CONTEXT", texts_array([text]))], "'CONTEXT'[0]"),
    ]
    for served, model, inputs, name in cases:
        limit = int(config_parameter(_grpc(served), step_model(model, "tokenizer"), "tritonize.max_windows"))
        assert limit == 256
        started = time.monotonic()
        for message in (grpc_error(lambda: _grpc(served).infer(model, inputs(grpc_input))),
                        http_error(lambda: _http(served).infer(model, inputs(http_input)))):
            assert name in message and "windows" in message, message
            assert f"at most {limit}" in message and "--max-windows" in message, message
            needed = int(re.search(r"needs (\d+) windows", message).group(1))
            assert needed > limit
        assert time.monotonic() - started < 10.0
    with pytest.raises(InvalidInput, match="--max-windows"):
        client_n.extract_entities("ner-short", text)
    with pytest.raises(InvalidInput, match="--max-windows"):
        client_q.answer("qa-small-windows", question="Who?", context=text)
    still_serving(served_n.url)
    still_serving(served_q.url)


# -- bytes that are not text ----------------------------------------------------------------
def test_invalid_utf8_is_refused_over_grpc_and_http(classifiers, ner, qa):
    bad = b"\xff\xfe"
    cases = [
        (classifiers[0], "bert-single", lambda m: [m("TEXT", texts_array([bad]))], "'TEXT'[0]"),
        (classifiers[0], "xlm-roberta-single", lambda m: [m("TEXT", texts_array(["fine", "ok\xe9".encode("latin-1")]))],
         "'TEXT'[1]"),
        (ner[0], "ner-roberta", lambda m: [m("TEXT", texts_array([b"John " + bad]))], "'TEXT'[0]"),
        (qa[0], "qa-bert", lambda m: [m("QUESTION", texts_array([bad])), m("CONTEXT", texts_array(["fine"]))],
         "'QUESTION'[0]"),
        (qa[0], "qa-albert", lambda m: [m("QUESTION", texts_array(["Who?"])), m("CONTEXT", texts_array([bad]))],
         "'CONTEXT'[0]"),
    ]
    for served, model, inputs, name in cases:
        for message in (grpc_error(lambda: _grpc(served).infer(model, inputs(grpc_input))),
                        http_error(lambda: _http(served).infer(model, inputs(http_input)))):
            assert name in message and "UTF-8" in message, message
        still_serving(served.url)


@pytest.mark.parametrize("name", ["bert-single", "roberta-single", "xlm-roberta-single", "deberta-v2-single"])
def test_nul_bytes_classify_as_the_pipeline(classifiers, name):
    served, client = classifiers
    expected = classification_oracle(served.checkpoints[name], NUL_TEXTS)
    for text, got, want in zip(NUL_TEXTS, client.classify(name, NUL_TEXTS), expected):
        assert_same_labels(got, want, f"{name} on {text!r}")
    # raw over both protocols: NULs (trailing ones too) reach the tokenizer
    for module, client_raw in ((grpc_input, _grpc(served)), (http_input, _http(served))):
        response = client_raw.infer(name, [module("TEXT", texts_array(NUL_TEXTS))])
        labels, scores = response.as_numpy("LABELS"), response.as_numpy("SCORES")
        for row, want in enumerate(expected):
            pairs = list(zip((label.decode() for label in labels[row]), scores[row].tolist()))
            assert_same_labels(pairs, want, f"raw {name} on {NUL_TEXTS[row]!r}")


@pytest.mark.parametrize("arch", ["bert", "roberta", "xlm-roberta", "deberta-v2"])
def test_nul_bytes_find_what_the_pipeline_finds(ner, qa, arch):
    served, client = ner
    for text, got in zip(NUL_TEXTS, client.extract_entities(f"ner-{arch}", NUL_TEXTS)):
        assert_same_entities(got, ner_oracle(served.checkpoints[arch], text), f"{arch} on {text!r}")
    served_q, client_q = qa
    for question, context in (("Who\x00?", "Ann\x00 met Bob in Paris."), ("Where?", "\x00Paris\x00\x00")):
        got = client_q.answer(f"qa-{arch}", question=question, context=context)
        assert_same_answers(got, qa_oracle(served_q.checkpoints[arch], question, context), f"{arch} {context!r}")


# -- batches --------------------------------------------------------------------------------
def test_ten_thousand_texts(classifiers):
    """The SDK chunks 10,000 texts by max_batch_size and answers each; raw, Triton refuses the batch."""
    served, client = classifiers
    texts = [f"review {i}: " + ("good " if i % 3 else "bad ") * (1 + i % 11) for i in range(10_000)]
    got = client.classify("bert-single", texts)
    assert len(got) == len(texts)
    sample = [0, 1, 31, 32, 33, 4_999, 9_998, 9_999]
    expected = classification_oracle(served.checkpoints["bert-single"], [texts[i] for i in sample])
    for i, want in zip(sample, expected):
        alone = client.classify("bert-single", texts[i])
        assert_same_labels(got[i], [r.to_dict() for r in alone], f"item {i} vs alone")
        assert_same_labels(got[i], want, f"item {i} vs pipeline")

    raw, http = _grpc(served), _http(served)
    max_batch = raw.get_model_config("bert-single", as_json=True)["config"]["max_batch_size"]
    for message in (grpc_error(lambda: raw.infer("bert-single", [grpc_input("TEXT", texts_array(texts))])),
                    http_error(lambda: http.infer("bert-single", [http_input("TEXT", texts_array(texts))]))):
        assert f"batch-size must be <= {max_batch}" in message, message
    still_serving(served.url)


def test_empty_batch_is_refused(classifiers, ner, qa):
    """A [0, 1] tensor: Triton itself refuses it before any step runs (INVALID_ARG)."""
    empty = np.empty((0, 1), dtype=object)
    cases = [
        (classifiers[0], "bert-single", lambda m: [m("TEXT", empty)], "'TEXT'"),
        (ner[0], "ner-bert", lambda m: [m("TEXT", empty)], "'TEXT'"),
        (qa[0], "qa-bert", lambda m: [m("QUESTION", empty), m("CONTEXT", empty)], "'QUESTION'"),
    ]
    for served, model, inputs, name in cases:
        for message in (grpc_error(lambda: _grpc(served).infer(model, inputs(grpc_input))),
                        http_error(lambda: _http(served).infer(model, inputs(http_input)))):
            assert name in message or "'CONTEXT'" in message, message
        still_serving(served.url)


# -- not strings at all ---------------------------------------------------------------------
def test_non_string_items(classifiers, ner, qa):
    (served_c, client_c), (_, client_n), (served_q, client_q) = classifiers, ner, qa
    for texts in (12345, [1, "a"], ["a", None], 3.5, {"text": "a"}):
        with pytest.raises(InvalidInput):
            client_c.classify("bert-single", texts)
    for texts in (12345, ["John", 7]):
        with pytest.raises(InvalidInput):
            client_n.extract_entities("ner-bert", texts)
    with pytest.raises(InvalidInput):
        client_q.answer("qa-bert", question=5, context="text")
    with pytest.raises(InvalidInput):
        client_q.answer("qa-bert", question=["Who?", None], context=["a", "b"])

    for served, model, name in ((served_c, "bert-single", "TEXT"), (served_q, "qa-bert", "QUESTION")):
        for array, datatype in ((np.array([[12345]], dtype=np.int64), "INT64"),
                                (np.array([[1.5]], dtype=np.float32), "FP32")):
            def inputs(module):
                given = [module(name, array, datatype)]
                return given + ([module("CONTEXT", texts_array(["ctx"]))] if model == "qa-bert" else [])

            for message in (grpc_error(lambda: _grpc(served).infer(model, inputs(grpc_input))),
                            http_error(lambda: _http(served).infer(model, inputs(http_input)))):
                assert f"'{name}'" in message and datatype in message and "BYTES" in message, message
        still_serving(served.url)


# -- straight to the encoder ----------------------------------------------------------------
class Encoder:
    """An encoder model of a fixture, called with raw tensors, and its limits from its config."""

    def __init__(self, served, model):
        self.served, self.model = served, model
        self.raw = _grpc(served)
        config = self.raw.get_model_config(model, as_json=True)["config"]
        self.inputs = {i["name"]: i for i in config["input"]}
        self.rank = len(config["input"][0]["dims"]) + 1  # with the batch axis
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        self.vocab_size = int(params["tritonize.vocab_size"])
        self.max_positions = int(params["tritonize.max_positions"])

    def tensors(self, ids, mask=None, types=None):
        ids = np.asarray(ids, dtype=np.int64)
        while ids.ndim < self.rank:
            ids = ids[None]
        mask = np.ones_like(ids) if mask is None else np.asarray(mask)
        types = np.zeros_like(ids) if types is None else np.asarray(types)
        by_name = {"INPUT_IDS": ids, "ATTENTION_MASK": mask, "TOKEN_TYPE_IDS": types}
        return {name: by_name[name] for name in self.inputs}

    def infer(self, tensors, datatype="INT64"):
        inputs = [grpc_input(name, array, datatype) for name, array in tensors.items()]
        return self.raw.infer(self.model, inputs).as_numpy(self.output)

    @property
    def output(self):
        return "LOGITS" if "LOGITS" in self.outputs else sorted(self.outputs)[0]

    @functools.cached_property
    def outputs(self):
        return [o["name"] for o in self.raw.get_model_config(self.model, as_json=True)["config"]["output"]]


def _torch_logits(checkpoint, task, ids, output="logits"):
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification, \
        AutoModelForTokenClassification

    loader = {"text-classification": AutoModelForSequenceClassification,
              "token-classification": AutoModelForTokenClassification,
              "question-answering": AutoModelForQuestionAnswering}[task]
    model = _torch_model(loader, str(checkpoint))
    with torch.no_grad():
        result = model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return getattr(result, output)[0].numpy()


@functools.lru_cache(maxsize=None)
def _torch_model(loader, checkpoint):
    return loader.from_pretrained(checkpoint).eval()


ENCODERS = [("classifiers", "bert-single", "bert-single", "text-classification"),
            ("classifiers", "roberta-single", "roberta-single", "text-classification"),
            ("ner", "ner-bert", "bert", "token-classification"),
            ("ner", "ner-xlm-roberta", "xlm-roberta", "token-classification"),
            ("qa", "qa-deberta-v2", "deberta-v2", "question-answering")]


@pytest.mark.parametrize("fixture, model, checkpoint_key, task", ENCODERS, ids=[e[1] for e in ENCODERS])
def test_encoder_refuses_bad_tensors(request, fixture, model, checkpoint_key, task):
    served, _ = request.getfixturevalue(fixture)
    encoder = Encoder(served, f"{model}_encoder")
    good = [2, 17, 45, 99, 3]
    valid = encoder.tensors(good)

    # a good request first: the encoder answers what PyTorch answers on the same ids
    if task != "question-answering":
        got = encoder.infer(valid).reshape(-1)
        want = _torch_logits(served.checkpoints[checkpoint_key], task, good).reshape(-1)
        np.testing.assert_allclose(got, want, atol=TOLERANCE)

    # the wrong dtype: Triton refuses it
    message = grpc_error(lambda: encoder.infer({k: v.astype(np.int32) for k, v in valid.items()}, "INT32"))
    assert "INT32" in message and "INT64" in message, message

    # ids outside the vocabulary, either side
    for bad_id in (encoder.vocab_size, encoder.vocab_size + 10_000, -1, -(2 ** 40)):
        message = grpc_error(lambda: encoder.infer(encoder.tensors([2, 17, bad_id, 3])))
        assert "'INPUT_IDS'" in message and str(bad_id) in message, message
        assert f"[0, {encoder.vocab_size})" in message and "vocabulary size" in message, message

    # longer than the position embeddings
    assert encoder.max_positions in (512, 514)
    length = max(600, encoder.max_positions + 1)
    message = grpc_error(lambda: encoder.infer(encoder.tensors(np.full(length, 17))))
    assert f"{length} tokens" in message and f"at most {encoder.max_positions}" in message, message

    # shapes that disagree, a mask that is not 0/1, no tokens at all, a token type out of range
    message = grpc_error(lambda: encoder.infer({**valid, "ATTENTION_MASK": valid["ATTENTION_MASK"][..., :3]}))
    assert "'ATTENTION_MASK'" in message and "same shape" in message, message
    message = grpc_error(lambda: encoder.infer({**valid, "ATTENTION_MASK": valid["ATTENTION_MASK"] * 2}))
    assert "'ATTENTION_MASK'" in message and "0 and 1" in message, message
    message = grpc_error(lambda: encoder.infer({k: v[..., :0] for k, v in valid.items()}))
    assert "no tokens" in message, message
    if "TOKEN_TYPE_IDS" in encoder.inputs:
        message = grpc_error(lambda: encoder.infer({**valid, "TOKEN_TYPE_IDS": valid["TOKEN_TYPE_IDS"] + 7}))
        assert "'TOKEN_TYPE_IDS'" in message, message
    # a missing input, a tensor of the wrong rank: Triton's own checks
    grpc_error(lambda: encoder.raw.infer(encoder.model, [grpc_input("INPUT_IDS", valid["INPUT_IDS"], "INT64")]))
    grpc_error(lambda: encoder.infer({k: v[..., None] for k, v in valid.items()}))

    # still serving, with the same answer
    np.testing.assert_allclose(encoder.infer(valid), encoder.infer(valid), atol=1e-6)
    still_serving(served.url)


def _batch_stats(raw, model):
    stats = raw.get_inference_statistics(model_name=model, as_json=True)["model_stats"][0]
    sizes = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0)), sizes


def test_a_bad_tensor_batched_with_good_ones_fails_alone(classifiers):
    """20 valid requests and one with an id outside the vocabulary, sent at once to the encoder.

    Every valid request is a batch of 2 sequences and the bad one a batch of 3, so the sizes of the
    batches that Triton's dynamic batcher formed (the statistics API's ``batch_stats``) prove where
    the bad one went: the one execution of odd size holds it, and it shared that execution with
    valid requests when that size is more than 3. The burst is sent again until that happens.
    """
    served, _ = classifiers
    encoder = Encoder(served, "bert-single_encoder")
    rng = np.random.RandomState(7)
    goods = [rng.randint(5, encoder.vocab_size, size=(2, 8)) for _ in range(20)]
    for ids in goods:
        ids[:, 0], ids[:, -1] = 2, 3
    bad = rng.randint(5, encoder.vocab_size, size=(3, 8))
    bad[1, 4] = encoder.vocab_size + 5
    alone = [encoder.infer(encoder.tensors(ids)) for ids in goods]
    order = goods[:10] + [bad] + goods[10:]

    def send(ids, callback):
        inputs = [grpc_input(name, array, "INT64") for name, array in encoder.tensors(ids).items()]
        encoder.raw.async_infer(encoder.model, inputs, callback=callback)

    shared = None
    for attempt in range(10):
        before = _batch_stats(encoder.raw, encoder.model)
        results, done = {}, threading.Semaphore(0)

        def callback(key):
            def call(result, error):  # tritonclient passes these two by name
                results[key] = (None if result is None else result.as_numpy("LOGITS"), error)
                done.release()
            return call

        for k, ids in enumerate(order):
            send(ids, callback(k))
        for _ in order:
            assert done.acquire(timeout=60), "a request was never answered"
        after = _batch_stats(encoder.raw, encoder.model)

        # the bad one alone is refused, with a clean message; every valid one gets what it gets alone
        output, error = results.pop(10)
        assert output is None and error is not None
        assert str(error.status()) == GRPC_INVALID, error
        assert "'INPUT_IDS'" in error.message() and "vocabulary size" in error.message(), error.message()
        assert_clean(error.message())
        for k, (output, error) in results.items():
            assert error is None, (k, error)
            np.testing.assert_allclose(output, alone[k if k < 10 else k - 1], atol=1e-5)

        inferences, executions = after[0] - before[0], after[1] - before[1]
        assert inferences == 2 * len(goods) + 3
        sizes = {size: count - before[2].get(size, 0) for size, count in after[2].items()
                 if count - before[2].get(size, 0)}
        odd = [size for size, count in sizes.items() for _ in range(count) if size % 2]
        assert len(odd) == 1, sizes  # exactly one execution held the 3-sequence request
        if executions < len(order) and odd[0] > 3:
            shared = (attempt, sizes)
            break
    assert shared, f"the bad request never shared an execution with valid ones: {sizes}"
    still_serving(served.url)


# -- question length and request parameters -------------------------------------------------
def test_over_long_question_is_refused(qa):
    served, client = qa
    raw, http = _grpc(served), _http(served)
    for model in ("qa-bert", "qa-small-windows", "qa-roberta"):
        limit = int(config_parameter(raw, step_model(model, "tokenizer"), "tritonize.max_question_len"))
        question = " ".join(["why"] * (limit + 20)) + "?"
        inputs = lambda m: [m("QUESTION", texts_array([question])), m("CONTEXT", texts_array(["Short."]))]  # noqa
        for message in (grpc_error(lambda: raw.infer(model, inputs(grpc_input))),
                        http_error(lambda: http.infer(model, inputs(http_input)))):
            assert "'QUESTION'[0]" in message and f"the limit is {limit}" in message, message
            assert "--max-question-len" in message
        with pytest.raises(InvalidInput, match=f"the limit is {limit}"):
            client.answer(model, question=question, context="Short.")
    still_serving(served.url)


BAD_PARAMETERS = [
    ("ner", "ner-bert", {"aggregation_strategy": "bogus"}, "aggregation_strategy"),
    ("ner", "ner-roberta", {"aggregation_strategy": ""}, "aggregation_strategy"),
    ("ner", "ner-bert", {"ignore_labels": "not json"}, "ignore_labels"),
    ("ner", "ner-bert", {"ignore_labels": "[1, 2]"}, "ignore_labels"),
    ("ner", "ner-bert", {"ignore_labels": '{"O": 1}'}, "ignore_labels"),
    ("qa", "qa-bert", {"top_k": 0}, "top_k"),
    ("qa", "qa-bert", {"top_k": -3}, "top_k"),
    ("qa", "qa-bert", {"top_k": "x"}, "top_k"),
    ("qa", "qa-bert", {"handle_impossible_answer": "maybe"}, "handle_impossible_answer"),
    ("qa", "qa-bert", {"max_answer_len": 0}, "max_answer_len"),
]


@pytest.mark.parametrize("fixture, model, parameters, name", BAD_PARAMETERS,
                         ids=[f"{m}-{list(p.items())[0]}" for _, m, p, _ in BAD_PARAMETERS])
def test_bad_request_parameters(request, fixture, model, parameters, name):
    served, _ = request.getfixturevalue(fixture)
    if model.startswith("ner"):
        inputs = lambda m: [m("TEXT", texts_array(["John Smith works at Acme."]))]  # noqa: E731
    else:
        inputs = lambda m: [m("QUESTION", texts_array(["Who?"])),  # noqa: E731
                            m("CONTEXT", texts_array(["John Smith works at Acme."]))]
    for message in (grpc_error(lambda: _grpc(served).infer(model, inputs(grpc_input), parameters=parameters)),
                    http_error(lambda: _http(served).infer(model, inputs(http_input), parameters=parameters))):
        assert f"request parameter {name}" in message, message
    # the same request without them is answered
    assert _grpc(served).infer(model, inputs(grpc_input)).as_numpy("COUNT").shape == (1, 1)


def test_bad_parameters_through_the_sdk(ner, qa):
    _, client_n = ner
    _, client_q = qa
    with pytest.raises(InvalidInput, match="aggregation_strategy"):
        client_n.extract_entities("ner-bert", "John", aggregation_strategy="bogus")
    for kwargs in ({"top_k": 0}, {"top_k": "x"}):
        with pytest.raises(InvalidInput, match="top_k"):
            client_q.answer("qa-bert", question="Who?", context="John.", **kwargs)


# -- scripts --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [f"{arch}-single" for arch in ARCHITECTURES])
def test_rtl_and_zalgo_classify_as_the_pipeline(classifiers, name):
    served, client = classifiers
    expected = classification_oracle(served.checkpoints[name], RTL_AND_ZALGO)
    for text, got, want in zip(RTL_AND_ZALGO, client.classify(name, RTL_AND_ZALGO), expected):
        assert_same_labels(got, want, f"{name} on {text[:20]!r}")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_rtl_and_zalgo_find_what_the_pipeline_finds(ner, arch):
    served, client = ner
    for strategy in ("simple", "first"):
        got = client.extract_entities(f"ner-{arch}", RTL_AND_ZALGO, aggregation_strategy=strategy)
        for text, entities in zip(RTL_AND_ZALGO, got):
            assert_same_entities(entities, ner_oracle(served.checkpoints[arch], text, strategy),
                                 f"{arch}/{strategy} on {text[:20]!r}")


# -- and afterwards -------------------------------------------------------------------------
NORMAL_TEXT = "John Smith loved the service at Acme Corporation in New York."
QUESTION, CONTEXT = "Where does John work?", "John Smith works at Acme Corporation in New York since 2019."


def _ensembles(served):
    raw = _grpc(served)
    names = [m["name"] for m in raw.get_model_repository_index(as_json=True)["models"]]
    return sorted(n for n in names if not n.endswith(("_tokenizer", "_encoder", "_postprocess", "_pipeline")))


def test_every_model_still_answers_as_the_pipeline(classifiers, ner, qa):
    (served_c, client_c), (served_n, client_n), (served_q, client_q) = classifiers, ner, qa

    names = _ensembles(served_c)
    assert set(names) >= set(CLASSIFIERS) | {"bert-short"}
    for name in names:
        if name == "bert-short":
            want = classification_oracle(served_c.checkpoints["bert-single"], [NORMAL_TEXT], max_length=16)[0]
        else:
            want = classification_oracle(served_c.checkpoints[name], [NORMAL_TEXT])[0]
        assert_same_labels(client_c.classify(name, NORMAL_TEXT), want, name)

    names = _ensembles(served_n)
    assert set(names) >= {f"ner-{arch}" for arch in ARCHITECTURES} | {"ner-short"}
    for name in names:
        if name == "ner-short":
            want = ner_oracle(served_n.checkpoints["roberta"], NORMAL_TEXT, "first", max_length=24, stride=6)
        else:
            want = ner_oracle(served_n.checkpoints[name[len("ner-"):]], NORMAL_TEXT)
        assert_same_entities(client_n.extract_entities(name, NORMAL_TEXT), want, name)

    names = _ensembles(served_q)
    assert set(names) >= {f"qa-{arch}" for arch in QA_ARCHITECTURES} | {"qa-small-windows"}
    for name in names:
        if name == "qa-small-windows":
            want = qa_oracle(served_q.checkpoints["bert"], QUESTION, CONTEXT, max_length=48,
                             max_seq_len=48, doc_stride=16)
        else:
            want = qa_oracle(served_q.checkpoints[name[len("qa-"):]], QUESTION, CONTEXT)
        assert_same_answers(client_q.answer(name, question=QUESTION, context=CONTEXT), want, name)

    import urllib.request

    for served in (served_c, served_n, served_q):
        with urllib.request.urlopen(f"http://{served.server.http_url}/v2/health/ready", timeout=10) as response:
            assert response.status == 200
        assert served.server.is_running()
