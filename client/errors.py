"""One hierarchy of SDK errors; each message names the model, the server and the cause."""

from __future__ import annotations

from typing import Any, Optional, Tuple

from tritonize.client.retry import RetryPolicy


class TritonizeError(Exception):
    """Base class of every error the SDK raises."""

    def __init__(self, message: str, *, url: Optional[str] = None, model: Optional[str] = None) -> None:
        super().__init__(message)
        self.url = url
        self.model = model
        self.status: str = ""  # the gRPC status, when the error came from the server
        # the server itself is gone (unreachable, stopping, connection lost), not just this model or request:
        # a client over several endpoints sets that endpoint aside for a cool-down (see endpoints.py)
        self.endpoint_down: bool = False


class ServerUnavailable(TritonizeError):
    """The server cannot be reached (down, wrong address, restarting)."""


class ModelNotFound(TritonizeError):
    """The server does not serve a model of that name."""


class ModelNotReady(TritonizeError):
    """The model exists but is not ready (loading, unloading, failed)."""


class InvalidInput(TritonizeError):
    """The request is wrong: bad texts, bad arguments, or a model of another task."""


class TaskMismatch(InvalidInput):
    """The model serves another task than the method called (e.g. classify on a NER model)."""


class AccessDenied(TritonizeError):
    """The server refused the credentials: a missing or wrong auth header or certificate."""


class DeadlineExceeded(TritonizeError):
    """The call did not finish within its ``timeout``."""


# What Triton says when a model's queue policy sheds a request, and what that means
OVERLOAD_MESSAGES: Tuple[Tuple[str, str], ...] = (
    ("exceeds maximum queue size", "its queue is full (max_queue_size)"),
    ("request timeout expired", "the request timed out in its queue"),
)


def translate_error(exc: Any, url: str, model: Optional[str]) -> TritonizeError:
    """Map a tritonclient ``InferenceServerException`` to this hierarchy, keeping the server's words."""
    status = str(exc.status() or "")
    text = str(exc.message() or exc)
    where = f"model {model!r} on {url}" if model else url
    lowered = text.lower()
    error: TritonizeError
    if "protocol is restricted" in lowered or "PERMISSION_DENIED" in status or "UNAUTHENTICATED" in status:
        error = AccessDenied(f"{where}: access denied ({text}); check the auth headers or certificates",
                             url=url, model=model)
        error.status = "PERMISSION_DENIED"  # never retried
        return error
    overload = next((why for words, why in OVERLOAD_MESSAGES if words in lowered), None)
    if overload is not None:
        # Triton's queue policy (dynamic_batching.default_queue_policy) shed the request: transient
        error = ServerUnavailable(
            f"{where} is overloaded: {overload} ({text}); this is transient: retry later, send less, "
            "or give the model more instances or a longer queue", url=url, model=model,
        )
        error.status = status if RetryPolicy.retryable(status) else "RESOURCE_EXHAUSTED"
        return error
    if "CANCELLED" in status and "channel closed" not in lowered:
        # not our own close(): the server cancelled the call in flight, as it does when it stops
        error = ServerUnavailable(f"server {url} cancelled the call ({text}); it is stopping or restarting",
                                  url=url, model=model)
        error.status = "UNAVAILABLE"
        error.endpoint_down = True
        return error
    if "stub process" in lowered and "is not healthy" in lowered:
        # a step's Python stub died (out of memory, killed); `tritonize serve` reloads it within seconds
        error = ModelNotReady(
            f"{where}: a step of the model lost its Python process ({text}); `tritonize serve` reloads it "
            "within seconds (elsewhere, reload the model)", url=url, model=model,
        )
        error.status = "UNAVAILABLE"
        return error
    if "RESOURCE_EXHAUSTED" in status:
        error = ServerUnavailable(f"server {url} is overloaded (RESOURCE_EXHAUSTED): {text}", url=url, model=model)
    elif "UNAVAILABLE" in status and "not ready" not in lowered and "unknown model" not in lowered:
        # no connection (refused, reset, DNS), or the server is stopping: the whole server is unavailable
        error = ServerUnavailable(f"server {url} is unavailable: {text}", url=url, model=model)
        error.endpoint_down = True
    elif "DEADLINE_EXCEEDED" in status or "deadline exceeded" in lowered:
        error = DeadlineExceeded(f"{where}: deadline exceeded ({text})", url=url, model=model)
    elif "has no available versions" in lowered or "not ready" in lowered:
        # the model is being loaded or unloaded (a restart, a reload): transient
        error = ModelNotReady(f"{where}: the model is not ready ({text})", url=url, model=model)
        error.status = "UNAVAILABLE"
        return error
    elif "unknown model" in lowered or "not found" in lowered:
        error = ModelNotFound(f"{where}: the server does not serve this model ({text})", url=url, model=model)
    elif "not ready" in lowered:
        error = ModelNotReady(f"{where}: the model is not ready ({text})", url=url, model=model)
    elif "INVALID_ARGUMENT" in status:
        error = InvalidInput(f"{where}: invalid input ({text})", url=url, model=model)
    else:
        error = TritonizeError(f"{where}: {text}", url=url, model=model)
    error.status = status
    return error
