"""The served contract: task names, tensor names, config parameter keys, results.

This module is shared by the exporters (which write the contract into every
``config.pbtxt``), the client SDK (which reads it back from the server) and
the Python-backend models. It uses the standard library only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterator, Optional, Tuple

# Task names are the transformers pipeline names.
TEXT_CLASSIFICATION = "text-classification"
TOKEN_CLASSIFICATION = "token-classification"
QUESTION_ANSWERING = "question-answering"

# Ensemble tensors. Strings travel as TYPE_STRING (BYTES on the wire).
TEXT = "TEXT"
# text-classification: an optional second text; a request that has it is classified as a sentence pair.
TEXT_PAIR = "TEXT_PAIR"
# text-classification outputs: every label, sorted by score, best first.
LABELS = "LABELS"
SCORES = "SCORES"

# token-classification outputs: one entry per entity; a request of b texts gets
# [b, n] tensors, COUNT [b, 1] says how many entries of each row are real.
ENTITY = "ENTITY"
SCORE = "SCORE"
WORD = "WORD"
START = "START"
END = "END"
INDEX = "INDEX"  # token index (aggregation "none" only; -1 otherwise)
COUNT = "COUNT"

AGGREGATION_STRATEGIES = ("none", "simple", "first", "average", "max")

# question-answering: inputs QUESTION, CONTEXT; outputs ANSWER, SCORE, START,
# END (character offsets into the context), COUNT, best first.
QUESTION = "QUESTION"
CONTEXT = "CONTEXT"
ANSWER = "ANSWER"

# Tensors between the steps of an ensemble.
INPUT_IDS = "INPUT_IDS"
ATTENTION_MASK = "ATTENTION_MASK"
TOKEN_TYPE_IDS = "TOKEN_TYPE_IDS"
LOGITS = "LOGITS"
OFFSETS = "OFFSETS"
START_LOGITS = "START_LOGITS"
END_LOGITS = "END_LOGITS"
P_MASK = "P_MASK"
WORD_IDS = "WORD_IDS"
SEQUENCE_IDS = "SEQUENCE_IDS"
SPECIAL_TOKENS_MASK = "SPECIAL_TOKENS_MASK"

# Keys of ``parameters`` in every generated config.pbtxt. The SDK learns what a
# model is from these, so they are part of the public contract.
PARAM_TASK = "tritonize.task"
PARAM_ROLE = "tritonize.role"  # ensemble | tokenizer | encoder | postprocess
PARAM_LABELS = "tritonize.labels"  # JSON list, index = class id
PARAM_FUNCTION_TO_APPLY = "tritonize.function_to_apply"  # softmax | sigmoid | none
PARAM_MAX_LENGTH = "tritonize.max_length"
PARAM_ENCODER_INPUTS = "tritonize.encoder_inputs"  # JSON list of ONNX input names
PARAM_AGGREGATION_STRATEGY = "tritonize.aggregation_strategy"  # the export's default
PARAM_IGNORE_LABELS = "tritonize.ignore_labels"  # JSON list
PARAM_STRIDE = "tritonize.stride"
PARAM_MAX_SEQ_LEN = "tritonize.max_seq_len"
PARAM_DOC_STRIDE = "tritonize.doc_stride"
PARAM_MAX_QUESTION_LEN = "tritonize.max_question_len"
PARAM_MAX_ANSWER_LEN = "tritonize.max_answer_len"
PARAM_PAD_TO_MULTIPLE_OF = "tritonize.pad_to_multiple_of"
PARAM_MAX_TEXT_CHARS = "tritonize.max_text_chars"  # characters per text; 0: no limit
PARAM_MAX_WINDOWS = "tritonize.max_windows"  # windows per text (NER) or pair (QA); 0: no limit
# the served graph, and what the accuracy gate measured of it (encoder and ensemble configs)
PARAM_GRAPH = "tritonize.graph"  # fp32 | O1..O3 | int8 | O2+int8 ...
PARAM_INT8_RECIPE = "tritonize.int8_recipe"
PARAM_AGREEMENT = "tritonize.agreement"  # share of evaluation inputs answered as the pipeline does
PARAM_EVAL_INPUTS = "tritonize.eval_inputs"  # how many
PARAM_EVAL_SOURCE = "tritonize.eval_source"  # the --eval-texts file, or the built-in set
PARAM_INTRA_OP_THREADS = "tritonize.intra_op_threads"  # ORT threads per encoder instance; auto: cores/instances
PARAM_ALLOW_SPINNING = "tritonize.allow_spinning"  # ORT intra-op spin-wait: 1 or 0
PARAM_DEVICE = "tritonize.device"  # cpu | cuda | cuda:N: where the encoder runs
PARAM_PRECISION = "tritonize.precision"  # fp32 | fp16
PARAM_ENCODER_MODEL = "tritonize.encoder_model"  # the native encoder model a Python step calls through BLS
PARAM_SOURCE = "tritonize.source"  # the checkpoint the model was exported from
PARAM_VERSION = "tritonize.version"

ROLES = ("ensemble", "tokenizer", "encoder", "postprocess")
# "fused": one step model NAME_pipeline runs tokenizer, encoder and postprocess in one stub;
# "steps": three step models, NAME_tokenizer -> NAME_encoder -> NAME_postprocess. Either way the
# ensemble NAME and its tensors are the same.
LAYOUTS = ("fused", "steps")
PIPELINE = "pipeline"  # the role of the fused layout's one step
PARAM_LAYOUT = "tritonize.layout"

FUNCTIONS_TO_APPLY = ("softmax", "sigmoid", "none")


def step_name(model: str, role: str) -> str:
    """Name of one step of the ensemble ``model`` (``role`` = tokenizer|encoder|postprocess)."""
    if role == "ensemble":
        return model
    return f"{model}_{role}"


@dataclass(frozen=True)
class LabelScore:
    """One label of a text-classification result, as ``pipeline`` returns it."""

    label: str
    score: float

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    # Mapping-style access, so code written against pipeline dicts keeps working.
    def __getitem__(self, key: str) -> Any:
        if key not in ("label", "score"):
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> Tuple[str, ...]:
        return ("label", "score")

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


@dataclass(frozen=True)
class Entity:
    """One entity of a token-classification result, as ``pipeline`` returns it.

    ``label`` is the entity group (aggregated strategies) or the token's raw
    label (strategy ``none``, where ``index`` is the token's index).
    """

    label: str
    score: float
    word: str
    start: int
    end: int
    index: Optional[int] = None
    grouped: bool = True

    def to_dict(self) -> Dict[str, Any]:
        if self.grouped:
            return {"entity_group": self.label, "score": self.score, "word": self.word,
                    "start": self.start, "end": self.end}
        return {"entity": self.label, "score": self.score, "index": self.index, "word": self.word,
                "start": self.start, "end": self.end}

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def keys(self) -> Tuple[str, ...]:
        return tuple(self.to_dict())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


@dataclass(frozen=True)
class Answer:
    """One answer of a question-answering result, as ``pipeline`` returns it."""

    answer: str
    score: float
    start: int
    end: int

    def to_dict(self) -> Dict[str, Any]:
        return {"score": self.score, "start": self.start, "end": self.end, "answer": self.answer}

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def keys(self) -> Tuple[str, ...]:
        return ("score", "start", "end", "answer")

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


# -- fill-mask ---------------------------------------------------------------------
FILL_MASK = "fill-mask"
# outputs for a request of b texts: [b, m, k] (m the most masks of any text, k fillers per mask), best
# first: SCORE (fp32), TOKEN (the filler's id), TOKEN_STR (it, decoded), SEQUENCE (the text with it in
# place of the mask); COUNT [b, 1] says how many masks each text has (the rest of a row is padding).
TOKEN = "TOKEN"
TOKEN_STR = "TOKEN_STR"
SEQUENCE = "SEQUENCE"
PARAM_MASK_TOKEN = "tritonize.mask_token"  # the tokenizer's mask token, e.g. [MASK] or <mask>
PARAM_MASK_TOKEN_ID = "tritonize.mask_token_id"
PARAM_TOP_K = "tritonize.top_k"  # fillers per mask when a request does not say (the pipeline's 5)


@dataclass(frozen=True)
class MaskFill:
    """One filler of a mask token, as ``pipeline("fill-mask")`` returns it."""

    score: float
    token: int
    token_str: str
    sequence: str

    def to_dict(self) -> Dict[str, Any]:
        return {"score": self.score, "token": self.token, "token_str": self.token_str, "sequence": self.sequence}

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def keys(self) -> Tuple[str, ...]:
        return ("score", "token", "token_str", "sequence")

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


# -- feature-extraction (sentence embeddings) ----------------------------------------
FEATURE_EXTRACTION = "feature-extraction"
# the encoder's token vectors [texts, tokens, hidden], between the encoder and the postprocess
LAST_HIDDEN_STATE = "LAST_HIDDEN_STATE"
# output for a request of b texts: EMBEDDING [b, dim] (fp32), one pooled (and maybe L2-normalized) vector per text
EMBEDDING = "EMBEDDING"
POOLING_MODES = ("cls", "mean")
PARAM_POOLING = "tritonize.pooling"  # cls | mean
PARAM_NORMALIZE = "tritonize.normalize"  # true | false: the export's default; a request may override it
PARAM_POOLING_SOURCE = "tritonize.pooling_source"  # where pooling and normalize came from
PARAM_EMBEDDING_DIM = "tritonize.embedding_dim"
