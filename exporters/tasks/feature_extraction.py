"""feature-extraction: sentence embeddings, pooled as sentence-transformers pools them.

The encoder is the checkpoint's base model (``AutoModel``): a checkpoint with
a task head (``BertForSequenceClassification`` ...) exports its encoder, as
``pipeline("feature-extraction")`` takes such checkpoints too. The
postprocess pools its token vectors into one vector per text and may
L2-normalize it (exporters/backend/postprocess_feature_extraction.py).

When the checkpoint is a sentence-transformers model, its own files say how
(as ``SentenceTransformer(path)`` reads them):

* ``modules.json``: a ``Transformer``, then an optional ``Pooling``, then an
  optional ``Normalize`` module; any other module (``Dense``, ``LayerNorm``
  ...) is refused, since the served vectors would not be the model's;
* ``1_Pooling/config.json`` (the Pooling module's folder): ``cls`` or
  ``mean``; ``max``, ``mean_sqrt_len_tokens``, ``weightedmean``,
  ``lasttoken`` and combinations of modes are refused;
* ``sentence_bert_config.json``: ``max_seq_length`` becomes the tokenizer's
  limit (the export's default max length), ``do_lower_case`` lowercases the
  texts as sentence-transformers does;
* ``config_sentence_transformers.json``: a ``default_prompt_name`` (a prompt
  that ``encode`` would put before every text) is refused.

Without them: mean pooling, no normalization, the model's max length. The
export options ``pooling`` (cls | mean) and ``normalize`` (true | false)
override the files; a request may override ``normalize``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from tritonize import protocol
from tritonize.exporters.checkpoint import Checkpoint, ExportError
from tritonize.exporters.configs import Tensor
from tritonize.exporters.tasks.base import ExportSpec, TaskPlugin

#: the accuracy gate: a variant's embedding agrees with the pipeline's when their cosine is at least this
MIN_COSINE = 0.999

_MODULES = "modules.json"
_SBERT_CONFIG = "sentence_bert_config.json"
_ST_CONFIG = "config_sentence_transformers.json"
# sentence-transformers' legacy pooling keys, in its order
_LEGACY_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


@dataclass(frozen=True)
class SentenceTransformersFiles:
    """What a sentence-transformers checkpoint's own files say about its embeddings."""

    pooling: Optional[str]  # cls | mean; None: modules.json lists no Pooling module
    pooling_file: Optional[str]  # e.g. "1_Pooling/config.json"
    normalize: bool  # modules.json lists a Normalize module
    max_seq_length: Optional[int]
    do_lower_case: bool


def _read_json(checkpoint: Checkpoint, name: str) -> Optional[Any]:
    """The JSON file ``name`` of the checkpoint (a local folder, or a hub id through the hub's cache)."""
    folder = Path(checkpoint.location)
    if folder.is_dir():
        path = folder / name
        if not path.is_file():
            return None
    else:
        from transformers.utils import cached_file

        found = cached_file(checkpoint.location, name, _raise_exceptions_for_missing_entries=False,
                            _raise_exceptions_for_connection_errors=False)
        if found is None:
            return None
        path = Path(found)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{name} of {checkpoint.source!r} is not valid JSON ({exc})") from exc


def _module_kind(entry: Any, source: str) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise ExportError(f"{_MODULES} of {source!r} holds {entry!r}, not a module entry with a 'type'")
    return entry["type"].rsplit(".", 1)[-1]


def pooling_mode(config: Mapping[str, Any], where: str) -> str:
    """The one pooling mode of a sentence-transformers Pooling config (its legacy keys or ``pooling_mode``)."""
    mode = config.get("pooling_mode")
    if mode is None:
        modes = [name for key, name in _LEGACY_POOLING.items() if config.get(key)]
        modes = modes or ["mean"]  # sentence-transformers' default when no mode is on
    else:
        modes = [mode] if isinstance(mode, str) else list(mode)
    if len(modes) != 1:
        raise ExportError(
            f"{where} combines the pooling modes {', '.join(map(str, modes))} (their vectors concatenated); "
            f"tritonize serves one mode, {' or '.join(protocol.POOLING_MODES)}"
        )
    if modes[0] not in protocol.POOLING_MODES:
        raise ExportError(
            f"{where} asks for {modes[0]!r} pooling, which tritonize does not serve (it serves "
            f"{' and '.join(protocol.POOLING_MODES)}); export with the option pooling=cls or pooling=mean "
            "to serve another pooling than the model's own"
        )
    return str(modes[0])


def read_sentence_transformers(checkpoint: Checkpoint) -> Optional[SentenceTransformersFiles]:
    """The checkpoint's sentence-transformers files, checked; None when it has no modules.json."""
    source = checkpoint.source
    modules = _read_json(checkpoint, _MODULES)
    if modules is None:
        return None
    if not isinstance(modules, list) or not modules:
        raise ExportError(f"{_MODULES} of {source!r} must be a non-empty list of modules")
    kinds = [_module_kind(entry, source) for entry in modules]
    order = ["Transformer", "Pooling", "Normalize"]
    unknown = [f"{entry['type']} ({entry.get('path') or 'no folder'})" for entry, kind in zip(modules, kinds)
               if kind not in order]
    if unknown:
        raise ExportError(
            f"{_MODULES} of {source!r} lists {', '.join(unknown)}, which tritonize does not serve: the served "
            "embeddings would not be the model's. tritonize serves Transformer -> Pooling (cls or mean) -> "
            "Normalize models"
        )
    if kinds[0] != "Transformer" or kinds != sorted(kinds, key=order.index) or len(set(kinds)) != len(kinds):
        raise ExportError(f"{_MODULES} of {source!r} lists the modules {' -> '.join(kinds)}; tritonize serves "
                          "Transformer, then at most one Pooling, then at most one Normalize")
    transformer_path = modules[0].get("path") or ""
    if transformer_path not in ("", "."):
        raise ExportError(f"{_MODULES} of {source!r} keeps its Transformer module in {transformer_path!r}: "
                          "export that folder, with the modules.json beside its config.json")
    pooling, pooling_file = None, None
    if "Pooling" in kinds:
        entry = modules[kinds.index("Pooling")]
        folder = str(entry.get("path") or "").strip("/")
        if folder in ("", "."):
            raise ExportError(f"{_MODULES} of {source!r} lists a Pooling module without its own folder (path)")
        pooling_file = f"{folder}/config.json"
        config = _read_json(checkpoint, pooling_file)
        if not isinstance(config, dict):
            raise ExportError(f"{source!r}: {_MODULES} lists a Pooling module, but {pooling_file} is missing "
                              "or not a JSON object")
        pooling = pooling_mode(config, f"{pooling_file} of {source!r}")
        dimension = config.get("embedding_dimension", config.get("word_embedding_dimension"))
        hidden = getattr(checkpoint.config, "hidden_size", None)
        if dimension is not None and hidden is not None and int(dimension) != int(hidden):
            raise ExportError(f"{pooling_file} of {source!r} pools {dimension}-dimensional vectors, but the "
                              f"encoder's hidden size is {hidden}")
    sbert = _read_json(checkpoint, _SBERT_CONFIG) or {}
    if not isinstance(sbert, dict):
        raise ExportError(f"{_SBERT_CONFIG} of {source!r} must be a JSON object")
    max_seq_length = sbert.get("max_seq_length")
    if max_seq_length is not None and (isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int)
                                       or max_seq_length < 1):
        raise ExportError(f"{_SBERT_CONFIG} of {source!r}: max_seq_length {max_seq_length!r} is not a positive int")
    st_config = _read_json(checkpoint, _ST_CONFIG) or {}
    prompt = st_config.get("default_prompt_name") if isinstance(st_config, dict) else None
    if prompt:
        raise ExportError(
            f"{_ST_CONFIG} of {source!r} names the default prompt {prompt!r}, which SentenceTransformer.encode "
            "puts before every text; tritonize does not add prompts. Remove default_prompt_name (and put the "
            "prompt before your texts yourself) to export it"
        )
    return SentenceTransformersFiles(pooling, pooling_file, "Normalize" in kinds, max_seq_length,
                                     bool(sbert.get("do_lower_case", False)))


def _lowercase_first(tokenizer: Any) -> None:
    """What sentence-transformers does for ``do_lower_case``: a Lowercase normalizer before the tokenizer's own."""
    from tokenizers.normalizers import Lowercase, Sequence as NormalizerSequence

    backend = tokenizer.backend_tokenizer
    normalizer = backend.normalizer
    if isinstance(normalizer, Lowercase) or (
        isinstance(normalizer, NormalizerSequence) and any(isinstance(n, Lowercase) for n in normalizer)
    ):
        return
    chain = [Lowercase()]
    if isinstance(normalizer, NormalizerSequence):
        chain += list(normalizer)
    elif normalizer is not None:
        chain.append(normalizer)
    backend.normalizer = NormalizerSequence(chain)


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise ExportError(f"feature-extraction option {name} must be true or false, got {value!r}")


@dataclass(frozen=True, eq=False)
class EmbeddingKey:
    """An embedding as the accuracy gate compares it: two agree when their cosine is at least ``MIN_COSINE``."""

    vector: tuple

    def agrees(self, other: Any) -> bool:
        if not isinstance(other, EmbeddingKey) or len(other.vector) != len(self.vector):
            return False
        dot = sum(a * b for a, b in zip(self.vector, other.vector))
        norms = math.sqrt(sum(a * a for a in self.vector)) * math.sqrt(sum(b * b for b in other.vector))
        if norms == 0.0:
            return all(a == b for a, b in zip(self.vector, other.vector))
        return dot / norms >= MIN_COSINE

    def __repr__(self) -> str:
        head = ", ".join(f"{v:.4f}" for v in self.vector[:3])
        return f"[{head}, ...] ({len(self.vector)} dims)"


def _pooled(hidden: Any, pooling: str, normalize: bool) -> List[float]:
    """The reference pooling of one unpadded sequence [tokens, hidden] (the pipeline's, one text at a time)."""
    import numpy as np

    hidden = np.asarray(hidden, dtype=np.float64)
    vector = hidden[0] if pooling == "cls" else hidden.mean(axis=0)
    if normalize:
        vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
    return [float(v) for v in vector]


class FeatureExtractionTask(TaskPlugin):
    name = protocol.FEATURE_EXTRACTION
    auto_model_class = "AutoModel"
    head_suffix = ""  # any architecture: a checkpoint with a head exports its base encoder
    encoder_outputs = {protocol.LAST_HIDDEN_STATE: "last_hidden_state"}
    postprocess_source = "postprocess_feature_extraction.py"
    ort_model_class = "ORTModelForFeatureExtraction"

    # -- checks --------------------------------------------------------------
    def check_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Refuse what cannot be served as the model's embeddings; take the sentence-transformers files.

        As ``SentenceTransformer(path)`` does, ``max_seq_length`` becomes the
        tokenizer's ``model_max_length`` (so the export's max length) and
        ``do_lower_case`` puts a Lowercase normalizer first.
        """
        if getattr(checkpoint.config, "is_encoder_decoder", False):
            raise ExportError(
                f"checkpoint {checkpoint.source!r} is an encoder-decoder model ({checkpoint.model_type}); "
                "feature-extraction serves encoders (BERT, RoBERTa, DeBERTa ...)"
            )
        files = read_sentence_transformers(checkpoint)
        if files is None:
            return
        if files.max_seq_length is not None:
            checkpoint.tokenizer.model_max_length = files.max_seq_length
        if files.do_lower_case:
            _lowercase_first(checkpoint.tokenizer)

    def check_loaded(self, checkpoint: Checkpoint, missing_keys: Sequence[str]) -> None:
        """Refuse random encoder weights; a missing pooler does not matter (its output is not served)."""
        missing = [key for key in missing_keys if not (key.startswith("pooler.") or ".pooler." in key)]
        if missing:
            shown = ", ".join(missing[:4])
            raise ExportError(
                f"checkpoint {checkpoint.source!r} lacks encoder weights ({shown}{' ...' if len(missing) > 4 else ''}):"
                " they would be random; export a trained checkpoint"
            )

    def options(self, checkpoint: Checkpoint, given: Mapping[str, Any]) -> Dict[str, Any]:
        """``pooling`` (cls | mean) and ``normalize``: given, else the sentence-transformers files', else mean, no."""
        files = read_sentence_transformers(checkpoint)
        pooling = given.get("pooling")
        if pooling is not None:
            pooling = str(pooling).lower()
            if pooling not in protocol.POOLING_MODES:
                raise ExportError(
                    f"pooling {pooling!r} is not one of {', '.join(protocol.POOLING_MODES)} (max, weighted mean "
                    "and last-token pooling are not served)"
                )
            pooling_from = "the export option"
        elif files is not None and files.pooling is not None:
            pooling, pooling_from = files.pooling, str(files.pooling_file)
        else:
            pooling = "mean"
            pooling_from = "the default (no sentence-transformers Pooling module)"
        normalize = given.get("normalize")
        if normalize is not None:
            normalize, normalize_from = _flag(normalize, "normalize"), "the export option"
        elif files is not None:
            normalize, normalize_from = files.normalize, _MODULES
        else:
            normalize, normalize_from = False, "the default (no sentence-transformers Normalize module)"
        unknown = sorted(set(given) - {"pooling", "normalize", "max_length"})
        if unknown:
            raise ExportError(f"feature-extraction takes the options pooling and normalize, not {', '.join(unknown)}")
        return {
            "pooling": pooling,
            "normalize": bool(normalize),
            "source": f"pooling {pooling} from {pooling_from}; normalize {str(bool(normalize)).lower()} "
                      f"from {normalize_from}",
        }

    # -- the contract --------------------------------------------------------
    def _dimension(self, spec: ExportSpec) -> int:
        hidden = getattr(spec.checkpoint.config, "hidden_size", None)
        return int(hidden) if hidden else -1

    def ensemble_inputs(self, spec: ExportSpec) -> List[Tensor]:
        return [Tensor(protocol.TEXT, "string", (1,))]

    def ensemble_outputs(self, spec: ExportSpec) -> List[Tensor]:
        return [Tensor(protocol.EMBEDDING, "fp32", (self._dimension(spec),))]

    def postprocess_inputs(self, spec: ExportSpec) -> List[Tensor]:
        return [
            Tensor(protocol.ATTENTION_MASK, "int64", (-1,)),
            Tensor(protocol.LAST_HIDDEN_STATE, "fp32", (-1, -1)),
        ]

    def postprocess_parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        return {
            protocol.PARAM_POOLING: spec.options["pooling"],
            protocol.PARAM_NORMALIZE: "true" if spec.options["normalize"] else "false",
        }

    def ensemble_parameters(self, spec: ExportSpec) -> Dict[str, Any]:
        return {
            **self.postprocess_parameters(spec),
            protocol.PARAM_POOLING_SOURCE: spec.options["source"],
            protocol.PARAM_EMBEDDING_DIM: str(self._dimension(spec)),
        }

    def summary(self, spec: ExportSpec) -> Dict[str, Any]:
        return {"pooling": spec.options["pooling"], "normalize": spec.options["normalize"],
                "embedding_dim": self._dimension(spec), "pooling_source": spec.options["source"]}

    def validation_texts(self) -> List[str]:
        return [
            "A short one.",
            "The quick brown fox jumps over the lazy dog, and then it runs away into the forest.",
            "Café au lait, s'il vous plaît! 東京 is lovely in spring 🌸.",
            "no",
        ]

    # -- the accuracy gate ---------------------------------------------------
    def pipeline_kwargs(self, spec: ExportSpec) -> Dict[str, Any]:
        return {"tokenize_kwargs": {"truncation": True, "max_length": spec.max_length}}

    def run_pipeline(self, pipe: Any, inputs: Sequence[Any], spec: ExportSpec) -> List[Any]:
        """``pipeline("feature-extraction")``'s token vectors of each text, pooled as the served model pools."""
        outputs = pipe(list(inputs), return_tensors=True, **self.pipeline_kwargs(spec))
        return [_pooled(output[0].float().numpy(), spec.options["pooling"], spec.options["normalize"])
                for output in outputs]

    def agreement_key(self, result: Any) -> Any:
        return EmbeddingKey(tuple(result))
