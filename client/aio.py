"""``AsyncClient``: the asyncio SDK, on tritonclient's grpc.aio.

Same methods, arguments and results as ``Client``; every method is a
coroutine. The contract of each call is shared with ``Client`` (``calls.py``),
and so is the choice of endpoint and failover (``endpoints.py``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Union, overload

import numpy as np
from numpy.typing import NDArray
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from tritonize.client import calls
from tritonize.client.calls import Plan, Request, Texts
from tritonize.client.tasks import bind, codec_of
from tritonize.client.connection import Connection
from tritonize.client.endpoints import Channels, Endpoints, Route, as_endpoints
from tritonize.client.errors import TritonizeError
from tritonize.client.models import ModelInfo
from tritonize.client.retry import RetryPolicy
from tritonize.protocol import Entity, LabelScore


class AsyncClient:
    """Asyncio client for tritonize models served by Triton over gRPC.

    >>> async with AsyncClient("localhost:8001") as client:
    ...     await client.classify("sentiment", "I love it")

    ``url`` takes what ``Client``'s does: one server, several
    (``"h1:8001,h2:8001"`` or a list), ``"dns:///NAME:PORT"``, or an
    ``Endpoints`` pool; calls are spread and fail over in the same way.
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
        self._channels: Channels[aioclient.InferenceServerClient] = Channels(
            self.endpoints, self._connect, grace=(timeout or 60.0) + 5.0)
        self._models: Dict[str, ModelInfo] = {}

    def _connect(self, address: str, server_name: Optional[str]) -> aioclient.InferenceServerClient:
        return aioclient.InferenceServerClient(url=address, **self.connection.client_arguments(server_name))

    async def close(self) -> None:
        for channel in self._channels.close_all():
            await channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- transport -------------------------------------------------------------
    def _timeout(self, timeout: Optional[float]) -> Optional[float]:
        return self.timeout if timeout is None else timeout

    async def _refresh(self) -> None:
        """Look DNS names up again when due (in a thread: the lookup blocks), close dropped channels."""
        if self.endpoints.stale():
            await asyncio.get_running_loop().run_in_executor(None, self.endpoints.refresh)
        for channel in self._channels.retired():
            await channel.close()

    async def _call(self, model: Optional[str], method: str, *args: Any, timeout: Optional[float], **kwargs: Any) -> Any:
        await self._refresh()
        route = Route(self.endpoints, self.retry, timeout, model)
        while True:
            address, left = route.next()
            try:
                result = await getattr(self._channels.get(address), method)(
                    *args, headers=self.connection.headers or None, client_timeout=left, **kwargs
                )
            except InferenceServerException as exc:
                wait = route.failed(address, exc)  # raises when the call gives up
                if wait:
                    await asyncio.sleep(wait)
                continue
            except BaseException:
                route.abandoned(address)
                raise
            route.answered(address)
            return result

    async def _probe(self, method: str, *args: Any, timeout: Optional[float]) -> bool:
        """``is_live``/``is_ready``: True if an endpoint says so (healthy ones asked first), within ``timeout``."""
        await self._refresh()
        for address, left in self.endpoints.probes(timeout):
            try:
                answer = bool(await getattr(self._channels.get(address), method)(
                    *args, headers=self.connection.headers or None, client_timeout=left))
            except InferenceServerException as exc:
                self.endpoints.probed(address, exc)
                continue
            self.endpoints.probed(address)
            if answer:
                return True
        return False

    async def _send(self, plan: Plan, request: Request, timeout: Optional[float]) -> List[Any]:
        inputs = []
        for name, array in request.input_arrays():
            tensor = grpcclient.InferInput(name, list(array.shape), "BYTES")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [grpcclient.InferRequestedOutput(name) for name in request.outputs]
        response = await self._call(
            plan.model, "infer", plan.model, inputs, outputs=outputs, timeout=timeout,
            parameters=request.parameters, compression_algorithm=self.connection.compression,
        )
        return plan.decode(request, {name: response.as_numpy(name) for name in request.outputs})

    async def _run(self, plan: Plan, timeout: Optional[float]) -> Any:
        timeout = self._timeout(timeout)
        gate = asyncio.Semaphore(self.max_in_flight)

        async def bounded(request: Request) -> List[Any]:
            async with gate:
                return await self._send(plan, request, timeout)

        return plan.finish(list(await asyncio.gather(*(bounded(r) for r in plan.requests))))

    async def _perform(self, call: calls.Call) -> Any:
        """A checked call: nothing to send answers ``[]`` at once; else learn the model, then send.

        Both share the call's one deadline: what learning the model took is not given again.
        """
        if call.size == 0:
            return []
        timeout = self._timeout(call.timeout)
        started = time.monotonic()
        info = await self.model_info(call.model, timeout=timeout)
        timeout = calls.time_left(timeout, started, self.url, call.model)
        return await self._run(call.plan(info, self.url), timeout)

    # -- server and models -----------------------------------------------------
    async def is_live(self, timeout: Optional[float] = None) -> bool:
        calls.check_timeout(timeout)
        return await self._probe("is_server_live", timeout=self._timeout(timeout))

    async def is_ready(self, model: Optional[str] = None, timeout: Optional[float] = None) -> bool:
        if model is not None:
            calls.check_model(model)
        calls.check_timeout(timeout)
        if model is None:
            return await self._probe("is_server_ready", timeout=self._timeout(timeout))
        return await self._probe("is_model_ready", model, timeout=self._timeout(timeout))

    async def model_info(self, model: str, *, refresh: bool = False, timeout: Optional[float] = None) -> ModelInfo:
        calls.check_model(model)
        calls.check_timeout(timeout)
        if refresh or model not in self._models:
            response = await self._call(model, "get_model_config", model, as_json=True,
                                        timeout=self._timeout(timeout))
            self._models[model] = ModelInfo.from_config(response["config"])
        return self._models[model]

    async def list_models(self, *, timeout: Optional[float] = None) -> List[ModelInfo]:
        calls.check_timeout(timeout)
        index = await self._call(None, "get_model_repository_index", as_json=True, timeout=self._timeout(timeout))
        found = []
        for entry in index.get("models", []):
            try:
                info = await self.model_info(entry["name"], refresh=True, timeout=timeout)
            except TritonizeError:
                continue
            if info.task and info.role in (None, "ensemble"):
                found.append(replace(info, ready=entry.get("state") == "READY"))
        return found

    # -- tasks -----------------------------------------------------------------

    async def predict(self, model: str, *, timeout: Optional[float] = None, **arguments: Any) -> Any:
        """Call ``model`` with whatever task it serves, as ``Client.predict`` does."""
        calls.check_model(model)
        timeout = self._timeout(calls.check_timeout(timeout))
        started = time.monotonic()
        info = await self.model_info(model, timeout=timeout)
        call = bind(codec_of(info, self.url), model, timeout, arguments)
        if call.size == 0:
            return []
        timeout = calls.time_left(timeout, started, self.url, model)
        return await self._run(call.plan(info, self.url), timeout)
    @overload
    async def classify(self, model: str, texts: str, *, text_pair: Optional[str] = ..., top_k: Optional[int] = ..., timeout: Optional[float] = ...) -> List[LabelScore]: ...  # type: ignore[overload-overlap]  # noqa: E501

    @overload
    async def classify(self, model: str, texts: Sequence[str], *, text_pair: Optional[Sequence[Optional[str]]] = ..., top_k: Optional[int] = ..., timeout: Optional[float] = ...) -> List[List[LabelScore]]: ...  # noqa: E501

    async def classify(
        self, model: str, texts: Texts, *, text_pair: calls.TextPairs = None, top_k: Optional[int] = None,
        timeout: Optional[float] = None,
    ) -> Union[List[LabelScore], List[List[LabelScore]]]:
        return await self._perform(  # type: ignore[no-any-return]
            calls.classify(model, texts, top_k, timeout, text_pair=text_pair)
        )

    @overload
    async def extract_entities(self, model: str, texts: str, *, aggregation_strategy: Optional[str] = ..., timeout: Optional[float] = ...) -> List[Entity]: ...  # type: ignore[overload-overlap]  # noqa: E501

    @overload
    async def extract_entities(self, model: str, texts: Sequence[str], *, aggregation_strategy: Optional[str] = ..., timeout: Optional[float] = ...) -> List[List[Entity]]: ...  # noqa: E501

    async def extract_entities(
        self, model: str, texts: Texts, *, aggregation_strategy: Optional[str] = None, timeout: Optional[float] = None
    ) -> Union[List[Entity], List[List[Entity]]]:
        return await self._perform(  # type: ignore[no-any-return]
            calls.extract_entities(model, texts, aggregation_strategy, timeout)
        )

    async def answer(
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
        return await self._perform(
            calls.answer(model, question, context, top_k, max_answer_len, handle_impossible_answer, timeout)
        )

    async def embed(
        self, model: str, texts: Texts, *, normalize: Optional[bool] = None, timeout: Optional[float] = None
    ) -> "NDArray[np.float32]":
        """``Client.embed``, awaited: float32 ``[dim]`` for a str, ``[n, dim]`` for a list."""
        call = calls.embed(model, texts, normalize, timeout)
        if call.size == 0:
            return calls.no_embeddings(await self.model_info(model, timeout=self._timeout(call.timeout)), self.url)
        return await self._perform(call)  # type: ignore[no-any-return]

    async def fill_mask(
        self,
        model: str,
        texts: Texts,
        *,
        top_k: Optional[int] = None,
        targets: Union[None, str, Sequence[str]] = None,
        timeout: Optional[float] = None,
    ) -> Any:
        """``Client.fill_mask``, awaited."""
        return await self._perform(calls.fill_mask(model, texts, top_k, targets, timeout))
