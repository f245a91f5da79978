"""SDK errors name the model, the server and the cause; wrong arguments never reach the server."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import pytest
from tritonclient.utils import InferenceServerException

from conftest import tiny_classifier
from tritonize.client import (
    AsyncClient,
    Client,
    DeadlineExceeded,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    RetryPolicy,
    ServerUnavailable,
    TaskMismatch,
    TritonizeError,
)
from tritonize.client.errors import translate_error
from tritonize.client.retry import NO_RETRY, WINDOW_WITHOUT_DEADLINE
from tritonize.deploy import LocalServer, free_port

server = pytest.mark.server

CLIENTS = ["sync", "async"]


def call(kind, url, method, *args, client_options=None, **kwargs):
    """``Client(url).method(*args, **kwargs)``, or the same through ``AsyncClient``."""
    options = {"timeout": 10, **(client_options or {})}
    if kind == "sync":
        with Client(url, **options) as client:
            return getattr(client, method)(*args, **kwargs)

    async def run():
        async with AsyncClient(url, **options) as client:
            return await getattr(client, method)(*args, **kwargs)

    return asyncio.run(run())


@server
def test_unreachable_server_names_the_url():
    url = f"127.0.0.1:{free_port()}"
    with Client(url, timeout=5) as client:
        with pytest.raises(ServerUnavailable, match=url):
            client.classify("anything", "hello")
        assert client.is_live() is False


@server
def test_missing_model(served_classifiers):
    with Client(served_classifiers.url) as client:
        with pytest.raises(ModelNotFound, match="'no-such-model'") as caught:
            client.classify("no-such-model", "hello")
    assert served_classifiers.url in str(caught.value)
    assert isinstance(caught.value, TritonizeError)


@server
def test_a_step_is_not_a_classifier(served_classifiers):
    with Client(served_classifiers.url) as client:
        with pytest.raises(TaskMismatch, match="encoder step"):
            client.classify("bert-single_encoder", "hello")


@server
@pytest.mark.parametrize("texts, top_k, message", [
    (["ok", 3], None, r"texts\[1\] must be a str"),
    ("ok", 0, "top_k must be a positive int"),
])
def test_bad_arguments(served_classifiers, texts, top_k, message):
    with Client(served_classifiers.url) as client:
        with pytest.raises(InvalidInput, match=message):
            client.classify("bert-single", texts, top_k=top_k)


# -- every wrong argument of every method is an InvalidInput that names it ---------------------------------
# (fixture that serves the model, method, positional args, keyword args, what the message says)
BAD_CALLS = [
    # classify
    ("served_classifiers", "classify", ("bert-single", 12345), {},
     r"^texts must be a str or a list of str, got int$"),
    ("served_classifiers", "classify", ("bert-single", None), {}, r"^texts is required"),
    ("served_classifiers", "classify", ("bert-single", ["ok", 3]), {}, r"^texts\[1\] must be a str, got int$"),
    ("served_classifiers", "classify", ("bert-single", ["ok", b"raw"]), {},
     r"^texts\[1\] must be a str, got bytes; decode it"),
    ("served_classifiers", "classify", ("bert-single", b"raw"), {},
     r"^texts must be a str or a list of str, got bytes; decode it"),
    ("served_classifiers", "classify", ("bert-single", "ab\ud800cd"), {},
     r"^texts contains a lone surrogate at position 2 \(U\+D800\); "),
    ("served_classifiers", "classify", ("bert-single", ["fine", "fine", "x\udfffy"]), {},
     r"^texts\[2\] contains a lone surrogate at position 1 \(U\+DFFF\); "),
    ("served_classifiers", "classify", ("bert-single", {"a"}), {}, r"^texts must be .*, got set; it has no order"),
    ("served_classifiers", "classify", ("bert-single", {"a": 1}), {}, r"^texts must be .*, got dict$"),
    ("served_classifiers", "classify", ("bert-single", "ok"), {"top_k": 0}, r"^top_k must be a positive int, got 0$"),
    ("served_classifiers", "classify", ("bert-single", "ok"), {"top_k": "2"}, r"^top_k must be a positive int"),
    ("served_classifiers", "classify", ("", "ok"), {}, r"^model must be a non-empty str .*, got ''$"),
    ("served_classifiers", "classify", (None, "ok"), {}, r"^model must be a non-empty str .*, got None$"),
    ("served_classifiers", "classify", (7, "ok"), {}, r"^model must be a non-empty str .*, got int$"),
    ("served_classifiers", "classify", ("bert-single", "ok"), {"timeout": 0},
     r"^timeout must be a positive number of seconds or None, got 0$"),
    ("served_classifiers", "classify", ("bert-single", "ok"), {"timeout": -1.5}, r"^timeout must be .*, got -1.5$"),
    ("served_classifiers", "classify", ("bert-single", "ok"), {"timeout": "5"}, r"^timeout must be .*, got str$"),
    ("served_classifiers", "classify", ("bert-single", "ok"), {"timeout": float("nan")},
     r"^timeout must be .*, got nan$"),
    # a wrong argument is refused before the model is looked up
    ("served_classifiers", "classify", ("no-such-model", 12345), {}, r"^texts must be a str or a list of str"),
    # extract_entities
    ("served_ner", "extract_entities", ("ner-bert", 12345), {}, r"^texts must be a str or a list of str, got int$"),
    ("served_ner", "extract_entities", ("ner-bert", None), {}, r"^texts is required"),
    ("served_ner", "extract_entities", ("ner-bert", ["ok", None]), {}, r"^texts\[1\] must be a str, got NoneType$"),
    ("served_ner", "extract_entities", ("ner-bert", [b"raw"]), {}, r"^texts\[0\] must be a str, got bytes; decode"),
    ("served_ner", "extract_entities", ("ner-bert", ["Anna \ud83d lives here"]), {},
     r"^texts\[0\] contains a lone surrogate at position 5 "),
    ("served_ner", "extract_entities", ("ner-bert", "ok"), {"aggregation_strategy": "bogus"},
     r"^aggregation_strategy must be one of .*, got 'bogus'$"),
    ("served_ner", "extract_entities", ("", "ok"), {}, r"^model must be a non-empty str"),
    ("served_ner", "extract_entities", ("ner-bert", "ok"), {"timeout": -1}, r"^timeout must be a positive number"),
    # answer
    ("served_qa", "answer", ("qa-bert",), {"question": None, "context": "some context"}, r"^question is required"),
    ("served_qa", "answer", ("qa-bert",), {"question": "why?", "context": None}, r"^context is required"),
    ("served_qa", "answer", ("qa-bert",), {"question": 12, "context": "c"},
     r"^question must be a str or a list of str, got int$"),
    ("served_qa", "answer", ("qa-bert",), {"question": ["a?", 2], "context": "c"},
     r"^question\[1\] must be a str, got int$"),
    ("served_qa", "answer", ("qa-bert",), {"question": "a?", "context": [b"raw"]},
     r"^context\[0\] must be a str, got bytes; decode"),
    ("served_qa", "answer", ("qa-bert",), {"question": "a?", "context": "c\ud800"},
     r"^context contains a lone surrogate at position 1 "),
    ("served_qa", "answer", ("qa-bert",), {"question": ["a?", "\udc80b?"], "context": "c"},
     r"^question\[1\] contains a lone surrogate at position 0 "),
    ("served_qa", "answer", ("qa-bert",), {"question": ["a", "b"], "context": ["c"]}, "same length"),
    ("served_qa", "answer", ("qa-bert",), {"question": "a", "context": "b", "top_k": 0},
     r"^top_k must be a positive int, got 0$"),
    ("served_qa", "answer", ("qa-bert",), {"question": "a", "context": "b", "top_k": None},
     r"^top_k must be a positive int, got None$"),
    ("served_qa", "answer", ("qa-bert",), {"question": "a", "context": "b", "max_answer_len": 0},
     r"^max_answer_len must be a positive int"),
    ("served_qa", "answer", ("qa-bert",), {"question": "a", "context": "b", "handle_impossible_answer": "yes"},
     r"^handle_impossible_answer must be a bool or None, got str$"),
    ("served_qa", "answer", ("",), {"question": "a", "context": "b"}, r"^model must be a non-empty str"),
    ("served_qa", "answer", ("qa-bert",), {"question": "a", "context": "b", "timeout": 0}, r"^timeout must be"),
    # the server and model methods
    ("served_classifiers", "model_info", ("",), {}, r"^model must be a non-empty str"),
    ("served_classifiers", "model_info", ("bert-single",), {"timeout": -1}, r"^timeout must be"),
    ("served_classifiers", "is_ready", ("",), {}, r"^model must be a non-empty str"),
    ("served_classifiers", "is_ready", (), {"timeout": 0}, r"^timeout must be"),
    ("served_classifiers", "is_live", (), {"timeout": -3}, r"^timeout must be"),
    ("served_classifiers", "list_models", (), {"timeout": 0}, r"^timeout must be"),
]


def _case_id(case):
    _, method, args, kwargs, _ = case
    shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{method}({', '.join(shown)})"


@server
@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("fixture, method, args, kwargs, message", BAD_CALLS, ids=[_case_id(c) for c in BAD_CALLS])
def test_every_wrong_argument_is_invalid_input_naming_it(request, kind, fixture, method, args, kwargs, message):
    served = request.getfixturevalue(fixture)
    with pytest.raises(InvalidInput, match=message) as caught:
        call(kind, served.url, method, *args, **kwargs)
    assert type(caught.value) is InvalidInput  # not a TaskMismatch, nor a raw TypeError or UnicodeEncodeError


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("method, args, kwargs", [
    ("classify", ("m", ["ok", 3]), {}),
    ("classify", ("m", "ab\ud800cd"), {}),
    ("extract_entities", ("m", None), {}),
    ("answer", ("m",), {"question": None, "context": "c"}),
    ("classify", ("", "ok"), {}),
    ("classify", ("m", "ok"), {"timeout": -1}),
])
def test_wrong_arguments_are_refused_before_anything_is_sent(kind, method, args, kwargs):
    """Against an address where nothing listens: InvalidInput at once, not ServerUnavailable after retries."""
    url = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(InvalidInput):
        call(kind, url, method, *args, client_options={"timeout": 30}, **kwargs)
    assert time.monotonic() - started < 2.0


@server
@pytest.mark.parametrize("kind", CLIENTS)
def test_the_server_still_answers_after_wrong_arguments(served_classifiers, kind):
    for texts in (12345, ["ok", b"raw"], "ab\ud800cd", None):
        with pytest.raises(InvalidInput):
            call(kind, served_classifiers.url, "classify", "bert-single", texts)
    assert len(call(kind, served_classifiers.url, "classify", "bert-single", ["still", "up"])) == 2


@server
@pytest.mark.parametrize("kind", CLIENTS)
def test_empty_lists_give_empty_lists(served_classifiers, served_ner, served_qa, kind):
    assert call(kind, served_classifiers.url, "classify", "bert-single", []) == []
    assert call(kind, served_classifiers.url, "classify", "bert-single", (), top_k=1) == []
    assert call(kind, served_ner.url, "extract_entities", "ner-bert", []) == []
    assert call(kind, served_qa.url, "answer", "qa-bert", question=[], context=[]) == []
    assert call(kind, served_qa.url, "answer", "qa-bert", question="Who?", context=[]) == []
    assert call(kind, served_qa.url, "answer", "qa-bert", question=[], context="one context", top_k=2) == []


@pytest.mark.parametrize("kind", CLIENTS)
def test_empty_lists_never_call_the_server(kind):
    url = f"127.0.0.1:{free_port()}"  # nothing listens here
    started = time.monotonic()
    assert call(kind, url, "classify", "m", []) == []
    assert call(kind, url, "extract_entities", "m", []) == []
    assert call(kind, url, "answer", "m", question=[], context=[]) == []
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("cls", [Client, AsyncClient], ids=["sync", "async"])
@pytest.mark.parametrize("kwargs, message", [
    ({"url": ""}, r"^url must be a non-empty str"),
    ({"url": None}, r"^url must be a non-empty str"),
    ({"timeout": 0}, r"^timeout must be a positive number of seconds or None, got 0$"),
    ({"timeout": -1}, r"^timeout must be .*, got -1$"),
    ({"timeout": "30"}, r"^timeout must be .*, got str$"),
    ({"retry": 3}, r"^retry must be a RetryPolicy, got int$"),
    ({"max_in_flight": 0}, r"^max_in_flight must be at least 1, got 0$"),
    ({"max_in_flight": "4"}, r"^max_in_flight must be at least 1, got '4'$"),
    ({"connection": {"ssl": True}}, r"^connection must be a Connection or None, got dict$"),
])
def test_client_settings_are_checked(cls, kwargs, message):
    kwargs = {"url": "localhost:8001", **kwargs}
    with pytest.raises(ValueError, match=message):
        cls(kwargs.pop("url"), **kwargs)


@server
def test_model_info_and_health(served_classifiers):
    with Client(served_classifiers.url) as client:
        assert client.is_live() and client.is_ready() and client.is_ready("bert-single")
        info = client.model_info("bert-single")
        assert info.task == "text-classification" and info.role == "ensemble"
        assert info.max_batch_size == 32
        assert client.classify("bert-single", []) == []


# -- the retry policy (no server) ---------------------------------------------------------------------------
RETRYABLE = ["StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED", "UNAVAILABLE"]
NOT_RETRYABLE = ["StatusCode.INVALID_ARGUMENT", "StatusCode.INTERNAL", "StatusCode.NOT_FOUND",
                 "StatusCode.PERMISSION_DENIED", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.UNKNOWN", "", None]


def ride(policy, status, deadline, try_cost=0.01, started=0.0, limit=100_000):
    """Simulate a call that fails with ``status`` on every try: the waits taken and when it gave up."""
    now, retry, waits = started, 0, []
    while True:
        now += try_cost  # the failed try itself, which the client bounds by the time left
        if deadline is not None:
            now = min(now, deadline)
        wait = policy.next_wait(status, retry, deadline, now, started)
        if wait is None:
            return waits, now
        assert wait >= 0
        if deadline is not None:
            assert now + wait < deadline, "a wait ran past the deadline"
        waits.append(wait)
        now += wait
        retry += 1
        assert retry < limit, "it never gave up"


@pytest.mark.parametrize("status", RETRYABLE)
@pytest.mark.parametrize("timeout", [2.0, 10.0, 30.0])
def test_the_default_policy_retries_until_the_deadline_never_past_it(status, timeout):
    policy = RetryPolicy()
    assert policy.attempts is None
    for _ in range(20):  # the waits are random: every draw keeps both promises
        waits, gave_up_at = ride(policy, status, deadline=timeout)
        assert gave_up_at <= timeout  # never past the deadline
        # it gave up only because the next wait would have crossed it, and no wait exceeds max_backoff
        assert timeout - gave_up_at <= policy.max_backoff
        assert len(waits) > 3  # the old default (attempts=4) gave up after 3 retries
        assert max(waits) <= policy.max_backoff


def test_the_default_policy_rides_a_ten_second_restart():
    """With the default client timeout (30 s), a server down for 10 s is retried long enough to come back."""
    policy = RetryPolicy()
    for _ in range(20):
        waits, gave_up_at = ride(policy, "StatusCode.UNAVAILABLE", deadline=30.0)
        assert gave_up_at > 29.0 - policy.max_backoff
        # once the server is back, the next try comes within max_backoff (+ the try itself)
        times, now = [], 0.0
        for wait in waits:
            now += 0.01 + wait
            times.append(now)
        assert all(b - a <= policy.max_backoff + 0.01 + 1e-9 for a, b in zip(times, times[1:]))
        assert any(t > 10.0 for t in times)


@pytest.mark.parametrize("attempts", [1, 2, 3, 7])
def test_attempts_caps_the_tries(attempts):
    for deadline in (None, 1e9):
        waits, _ = ride(RetryPolicy(attempts=attempts, initial_backoff=0.001, max_backoff=0.001),
                        "StatusCode.UNAVAILABLE", deadline=deadline)
        assert len(waits) == attempts - 1  # attempts counts the first try
    assert ride(NO_RETRY, "StatusCode.UNAVAILABLE", deadline=100.0)[0] == []


def test_a_cap_still_stops_at_the_deadline():
    waits, gave_up_at = ride(RetryPolicy(attempts=1000, initial_backoff=0.5, max_backoff=0.5),
                             "StatusCode.UNAVAILABLE", deadline=3.0)
    assert gave_up_at <= 3.0 and len(waits) < 1000


def test_no_deadline_and_no_cap_gives_up_after_the_window():
    for started in (0.0, 12345.0):
        waits, gave_up_at = ride(RetryPolicy(), "StatusCode.UNAVAILABLE", deadline=None, started=started)
        assert waits, "it retried"
        elapsed = gave_up_at - started  # the last try (0.01 s) may end past the window; no wait does
        assert WINDOW_WITHOUT_DEADLINE - RetryPolicy().max_backoff <= elapsed <= WINDOW_WITHOUT_DEADLINE + 0.01
        assert started + sum(waits) + 0.01 * len(waits) < started + WINDOW_WITHOUT_DEADLINE


@pytest.mark.parametrize("status", NOT_RETRYABLE)
@pytest.mark.parametrize("policy", [RetryPolicy(), RetryPolicy(attempts=10), NO_RETRY], ids=["default", "10", "1"])
def test_other_statuses_are_never_retried(policy, status):
    assert policy.next_wait(status, 0, None, 0.0) is None
    assert policy.next_wait(status, 0, 1e9, 0.0) is None
    assert not RetryPolicy.retryable(status)


def test_backoff_is_exponential_with_full_jitter_and_bounded():
    import random

    policy = RetryPolicy(initial_backoff=0.1, max_backoff=1.0, multiplier=2.0)
    rng = random.Random(7)
    for retry, cap in enumerate([0.1, 0.2, 0.4, 0.8, 1.0, 1.0]):
        draws = [policy.backoff(retry, rng) for _ in range(400)]
        assert all(0.0 <= d <= cap for d in draws)
        assert max(draws) > 0.9 * cap and min(draws) < 0.1 * cap  # full jitter: all of [0, cap]
    assert 0.0 <= policy.backoff(100_000, rng) <= 1.0  # hours of retries: no overflow
    assert RetryPolicy(initial_backoff=0.0).backoff(100_000, rng) == 0.0


@pytest.mark.parametrize("kwargs", [
    {"attempts": 0}, {"attempts": -1}, {"attempts": 1.5}, {"attempts": True}, {"attempts": "3"},
    {"initial_backoff": -0.1}, {"max_backoff": -1}, {"multiplier": 0.5}, {"max_backoff": float("inf")},
])
def test_retry_policy_settings_are_checked(kwargs):
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)


def test_retry_policy_keeps_its_cap_for_callers_that_set_one():
    assert NO_RETRY.attempts == 1
    assert RetryPolicy(attempts=max(1, 1)).attempts == 1  # how loadtest's --attempts (default 1) builds it
    assert RetryPolicy(attempts=5).next_wait("StatusCode.UNAVAILABLE", 3, None, 0.0) is not None
    assert RetryPolicy(attempts=5).next_wait("StatusCode.UNAVAILABLE", 4, None, 0.0) is None


# -- overload: Triton's queue policy sheds a request ------------------------------------------------------
# status and message as tritonserver 2.51 sends them (measured with max_queue_size and a queue timeout)
QUEUE_FULL = ("StatusCode.UNAVAILABLE", "in ensemble 'm', [request id: <id_unknown>] Exceeds maximum queue size")
QUEUE_TIMEOUT = ("StatusCode.UNAVAILABLE", "in ensemble 'm', Request timeout expired")


@pytest.mark.parametrize("status, message, why", [
    (*QUEUE_FULL, "queue is full"),
    (*QUEUE_TIMEOUT, "timed out in its queue"),
    ("StatusCode.INTERNAL", "Exceeds maximum queue size", "queue is full"),  # whatever status carries it
])
def test_a_shed_request_is_server_unavailable_and_retried(status, message, why):
    error = translate_error(InferenceServerException(message, status=status), "host:8001", "m")
    assert type(error) is ServerUnavailable
    assert "model 'm' on host:8001 is overloaded: " in str(error)
    assert why in str(error) and message in str(error)  # what happened, in our words and the server's
    assert RetryPolicy.retryable(error.status)
    assert RetryPolicy().next_wait(error.status, 0, 30.0, 0.0) is not None


@pytest.mark.parametrize("status, message, expected, retried", [
    ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", ServerUnavailable, True),
    ("StatusCode.UNAVAILABLE", "in ensemble 'm', Server is stopping, scheduler for model has stopped accepting "
     "new inference requests", ServerUnavailable, True),
    ("StatusCode.RESOURCE_EXHAUSTED", "too many requests", ServerUnavailable, True),
    ("StatusCode.NOT_FOUND", "Request for unknown model: 'x' is not found", ModelNotFound, False),
    ("StatusCode.NOT_FOUND", "Request for unknown model: 'x' has no available versions", ModelNotReady, True),
    ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded", DeadlineExceeded, False),
    ("StatusCode.INVALID_ARGUMENT", "unexpected shape for input 'TEXT'", InvalidInput, False),
    # a dead stub: `tritonize serve` reloads it within seconds, so it is worth retrying
    ("StatusCode.INTERNAL", "in ensemble 'x', Stub process 'x_encoder_0_0' is not healthy.", ModelNotReady, True),
    ("StatusCode.CANCELLED", "Channel closed!", TritonizeError, False),  # our own close()
])
def test_other_server_errors_keep_their_mapping(status, message, expected, retried):
    error = translate_error(InferenceServerException(message, status=status), "host:8001", "x")
    assert type(error) is expected and message in str(error)
    assert RetryPolicy.retryable(error.status) is retried


def test_a_call_the_stopping_server_cancelled_is_retried():
    """What a call in flight gets when tritonserver stops (seen in the restart test): retried, not raised."""
    error = translate_error(InferenceServerException("CANCELLED", status="StatusCode.CANCELLED"), "host:8001", "m")
    assert type(error) is ServerUnavailable and "stopping or restarting" in str(error)
    assert RetryPolicy.retryable(error.status)


def _export_with_a_tiny_queue(repository):
    """The tiny classifier, its encoder's queue capped at one request: real overload on a real server."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from tritonize.exporters.export import ExportOptions, export

    export(ExportOptions(str(tiny_classifier("bert-single")), "text-classification", "m", repository),
           stream=io.StringIO())
    path = repository / "m_pipeline" / "config.pbtxt"
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    config.dynamic_batching.default_queue_policy.max_queue_size = 1
    path.write_text(text_format.MessageToString(config))


@server
def test_a_full_queue_is_overload_and_the_default_policy_rides_it(tmp_path):
    repository = tmp_path / "repo"
    _export_with_a_tiny_queue(repository)
    texts = [("overloaded " * 60).strip()] * 8

    def flood(url, retry, callers=16, calls=3):
        answered, failed = [], []

        def caller():
            with Client(url, retry=retry) as client:
                for _ in range(calls):
                    try:
                        answered.append(client.classify("m", texts))
                    except TritonizeError as exc:
                        failed.append(exc)

        threads = [threading.Thread(target=caller) for _ in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a call hung"
        return answered, failed

    ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
    with LocalServer(repository, **ports) as served:
        with Client(served.grpc_url) as client:
            expected = [[r.to_dict() for r in row] for row in client.classify("m", texts)]
        _, failed = flood(served.grpc_url, NO_RETRY)
        assert failed, "the queue never filled: the test did not overload the model"
        for error in failed:
            assert type(error) is ServerUnavailable, error
            assert "is overloaded: its queue is full" in str(error) and "'m'" in str(error)
        answered, failed = flood(served.grpc_url, RetryPolicy())
        assert failed == []
        assert len(answered) == 16 * 3
        assert all([[r.to_dict() for r in row] for row in got] == expected for got in answered)
