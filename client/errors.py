"""One hierarchy of SDK errors; each message names the model, the server and the cause."""

from __future__ import annotations

from typing import Optional


class TritonizeError(Exception):
    """Base class of every error the SDK raises."""

    def __init__(self, message: str, *, url: Optional[str] = None, model: Optional[str] = None) -> None:
        super().__init__(message)
        self.url = url
        self.model = model


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


class DeadlineExceeded(TritonizeError):
    """The call did not finish within its ``timeout``."""
