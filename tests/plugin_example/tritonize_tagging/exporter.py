"""The exporter side of text-tagging: a sequence-classification head, tags above a threshold."""

from pathlib import Path
from typing import Any, Dict, List, Mapping

from tritonize.exporters.checkpoint import Checkpoint, ExportError
from tritonize.exporters.configs import Tensor
from tritonize.exporters.tasks.base import ExportSpec, TaskPlugin


class TextTaggingTask(TaskPlugin):
    name = "text-tagging"
    pipeline_task = "text-classification"  # the graph it serves: a sequence-classification encoder
    auto_model_class = "AutoModelForSequenceClassification"
    head_suffix = "ForSequenceClassification"
    ort_model_class = "ORTModelForSequenceClassification"
    encoder_outputs = {"LOGITS": "logits"}
    code_dir = Path(__file__).parent / "steps"  # postprocess_tagging.py; the tokenizer is tritonize's own
    postprocess_source = "postprocess_tagging.py"

    def options(self, checkpoint: Checkpoint, given: Mapping[str, Any]) -> Dict[str, Any]:
        threshold = given.get("threshold", 0.5)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise ExportError(f"--option threshold={threshold!r} must be a number in [0, 1]")
        return {"threshold": float(threshold)}

    def ensemble_inputs(self, spec: ExportSpec) -> List[Tensor]:
        return [Tensor("TEXT", "string", (1,))]

    def ensemble_outputs(self, spec: ExportSpec) -> List[Tensor]:
        return [Tensor("TAGS", "string", (-1,)), Tensor("SCORES", "fp32", (-1,)), Tensor("COUNT", "int64", (1,))]

    def postprocess_inputs(self, spec: ExportSpec) -> List[Tensor]:
        return [Tensor("LOGITS", "fp32", (-1,))]

    def postprocess_parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        return {"tritonize.labels": spec.checkpoint.labels(), "tagging.threshold": str(spec.options["threshold"])}

    def ensemble_parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        return self.postprocess_parameters(spec)

    # the accuracy gate and the ONNX validation
    def pipeline_kwargs(self, spec: ExportSpec) -> Dict[str, Any]:
        return {"function_to_apply": "sigmoid", "top_k": None, "truncation": True, "max_length": spec.max_length}

    def run_pipeline(self, pipe: Any, inputs: Any, spec: ExportSpec) -> List[Any]:
        threshold = spec.options["threshold"]
        return [[r for r in result if r["score"] >= threshold] for result in pipe(list(inputs), **self.pipeline_kwargs(spec))]

    def agreement_key(self, result: Any) -> Any:
        return sorted(r["label"] for r in result)

    def validation_texts(self) -> List[str]:
        return ["A short one.", "The storm cancelled the match, and the clinic's shares rose.", "no"]
