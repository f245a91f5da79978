"""``Client``: the synchronous gRPC SDK.

It needs only tritonclient[grpc] and numpy. A model's task, labels and batch
limit are learned from the server (its config ``parameters``), never from the
caller.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union, overload

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tritonize import protocol
from tritonize.client.errors import (
    DeadlineExceeded,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ServerUnavailable,
    TaskMismatch,
    TritonizeError,
)
from tritonize.client.models import ModelInfo
from tritonize.protocol import Answer, Entity, LabelScore

Texts = Union[str, Sequence[str]]


def translate_error(exc: InferenceServerException, url: str, model: Optional[str]) -> TritonizeError:
    """Map a tritonclient error to the SDK's hierarchy, keeping the server's words."""
    status = str(exc.status() or "")
    text = str(exc.message() or exc)
    where = f"model {model!r} on {url}" if model else url
    lowered = text.lower()
    if "UNAVAILABLE" in status and "not ready" not in lowered:
        return ServerUnavailable(f"server {url} is unavailable: {text}", url=url, model=model)
    if "DEADLINE_EXCEEDED" in status or "deadline exceeded" in lowered:
        return DeadlineExceeded(f"{where}: deadline exceeded ({text})", url=url, model=model)
    if "unknown model" in lowered or "not found" in lowered:
        return ModelNotFound(f"{where}: the server does not serve this model ({text})", url=url, model=model)
    if "not ready" in lowered:
        return ModelNotReady(f"{where}: the model is not ready ({text})", url=url, model=model)
    if "INVALID_ARGUMENT" in status:
        return InvalidInput(f"{where}: invalid input ({text})", url=url, model=model)
    return TritonizeError(f"{where}: {text}", url=url, model=model)


def _as_batch(texts: Texts, name: str = "texts") -> List[str]:
    items = [texts] if isinstance(texts, str) else list(texts)
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidInput(f"{name}[{index}] must be a str, got {type(item).__name__}")
    return items


class Client:
    """Synchronous client for tritonize models served by Triton over gRPC.

    >>> with Client("localhost:8001") as client:
    ...     client.classify("sentiment", "I love it")
    [LabelScore(label='positive', score=0.97), ...]
    """

    def __init__(self, url: str = "localhost:8001", *, timeout: Optional[float] = 30.0) -> None:
        self.url = url
        self.timeout = timeout
        self._grpc = grpcclient.InferenceServerClient(url=url)
        self._models: Dict[str, ModelInfo] = {}

    # -- lifecycle -------------------------------------------------------------
    def close(self) -> None:
        self._grpc.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- server and models -----------------------------------------------------
    def _call(self, model: Optional[str], method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._grpc, method)(*args, **kwargs)
        except InferenceServerException as exc:
            raise translate_error(exc, self.url, model) from None

    def is_live(self, timeout: Optional[float] = None) -> bool:
        try:
            return bool(self._grpc.is_server_live(client_timeout=timeout or self.timeout))
        except InferenceServerException:
            return False

    def is_ready(self, model: Optional[str] = None, timeout: Optional[float] = None) -> bool:
        try:
            if model is None:
                return bool(self._grpc.is_server_ready(client_timeout=timeout or self.timeout))
            return bool(self._grpc.is_model_ready(model, client_timeout=timeout or self.timeout))
        except InferenceServerException:
            return False

    def model_info(self, model: str, *, refresh: bool = False, timeout: Optional[float] = None) -> ModelInfo:
        """What ``model`` is (task, labels, batch limit), as its config on the server says."""
        if refresh or model not in self._models:
            response = self._call(
                model, "get_model_config", model, as_json=True, client_timeout=timeout or self.timeout
            )
            self._models[model] = ModelInfo.from_config(response["config"])
        return self._models[model]

    def _require(self, model: str, task: str, timeout: Optional[float]) -> ModelInfo:
        info = self.model_info(model, timeout=timeout)
        if info.task and info.role not in (None, "ensemble"):
            raise TaskMismatch(
                f"model {model!r} on {self.url} is the {info.role} step of a tritonize ensemble; "
                "call the ensemble itself",
                url=self.url,
                model=model,
            )
        if info.task != task:
            served = f"serves {info.task!r}" if info.task else "is not a tritonize model"
            raise TaskMismatch(
                f"model {model!r} on {self.url} {served}, not {task!r}", url=self.url, model=model
            )
        return info

    def _infer(
        self,
        model: str,
        inputs: List[Any],
        outputs: Sequence[str],
        timeout: Optional[float],
        parameters: Optional[Dict[str, Any]] = None,
    ) -> Any:
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
        return self._call(
            model, "infer", model, inputs, outputs=requested, client_timeout=timeout or self.timeout,
            parameters=parameters or None,
        )

    @staticmethod
    def _text_input(chunk: Sequence[str]) -> Any:
        text = grpcclient.InferInput(protocol.TEXT, [len(chunk), 1], "BYTES")
        text.set_data_from_numpy(np.array([[t.encode("utf-8")] for t in chunk], dtype=np.object_))
        return text

    @staticmethod
    def _chunks(batch: List[str], info: ModelInfo) -> List[List[str]]:
        step = info.max_batch_size or len(batch) or 1
        return [batch[start : start + step] for start in range(0, len(batch), step)]

    # -- tasks -----------------------------------------------------------------
    @overload
    def classify(self, model: str, texts: str, *, top_k: Optional[int] = ..., timeout: Optional[float] = ...) -> List[LabelScore]: ...  # noqa: E501

    @overload
    def classify(self, model: str, texts: Sequence[str], *, top_k: Optional[int] = ..., timeout: Optional[float] = ...) -> List[List[LabelScore]]: ...  # noqa: E501

    def classify(
        self,
        model: str,
        texts: Texts,
        *,
        top_k: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> Union[List[LabelScore], List[List[LabelScore]]]:
        """Classify ``texts`` as ``pipeline("text-classification", top_k=top_k)`` does.

        A single string gives one list of labels, best first; a list of
        strings gives one such list per text. ``top_k=None`` returns every label.
        """
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise InvalidInput(f"top_k must be a positive int or None, got {top_k!r}")
        batch = _as_batch(texts)
        info = self._require(model, protocol.TEXT_CLASSIFICATION, timeout)
        results: List[List[LabelScore]] = []
        for chunk in self._chunks(batch, info):
            response = self._infer(model, [self._text_input(chunk)], (protocol.LABELS, protocol.SCORES), timeout)
            labels = response.as_numpy(protocol.LABELS)
            scores = response.as_numpy(protocol.SCORES)
            for row_labels, row_scores in zip(labels, scores):
                row = [
                    LabelScore(label.decode("utf-8"), float(score))
                    for label, score in zip(row_labels, row_scores)
                ]
                results.append(row[:top_k] if top_k is not None else row)
        return results[0] if isinstance(texts, str) else results

    @overload
    def extract_entities(self, model: str, texts: str, *, aggregation_strategy: Optional[str] = ..., timeout: Optional[float] = ...) -> List[Entity]: ...  # noqa: E501

    @overload
    def extract_entities(self, model: str, texts: Sequence[str], *, aggregation_strategy: Optional[str] = ..., timeout: Optional[float] = ...) -> List[List[Entity]]: ...  # noqa: E501

    def extract_entities(
        self,
        model: str,
        texts: Texts,
        *,
        aggregation_strategy: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Union[List[Entity], List[List[Entity]]]:
        """Find entities as ``pipeline("token-classification", aggregation_strategy=...)`` does.

        ``aggregation_strategy=None`` uses the model's export default. A single
        string gives its list of entities; a list gives one list per text.
        Long texts are split into overlapping windows on the server: nothing is truncated.
        """
        if aggregation_strategy is not None and aggregation_strategy not in protocol.AGGREGATION_STRATEGIES:
            raise InvalidInput(
                f"aggregation_strategy must be one of {', '.join(protocol.AGGREGATION_STRATEGIES)}, "
                f"got {aggregation_strategy!r}"
            )
        batch = _as_batch(texts)
        info = self._require(model, protocol.TOKEN_CLASSIFICATION, timeout)
        strategy = aggregation_strategy or info.parameters.get(protocol.PARAM_AGGREGATION_STRATEGY, "simple")
        parameters = {"aggregation_strategy": aggregation_strategy} if aggregation_strategy else None
        outputs = (protocol.ENTITY, protocol.SCORE, protocol.WORD, protocol.START, protocol.END,
                   protocol.INDEX, protocol.COUNT)
        results: List[List[Entity]] = []
        for chunk in self._chunks(batch, info):
            response = self._infer(model, [self._text_input(chunk)], outputs, timeout, parameters)
            arrays = {name: response.as_numpy(name) for name in outputs}
            for row in range(len(chunk)):
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
        return results[0] if isinstance(texts, str) else results

    def answer(
        self,
        model: str,
        *,
        question: Texts,
        context: Texts,
        top_k: int = 1,
        max_answer_len: Optional[int] = None,
        handle_impossible_answer: Optional[bool] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """Answer as ``pipeline("question-answering")`` does.

        One question and one context give one ``Answer`` (a list of ``top_k``
        answers when ``top_k > 1``); lists of questions and contexts (or one
        question for several contexts) give one such result per pair. Long
        contexts are split into windows on the server: every window is scored.
        """
        for name, value in (("top_k", top_k), ("max_answer_len", max_answer_len)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidInput(f"{name} must be a positive int, got {value!r}")
        questions, contexts = _as_batch(question, "question"), _as_batch(context, "context")
        single = isinstance(question, str) and isinstance(context, str)
        if isinstance(question, str) and not isinstance(context, str):
            questions = questions * len(contexts)
        if len(questions) != len(contexts):
            raise InvalidInput(
                f"question and context must be lists of the same length: {len(questions)} vs {len(contexts)}"
            )
        info = self._require(model, protocol.QUESTION_ANSWERING, timeout)
        parameters: Dict[str, Any] = {"top_k": top_k}
        if max_answer_len is not None:
            parameters["max_answer_len"] = max_answer_len
        if handle_impossible_answer is not None:
            parameters["handle_impossible_answer"] = bool(handle_impossible_answer)
        outputs = (protocol.ANSWER, protocol.SCORE, protocol.START, protocol.END, protocol.COUNT)
        results: List[Any] = []
        step = info.max_batch_size or len(questions) or 1
        for begin in range(0, len(questions), step):
            q_chunk, c_chunk = questions[begin : begin + step], contexts[begin : begin + step]
            inputs = []
            for name, chunk in ((protocol.QUESTION, q_chunk), (protocol.CONTEXT, c_chunk)):
                tensor = grpcclient.InferInput(name, [len(chunk), 1], "BYTES")
                tensor.set_data_from_numpy(np.array([[t.encode("utf-8")] for t in chunk], dtype=np.object_))
                inputs.append(tensor)
            response = self._infer(model, inputs, outputs, timeout, parameters)
            arrays = {name: response.as_numpy(name) for name in outputs}
            for row in range(len(q_chunk)):
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
        return results[0] if single else results
