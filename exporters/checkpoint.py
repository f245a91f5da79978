"""Open a checkpoint (local directory or hub id) and say clearly what is wrong with it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional


class ExportError(RuntimeError):
    """An export that cannot go on. The message says what was wrong and what to do."""


# Models whose position ids start after the padding index: their usable length
# is max_position_embeddings - 2 when the tokenizer does not say otherwise.
_OFFSET_POSITION_MODELS = {"roberta", "xlm-roberta", "camembert", "longformer", "bertweet"}
_UNBOUNDED = 10**6


def _looks_like_path(source: str) -> bool:
    # hub ids are `name` or `org/name`
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or os.sep != "/" and os.sep in source


@dataclass
class Checkpoint:
    """A checkpoint's config and fast tokenizer, loaded without its weights."""

    source: str
    location: str  # a resolved local directory, or the hub id as given
    config: Any  # transformers.PretrainedConfig
    tokenizer: Any  # transformers.PreTrainedTokenizerFast

    @property
    def model_type(self) -> str:
        return str(self.config.model_type)

    @property
    def architectures(self) -> List[str]:
        return list(getattr(self.config, "architectures", None) or [])

    def labels(self) -> List[str]:
        """The head's labels, in class-id order (config.id2label)."""
        id2label = self.config.id2label
        return [str(id2label[i]) for i in range(int(self.config.num_labels))]

    def max_length(self, requested: Optional[int] = None) -> int:
        """The longest sequence the encoder takes: ``requested`` if given, else the model's."""
        limits = []
        tokenizer_limit = int(getattr(self.tokenizer, "model_max_length", _UNBOUNDED) or _UNBOUNDED)
        if tokenizer_limit < _UNBOUNDED:
            limits.append(tokenizer_limit)
        positions = getattr(self.config, "max_position_embeddings", None)
        if positions:
            if self.model_type in _OFFSET_POSITION_MODELS:
                positions -= 2
            limits.append(int(positions))
        model_limit = min(limits) if limits else 512
        if requested is None:
            return model_limit
        if requested < 8:
            raise ExportError(f"--max-length {requested} is too small; use at least 8 tokens")
        if requested > model_limit:
            raise ExportError(
                f"--max-length {requested} exceeds what {self.source} supports ({model_limit} tokens); "
                f"use --max-length {model_limit} or less"
            )
        return requested


def open_checkpoint(source: str) -> Checkpoint:
    """Load the config and fast tokenizer of ``source`` (a directory or a hub id)."""
    from transformers import AutoConfig, AutoTokenizer

    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ExportError(f"checkpoint {source!r} is a file; pass the checkpoint directory")
        if not (path / "config.json").is_file():
            raise ExportError(
                f"checkpoint directory {source!r} has no config.json; pass a directory written by "
                "save_pretrained() (config.json, weights and tokenizer files)"
            )
        location = str(path.resolve())
    elif _looks_like_path(source):
        raise ExportError(f"checkpoint directory {source!r} does not exist")
    else:
        location = source  # a hub id

    try:
        config = AutoConfig.from_pretrained(location)
    except OSError as exc:
        raise ExportError(
            f"could not load {source!r}: not a local directory, and the hub did not give it "
            f"({str(exc).splitlines()[0]}); check the id, your network or HF_TOKEN, or pass a local directory"
        ) from exc
    except ValueError as exc:
        raise ExportError(f"unsupported checkpoint {source!r}: {str(exc).splitlines()[0]}") from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, use_fast=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ExportError(
            f"could not load a tokenizer for {source!r} ({str(exc).splitlines()[0]}); "
            "save the tokenizer with the checkpoint (tokenizer.save_pretrained(dir))"
        ) from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(
            f"{source!r} has no fast (Rust) tokenizer; tritonize serves tokenizer.json. "
            "Convert it with AutoTokenizer.from_pretrained(dir, use_fast=True).save_pretrained(dir)"
        )
    return Checkpoint(source=source, location=location, config=config, tokenizer=tokenizer)
