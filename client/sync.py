"""``Client``: the synchronous gRPC SDK.

It needs only tritonclient[grpc] and numpy. A model's task, labels and batch
limit are learned from the server (its config ``parameters``), never from the
caller. What each call sends and reads back is in ``calls.py``; which
server each try goes to is in ``endpoints.py``; this module is the transport:
one channel per server, deadlines, retries, and chunks sent concurrently with
a bounded number in flight.
"""

from __future__ import annotations

import time
from dataclasses import replace
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Sequence, Union, overload

import numpy as np
from numpy.typing import NDArray
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tritonize.client import calls
from tritonize.client.calls import Plan, Request, Texts
from tritonize.client.tasks import bind, codec_of
from tritonize.client.connection import Connection
from tritonize.client.endpoints import Channels, Endpoints, Route, as_endpoints
from tritonize.client.errors import TritonizeError
from tritonize.client.models import ModelInfo
from tritonize.client.retry import RetryPolicy
from tritonize.protocol import Answer, Entity, LabelScore, MaskFill


class Client:
    """Synchronous client for tritonize models served by Triton over gRPC.

    >>> with Client("localhost:8001") as client:
    ...     client.classify("sentiment", "I love it")
    [LabelScore(label='positive', score=0.97), ...]

    ``url`` is one server (``"triton:8001"``), several that serve the same
    repository (``"h1:8001,h2:8001"`` or a list), a DNS name that stands for
    several (``"dns:///triton-headless:8001"``: one endpoint per address, looked
    up again every 30 s), or an ``Endpoints`` pool for its settings. Calls are
    spread over the endpoints (fewest in flight, round-robin); a try that fails
    with a retryable status goes at once to another endpoint, and one whose
    server went away (connection refused or lost, stopping) is set aside for a
    cool-down (``Endpoints(cooldown=2.0)``). That is safe because inference on
    tritonize models is stateless: a call answered twice answers the same.
    See ``endpoints.py``.

    ``timeout`` is each call's deadline in seconds (retries included);
    ``retry`` says how often UNAVAILABLE and RESOURCE_EXHAUSTED are retried;
    ``max_in_flight`` bounds the chunks of one call sent at once. TLS, auth
    headers and compression are set with ``connection=Connection(...)``.
    """

    def __init__(
        self,
        url: Union[str, Sequence[str], Endpoints] = "localhost:8001",
        *,
        timeout: Optional[float] = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        max_in_flight: int = 4,
        connection: Optional[Connection] = None,
    ) -> None:
        calls.check_client_arguments(timeout, retry, max_in_flight, connection)
        self.endpoints = as_endpoints(url)
        self.url = self.endpoints.url
        self.timeout = timeout
        self.retry = retry
        self.max_in_flight = max_in_flight
        self.connection = connection or Connection()
        self._channels: Channels[grpcclient.InferenceServerClient] = Channels(
            self.endpoints, self._connect, grace=(timeout or 60.0) + 5.0)
        self._models: Dict[str, ModelInfo] = {}
        self._pool: Optional[ThreadPoolExecutor] = None

    def _connect(self, address: str, server_name: Optional[str]) -> grpcclient.InferenceServerClient:
        return grpcclient.InferenceServerClient(url=address, **self.connection.client_arguments(server_name))

    # -- lifecycle -------------------------------------------------------------
    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for channel in self._channels.close_all():
            channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------
    def _refresh(self) -> None:
        """Look DNS names up again when due, and close the channels of addresses they no longer have."""
        if self.endpoints.stale():
            self.endpoints.refresh()
        for channel in self._channels.retired():
            channel.close()

    def _call(self, model: Optional[str], method: str, *args: Any, timeout: Optional[float], **kwargs: Any) -> Any:
        """One gRPC call with the call's deadline and the retry policy, over the endpoints."""
        self._refresh()
        route = Route(self.endpoints, self.retry, timeout, model)
        while True:
            address, left = route.next()
            try:
                result = getattr(self._channels.get(address), method)(
                    *args, headers=self.connection.headers or None, client_timeout=left, **kwargs
                )
            except InferenceServerException as exc:
                wait = route.failed(address, exc)  # raises when the call gives up
                if wait:
                    time.sleep(wait)
                continue
            except BaseException:
                route.abandoned(address)
                raise
            route.answered(address)
            return result

    def _probe(self, method: str, *args: Any, timeout: Optional[float]) -> bool:
        """``is_live``/``is_ready``: True if an endpoint says so (healthy ones asked first), within ``timeout``."""
        self._refresh()
        for address, left in self.endpoints.probes(timeout):
            try:
                answer = bool(getattr(self._channels.get(address), method)(
                    *args, headers=self.connection.headers or None, client_timeout=left))
            except InferenceServerException as exc:
                self.endpoints.probed(address, exc)
                continue
            self.endpoints.probed(address)
            if answer:
                return True
        return False

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
        """Whether a server answers (over several endpoints: at least one)."""
        calls.check_timeout(timeout)
        return self._probe("is_server_live", timeout=self._timeout(timeout))

    def is_ready(self, model: Optional[str] = None, timeout: Optional[float] = None) -> bool:
        """Whether the server (or ``model`` on it) is ready; over several endpoints: on at least one."""
        if model is not None:
            calls.check_model(model)
        calls.check_timeout(timeout)
        if model is None:
            return self._probe("is_server_ready", timeout=self._timeout(timeout))
        return self._probe("is_model_ready", model, timeout=self._timeout(timeout))

    def model_info(self, model: str, *, refresh: bool = False, timeout: Optional[float] = None) -> ModelInfo:
        """What ``model`` is (task, labels, batch limit), as its config on the server says.

        Learned once and kept: over several endpoints, from whichever answers (they serve one repository).
        """
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

    def predict(self, model: str, *, timeout: Optional[float] = None, **arguments: Any) -> Any:
        """Call ``model`` with whatever task it serves, through that task plugin's codec.

        The inputs are keywords, lower-case (``text=``, ``text_pair=``,
        ``question=``, ``context=``), each a str or a list of str, then the
        task's own options (``top_k=``, ``aggregation_strategy=`` ...). The
        result is the task's typed method's: ``client.predict("sentiment",
        text="I love it")`` is ``client.classify("sentiment", "I love it")``.
        Works for every installed task plugin, built in or not.
        """
        calls.check_model(model)
        timeout = self._timeout(calls.check_timeout(timeout))
        started = time.monotonic()
        info = self.model_info(model, timeout=timeout)
        call = bind(codec_of(info, self.url), model, timeout, arguments)
        if call.size == 0:
            return []
        timeout = calls.time_left(timeout, started, self.url, model)
        return self._run(call.plan(info, self.url), timeout)
    @overload
    def classify(self, model: str, texts: str, *, text_pair: Optional[str] = ..., top_k: Optional[int] = ..., timeout: Optional[float] = ...) -> List[LabelScore]: ...  # type: ignore[overload-overlap]  # noqa: E501

    @overload
    def classify(self, model: str, texts: Sequence[str], *, text_pair: Optional[Sequence[Optional[str]]] = ..., top_k: Optional[int] = ..., timeout: Optional[float] = ...) -> List[List[LabelScore]]: ...  # noqa: E501

    def classify(
        self, model: str, texts: Texts, *, text_pair: calls.TextPairs = None, top_k: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> Union[List[LabelScore], List[List[LabelScore]]]:
        """Classify ``texts`` as ``pipeline("text-classification", top_k=top_k)`` does.

        A single string gives one list of labels, best first; a list of
        strings gives one such list per text. ``top_k=None`` returns every label.
        With ``text_pair`` the texts are classified as sentence pairs (NLI,
        paraphrase, cross-encoder reranking), as the pipeline classifies
        ``{"text": text, "text_pair": pair}``: a str with a str, or a list of
        one pair per text (None: that text alone).
        """
        return self._perform(  # type: ignore[no-any-return]
            calls.classify(model, texts, top_k, timeout, text_pair=text_pair)
        )

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

    def embed(
        self, model: str, texts: Texts, *, normalize: Optional[bool] = None, timeout: Optional[float] = None
    ) -> "NDArray[np.float32]":
        """Sentence embeddings of ``texts``, as ``SentenceTransformer(path).encode(texts)`` gives them.

        A single string gives a float32 array of shape ``[dim]``; a list of n
        strings one of shape ``[n, dim]``, in input order (an empty list:
        ``[0, dim]``). The pooling (cls or mean) is the export's, as the
        checkpoint's sentence-transformers files say; ``normalize=None`` keeps
        the export's normalization, True or False L2-normalizes or not. Texts
        longer than the export's max length are truncated, as
        sentence-transformers truncates at ``max_seq_length``.
        """
        call = calls.embed(model, texts, normalize, timeout)
        if call.size == 0:  # nothing to embed: [0, dim], the model's dim from its config
            return calls.no_embeddings(self.model_info(model, timeout=self._timeout(call.timeout)), self.url)
        return self._perform(call)  # type: ignore[no-any-return]

    def fill_mask(
        self,
        model: str,
        texts: Texts,
        *,
        top_k: Optional[int] = None,
        targets: Union[None, str, Sequence[str]] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """Fill in the mask tokens of ``texts`` as ``pipeline("fill-mask")`` does.

        A text with one mask token gives a list of ``top_k`` ``MaskFill``
        (``score``, ``token``, ``token_str``, ``sequence``; default 5), best
        first; a text with several masks a list of such lists, one per mask; a
        list of texts one such result per text (a list of one text: a list of
        one result; the pipeline unwraps it). ``targets`` (words or
        tokens) scores only those; each that is not in the vocabulary stands
        for its first token. The mask token is the model's own
        (``model_info(model).parameters["tritonize.mask_token"]``).
        """
        return self._perform(calls.fill_mask(model, texts, top_k, targets, timeout))


__all__ = ["Answer", "Client", "Entity", "LabelScore", "MaskFill"]
