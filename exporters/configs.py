"""Build ``config.pbtxt`` as Triton's own ``ModelConfig`` protobuf.

No string templates: every config is a ``model_config_pb2.ModelConfig`` that
``text_format`` writes, so a config that does not parse cannot be written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

DTYPES = {
    "string": mc.TYPE_STRING,
    "int64": mc.TYPE_INT64,
    "int32": mc.TYPE_INT32,
    "fp32": mc.TYPE_FP32,
    "fp16": mc.TYPE_FP16,
    "bool": mc.TYPE_BOOL,
}


@dataclass(frozen=True)
class Tensor:
    """One input or output: name, dtype key of :data:`DTYPES`, dims without the batch dim."""

    name: str
    dtype: str
    dims: Sequence[int] = (-1,)
    optional: bool = False
    ragged: bool = False


def _input(tensor: Tensor) -> mc.ModelInput:
    return mc.ModelInput(
        name=tensor.name,
        data_type=DTYPES[tensor.dtype],
        dims=list(tensor.dims),
        optional=tensor.optional,
        allow_ragged_batch=tensor.ragged,
    )


def _output(tensor: Tensor) -> mc.ModelOutput:
    return mc.ModelOutput(name=tensor.name, data_type=DTYPES[tensor.dtype], dims=list(tensor.dims))


def set_parameters(config: mc.ModelConfig, parameters: Mapping[str, Any]) -> None:
    """Store ``parameters`` as string parameters; non-strings are JSON-encoded."""
    for key, value in parameters.items():
        text = value if isinstance(value, str) else json.dumps(value)
        config.parameters[key].string_value = text


def model_config(
    name: str,
    *,
    inputs: Iterable[Tensor],
    outputs: Iterable[Tensor],
    max_batch_size: int,
    backend: Optional[str] = None,
    platform: Optional[str] = None,
    parameters: Optional[Mapping[str, Any]] = None,
) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, max_batch_size=max_batch_size)
    if backend:
        config.backend = backend
    if platform:
        config.platform = platform
    config.input.extend(_input(t) for t in inputs)
    config.output.extend(_output(t) for t in outputs)
    if parameters:
        set_parameters(config, parameters)
    return config


@dataclass(frozen=True)
class QueuePolicy:
    """How much a step may queue, and for how long (Triton's ``ModelQueuePolicy``).

    A request past ``max_queue_size`` queued requests, or queued longer than
    ``timeout_us`` (0: no timeout), is refused with UNAVAILABLE ("Exceeds
    maximum queue size" / "Request timeout expired"), which the SDK retries
    with backoff. ``allow_timeout_override`` lets a request's own timeout
    parameter shorten it.
    """

    max_queue_size: int = 256
    timeout_us: int = 0
    allow_timeout_override: bool = True

    def __post_init__(self) -> None:
        if self.max_queue_size < 0 or self.timeout_us < 0:
            raise ValueError("queue size and timeout must be >= 0")

    def to_proto(self) -> mc.ModelQueuePolicy:
        policy = mc.ModelQueuePolicy(
            max_queue_size=self.max_queue_size,
            allow_timeout_override=self.allow_timeout_override,
        )
        if self.timeout_us:
            policy.timeout_action = mc.ModelQueuePolicy.REJECT
            policy.default_timeout_microseconds = self.timeout_us
        return policy


@dataclass(frozen=True)
class DynamicBatcher:
    """Triton's ``dynamic_batching``: how long to wait for a batch, and the queue policy."""

    max_queue_delay_us: int = 0
    queue: QueuePolicy = QueuePolicy()

    def apply(self, config: mc.ModelConfig) -> None:
        config.dynamic_batching.max_queue_delay_microseconds = self.max_queue_delay_us
        config.dynamic_batching.default_queue_policy.CopyFrom(self.queue.to_proto())


def add_dynamic_batching(config: mc.ModelConfig, batcher: Optional[DynamicBatcher] = None) -> None:
    (batcher or DynamicBatcher()).apply(config)


@dataclass(frozen=True)
class Device:
    """Where a model's instances run: ``cpu``, ``cuda`` (every GPU Triton sees) or ``cuda:N`` (GPU N).

    It becomes the model's ``instance_group``: ``KIND_CPU``, or ``KIND_GPU``
    with ``gpus: [N]``. Triton refuses to load a ``KIND_GPU`` model on a host
    without a GPU, and the Python-backend encoder refuses an ONNX Runtime
    without its CUDA execution provider: nothing falls back to the CPU silently.
    """

    kind: str = "cpu"  # cpu | cuda
    index: Optional[int] = None

    @classmethod
    def parse(cls, text: str) -> "Device":
        value = text.strip().lower()
        if value == "cpu":
            return cls()
        if value == "cuda" or value == "gpu":
            return cls("cuda")
        if value.startswith("cuda:") and value[5:].isdigit():
            return cls("cuda", int(value[5:]))
        raise ValueError(f"device {text!r} is not cpu, cuda or cuda:N")

    @property
    def is_gpu(self) -> bool:
        return self.kind == "cuda"

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


CPU = Device()


def add_instances(config: mc.ModelConfig, count: int, device: Device = CPU) -> None:
    group = config.instance_group.add()
    group.count = count
    group.kind = mc.ModelInstanceGroup.KIND_GPU if device.is_gpu else mc.ModelInstanceGroup.KIND_CPU
    if device.index is not None:
        group.gpus.append(device.index)


def ensemble_config(
    name: str,
    *,
    inputs: Iterable[Tensor],
    outputs: Iterable[Tensor],
    max_batch_size: int,
    steps: Sequence[tuple],
    parameters: Optional[Mapping[str, Any]] = None,
) -> mc.ModelConfig:
    """An ensemble. ``steps`` is a list of ``(model_name, {input: tensor}, {output: tensor})``."""
    config = model_config(
        name,
        inputs=inputs,
        outputs=outputs,
        max_batch_size=max_batch_size,
        platform="ensemble",
        parameters=parameters,
    )
    for model_name, input_map, output_map in steps:
        step = config.ensemble_scheduling.step.add()
        step.model_name = model_name
        step.model_version = -1
        for key, value in input_map.items():
            step.input_map[key] = value
        for key, value in output_map.items():
            step.output_map[key] = value
    return config


def to_text(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def write_config(model_dir: Path, config: mc.ModelConfig) -> Path:
    path = Path(model_dir) / "config.pbtxt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_text(config))
    return path


def read_config(path: Path) -> mc.ModelConfig:
    """Parse a config.pbtxt as ``ModelConfig`` (raises ``text_format.ParseError``)."""
    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())


def parameters_of(config: mc.ModelConfig) -> Dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}
