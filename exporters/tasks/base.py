"""The task plugin interface.

A task plugin says what happens around the encoder for one transformers
pipeline task: which head the checkpoint needs, the ensemble's inputs and
outputs, what the tokenizer step emits, and the postprocess step's code and
parameters. The shared machinery (ONNX export, validation, the repository
writer, the encoder formats) does the rest, so a new task is a new plugin.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence

from tritonize import protocol
from tritonize.exporters.backend import CODE
from tritonize.exporters.checkpoint import Checkpoint, ExportError
from tritonize.exporters.configs import CPU, Device, DynamicBatcher, Tensor


@dataclass(frozen=True)
class RequestLimits:
    """What one request may ask of a served model; past a limit it is refused with INVALID_ARG.

    ``max_text_chars`` characters per text (0: no limit); ``max_windows``
    windows per text (NER) or per question/context pair (QA), 0: no limit;
    ``max_batch_tokens`` padded tokens per encoder run (None: 512 on a CPU,
    16384 on a GPU, as TEI's ``--max-batch-tokens``; 0: no budget).
    """

    max_text_chars: int = 100_000
    max_windows: int = 256
    max_batch_tokens: Optional[int] = None


DEFAULT_LIMITS = RequestLimits()


@dataclass
class ExportSpec:
    """Everything an export needs to know, resolved and validated."""

    name: str
    task: str
    checkpoint: Checkpoint
    max_batch_size: int
    instances: int
    max_length: int
    windowed: bool = False
    limits: RequestLimits = DEFAULT_LIMITS
    batcher: DynamicBatcher = field(default_factory=DynamicBatcher)
    options: Dict[str, Any] = field(default_factory=dict)
    threads: Optional[int] = None  # ORT intra-op threads per encoder instance (None: cores / instances)
    allow_spinning: bool = True
    device: Device = CPU  # where the encoder runs (the fused pipeline, or the encoder model)
    precision: str = "fp32"  # fp32 | fp16 (GPUs only)
    trt_accelerator: bool = False  # native onnxruntime: TensorRT execution accelerator on the GPU
    #: the task's own parameters of the encoder step (TaskPlugin.encoder_parameters)
    encoder_parameters: Dict[str, str] = field(default_factory=dict)
    #: the served graph and its gate record (protocol.PARAM_GRAPH ...), set once the encoder is built
    graph: Dict[str, str] = field(default_factory=lambda: {protocol.PARAM_GRAPH: "fp32"})


class TaskPlugin(ABC):
    #: the transformers pipeline task name
    name: ClassVar[str]
    #: the transformers pipeline task (and optimum ONNX export task) of the encoder: the plugin's own name
    #: when it is one; a plugin with a new name (say "text-tagging") names the one whose graph it serves
    pipeline_task: ClassVar[str] = ""
    #: the transformers Auto class whose head the checkpoint must have
    auto_model_class: ClassVar[str]
    #: architecture suffix of a checkpoint with that head, e.g. "ForSequenceClassification"
    head_suffix: ClassVar[str]
    #: ensemble tensor name -> ONNX output name of the encoder
    encoder_outputs: ClassVar[Mapping[str, str]]
    #: file of ``code_dir`` that becomes the postprocess model.py
    postprocess_source: ClassVar[str]
    #: the tokenizer step's model.py (a file of ``code_dir``, else tritonize's own tokenizer step)
    tokenizer_source: ClassVar[str] = "tokenizer.py"
    #: where the plugin's step sources live: an outside plugin sets its own folder
    #: (``Path(__file__).parent``); tritonize_step.py is copied beside every step from tritonize
    code_dir: ClassVar[Path] = CODE
    #: whether the tokenizer splits long texts into windows ([texts, windows, tokens])
    windowed: ClassVar[bool] = False

    @property
    def reference_task(self) -> str:
        """``pipeline_task``, else the plugin's name."""
        return self.pipeline_task or self.name

    # -- checks --------------------------------------------------------------
    def check_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Refuse, before any weights are loaded, a checkpoint that has another head."""
        architectures = checkpoint.architectures
        if architectures and not any(a.endswith(self.head_suffix) for a in architectures):
            raise ExportError(
                f"checkpoint {checkpoint.source!r} has no {self.name} head (architectures: "
                f"{', '.join(architectures)}); fine-tune it with a *{self.head_suffix} head first, "
                f"or export it with the --task that matches its head"
            )

    def check_loaded(self, checkpoint: Checkpoint, missing_keys: Sequence[str]) -> None:
        """Refuse a checkpoint whose head weights were missing (randomly initialised)."""
        if missing_keys:
            shown = ", ".join(list(missing_keys)[:4])
            raise ExportError(
                f"checkpoint {checkpoint.source!r} has no trained {self.name} head: weights "
                f"{shown} are missing and would be random; fine-tune it first"
            )

    def options(self, checkpoint: Checkpoint, given: Mapping[str, Any]) -> Dict[str, Any]:
        """Validate and complete the task's own export options (``given`` includes max_length)."""
        return dict(given)

    # -- the contract --------------------------------------------------------
    @abstractmethod
    def ensemble_inputs(self, spec: ExportSpec) -> List[Tensor]:
        ...

    @abstractmethod
    def ensemble_outputs(self, spec: ExportSpec) -> List[Tensor]:
        ...

    def tokenizer_inputs(self, spec: ExportSpec) -> List[Tensor]:
        return [Tensor(protocol.TEXT, "string", (1,))]

    def sequence_dims(self) -> tuple:
        """Dims (without batch) of one token tensor: [tokens] or [windows, tokens]."""
        return (-1, -1) if self.windowed else (-1,)

    def tokenizer_outputs(self, spec: ExportSpec, encoder_inputs: Sequence[str]) -> List[Tensor]:
        return [Tensor(name, "int64", self.sequence_dims()) for name in encoder_inputs]

    def tokenizer_parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        return {}

    @abstractmethod
    def postprocess_inputs(self, spec: ExportSpec) -> List[Tensor]:
        ...

    @abstractmethod
    def postprocess_parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        ...

    def write_postprocess_files(self, spec: ExportSpec, version_dir: Path) -> None:
        """Files the postprocess model needs besides its model.py (none by default)."""

    def summary(self, spec: ExportSpec) -> Dict[str, Any]:
        """What the export summary says of the task's own choices (JSON-ready), beyond the common keys."""
        return {}

    def encoder_parameters(self, spec: ExportSpec) -> Dict[str, str]:
        """The task's parameters of the encoder step, e.g. ``tritonize.keep_token_id``: per-token outputs
        keep only the positions of that token (fill-mask: the masks), not [tokens, vocab] of every token."""
        return {}

    def ensemble_parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        """What the SDK needs to know, beyond the task (which every config carries)."""
        return {}

    @abstractmethod
    def validation_texts(self) -> List[str]:
        """Texts on which the ONNX encoder is checked against PyTorch."""

    def validation_inputs(self, checkpoint: Checkpoint) -> List[str]:
        """``validation_texts`` for this checkpoint (fill-mask puts the tokenizer's mask token in)."""
        return self.validation_texts()

    # -- the accuracy gate (exporters/accuracy.py) ---------------------------
    #: optimum's ORTModel class that runs this task's head in a transformers pipeline
    ort_model_class: ClassVar[str] = ""

    def pipeline_kwargs(self, spec: ExportSpec) -> Dict[str, Any]:
        """Call arguments that make ``pipeline(self.name)`` answer as the served model does."""
        return {}

    def eval_item(self, item: Any, where: str) -> Any:
        """One evaluation input from a JSON Lines object or a plain line (a text by default)."""
        if isinstance(item, dict):
            item = item.get("text")
        if not isinstance(item, str) or not item.strip():
            raise ExportError(f"{where}: expected a text (a line, or a JSON object with a \"text\" string)")
        return item

    def default_eval_inputs(self) -> List[Any]:
        from tritonize.exporters.eval_data import TEXTS

        return list(TEXTS)

    def run_pipeline(self, pipe: Any, inputs: Sequence[Any], spec: ExportSpec) -> List[Any]:
        return list(pipe(list(inputs), **self.pipeline_kwargs(spec)))

    @abstractmethod
    def agreement_key(self, result: Any) -> Any:
        """What must be equal between the pipeline's answer and a variant's for one input to agree."""
