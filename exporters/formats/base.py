"""The format plugin interface: package a validated ONNX encoder as a Triton model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Dict, Mapping

from tritonclient.grpc import model_config_pb2 as mc

from tritonize.exporters.onnx_export import OnnxEncoder
from tritonize.exporters.tasks.base import ExportSpec

# ONNX input name -> ensemble tensor name
ENCODER_INPUTS = {
    "input_ids": "INPUT_IDS",
    "attention_mask": "ATTENTION_MASK",
    "token_type_ids": "TOKEN_TYPE_IDS",
}


@dataclass
class EncoderStep:
    """The encoder model's config and how its tensors connect to the ensemble's."""

    config: mc.ModelConfig
    input_map: Dict[str, str]  # encoder model input -> ensemble tensor
    output_map: Dict[str, str]  # encoder model output -> ensemble tensor


class FormatPlugin(ABC):
    #: the --backend name
    name: ClassVar[str]
    #: the tokenizer pads to a multiple of this (0: to the longest in the batch)
    pad_to_multiple_of: ClassVar[int] = 0
    #: whether this format runs on the local pip-installed tritonserver
    runs_locally: ClassVar[bool] = True
    #: whether the encoder takes [texts, windows, tokens] (long texts split into windows)
    supports_windows: ClassVar[bool] = False
    #: whether the encoder can share one Python stub with the tokenizer and postprocess (--layout fused)
    supports_fused: ClassVar[bool] = False
    #: whether the encoder runs inside the Python step (else it is a native model of its own, NAME_encoder,
    #: that the fused layout's Python step calls through BLS)
    in_process: ClassVar[bool] = True
    #: whether the format runs only on a GPU (--device cuda)
    gpu_only: ClassVar[bool] = False

    @abstractmethod
    def write_encoder(
        self,
        spec: ExportSpec,
        encoder: OnnxEncoder,
        outputs: Mapping[str, str],
        model_dir: Path,
        model_name: str,
    ) -> EncoderStep:
        """Write ``model_dir`` (config and files); ``outputs`` maps ensemble tensor -> ONNX output."""
