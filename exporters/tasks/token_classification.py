"""token-classification (NER): per-token head, entities as the pipeline finds them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping

from tritonize import protocol
from tritonize.exporters.checkpoint import Checkpoint, ExportError
from tritonize.exporters.configs import Tensor
from tritonize.exporters.tasks.base import ExportSpec, TaskPlugin


class TokenClassificationTask(TaskPlugin):
    name = protocol.TOKEN_CLASSIFICATION
    auto_model_class = "AutoModelForTokenClassification"
    head_suffix = "ForTokenClassification"
    encoder_outputs = {protocol.LOGITS: "logits"}
    postprocess_source = "postprocess_token_classification.py"
    ort_model_class = "ORTModelForTokenClassification"
    windowed = True

    def options(self, checkpoint: Checkpoint, given: Mapping[str, Any]) -> Dict[str, Any]:
        strategy = given.get("aggregation_strategy") or "simple"
        if strategy not in protocol.AGGREGATION_STRATEGIES:
            raise ExportError(
                f"--aggregation-strategy {strategy!r} is not one of {', '.join(protocol.AGGREGATION_STRATEGIES)}"
            )
        max_length = int(given["max_length"])
        stride = given.get("stride")
        if stride is None:
            stride = min(128, max_length // 4)
        # the tokenizer adds special tokens to every window: the overlap must leave room for new tokens
        room = max_length - checkpoint.tokenizer.num_special_tokens_to_add(pair=False)
        if not 0 <= int(stride) < room:
            raise ExportError(
                f"--stride {stride} must be at least 0 and below {room} "
                f"(max length {max_length} minus the special tokens)"
            )
        return {"aggregation_strategy": strategy, "stride": int(stride)}

    def ensemble_inputs(self, spec: ExportSpec) -> List[Tensor]:
        return [Tensor(protocol.TEXT, "string", (1,))]

    def ensemble_outputs(self, spec: ExportSpec) -> List[Tensor]:
        return [
            Tensor(protocol.ENTITY, "string", (-1,)),
            Tensor(protocol.SCORE, "fp32", (-1,)),
            Tensor(protocol.WORD, "string", (-1,)),
            Tensor(protocol.START, "int64", (-1,)),
            Tensor(protocol.END, "int64", (-1,)),
            Tensor(protocol.INDEX, "int64", (-1,)),
            Tensor(protocol.COUNT, "int64", (1,)),
        ]

    def tokenizer_outputs(self, spec: ExportSpec, encoder_inputs):  # type: ignore[no-untyped-def]
        return [
            *super().tokenizer_outputs(spec, encoder_inputs),
            Tensor(protocol.OFFSETS, "int64", (-1, -1, 2)),
            Tensor(protocol.SPECIAL_TOKENS_MASK, "int64", (-1, -1)),
        ]

    def tokenizer_parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        return {protocol.PARAM_STRIDE: str(spec.options["stride"])}

    def postprocess_inputs(self, spec: ExportSpec) -> List[Tensor]:
        return [
            Tensor(protocol.TEXT, "string", (1,)),
            Tensor(protocol.INPUT_IDS, "int64", (-1, -1)),
            Tensor(protocol.OFFSETS, "int64", (-1, -1, 2)),
            Tensor(protocol.SPECIAL_TOKENS_MASK, "int64", (-1, -1)),
            Tensor(protocol.LOGITS, "fp32", (-1, -1, -1)),
        ]

    def postprocess_parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        unk = spec.checkpoint.tokenizer.unk_token_id
        return {
            protocol.PARAM_LABELS: spec.checkpoint.labels(),
            protocol.PARAM_AGGREGATION_STRATEGY: spec.options["aggregation_strategy"],
            protocol.PARAM_IGNORE_LABELS: ["O"],
            "tritonize.unk_token_id": "" if unk is None else str(unk),
        }

    def write_postprocess_files(self, spec: ExportSpec, version_dir: Path) -> None:
        # the postprocess turns ids back into tokens and words with the same tokenizer
        spec.checkpoint.tokenizer.backend_tokenizer.save(str(version_dir / "tokenizer.json"))

    def ensemble_parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        return {
            protocol.PARAM_LABELS: spec.checkpoint.labels(),
            protocol.PARAM_AGGREGATION_STRATEGY: spec.options["aggregation_strategy"],
            protocol.PARAM_STRIDE: str(spec.options["stride"]),
        }

    def summary(self, spec: ExportSpec) -> Dict[str, Any]:
        return {"aggregation_strategy": spec.options["aggregation_strategy"], "stride": spec.options["stride"]}

    def pipeline_kwargs(self, spec: ExportSpec) -> Dict[str, Any]:
        return {"aggregation_strategy": spec.options["aggregation_strategy"], "stride": spec.options["stride"]}

    def agreement_key(self, result: Any) -> Any:
        return sorted((e.get("entity_group", e.get("entity")), e["start"], e["end"]) for e in result)

    def validation_texts(self) -> List[str]:
        return [
            "John Smith works at Acme Corp in New York.",
            "Café au lait with José Müller in Zürich, 東京 🌸!",
            "no entities here",
            "x",
        ]
