"""text-classification: sequence-classification head, scores as the pipeline gives them."""

from __future__ import annotations

from typing import Any, Dict, List

from tritonize import protocol
from tritonize.exporters.checkpoint import ExportError
from tritonize.exporters.configs import Tensor
from tritonize.exporters.tasks.base import ExportSpec, TaskPlugin


def function_to_apply(config: Any) -> str:
    """The score function ``pipeline("text-classification")`` picks for this config."""
    problem_type = getattr(config, "problem_type", None)
    num_labels = int(config.num_labels)
    if problem_type == "regression":
        return "none"
    if problem_type == "multi_label_classification" or num_labels == 1:
        return "sigmoid"
    if problem_type == "single_label_classification" or num_labels > 1:
        return "softmax"
    return "none"  # pragma: no cover - num_labels < 1 is not a valid config


class TextClassificationTask(TaskPlugin):
    name = protocol.TEXT_CLASSIFICATION
    auto_model_class = "AutoModelForSequenceClassification"
    head_suffix = "ForSequenceClassification"
    encoder_outputs = {protocol.LOGITS: "logits"}
    postprocess_source = "postprocess_text_classification.py"
    ort_model_class = "ORTModelForSequenceClassification"

    def ensemble_inputs(self, spec: ExportSpec) -> List[Tensor]:
        return self.tokenizer_inputs(spec)

    def tokenizer_inputs(self, spec: ExportSpec) -> List[Tensor]:
        # TEXT_PAIR is optional: a request without it is a single text, one with it a sentence pair (NLI,
        # paraphrase, reranking), tokenized as ``tokenizer(text=..., text_pair=...)``. The ensemble passes
        # it to the step that tokenizes; Triton's dynamic batcher never merges requests with and without it.
        return [Tensor(protocol.TEXT, "string", (1,)), Tensor(protocol.TEXT_PAIR, "string", (1,), optional=True)]

    def ensemble_outputs(self, spec: ExportSpec) -> List[Tensor]:
        return [Tensor(protocol.LABELS, "string", (-1,)), Tensor(protocol.SCORES, "fp32", (-1,))]

    def postprocess_inputs(self, spec: ExportSpec) -> List[Tensor]:
        return [Tensor(protocol.LOGITS, "fp32", (-1,))]

    def postprocess_parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        return {
            protocol.PARAM_LABELS: spec.checkpoint.labels(),
            protocol.PARAM_FUNCTION_TO_APPLY: function_to_apply(spec.checkpoint.config),
        }

    def ensemble_parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        return self.postprocess_parameters(spec)

    def pipeline_kwargs(self, spec: ExportSpec) -> Dict[str, Any]:
        return {"truncation": True, "max_length": spec.max_length}

    def eval_item(self, item: Any, where: str) -> Any:
        """A text, or a sentence pair: a JSON object with ``text`` and ``text_pair`` strings."""
        if isinstance(item, dict) and "text_pair" in item:
            text, pair = item.get("text"), item["text_pair"]
            if not (isinstance(text, str) and text.strip() and isinstance(pair, str)):
                raise ExportError(f"{where}: expected \"text\" and \"text_pair\" strings (a sentence pair)")
            return {"text": text, "text_pair": pair}
        return super().eval_item(item, where)

    def agreement_key(self, result: Any) -> Any:
        return result["label"]  # the top label

    def validation_texts(self) -> List[str]:
        return [
            "A short one.",
            "The quick brown fox jumps over the lazy dog, and then it runs away into the forest.",
            "Café au lait, s'il vous plaît! 東京 is lovely in spring 🌸.",
            "no",
        ]
