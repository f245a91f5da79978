"""``Client``: the synchronous gRPC SDK.

It needs only tritonclient[grpc] and numpy. A model's task, labels and batch
limit are learned from the server (its config ``parameters``), never from the
caller. What each call sends and reads back is in ``calls.py``; this module
is the transport: one channel, deadlines, retries, and chunks sent
concurrently with a bounded number in flight.
"""

from __future__ import annotations

import time
from dataclasses import replace
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence, Union, overload

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tritonize.client import calls
from tritonize.client.calls import Plan, Request, Texts
from tritonize.client.connection import Connection
from tritonize.client.errors import DeadlineExceeded, TritonizeError, translate_error
from tritonize.client.models import ModelInfo
from tritonize.client.retry import RetryPolicy
from tritonize.protocol import Answer, Entity, LabelScore


class Client:
    """Synchronous client for tritonize models served by Triton over gRPC.

    >>> with Client("localhost:8001") as client:
    ...     client.classify("sentiment", "I love it")
    [LabelScore(label='positive', score=0.97), ...]

    ``timeout`` is each call's deadline in seconds (retries included);
    ``retry`` says how often UNAVAILABLE and RESOURCE_EXHAUSTED are retried;
    ``max_in_flight`` bounds the chunks of one call sent at once. TLS, auth
    headers and compression are set with ``connection=Connection(...)``.
    """

    def __init__(
        self,
        url: str = "localhost:8001",
        *,
        timeout: Optional[float] = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        max_in_flight: int = 4,
        connection: Optional[Connection] = None,
    ) -> None:
        calls.check_client_arguments(url, timeout, retry, max_in_flight, connection)
        self.url = url
        self.timeout = timeout
        self.retry = retry
        self.max_in_flight = max_in_flight
        self.connection = connection or Connection()
        self._grpc = grpcclient.InferenceServerClient(url=url, **self.connection.client_arguments())
        self._models: Dict[str, ModelInfo] = {}
        self._pool: Optional[ThreadPoolExecutor] = None

    # -- lifecycle -------------------------------------------------------------
    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._grpc.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------
    def _call(self, model: Optional[str], method: str, *args: Any, timeout: Optional[float], **kwargs: Any) -> Any:
        """One gRPC call with the call's deadline and the retry policy."""
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        retry = 0
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise DeadlineExceeded(
                    f"model {model!r} on {self.url}: deadline of {timeout}s exceeded", url=self.url, model=model
                )
            try:
                return getattr(self._grpc, method)(
                    *args, headers=self.connection.headers or None, client_timeout=left, **kwargs
                )
            except InferenceServerException as exc:
                error = translate_error(exc, self.url, model)
            wait = self.retry.next_wait(error.status, retry, deadline, time.monotonic(), started)
            if wait is None:
                raise error
            retry += 1
            time.sleep(wait)

    def _timeout(self, timeout: Optional[float]) -> Optional[float]:
        return self.timeout if timeout is None else timeout

    def _send(self, plan: Plan, request: Request, timeout: Optional[float]) -> List[Any]:
        inputs = []
        for name, array in request.input_arrays():
            tensor = grpcclient.InferInput(name, list(array.shape), "BYTES")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [grpcclient.InferRequestedOutput(name) for name in request.outputs]
        response = self._call(
            plan.model, "infer", plan.model, inputs, outputs=outputs, timeout=timeout,
            parameters=request.parameters, compression_algorithm=self.connection.compression,
        )
        return plan.decode(request, {name: response.as_numpy(name) for name in request.outputs})

    def _run(self, plan: Plan, timeout: Optional[float]) -> Any:
        timeout = self._timeout(timeout)
        if len(plan.requests) <= 1 or self.max_in_flight == 1:
            return plan.finish([self._send(plan, request, timeout) for request in plan.requests])
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="tritonize")
        futures = [self._pool.submit(self._send, plan, request, timeout) for request in plan.requests]
        return plan.finish([future.result() for future in futures])  # input order, whatever finishes first

    def _perform(self, call: calls.Call) -> Any:
        """A checked call: nothing to send answers ``[]`` at once; else learn the model, then send.

        Both share the call's one deadline: what learning the model took is not given again.
        """
        if call.size == 0:
            return []
        timeout = self._timeout(call.timeout)
        started = time.monotonic()
        info = self.model_info(call.model, timeout=timeout)
        timeout = calls.time_left(timeout, started, self.url, call.model)
        return self._run(call.plan(info, self.url), timeout)

    # -- server and models -----------------------------------------------------
    def is_live(self, timeout: Optional[float] = None) -> bool:
        calls.check_timeout(timeout)
        try:
            return bool(self._grpc.is_server_live(headers=self.connection.headers or None,
                                                  client_timeout=self._timeout(timeout)))
        except InferenceServerException:
            return False

    def is_ready(self, model: Optional[str] = None, timeout: Optional[float] = None) -> bool:
        if model is not None:
            calls.check_model(model)
        calls.check_timeout(timeout)
        headers = self.connection.headers or None
        try:
            if model is None:
                return bool(self._grpc.is_server_ready(headers=headers, client_timeout=self._timeout(timeout)))
            return bool(self._grpc.is_model_ready(model, headers=headers, client_timeout=self._timeout(timeout)))
        except InferenceServerException:
            return False

    def model_info(self, model: str, *, refresh: bool = False, timeout: Optional[float] = None) -> ModelInfo:
        """What ``model`` is (task, labels, batch limit), as its config on the server says."""
        calls.check_model(model)
        calls.check_timeout(timeout)
        if refresh or model not in self._models:
            response = self._call(model, "get_model_config", model, as_json=True, timeout=self._timeout(timeout))
            self._models[model] = ModelInfo.from_config(response["config"])
        return self._models[model]

    def list_models(self, *, timeout: Optional[float] = None) -> List[ModelInfo]:
        """Every tritonize ensemble on the server, with its task, labels and readiness."""
        calls.check_timeout(timeout)
        index = self._call(None, "get_model_repository_index", as_json=True, timeout=self._timeout(timeout))
        found = []
        for entry in index.get("models", []):
            try:
                info = self.model_info(entry["name"], refresh=True, timeout=timeout)
            except TritonizeError:
                continue  # not loaded: no config to read
            if info.task and info.role in (None, "ensemble"):
                found.append(replace(info, ready=entry.get("state") == "READY"))
        return found

    # -- tasks -----------------------------------------------------------------
    @overload
    def classify(self, model: str, texts: str, *, top_k: Optional[int] = ..., timeout: Optional[float] = ...) -> List[LabelScore]: ...  # type: ignore[overload-overlap]  # noqa: E501

    @overload
    def classify(self, model: str, texts: Sequence[str], *, top_k: Optional[int] = ..., timeout: Optional[float] = ...) -> List[List[LabelScore]]: ...  # noqa: E501

    def classify(
        self, model: str, texts: Texts, *, top_k: Optional[int] = None, timeout: Optional[float] = None
    ) -> Union[List[LabelScore], List[List[LabelScore]]]:
        """Classify ``texts`` as ``pipeline("text-classification", top_k=top_k)`` does.

        A single string gives one list of labels, best first; a list of
        strings gives one such list per text. ``top_k=None`` returns every label.
        """
        return self._perform(calls.classify(model, texts, top_k, timeout))  # type: ignore[no-any-return]

    @overload
    def extract_entities(self, model: str, texts: str, *, aggregation_strategy: Optional[str] = ..., timeout: Optional[float] = ...) -> List[Entity]: ...  # type: ignore[overload-overlap]  # noqa: E501

    @overload
    def extract_entities(self, model: str, texts: Sequence[str], *, aggregation_strategy: Optional[str] = ..., timeout: Optional[float] = ...) -> List[List[Entity]]: ...  # noqa: E501

    def extract_entities(
        self, model: str, texts: Texts, *, aggregation_strategy: Optional[str] = None, timeout: Optional[float] = None
    ) -> Union[List[Entity], List[List[Entity]]]:
        """Find entities as ``pipeline("token-classification", aggregation_strategy=...)`` does.

        ``aggregation_strategy=None`` uses the model's export default. A single
        string gives its list of entities; a list gives one list per text.
        Long texts are split into overlapping windows on the server: nothing is truncated.
        """
        return self._perform(  # type: ignore[no-any-return]
            calls.extract_entities(model, texts, aggregation_strategy, timeout)
        )

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
        question for several contexts, or several questions about one context)
        give one such result per pair. Long
        contexts are split into windows on the server: every window is scored.
        """
        return self._perform(
            calls.answer(model, question, context, top_k, max_answer_len, handle_impossible_answer, timeout)
        )


__all__ = ["Answer", "Client", "Entity", "LabelScore"]
