"""What a served model is, read from its config on the server."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from tritonize import protocol


@dataclass(frozen=True)
class ModelInfo:
    """A served tritonize model, as its ``config.pbtxt`` parameters describe it."""

    name: str
    task: Optional[str]
    role: Optional[str] = None
    labels: List[str] = field(default_factory=list)
    max_batch_size: int = 0
    inputs: List[str] = field(default_factory=list)
    outputs: List[str] = field(default_factory=list)
    parameters: Dict[str, str] = field(default_factory=dict)
    ready: Optional[bool] = None

    @classmethod
    def from_config(cls, config: Dict[str, Any], ready: Optional[bool] = None) -> "ModelInfo":
        """Build from the JSON form of a ModelConfig (``get_model_config(as_json=True)``)."""
        parameters = {
            key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()
        }
        labels_text = parameters.get(protocol.PARAM_LABELS)
        return cls(
            name=str(config.get("name", "")),
            task=parameters.get(protocol.PARAM_TASK),
            role=parameters.get(protocol.PARAM_ROLE),
            labels=list(json.loads(labels_text)) if labels_text else [],
            max_batch_size=int(config.get("max_batch_size", 0) or 0),
            inputs=[str(i["name"]) for i in config.get("input", [])],
            outputs=[str(o["name"]) for o in config.get("output", [])],
            parameters=parameters,
            ready=ready,
        )
