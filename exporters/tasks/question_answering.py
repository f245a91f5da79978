"""question-answering: extractive QA head, answers as the pipeline finds them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

from tritonize import protocol
from tritonize.exporters.checkpoint import Checkpoint, ExportError
from tritonize.exporters.configs import Tensor
from tritonize.exporters.tasks.base import ExportSpec, TaskPlugin

WINDOW_TENSORS = (protocol.P_MASK, protocol.WORD_IDS, protocol.SEQUENCE_IDS)


class QuestionAnsweringTask(TaskPlugin):
    """Batched for real: the tokenizer emits every window of every pair of every
    request as rows of ``[pairs, windows, tokens]`` tensors, and the encoder step
    flattens all requests of a dynamic batch into one ORT batch of windows. A
    request with one window and a request with twelve share the same encoder
    call; no request waits for another's windows to be run one by one, and the
    postprocess scores every window of every pair (not only the first item of a
    batch).
    """

    name = protocol.QUESTION_ANSWERING
    auto_model_class = "AutoModelForQuestionAnswering"
    head_suffix = "ForQuestionAnswering"
    encoder_outputs = {protocol.START_LOGITS: "start_logits", protocol.END_LOGITS: "end_logits"}
    postprocess_source = "postprocess_question_answering.py"
    tokenizer_source = "tokenizer_question_answering.py"
    ort_model_class = "ORTModelForQuestionAnswering"
    windowed = True

    def options(self, checkpoint: Checkpoint, given: Mapping[str, Any]) -> Dict[str, Any]:
        if checkpoint.tokenizer.padding_side != "right":
            raise ExportError(
                f"{checkpoint.source!r} pads on the {checkpoint.tokenizer.padding_side}; question-answering "
                "export needs a right-padding tokenizer (question first, as the pipeline does)"
            )
        model_limit = int(given["max_length"])
        max_seq_len = int(given.get("max_seq_len") or min(model_limit, 384))
        if not 16 <= max_seq_len <= model_limit:
            raise ExportError(f"--max-seq-len {max_seq_len} must be between 16 and the model's {model_limit}")
        doc_stride = int(given.get("doc_stride") if given.get("doc_stride") is not None else min(max_seq_len // 2, 128))
        max_question_len = int(given.get("max_question_len") or 64)
        max_answer_len = int(given.get("max_answer_len") or 15)
        room = max_seq_len - max_question_len - checkpoint.tokenizer.num_special_tokens_to_add(pair=True)
        if room < 1:
            raise ExportError(
                f"--max-seq-len {max_seq_len} leaves no room for the context after a question of "
                f"--max-question-len {max_question_len} tokens"
            )
        if not 0 <= doc_stride < room:
            raise ExportError(
                f"--doc-stride {doc_stride} must be at least 0 and below {room} (the context tokens a window "
                f"holds with a {max_question_len}-token question)"
            )
        if max_answer_len < 1:
            raise ExportError(f"--max-answer-len must be at least 1, got {max_answer_len}")
        return {"max_seq_len": max_seq_len, "doc_stride": doc_stride,
                "max_question_len": max_question_len, "max_answer_len": max_answer_len}

    def ensemble_inputs(self, spec: ExportSpec) -> List[Tensor]:
        return [Tensor(protocol.QUESTION, "string", (1,)), Tensor(protocol.CONTEXT, "string", (1,))]

    def tokenizer_inputs(self, spec: ExportSpec) -> List[Tensor]:
        return self.ensemble_inputs(spec)

    def ensemble_outputs(self, spec: ExportSpec) -> List[Tensor]:
        return [
            Tensor(protocol.ANSWER, "string", (-1,)),
            Tensor(protocol.SCORE, "fp32", (-1,)),
            Tensor(protocol.START, "int64", (-1,)),
            Tensor(protocol.END, "int64", (-1,)),
            Tensor(protocol.COUNT, "int64", (1,)),
        ]

    def tokenizer_outputs(self, spec: ExportSpec, encoder_inputs):  # type: ignore[no-untyped-def]
        names = list(dict.fromkeys([*encoder_inputs, protocol.ATTENTION_MASK]))
        return [
            *super().tokenizer_outputs(spec, names),
            *(Tensor(name, "int64", (-1, -1)) for name in WINDOW_TENSORS),
            Tensor(protocol.OFFSETS, "int64", (-1, -1, 2)),
        ]

    def tokenizer_parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        cls = spec.checkpoint.tokenizer.cls_token_id
        return {
            protocol.PARAM_MAX_LENGTH: str(spec.options["max_seq_len"]),
            protocol.PARAM_DOC_STRIDE: str(spec.options["doc_stride"]),
            protocol.PARAM_MAX_QUESTION_LEN: str(spec.options["max_question_len"]),
            "tritonize.cls_token_id": "" if cls is None else str(cls),
        }

    def postprocess_inputs(self, spec: ExportSpec) -> List[Tensor]:
        return [
            Tensor(protocol.CONTEXT, "string", (1,)),
            Tensor(protocol.START_LOGITS, "fp32", (-1, -1)),
            Tensor(protocol.END_LOGITS, "fp32", (-1, -1)),
            Tensor(protocol.ATTENTION_MASK, "int64", (-1, -1)),
            *(Tensor(name, "int64", (-1, -1)) for name in WINDOW_TENSORS),
            Tensor(protocol.OFFSETS, "int64", (-1, -1, 2)),
        ]

    def postprocess_parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        return {protocol.PARAM_MAX_ANSWER_LEN: str(spec.options["max_answer_len"])}

    def write_postprocess_files(self, spec: ExportSpec, version_dir: Path) -> None:
        return None

    def ensemble_parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        return {
            protocol.PARAM_MAX_SEQ_LEN: str(spec.options["max_seq_len"]),
            protocol.PARAM_DOC_STRIDE: str(spec.options["doc_stride"]),
            protocol.PARAM_MAX_QUESTION_LEN: str(spec.options["max_question_len"]),
            protocol.PARAM_MAX_ANSWER_LEN: str(spec.options["max_answer_len"]),
        }

    def pipeline_kwargs(self, spec: ExportSpec) -> Dict[str, Any]:
        return {key: spec.options[key] for key in ("max_seq_len", "doc_stride", "max_question_len", "max_answer_len")}

    def eval_item(self, item: Any, where: str) -> Any:
        if not (isinstance(item, dict) and isinstance(item.get("question"), str)
                and isinstance(item.get("context"), str) and item["question"].strip() and item["context"].strip()):
            raise ExportError(f"{where}: expected a JSON object with \"question\" and \"context\" strings")
        return {"question": item["question"], "context": item["context"]}

    def default_eval_inputs(self) -> List[Any]:
        from tritonize.exporters.eval_data import PAIRS

        return [dict(pair) for pair in PAIRS]

    def run_pipeline(self, pipe: Any, inputs: Sequence[Any], spec: ExportSpec) -> List[Any]:
        answers = pipe(question=[i["question"] for i in inputs], context=[i["context"] for i in inputs],
                       **self.pipeline_kwargs(spec))
        return [answers] if isinstance(answers, dict) else list(answers)

    def agreement_key(self, result: Any) -> Any:
        return (result["answer"], result["start"], result["end"])

    def validation_texts(self) -> List[str]:
        return [
            "Where was the order shipped? The order ORD-1 was shipped to Berlin on May 3.",
            "Café au lait with José Müller in Zürich, 東京 🌸!",
            "x",
        ]
