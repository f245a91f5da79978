"""What one SDK call sends and how its answer is read back, for each task.

Both clients (``Client`` and ``AsyncClient``) turn a call into a :class:`Call`
here: its arguments checked (every wrong argument is an ``InvalidInput`` that
names it, raised before anything is sent), then, once the model is known, a
:class:`Plan`: the requests to send (one per chunk of at most
``max_batch_size`` items) and how to turn their outputs into pipeline-shaped
results. Only the transport differs between the two clients, so the contract
lives in one place.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Set
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from tritonize import protocol
from tritonize.client.connection import Connection
from tritonize.client.errors import DeadlineExceeded, InvalidInput, TaskMismatch
from tritonize.client.models import ModelInfo
from tritonize.client.retry import RetryPolicy
from tritonize.protocol import Answer, Entity, LabelScore

Texts = Union[str, Sequence[str]]
Arrays = Dict[str, Any]


@dataclass
class Request:
    """One inference request: BYTES inputs, the outputs to fetch, request parameters."""

    inputs: List[Tuple[str, List[str]]]
    outputs: Tuple[str, ...]
    parameters: Optional[Dict[str, Any]] = None

    @property
    def size(self) -> int:
        return len(self.inputs[0][1])

    def input_arrays(self) -> List[Tuple[str, Any]]:
        return [
            (name, np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_))
            for name, texts in self.inputs
        ]


@dataclass
class Plan:
    """The requests of one call, how to read each response, and the call's return shape."""

    model: str
    requests: List[Request]
    decode: Callable[[Request, Arrays], List[Any]]
    single: bool

    def finish(self, decoded: List[List[Any]]) -> Any:
        flat = [item for chunk in decoded for item in chunk]
        return flat[0] if self.single else flat


@dataclass
class Call:
    """One task call, its arguments checked: what ``plan`` needs once the model is known.

    ``size`` is the number of items; a call with none (an empty list) is
    answered ``[]`` without asking the server anything.
    """

    model: str
    timeout: Optional[float]
    size: int
    plan: Callable[[ModelInfo, str], Plan]


def check_client_arguments(timeout: Any, retry: Any, max_in_flight: Any, connection: Any) -> None:
    """A ``Client``'s or ``AsyncClient``'s settings: a ``ValueError`` naming the wrong one.

    Its ``url`` is checked by ``endpoints.as_endpoints``.
    """
    try:
        check_timeout(timeout)
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(retry, RetryPolicy):
        raise ValueError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
    if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight!r}")
    if connection is not None and not isinstance(connection, Connection):
        raise ValueError(f"connection must be a Connection or None, got {type(connection).__name__}")


def check_model(model: Any, name: str = "model") -> str:
    """``model`` must name a served model: a non-empty str."""
    if not isinstance(model, str) or not model.strip():
        shown = repr(model) if isinstance(model, str) or model is None else type(model).__name__
        raise InvalidInput(f"{name} must be a non-empty str (the served model's name), got {shown}")
    return model


def check_timeout(timeout: Any, name: str = "timeout") -> Optional[float]:
    """``timeout`` is seconds, a positive finite number, or None (the client's default)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidInput(f"{name} must be a positive number of seconds or None, got {type(timeout).__name__}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise InvalidInput(f"{name} must be a positive number of seconds or None, got {timeout!r}")
    return float(timeout)


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # the only str UTF-8 cannot encode: a surrogate code point
        raise InvalidInput(
            f"{where} contains a lone surrogate at position {exc.start} (U+{ord(text[exc.start]):04X}); "
            "text must be valid Unicode: fix the source, or decode its bytes with errors='replace'"
        ) from None


def as_batch(texts: Any, name: str = "texts") -> List[str]:
    """``texts`` as a list of valid str: a str is one item, a list (or tuple) of str is many."""
    if texts is None:
        raise InvalidInput(f"{name} is required: a str or a list of str, got None")
    if isinstance(texts, str):
        _check_text(texts, name)
        return [texts]
    if isinstance(texts, (bytes, bytearray)):
        raise InvalidInput(f"{name} must be a str or a list of str, got {type(texts).__name__}; "
                           "decode it first (e.g. .decode('utf-8'))")
    if isinstance(texts, (Mapping, Set)) or not isinstance(texts, Iterable):
        unordered = "; it has no order, pass a list" if isinstance(texts, Set) else ""
        raise InvalidInput(f"{name} must be a str or a list of str, got {type(texts).__name__}{unordered}")
    items = list(texts)
    for index, item in enumerate(items):
        if isinstance(item, str):
            _check_text(item, f"{name}[{index}]")
        elif isinstance(item, (bytes, bytearray)):
            raise InvalidInput(f"{name}[{index}] must be a str, got {type(item).__name__}; "
                               "decode it first (e.g. .decode('utf-8'))")
        else:
            raise InvalidInput(f"{name}[{index}] must be a str, got {type(item).__name__}")
    return items


def require(info: ModelInfo, task: str, url: str) -> None:
    if info.task and info.role not in (None, "ensemble"):
        raise TaskMismatch(
            f"model {info.name!r} on {url} is the {info.role} step of a tritonize ensemble; call the ensemble itself",
            url=url,
            model=info.name,
        )
    if info.task != task:
        served = f"serves {info.task!r}" if info.task else "is not a tritonize model"
        raise TaskMismatch(f"model {info.name!r} on {url} {served}, not {task!r}", url=url, model=info.name)


def _chunks(count: int, info: ModelInfo) -> List[Tuple[int, int]]:
    step = info.max_batch_size or count or 1
    return [(start, min(start + step, count)) for start in range(0, count, step)]


def _positive(name: str, value: Optional[int], required: bool = False) -> None:
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be a positive int, got {value!r}")


# -- text-classification ---------------------------------------------------------
def classify(model: str, texts: Texts, top_k: Optional[int], timeout: Optional[float]) -> Call:
    model, timeout = check_model(model), check_timeout(timeout)
    _positive("top_k", top_k)
    batch = as_batch(texts)
    single = isinstance(texts, str)
    outputs = (protocol.LABELS, protocol.SCORES)

    def decode(request: Request, arrays: Arrays) -> List[Any]:
        results = []
        for labels, scores in zip(arrays[protocol.LABELS], arrays[protocol.SCORES]):
            row = [LabelScore(label.decode("utf-8"), float(score)) for label, score in zip(labels, scores)]
            results.append(row[:top_k] if top_k is not None else row)
        return results

    def plan(info: ModelInfo, url: str) -> Plan:
        require(info, protocol.TEXT_CLASSIFICATION, url)
        requests = [Request([(protocol.TEXT, batch[a:b])], outputs) for a, b in _chunks(len(batch), info)]
        return Plan(info.name, requests, decode, single=single)

    return Call(model, timeout, len(batch), plan)


# -- token-classification --------------------------------------------------------
ENTITY_OUTPUTS = (protocol.ENTITY, protocol.SCORE, protocol.WORD, protocol.START, protocol.END,
                  protocol.INDEX, protocol.COUNT)


def extract_entities(
    model: str, texts: Texts, aggregation_strategy: Optional[str], timeout: Optional[float]
) -> Call:
    model, timeout = check_model(model), check_timeout(timeout)
    if aggregation_strategy is not None and aggregation_strategy not in protocol.AGGREGATION_STRATEGIES:
        raise InvalidInput(
            f"aggregation_strategy must be one of {', '.join(protocol.AGGREGATION_STRATEGIES)}, "
            f"got {aggregation_strategy!r}"
        )
    batch = as_batch(texts)
    single = isinstance(texts, str)
    parameters = {"aggregation_strategy": aggregation_strategy} if aggregation_strategy else None

    def plan(info: ModelInfo, url: str) -> Plan:
        require(info, protocol.TOKEN_CLASSIFICATION, url)
        strategy = aggregation_strategy or info.parameters.get(protocol.PARAM_AGGREGATION_STRATEGY, "simple")

        def decode(request: Request, arrays: Arrays) -> List[Any]:
            results = []
            for row in range(request.size):
                count = int(arrays[protocol.COUNT][row].reshape(-1)[0])
                results.append([
                    Entity(
                        label=arrays[protocol.ENTITY][row, j].decode("utf-8"),
                        score=float(arrays[protocol.SCORE][row, j]),
                        word=arrays[protocol.WORD][row, j].decode("utf-8"),
                        start=int(arrays[protocol.START][row, j]),
                        end=int(arrays[protocol.END][row, j]),
                        index=int(arrays[protocol.INDEX][row, j]) if strategy == "none" else None,
                        grouped=strategy != "none",
                    )
                    for j in range(count)
                ])
            return results

        requests = [
            Request([(protocol.TEXT, batch[a:b])], ENTITY_OUTPUTS, parameters) for a, b in _chunks(len(batch), info)
        ]
        return Plan(info.name, requests, decode, single=single)

    return Call(model, timeout, len(batch), plan)


# -- question-answering ----------------------------------------------------------
ANSWER_OUTPUTS = (protocol.ANSWER, protocol.SCORE, protocol.START, protocol.END, protocol.COUNT)


def answer(
    model: str,
    question: Texts,
    context: Texts,
    top_k: int,
    max_answer_len: Optional[int],
    handle_impossible_answer: Optional[bool],
    timeout: Optional[float],
) -> Call:
    model, timeout = check_model(model), check_timeout(timeout)
    _positive("top_k", top_k, required=True)
    _positive("max_answer_len", max_answer_len)
    if handle_impossible_answer is not None and not isinstance(handle_impossible_answer, (bool, np.bool_)):
        raise InvalidInput(
            f"handle_impossible_answer must be a bool or None, got {type(handle_impossible_answer).__name__}"
        )
    questions, contexts = as_batch(question, "question"), as_batch(context, "context")
    if isinstance(question, str) and not isinstance(context, str):
        questions = questions * len(contexts)  # one question over several contexts
    if isinstance(context, str) and not isinstance(question, str):
        contexts = contexts * len(questions)  # several questions about one context
    if len(questions) != len(contexts):
        raise InvalidInput(
            f"question and context must be lists of the same length: {len(questions)} vs {len(contexts)}"
        )
    parameters: Dict[str, Any] = {"top_k": top_k}
    if max_answer_len is not None:
        parameters["max_answer_len"] = max_answer_len
    if handle_impossible_answer is not None:
        parameters["handle_impossible_answer"] = bool(handle_impossible_answer)
    single = isinstance(question, str) and isinstance(context, str)

    def decode(request: Request, arrays: Arrays) -> List[Any]:
        results: List[Any] = []
        for row in range(request.size):
            count = int(arrays[protocol.COUNT][row].reshape(-1)[0])
            answers = [
                Answer(
                    answer=arrays[protocol.ANSWER][row, j].decode("utf-8"),
                    score=float(arrays[protocol.SCORE][row, j]),
                    start=int(arrays[protocol.START][row, j]),
                    end=int(arrays[protocol.END][row, j]),
                )
                for j in range(count)
            ]
            results.append(answers if top_k > 1 else (answers[0] if answers else None))
        return results

    def plan(info: ModelInfo, url: str) -> Plan:
        require(info, protocol.QUESTION_ANSWERING, url)
        requests = [
            Request([(protocol.QUESTION, questions[a:b]), (protocol.CONTEXT, contexts[a:b])], ANSWER_OUTPUTS,
                    parameters)
            for a, b in _chunks(len(questions), info)
        ]
        return Plan(info.name, requests, decode, single=single)

    return Call(model, timeout, len(questions), plan)


def time_left(timeout: Optional[float], started: float, url: str, model: str) -> Optional[float]:
    """What is left of a call's deadline (started at ``started``, monotonic) once its model is known."""
    if timeout is None:
        return None
    left = timeout - (time.monotonic() - started)
    if left <= 0:
        raise DeadlineExceeded(f"model {model!r} on {url}: deadline of {timeout}s exceeded", url=url, model=model)
    return left
