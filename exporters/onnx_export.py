"""Checkpoint -> ONNX encoder, exported with optimum and checked against PyTorch.

optimum's own validation only logs when outputs drift past its tolerance; we
compare ONNX Runtime with the PyTorch model ourselves, on a padded batch of
texts of different lengths, and refuse an export past ``atol``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from tritonize.exporters.checkpoint import Checkpoint, ExportError
from tritonize.exporters.tasks.base import TaskPlugin


@dataclass
class OnnxEncoder:
    path: Path  # model.onnx (external data, if any, beside it)
    input_names: List[str]
    output_names: List[str]
    output_ranks: Dict[str, int]
    max_abs_diff: float


def supported_check(checkpoint: Checkpoint, task: TaskPlugin) -> None:
    import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the ONNX configs)
    from optimum.exporters.tasks import TasksManager

    try:
        tasks = TasksManager.get_supported_tasks_for_model_type(
            checkpoint.model_type, "onnx", library_name="transformers"
        )
    except KeyError:
        supported = sorted(TasksManager.get_supported_model_type_for_task(task.reference_task, "onnx"))
        raise ExportError(
            f"architecture {checkpoint.model_type!r} of {checkpoint.source!r} cannot be exported to ONNX; "
            f"supported for {task.name}: {', '.join(supported)}"
        ) from None
    if task.reference_task not in tasks:
        # e.g. ModernBERT: transformers has ModernBertForQuestionAnswering, optimum exports no QA head for it
        head = next((a for a in checkpoint.architectures if a.endswith(task.head_suffix)), None)
        supported = sorted(TasksManager.get_supported_model_type_for_task(task.reference_task, "onnx"))
        raise ExportError(
            f"architecture {checkpoint.model_type!r} has no ONNX export for {task.name}: optimum, which "
            f"exports the encoder, cannot export {head or checkpoint.model_type + ' ' + task.name + ' models'} "
            f"(it exports {checkpoint.model_type!r} only for {', '.join(sorted(tasks))}), so {checkpoint.source!r} "
            f"cannot be served for {task.name}. Export it for one of those tasks, or use a checkpoint of an "
            f"architecture that optimum exports for {task.name}: {', '.join(supported)}"
        )


def load_model(checkpoint: Checkpoint, task: TaskPlugin) -> Any:
    """The PyTorch model with its task head; refuses a head that would be random."""
    import transformers

    auto = getattr(transformers, task.auto_model_class)
    transformers.logging.set_verbosity_error()
    try:
        model, info = auto.from_pretrained(checkpoint.location, output_loading_info=True)
    except Exception as exc:  # torch, safetensors and transformers each raise their own kinds
        raise ExportError(
            f"could not load the weights of {checkpoint.source!r} as {task.auto_model_class}: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    task.check_loaded(checkpoint, info.get("missing_keys", []))
    return model.eval()


def export_onnx(model: Any, task: TaskPlugin, checkpoint: Checkpoint, output_dir: Path) -> Path:
    """Export with optimum's exporter; returns the path of model.onnx."""
    from optimum.exporters.onnx import onnx_export_from_model

    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tritonize-onnx-") as tmp:
        for name in ("optimum", "optimum.exporters", "torch.onnx"):
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings: the validation below is what counts
            _optimum_export(onnx_export_from_model,
                model,
                tmp,
                task=task.reference_task,
                do_validation=False,  # we validate below, and fail hard
                preprocessors=[checkpoint.tokenizer],
                device="cpu",
            )
        produced = sorted(Path(tmp).glob("model.onnx*"))
        if not produced:
            raise ExportError(f"optimum wrote no model.onnx for {checkpoint.source!r}")
        for path in produced:
            shutil.move(str(path), output_dir / path.name)
    return output_dir / "model.onnx"


def _optimum_export(function: Any, *args: Any, **kwargs: Any) -> None:
    try:
        function(*args, **kwargs)
    except Exception as exc:
        raise ExportError(f"optimum could not export the encoder to ONNX: {exc}") from exc


def validate(
    model: Any,
    onnx_path: Path,
    checkpoint: Checkpoint,
    task: TaskPlugin,
    max_length: int,
    atol: float,
) -> OnnxEncoder:
    """Run PyTorch and ONNX Runtime on the same padded batch; fail past ``atol``."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    input_names = [i.name for i in session.get_inputs()]
    output_names = [o.name for o in session.get_outputs()]
    missing = [name for name in task.encoder_outputs.values() if name not in output_names]
    if missing:
        raise ExportError(f"the ONNX encoder lacks outputs {missing}; it has {output_names}")

    tokenizer = checkpoint.tokenizer
    batch = tokenizer(
        task.validation_inputs(checkpoint),
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="np",
    )
    feed = {name: batch[name].astype(np.int64) for name in input_names}
    onnx_outputs = dict(zip(output_names, session.run(output_names, feed)))
    with torch.no_grad():
        torch_outputs = model(**{k: torch.from_numpy(v) for k, v in feed.items()})

    worst = 0.0
    mask = batch["attention_mask"].astype(bool)
    for name in task.encoder_outputs.values():
        expected = torch_outputs[name].float().numpy()
        actual = onnx_outputs[name]
        if expected.shape != actual.shape:
            raise ExportError(f"ONNX output {name} has shape {actual.shape}, PyTorch {expected.shape}")
        if expected.ndim >= 3 or (expected.ndim == 2 and expected.shape[1] == mask.shape[1]):
            diff = np.abs(expected - actual)[mask]  # per-token outputs: padding does not count
        else:
            diff = np.abs(expected - actual)
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
    if not np.isfinite(worst) or worst > atol:
        raise ExportError(
            f"the ONNX encoder disagrees with PyTorch: max |difference| {worst:.2e} > atol {atol:.0e}; "
            "the export is not trustworthy (re-run with --atol to accept a looser tolerance)"
        )
    ranks = {o.name: len(o.shape) for o in session.get_outputs()}
    return OnnxEncoder(onnx_path, input_names, output_names, ranks, worst)


def build_encoder(
    checkpoint: Checkpoint,
    task: TaskPlugin,
    output_dir: Path,
    max_length: int,
    atol: float,
    progress: Optional[Any] = None,
) -> Tuple[OnnxEncoder, Any]:
    """The validated fp32 encoder, and the PyTorch model it was checked against."""
    step = progress or (lambda _msg: _NullStage())
    with step("loading PyTorch weights"):
        supported_check(checkpoint, task)
        model = load_model(checkpoint, task)
    with step("exporting the encoder to ONNX (optimum)"):
        onnx_path = export_onnx(model, task, checkpoint, output_dir)
    with step(f"checking ONNX Runtime against PyTorch (atol {atol:.0e})"):
        encoder = validate(model, onnx_path, checkpoint, task, max_length, atol)
    return encoder, model


class _NullStage:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
