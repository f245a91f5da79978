"""What one SDK call sends and how its answer is read back, for each task.

Both clients (``Client`` and ``AsyncClient``) turn a call into a :class:`Plan`
here: the requests to send (one per chunk of at most ``max_batch_size``
items) and how to turn their outputs into pipeline-shaped results. Only the
transport differs between the two clients, so the contract lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from tritonize import protocol
from tritonize.client.errors import InvalidInput, TaskMismatch
from tritonize.client.models import ModelInfo
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


def as_batch(texts: Texts, name: str = "texts") -> List[str]:
    items = [texts] if isinstance(texts, str) else list(texts)
    for index, item in enumerate(items):
        if not isinstance(item, str):
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


def _positive(name: str, value: Optional[int]) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidInput(f"{name} must be a positive int, got {value!r}")


# -- text-classification ---------------------------------------------------------
def classify(info: ModelInfo, texts: Texts, top_k: Optional[int], url: str) -> Plan:
    _positive("top_k", top_k)
    batch = as_batch(texts)
    require(info, protocol.TEXT_CLASSIFICATION, url)
    outputs = (protocol.LABELS, protocol.SCORES)
    requests = [Request([(protocol.TEXT, batch[a:b])], outputs) for a, b in _chunks(len(batch), info)]

    def decode(request: Request, arrays: Arrays) -> List[Any]:
        results = []
        for labels, scores in zip(arrays[protocol.LABELS], arrays[protocol.SCORES]):
            row = [LabelScore(label.decode("utf-8"), float(score)) for label, score in zip(labels, scores)]
            results.append(row[:top_k] if top_k is not None else row)
        return results

    return Plan(info.name, requests, decode, single=isinstance(texts, str))


# -- token-classification --------------------------------------------------------
ENTITY_OUTPUTS = (protocol.ENTITY, protocol.SCORE, protocol.WORD, protocol.START, protocol.END,
                  protocol.INDEX, protocol.COUNT)


def extract_entities(info: ModelInfo, texts: Texts, aggregation_strategy: Optional[str], url: str) -> Plan:
    if aggregation_strategy is not None and aggregation_strategy not in protocol.AGGREGATION_STRATEGIES:
        raise InvalidInput(
            f"aggregation_strategy must be one of {', '.join(protocol.AGGREGATION_STRATEGIES)}, "
            f"got {aggregation_strategy!r}"
        )
    batch = as_batch(texts)
    require(info, protocol.TOKEN_CLASSIFICATION, url)
    strategy = aggregation_strategy or info.parameters.get(protocol.PARAM_AGGREGATION_STRATEGY, "simple")
    parameters = {"aggregation_strategy": aggregation_strategy} if aggregation_strategy else None
    requests = [
        Request([(protocol.TEXT, batch[a:b])], ENTITY_OUTPUTS, parameters) for a, b in _chunks(len(batch), info)
    ]

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

    return Plan(info.name, requests, decode, single=isinstance(texts, str))


# -- question-answering ----------------------------------------------------------
ANSWER_OUTPUTS = (protocol.ANSWER, protocol.SCORE, protocol.START, protocol.END, protocol.COUNT)


def answer(
    info: ModelInfo,
    question: Texts,
    context: Texts,
    top_k: int,
    max_answer_len: Optional[int],
    handle_impossible_answer: Optional[bool],
    url: str,
) -> Plan:
    _positive("top_k", top_k)
    _positive("max_answer_len", max_answer_len)
    questions, contexts = as_batch(question, "question"), as_batch(context, "context")
    if isinstance(question, str) and not isinstance(context, str):
        questions = questions * len(contexts)  # one question over several contexts
    if isinstance(context, str) and not isinstance(question, str):
        contexts = contexts * len(questions)  # several questions about one context
    if len(questions) != len(contexts):
        raise InvalidInput(
            f"question and context must be lists of the same length: {len(questions)} vs {len(contexts)}"
        )
    require(info, protocol.QUESTION_ANSWERING, url)
    parameters: Dict[str, Any] = {"top_k": top_k}
    if max_answer_len is not None:
        parameters["max_answer_len"] = max_answer_len
    if handle_impossible_answer is not None:
        parameters["handle_impossible_answer"] = bool(handle_impossible_answer)
    requests = [
        Request([(protocol.QUESTION, questions[a:b]), (protocol.CONTEXT, contexts[a:b])], ANSWER_OUTPUTS, parameters)
        for a, b in _chunks(len(questions), info)
    ]

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

    single = isinstance(question, str) and isinstance(context, str)
    return Plan(info.name, requests, decode, single=single)
