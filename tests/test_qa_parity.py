"""A real tritonserver answers as ``pipeline("question-answering")`` does.

Every window of every pair is scored; answers align to words as the
pipeline's do; the same text found twice adds up; the null answer competes
when asked. Compared on every architecture: answer text, start and end
identical, scores within 1e-4.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import pytest
import tritonclient.grpc as grpcclient

from conftest import NO_QA_EXPORT, QA_ARCHITECTURES, tiny_qa
from tritonize.client import Answer, Client, InvalidInput, TritonizeError

pytestmark = pytest.mark.server

TOLERANCE = 1e-4

SHORT = "The order ORD-58213-KX was shipped to Berlin on May 3, 2024 and delivered to Café Müller."
TWICE = ("The refund of $89.00 was approved. Later, the bank confirmed the refund of $89.00 "
         "reached card 4242 in Zürich.")
LONG = (" ".join(f"Paragraph {i}: the customer wrote again about the delayed parcel and the support team replied."
                 for i in range(90))
        + " Finally, the amount charged was $1,249.99 at Northwind Traders in Toronto.")
CASES = [
    ("Where was the order shipped?", SHORT),
    ("How much was refunded?", TWICE),
    ("How much was charged in the end?", LONG),
    ("What is the capital of Mars?", "x"),
    ("Who?", "東京 and 北京 🌸 naïve   façade\n\nnewlines"),
]


def _pipeline(checkpoint):
    from transformers import pipeline

    return pipeline("question-answering", model=str(checkpoint), device="cpu")


def _listify(result):
    return result if isinstance(result, list) else [result]


def _assert_same(got, expected, context):
    got = [a.to_dict() for a in _listify(got)]
    expected = _listify(expected)
    assert [(g["answer"], g["start"], g["end"]) for g in got] == [
        (e["answer"], e["start"], e["end"]) for e in expected
    ], context
    for g, e in zip(got, expected):
        assert math.isclose(g["score"], e["score"], abs_tol=TOLERANCE), (context, g, e)


@pytest.fixture(scope="module")
def client(served_qa):
    with Client(served_qa.url) as client:
        yield client


@pytest.mark.parametrize("arch", QA_ARCHITECTURES)
def test_matches_pipeline(served_qa, client, arch):
    pipe = _pipeline(served_qa.checkpoints[arch])
    assert len(pipe.tokenizer(LONG)["input_ids"]) > 1000
    variants = ({"top_k": 3}, {"handle_impossible_answer": True}, {"max_answer_len": 3})
    for index, (question, context) in enumerate(CASES):
        # the defaults, and one of the request options in turn
        for kwargs in ({}, variants[(index + QA_ARCHITECTURES.index(arch)) % len(variants)]):
            got = client.answer(f"qa-{arch}", question=question, context=context, **kwargs)
            _assert_same(got, pipe(question=question, context=context, **kwargs),
                         f"{arch} {kwargs} on {question!r}")
            if kwargs.get("top_k", 1) == 1:
                assert isinstance(got, Answer)


def test_batch_of_pairs_answers_every_item(served_qa, client):
    """Not only the first item of a batch: each pair of one request gets its own answer."""
    pipe = _pipeline(served_qa.checkpoints["roberta"])
    questions = [q for q, _ in CASES]
    contexts = [c for _, c in CASES]
    got = client.answer("qa-roberta", question=questions, context=contexts)
    assert len(got) == len(CASES)
    for (question, context), answer in zip(CASES, got):
        _assert_same(answer, pipe(question=question, context=context), question)
        assert context[answer.start:answer.end] == answer.answer


def test_last_window_answer_and_offsets(served_qa, client):
    """The answer in the last of many windows is found, and its offsets point into the context."""
    pipe = _pipeline(served_qa.checkpoints["bert"])
    pipe.tokenizer.model_max_length = 48
    question = "How much was charged in the end?"
    got = client.answer("qa-small-windows", question=question, context=LONG, top_k=5)
    expected = pipe(question=question, context=LONG, top_k=5, max_seq_len=48, doc_stride=16)
    _assert_same(got, expected, "small windows")
    for answer in got:
        assert LONG[answer.start:answer.end] == answer.answer


def test_unanswerable_with_and_without_null_answer(served_qa, client):
    pipe = _pipeline(served_qa.checkpoints["electra"])
    question, context = "What is the capital of Mars?", "The parcel was left at the door."
    for flag in (True, False):
        got = client.answer("qa-electra", question=question, context=context, handle_impossible_answer=flag, top_k=60)
        _assert_same(got, pipe(question=question, context=context, handle_impossible_answer=flag, top_k=60), flag)
        # the null answer (start 0, end 0, a real probability) competes only when asked for
        assert any(a.answer == "" and a.score > 0 for a in got) is flag


def test_32_concurrent_requests_of_mixed_lengths(served_qa, client):
    pipe = _pipeline(served_qa.checkpoints["deberta-v2"])
    cases = [(q, c[: 40 + (i * 997) % len(c)] if len(c) > 40 else c) for i, (q, c) in enumerate(CASES * 7)][:32]
    expected = [pipe(question=q, context=c) for q, c in cases]
    stats = grpcclient.InferenceServerClient(served_qa.url)
    before = stats.get_inference_statistics("qa-deberta-v2_encoder", as_json=True)["model_stats"][0]

    def call(case):
        with Client(served_qa.url) as own:
            return own.answer("qa-deberta-v2", question=case[0], context=case[1])

    with ThreadPoolExecutor(max_workers=32) as pool:
        got = list(pool.map(call, cases))
    after = stats.get_inference_statistics("qa-deberta-v2_encoder", as_json=True)["model_stats"][0]
    for case, answer, want in zip(cases, got, expected):
        _assert_same(answer, want, case[0])
    requests = int(after["inference_count"]) - int(before.get("inference_count", 0))
    executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
    assert requests == 32 and executions < requests, (requests, executions)


def test_bad_inputs(served_qa, client):
    with pytest.raises(InvalidInput, match="same length"):
        client.answer("qa-bert", question=["a", "b"], context=["c"])
    with pytest.raises(InvalidInput, match="top_k must be a positive int"):
        client.answer("qa-bert", question="a", context="b", top_k=0)
    long_question = " ".join(["why"] * 100) + "?"
    with pytest.raises(TritonizeError, match=r"'QUESTION'\[0\] has \d+ tokens; the limit is 64"):
        client.answer("qa-bert", question=long_question, context="short context")
    assert client.answer("qa-bert", question="Where?", context=SHORT).answer  # the server is still up


@pytest.mark.parametrize("arch", NO_QA_EXPORT)
def test_export_without_an_onnx_qa_head_fails_clearly(tmp_path, arch):
    """transformers has a QA head for it (the pipeline answers); optimum cannot export it: a clear error, not a
    traceback, and nothing written."""
    import subprocess
    import sys

    checkpoint = tiny_qa(arch)
    answer = _pipeline(checkpoint)(question="Where was the order shipped?", context=SHORT)
    assert SHORT[answer["start"]:answer["end"]] == answer["answer"]  # a real QA checkpoint, not a broken one
    repository = tmp_path / "model_repository"
    result = subprocess.run(
        [sys.executable, "-m", "tritonize.cli", "export", str(checkpoint), "--task", "question-answering",
         "--name", f"qa-{arch}", "--repository", str(repository)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("tritonize: error: "), result.stderr
    assert f"architecture {arch!r} has no ONNX export for question-answering" in error
    assert "ForQuestionAnswering" in error and "text-classification" in error and "token-classification" in error
    assert not (repository / f"qa-{arch}").exists()
