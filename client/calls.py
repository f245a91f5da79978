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

import json
import math
from collections.abc import Iterable, Mapping, Set
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import NDArray

from tritonize import protocol
from tritonize.client.connection import Connection
from tritonize.client.errors import DeadlineExceeded, InvalidInput, TaskMismatch
from tritonize.client.models import ModelInfo
from tritonize.client.retry import RetryPolicy
from tritonize.protocol import Answer, Entity, LabelScore, MaskFill

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


def _check_item(item: Any, where: str, optional: bool = False) -> None:
    """One item of a list of texts: a valid str (or None, when ``optional``)."""
    if isinstance(item, str):
        _check_text(item, where)
        return
    if item is None and optional:
        return
    kinds = "a str or None" if optional else "a str"
    if isinstance(item, (bytes, bytearray)):
        raise InvalidInput(f"{where} must be {kinds}, got {type(item).__name__}; "
                           "decode it first (e.g. .decode('utf-8'))")
    raise InvalidInput(f"{where} must be {kinds}, got {type(item).__name__}")


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
        _check_item(item, f"{name}[{index}]")
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


def chunks(count: int, info: ModelInfo) -> List[Tuple[int, int]]:
    step = info.max_batch_size or count or 1
    return [(start, min(start + step, count)) for start in range(0, count, step)]


def _positive(name: str, value: Optional[int], required: bool = False) -> None:
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be a positive int, got {value!r}")


# -- text-classification ---------------------------------------------------------
#: ``classify``'s ``text_pair``: a str (with one text), or one str or None per text
TextPairs = Union[None, str, Sequence[Optional[str]]]


def as_pairs(text_pair: Any, texts: Any, size: int) -> List[Optional[str]]:
    """``classify``'s ``text_pair``: one second text (or None: a single text) per text of ``texts``."""
    if text_pair is None:
        return [None] * size
    if isinstance(texts, str):
        if not isinstance(text_pair, str):
            raise InvalidInput(f"text_pair must be a str when texts is a str, got {type(text_pair).__name__}")
        return list(as_batch(text_pair, "text_pair"))
    if isinstance(text_pair, str):
        raise InvalidInput(f"text_pair must be a list of {size} str (one per text) when texts is a list, got a str; "
                           "or give texts as a str")
    if isinstance(text_pair, (bytes, bytearray, Mapping, Set)) or not isinstance(text_pair, Iterable):
        as_batch(text_pair, "text_pair")  # refuses it, naming the wrong type
    pairs = list(text_pair)
    if len(pairs) != size:
        raise InvalidInput(f"text_pair must have one item per text: texts has {size}, text_pair {len(pairs)}")
    for index, pair in enumerate(pairs):
        _check_item(pair, f"text_pair[{index}]", optional=True)  # None: that text is classified alone
    return pairs


def _runs(pairs: Sequence[Optional[str]]) -> List[Tuple[int, int]]:
    """Consecutive items that all have a pair, or all have none: each run goes in requests of its own."""
    runs, start = [], 0
    for index in range(1, len(pairs) + 1):
        if index == len(pairs) or (pairs[index] is None) != (pairs[start] is None):
            runs.append((start, index))
            start = index
    return runs


def classify(model: str, texts: Texts, top_k: Optional[int], timeout: Optional[float],
             text_pair: TextPairs = None) -> Call:
    """``texts`` classified alone, or as sentence pairs with ``text_pair`` (the ensemble's optional TEXT_PAIR).

    ``text_pair`` is a str when ``texts`` is a str, or a list of one item per
    text, ``None`` for a text classified alone. Items with and without a pair
    go in separate requests, in order, since a request either carries
    TEXT_PAIR for all its texts or not at all.
    """
    model, timeout = check_model(model), check_timeout(timeout)
    _positive("top_k", top_k)
    batch = as_batch(texts)
    pairs = as_pairs(text_pair, texts, len(batch))
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
        if any(pair is not None for pair in pairs) and protocol.TEXT_PAIR not in info.inputs:
            raise InvalidInput(
                f"model {info.name!r} on {url} takes no text_pair: its ensemble has no {protocol.TEXT_PAIR} input "
                "(exported by a tritonize without sentence pairs); re-export it to classify pairs",
                url=url, model=info.name,
            )
        requests = []
        for start, stop in _runs(pairs):
            for a, b in chunks(stop - start, info):
                a, b = start + a, start + b
                inputs = [(protocol.TEXT, batch[a:b])]
                if pairs[a] is not None:
                    inputs.append((protocol.TEXT_PAIR, [str(pair) for pair in pairs[a:b]]))
                requests.append(Request(inputs, outputs))
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
            Request([(protocol.TEXT, batch[a:b])], ENTITY_OUTPUTS, parameters) for a, b in chunks(len(batch), info)
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
            for a, b in chunks(len(questions), info)
        ]
        return Plan(info.name, requests, decode, single=single)

    return Call(model, timeout, len(questions), plan)


# -- fill-mask -------------------------------------------------------------------
FILL_MASK_OUTPUTS = (protocol.SCORE, protocol.TOKEN, protocol.TOKEN_STR, protocol.SEQUENCE, protocol.COUNT)


def as_targets(targets: Any) -> Optional[List[str]]:
    """``fill_mask``'s ``targets``: None, one word or token (a str), or a non-empty list of them."""
    if targets is None:
        return None
    wanted = as_batch(targets, "targets")
    if not wanted:
        raise InvalidInput("targets must hold at least one word or token (or be None: the whole vocabulary)")
    return wanted


def fill_mask(model: str, texts: Texts, top_k: Optional[int], targets: Any, timeout: Optional[float]) -> Call:
    """The best fillers of each mask token of ``texts``, shaped as ``pipeline("fill-mask")`` shapes them.

    A text with one mask gives a list of ``top_k`` ``MaskFill`` (best first),
    one with several masks a list of such lists, one per mask; a list of
    texts one such result per text (also for a list of one text, which the
    pipeline unwraps).
    """
    model, timeout = check_model(model), check_timeout(timeout)
    _positive("top_k", top_k)
    wanted = as_targets(targets)
    batch = as_batch(texts)
    single = isinstance(texts, str)  # as every SDK call: a str gives its result, a list a list
    parameters: Dict[str, Any] = {}
    if top_k is not None:
        parameters["top_k"] = top_k
    if wanted is not None:
        parameters["targets"] = json.dumps(wanted)

    def decode(request: Request, arrays: Arrays) -> List[Any]:
        scores, tokens = arrays[protocol.SCORE], arrays[protocol.TOKEN]
        token_strs, sequences = arrays[protocol.TOKEN_STR], arrays[protocol.SEQUENCE]
        results: List[Any] = []
        for row in range(request.size):
            count = int(arrays[protocol.COUNT][row].reshape(-1)[0])
            masks = [
                [
                    MaskFill(
                        score=float(scores[row, m, j]),
                        token=int(tokens[row, m, j]),
                        token_str=token_strs[row, m, j].decode("utf-8"),
                        sequence=sequences[row, m, j].decode("utf-8"),
                    )
                    for j in range(scores.shape[2])
                ]
                for m in range(count)
            ]
            results.append(masks[0] if count == 1 else masks)
        return results

    def plan(info: ModelInfo, url: str) -> Plan:
        require(info, protocol.FILL_MASK, url)
        requests = [
            Request([(protocol.TEXT, batch[a:b])], FILL_MASK_OUTPUTS, parameters or None)
            for a, b in chunks(len(batch), info)
        ]
        return Plan(info.name, requests, decode, single=single)

    return Call(model, timeout, len(batch), plan)


def time_left(timeout: Optional[float], started: float, url: str, model: str) -> Optional[float]:
    """What is left of a call's deadline (started at ``started``, monotonic) once its model is known."""
    if timeout is None:
        return None
    left = timeout - (time.monotonic() - started)
    if left <= 0:
        raise DeadlineExceeded(f"model {model!r} on {url}: deadline of {timeout}s exceeded", url=url, model=model)
    return left


# -- feature-extraction ----------------------------------------------------------
@dataclass
class EmbeddingPlan(Plan):
    """The chunks' ``[rows, dim]`` arrays become one float32 array: ``[n, dim]``, or ``[dim]`` for one str."""

    def finish(self, decoded: List[Any]) -> Any:
        vectors = np.concatenate(decoded, axis=0) if decoded else np.zeros((0, 0), dtype=np.float32)
        return vectors[0] if self.single else vectors


def embedding_dim(info: ModelInfo) -> int:
    """The served embedding size, from the model's config (0 if it does not say)."""
    try:
        return max(int(info.parameters.get(protocol.PARAM_EMBEDDING_DIM, "0")), 0)
    except ValueError:
        return 0


def no_embeddings(info: ModelInfo, url: str) -> "NDArray[np.float32]":
    """The answer to an empty list of texts: a float32 array of shape ``[0, dim]``."""
    require(info, protocol.FEATURE_EXTRACTION, url)
    return np.zeros((0, embedding_dim(info)), dtype=np.float32)


def embed(model: str, texts: Texts, normalize: Optional[bool], timeout: Optional[float]) -> Call:
    """Sentence embeddings of ``texts``: float32 ``[dim]`` for a str, ``[n, dim]`` for a list of n texts.

    ``normalize=None`` keeps the export's choice (a sentence-transformers
    checkpoint with a Normalize module: unit vectors); True or False overrides it.
    """
    model, timeout = check_model(model), check_timeout(timeout)
    if normalize is not None and not isinstance(normalize, (bool, np.bool_)):
        raise InvalidInput(f"normalize must be a bool or None, got {type(normalize).__name__}")
    batch = as_batch(texts)
    single = isinstance(texts, str)
    parameters = None if normalize is None else {"normalize": bool(normalize)}

    def decode(request: Request, arrays: Arrays) -> Any:
        vectors = np.asarray(arrays[protocol.EMBEDDING], dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != request.size:
            raise TaskMismatch(f"model {model!r} answered EMBEDDING of shape {list(vectors.shape)} for "
                               f"{request.size} texts; expected [{request.size}, dim]", model=model)
        return vectors

    def plan(info: ModelInfo, url: str) -> Plan:
        require(info, protocol.FEATURE_EXTRACTION, url)
        requests = [Request([(protocol.TEXT, batch[a:b])], (protocol.EMBEDDING,), parameters)
                    for a, b in chunks(len(batch), info)]
        return EmbeddingPlan(info.name, requests, decode, single=single)

    return Call(model, timeout, len(batch), plan)
