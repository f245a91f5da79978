"""The accuracy gate: a graph variant ships only if it answers as the pipeline on the original checkpoint does.

The reference is ``transformers.pipeline(task)`` on the PyTorch checkpoint;
the candidate is the same pipeline on optimum's ORTModel of the variant, so
both tokenize and postprocess alike and only the graph differs. One input
agrees when the task's key is equal (``TaskPlugin.agreement_key``): the top
label, the set of (entity_group, start, end), or (answer, start, end). A key
that has an ``agrees(other)`` method decides for itself (feature-extraction:
two embeddings agree when their cosine is at least 0.999).
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Sequence

from tritonize.exporters.checkpoint import ExportError
from tritonize.exporters.tasks.base import ExportSpec, TaskPlugin

DEFAULT_MIN_AGREEMENT = 0.99
DEFAULT_SET = "built-in set"


@dataclass(frozen=True)
class EvalSet:
    inputs: List[Any]
    source: str  # the file, or DEFAULT_SET


@dataclass
class Agreement:
    agreed: int
    total: int
    examples: List[str] = field(default_factory=list)  # a few disagreements, for the error message

    @property
    def rate(self) -> float:
        return self.agreed / self.total if self.total else 0.0


def read_eval_set(task: TaskPlugin, path: Optional[Path]) -> EvalSet:
    """``--eval-texts FILE``: one text per line, or JSON Lines (``text``, or ``question`` + ``context``)."""
    if path is None:
        return EvalSet(task.default_eval_inputs(), DEFAULT_SET)
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"--eval-texts {path}: cannot read it as UTF-8 text ({exc})") from exc
    inputs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        item: Any = line
        if line.lstrip().startswith("{"):
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ExportError(f"--eval-texts {path}, line {number}: not valid JSON ({exc.msg})") from exc
        inputs.append(task.eval_item(item, f"--eval-texts {path}, line {number}"))
    if not inputs:
        raise ExportError(f"--eval-texts {path} holds no evaluation inputs")
    return EvalSet(inputs, str(path))


def _pipeline(task: TaskPlugin, model: Any, spec: ExportSpec) -> Any:
    from transformers import pipeline

    logging.getLogger("transformers").setLevel(logging.ERROR)
    return pipeline(task.reference_task, model=model, tokenizer=spec.checkpoint.tokenizer, device="cpu")


def answers(task: TaskPlugin, model: Any, spec: ExportSpec, inputs: Sequence[Any]) -> List[Any]:
    """The task's agreement keys of ``model`` (PyTorch, or an ORTModel) on ``inputs``, through the pipeline."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            results = task.run_pipeline(_pipeline(task, model, spec), inputs, spec)
        except Exception as exc:  # transformers, torch and onnxruntime raise their own kinds
            raise ExportError(f"the {task.name} pipeline failed on the evaluation inputs: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    if len(results) != len(inputs):
        raise ExportError(f"the pipeline answered {len(results)} of {len(inputs)} evaluation inputs")
    return [task.agreement_key(r) for r in results]


def variant_answers(task: TaskPlugin, model_path: Path, spec: ExportSpec, inputs: Sequence[Any],
                    provider: str = "CPUExecutionProvider") -> List[Any]:
    import optimum.onnxruntime as ortmodels

    ort_class = getattr(ortmodels, task.ort_model_class or "-", None)
    if ort_class is None:
        raise ExportError(f"task {task.name!r} names no optimum ORTModel class (ort_model_class): its graph "
                          "variants cannot be checked against the pipeline, so only the fp32 export is possible")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = ort_class.from_pretrained(model_path.parent, file_name=model_path.name,
                                              provider=provider)
        except Exception as exc:
            raise ExportError(f"ONNX Runtime could not load the variant graph: {exc}") from exc
    return answers(task, model, spec, inputs)


def compare(expected: Sequence[Any], got: Sequence[Any], inputs: Sequence[Any]) -> Agreement:
    agreed, examples = 0, []
    for want, have, item in zip(expected, got, inputs):
        if want.agrees(have) if hasattr(want, "agrees") else want == have:
            agreed += 1
        elif len(examples) < 3:
            shown = item if isinstance(item, str) else item.get("question", "")
            examples.append(f"{str(shown)[:60]!r}: pipeline {want!r}, variant {have!r}")
    return Agreement(agreed, len(expected), examples)
