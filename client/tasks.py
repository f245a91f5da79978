"""How the SDK calls each task: one :class:`TaskCodec` per registered task plugin.

A codec turns the keyword arguments of one call into a checked
:class:`~tritonize.client.calls.Call` (what to send, and how to decode the
answer into results shaped like the transformers pipeline's). The registry
(:mod:`tritonize.tasks`) says which codec serves which task, so
``Client.predict``, ``tritonize predict`` and the load-test users work with
any installed task, built in or not.

A codec's ``call`` takes one keyword per input of the task, lower-case
(``text``, ``text_pair``, ``question``, ``context``), each a str or a list of
str, then the task's own options and ``timeout``. The typed methods of
``Client`` (``classify``, ``extract_entities``, ``answer`` ...) are the same
calls with their signatures spelled out.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any, Dict, Mapping, Optional

from tritonize import protocol, tasks
from tritonize.client import calls
from tritonize.client.calls import Call
from tritonize.client.errors import InvalidInput, TaskMismatch
from tritonize.client.models import ModelInfo


class TaskCodec:
    """The SDK side of a task plugin."""

    #: the task's name, as registered
    task: str = ""

    def call(self, *args: Any, **kwargs: Any) -> Call:
        """``call(model, *, <inputs>, <options>, timeout=None)``: one checked call; wrong arguments raise
        ``InvalidInput`` naming them. A codec spells its own keywords out."""
        raise NotImplementedError

    def to_json(self, result: Any) -> Any:
        """One result as JSON-ready data (``tritonize predict`` prints it)."""
        if isinstance(result, list):
            return [self.to_json(item) for item in result]
        if hasattr(result, "to_dict"):
            return result.to_dict()
        if hasattr(result, "tolist"):
            return result.tolist()
        return result

    def sample_arguments(self, info: ModelInfo, sample: Mapping[str, Any]) -> Dict[str, Any]:
        """The call arguments of one load-test sample (its inputs, by keyword) for ``info``'s model."""
        return {key: value for key, value in sample.items() if key != "length" and value is not None}


def bind(codec: TaskCodec, model: str, timeout: Optional[float], arguments: Mapping[str, Any]) -> Call:
    """``codec.call(model, timeout=..., **arguments)``, an argument it does not take an ``InvalidInput``."""
    signature = inspect.signature(codec.call)
    try:
        signature.bind(model, timeout=timeout, **arguments)
    except TypeError as exc:
        takes = [name for name, p in signature.parameters.items()
                 if name not in ("model", "timeout") and p.kind is not p.VAR_KEYWORD]
        raise InvalidInput(f"{codec.task}: {exc}; it takes {', '.join(takes)}") from None
    return codec.call(model, timeout=timeout, **arguments)


@lru_cache(maxsize=None)
def codec_for(task: str) -> TaskCodec:
    """The codec of the installed task plugin ``task``."""
    try:
        definition = tasks.get(task)
    except tasks.UnknownTask as exc:
        raise TaskMismatch(f"{exc}; install the plugin that serves it") from None
    codec = definition.load_codec()
    if not isinstance(codec, TaskCodec):
        raise TypeError(f"task {task!r}: {definition.codec} is a {type(codec).__name__}, not a TaskCodec")
    return codec


def codec_of(info: ModelInfo, url: str) -> TaskCodec:
    """The codec for the served model ``info``: ``TaskMismatch`` if it is no tritonize ensemble."""
    if not info.task:
        raise TaskMismatch(f"model {info.name!r} on {url} is not a tritonize model", url=url, model=info.name)
    calls.require(info, info.task, url)  # a step of an ensemble is refused
    try:
        return codec_for(info.task)
    except TaskMismatch as exc:
        raise TaskMismatch(f"model {info.name!r} on {url} serves {info.task!r}: {exc}", url=url,
                           model=info.name) from None


# -- the built-in tasks ----------------------------------------------------------------
class TextClassificationCodec(TaskCodec):
    task = "text-classification"

    def call(self, model: str, *, text: Any, text_pair: Any = None, top_k: Optional[int] = None,
             timeout: Optional[float] = None) -> Call:
        return calls.classify(model, text, top_k, timeout, text_pair=text_pair)


class TokenClassificationCodec(TaskCodec):
    task = "token-classification"

    def call(self, model: str, *, text: Any, aggregation_strategy: Optional[str] = None,
             timeout: Optional[float] = None) -> Call:
        return calls.extract_entities(model, text, aggregation_strategy, timeout)


class QuestionAnsweringCodec(TaskCodec):
    task = "question-answering"

    def call(self, model: str, *, question: Any, context: Any, top_k: int = 1,
             max_answer_len: Optional[int] = None, handle_impossible_answer: Optional[bool] = None,
             timeout: Optional[float] = None) -> Call:
        return calls.answer(model, question, context, top_k, max_answer_len, handle_impossible_answer, timeout)

    def to_json(self, result: Any) -> Any:
        return None if result is None else super().to_json(result)


class FillMaskCodec(TaskCodec):
    task = "fill-mask"

    #: what the task's samples (tritonize.tasks.FILL_MASK) write where the model's mask token goes
    placeholder = "{mask}"

    def call(self, model: str, *, text: Any, top_k: Optional[int] = None, targets: Any = None,
             timeout: Optional[float] = None) -> Call:
        return calls.fill_mask(model, text, top_k, targets, timeout)

    def sample_arguments(self, info: ModelInfo, sample: Mapping[str, Any]) -> Dict[str, Any]:
        """The sample's ``{mask}`` becomes the served model's own mask token ([MASK], <mask> ...)."""
        arguments = super().sample_arguments(info, sample)
        mask = info.parameters.get(protocol.PARAM_MASK_TOKEN)
        if not mask:
            raise TaskMismatch(f"model {info.name!r} does not say its mask token ({protocol.PARAM_MASK_TOKEN}); "
                               "re-export it with this tritonize", model=info.name)
        return {key: value.replace(self.placeholder, mask) if isinstance(value, str) else value
                for key, value in arguments.items()}


class FeatureExtractionCodec(TaskCodec):
    task = "feature-extraction"

    def call(self, model: str, *, text: Any, normalize: Optional[bool] = None,
             timeout: Optional[float] = None) -> Call:
        return calls.embed(model, text, normalize, timeout)


__all__ = ["Call", "TaskCodec", "bind", "codec_for", "codec_of"]
