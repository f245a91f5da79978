"""fill-mask: masked-LM head, the best fillers of each mask token as the pipeline gives them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

from tritonize import protocol
from tritonize.exporters.checkpoint import Checkpoint, ExportError
from tritonize.exporters.configs import Tensor
from tritonize.exporters.tasks.base import ExportSpec, TaskPlugin

#: the default number of fillers per mask (the pipeline's)
DEFAULT_TOP_K = 5
#: where the texts of this module (and load-test samples) put the mask token
PLACEHOLDER = "{mask}"


def with_mask(texts: Sequence[str], mask_token: str) -> List[str]:
    return [text.replace(PLACEHOLDER, mask_token) for text in texts]


def masked(text: str) -> str:
    """A text of the evaluation set with one word (the middle one) masked."""
    words = text.split(" ")
    words[len(words) // 2] = PLACEHOLDER
    return " ".join(words)


class FillMaskTask(TaskPlugin):
    name = protocol.FILL_MASK
    auto_model_class = "AutoModelForMaskedLM"
    head_suffix = "ForMaskedLM"
    encoder_outputs = {protocol.LOGITS: "logits"}
    postprocess_source = "postprocess_fill_mask.py"
    ort_model_class = "ORTModelForMaskedLM"

    def check_checkpoint(self, checkpoint: Checkpoint) -> None:
        super().check_checkpoint(checkpoint)
        tokenizer = checkpoint.tokenizer
        if tokenizer.mask_token is None or tokenizer.mask_token_id is None:
            raise ExportError(
                f"the tokenizer of {checkpoint.source!r} has no mask token, so no text can ask for a filler "
                "(pipeline('fill-mask') refuses it too); save the tokenizer with its mask_token "
                "(e.g. '[MASK]' or '<mask>')"
            )
        from transformers import PreTrainedTokenizerFast

        kind = type(tokenizer)
        if kind._decode is not PreTrainedTokenizerFast._decode or (
            kind.clean_up_tokenization is not PreTrainedTokenizerFast.clean_up_tokenization
        ):
            raise ExportError(
                f"the tokenizer of {checkpoint.source!r} ({kind.__name__}) decodes in its own way, which the "
                "served postprocess (tokenizer.json) cannot reproduce; fill-mask needs a tokenizer that decodes "
                "as PreTrainedTokenizerFast does"
            )

    def options(self, checkpoint: Checkpoint, given: Mapping[str, Any]) -> Dict[str, Any]:
        top_k = given.get("top_k", DEFAULT_TOP_K)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ExportError(f"fill-mask top_k must be a positive integer, got {top_k!r}")
        vocab = len(checkpoint.tokenizer)
        if top_k > vocab:
            raise ExportError(f"fill-mask top_k {top_k} is more than the vocabulary ({vocab} tokens)")
        return {"top_k": top_k}

    def ensemble_inputs(self, spec: ExportSpec) -> List[Tensor]:
        return [Tensor(protocol.TEXT, "string", (1,))]

    def ensemble_outputs(self, spec: ExportSpec) -> List[Tensor]:
        # [texts, masks, fillers]; COUNT: the masks of each text
        return [
            Tensor(protocol.SCORE, "fp32", (-1, -1)),
            Tensor(protocol.TOKEN, "int64", (-1, -1)),
            Tensor(protocol.TOKEN_STR, "string", (-1, -1)),
            Tensor(protocol.SEQUENCE, "string", (-1, -1)),
            Tensor(protocol.COUNT, "int64", (1,)),
        ]

    def postprocess_inputs(self, spec: ExportSpec) -> List[Tensor]:
        return [
            Tensor(protocol.INPUT_IDS, "int64", (-1,)),
            Tensor(protocol.ATTENTION_MASK, "int64", (-1,)),
            Tensor(protocol.LOGITS, "fp32", (-1, -1)),
        ]

    def _parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        tokenizer = spec.checkpoint.tokenizer
        return {
            protocol.PARAM_MASK_TOKEN: tokenizer.mask_token,
            protocol.PARAM_MASK_TOKEN_ID: str(tokenizer.mask_token_id),
            protocol.PARAM_TOP_K: str(spec.options["top_k"]),
        }

    def postprocess_parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        tokenizer = spec.checkpoint.tokenizer
        pad = tokenizer.pad_token_id
        return {
            **self._parameters(spec),
            "tritonize.pad_token_id": "" if pad is None else str(pad),
            "tritonize.clean_up_tokenization_spaces": "1" if tokenizer.clean_up_tokenization_spaces else "0",
            protocol.PARAM_MAX_LENGTH: str(spec.max_length),
            **self.encoder_parameters(spec),  # the LOGITS it gets are those of the mask positions only
        }

    def encoder_parameters(self, spec: ExportSpec) -> Dict[str, str]:
        # the encoder keeps the logits of the mask positions only: [texts, masks, vocab]
        return {"tritonize.keep_token_id": str(spec.checkpoint.tokenizer.mask_token_id)}

    def write_postprocess_files(self, spec: ExportSpec, version_dir: Path) -> None:
        # the postprocess resolves targets and decodes the fillers with the same tokenizer
        spec.checkpoint.tokenizer.backend_tokenizer.save(str(version_dir / "tokenizer.json"))

    def ensemble_parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        return self._parameters(spec)

    def validation_inputs(self, checkpoint: Checkpoint) -> List[str]:
        return with_mask(self.validation_texts(), checkpoint.tokenizer.mask_token)

    def validation_texts(self) -> List[str]:
        return [
            f"The capital of France is {PLACEHOLDER}.",
            f"The quick brown {PLACEHOLDER} jumps over the lazy dog, and then it {PLACEHOLDER} into the forest.",
            f"Café au lait, s'il vous {PLACEHOLDER}! 東京 is lovely in spring 🌸.",
            PLACEHOLDER,
        ]

    # -- the accuracy gate ---------------------------------------------------
    def pipeline_kwargs(self, spec: ExportSpec) -> Dict[str, Any]:
        return {"top_k": spec.options["top_k"],
                "tokenizer_kwargs": {"truncation": True, "max_length": spec.max_length}}

    # --eval-texts: texts with the checkpoint's mask token, or with "{mask}" where it goes
    def default_eval_inputs(self) -> List[Any]:
        from tritonize.exporters.eval_data import TEXTS

        return [masked(text) for text in TEXTS]

    def run_pipeline(self, pipe: Any, inputs: Sequence[Any], spec: ExportSpec) -> List[Any]:
        # one text at a time: the pipeline answers a list of one text as that text alone
        texts = with_mask(inputs, spec.checkpoint.tokenizer.mask_token)
        return [pipe(text, **self.pipeline_kwargs(spec)) for text in texts]

    def agreement_key(self, result: Any) -> Any:
        masks = result if result and isinstance(result[0], list) else [result]
        return tuple(fillers[0]["token"] for fillers in masks)  # the best filler of each mask
