"""The tritonize client SDK: call tritonize ensembles over gRPC.

Needs only ``tritonclient[grpc]`` and numpy; never torch, transformers or onnx.
"""

from tritonize.client.errors import (
    AccessDenied,
    DeadlineExceeded,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    ServerUnavailable,
    TaskMismatch,
    TritonizeError,
)
from tritonize.client.aio import AsyncClient
from tritonize.client.connection import Connection
from tritonize.client.endpoints import Endpoints, EndpointStatus
from tritonize.client.models import ModelInfo
from tritonize.client.retry import RetryPolicy
from tritonize.client.sync import Client
from tritonize.protocol import Answer, Entity, LabelScore, MaskFill

__all__ = [
    "AccessDenied",
    "Answer",
    "AsyncClient",
    "Client",
    "Connection",
    "DeadlineExceeded",
    "EndpointStatus",
    "Endpoints",
    "Entity",
    "InvalidInput",
    "LabelScore",
    "MaskFill",
    "ModelInfo",
    "ModelNotFound",
    "ModelNotReady",
    "RetryPolicy",
    "ServerUnavailable",
    "TaskMismatch",
    "TritonizeError",
]
