"""The serving knobs of one exported ensemble, and how a setting of them becomes its configs.

What ``tritonize tune`` searches, per step of the ensemble (the fused
layout's one step ``NAME_pipeline``, or the steps layout's three models):
instances, ``max_batch_size``, ``max_queue_delay_microseconds`` and preferred
batch sizes; for the encoder, ONNX Runtime threads per instance and the token
budget of a run; and the graph (among variants that passed the accuracy gate).

The configs are read and written as Triton's ``ModelConfig`` protobuf, as the
exporter writes them; the fused layout's ``steps.json`` (each step's own
config) is kept in step, since the steps read their settings from it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from tritonize import protocol

THREADS = protocol.PARAM_INTRA_OP_THREADS
BUDGET = "tritonize.max_batch_tokens"
MAX_ROWS = "tritonize.max_rows"
# the gate record of a graph, copied with a graph variant's model.onnx
GRAPH_PARAMS = (protocol.PARAM_GRAPH, protocol.PARAM_INT8_RECIPE, protocol.PARAM_AGREEMENT,
                protocol.PARAM_EVAL_INPUTS, protocol.PARAM_EVAL_SOURCE)
PARAM_TUNED = "tritonize.tuned"  # JSON: what tune chose, when, and what it measured


class TuneError(ValueError):
    """A repository, model or option that tune cannot work with; the message says why."""


@dataclass(frozen=True)
class Knobs:
    """One setting of the knobs (None: the export's "auto")."""

    instances: int
    max_batch_size: int
    queue_delay_us: int
    preferred: Tuple[int, ...] = ()
    threads: Optional[int] = None
    budget: Optional[int] = None
    graph: str = "fp32"

    def label(self) -> str:
        return (f"instances={self.instances} max_batch_size={self.max_batch_size} delay={self.queue_delay_us}us "
                f"preferred={','.join(map(str, self.preferred)) or '-'} threads={self.threads or 'auto'} "
                f"budget={self.budget or 'auto'} graph={self.graph}")

    def as_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["preferred"] = list(self.preferred)
        return data

    def with_(self, **changes: Any) -> "Knobs":
        return replace(self, **changes)


def _read(path: Path):  # type: ignore[no-untyped-def]
    from tritonize.exporters import configs

    return configs.read_config(path)


def _params(config: Any) -> Dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


class Ensemble:
    """The models of ensemble ``name`` in ``repository`` and where each knob lives in their configs."""

    def __init__(self, repository: Path, name: str) -> None:
        self.repository = Path(repository)
        path = self.repository / name / "config.pbtxt"
        if not path.is_file():
            raise TuneError(f"no model {name!r} in {self.repository} (no {path})")
        self.name = name
        self.config = _read(path)
        params = _params(self.config)
        if self.config.platform != "ensemble" or params.get(protocol.PARAM_ROLE) != "ensemble":
            raise TuneError(f"{name!r} is not an ensemble exported by tritonize export (its role is "
                            f"{params.get(protocol.PARAM_ROLE)!r}); tune the ensemble, not a step")
        self.task = params.get(protocol.PARAM_TASK, "")
        self.layout = params.get(protocol.PARAM_LAYOUT, "steps")
        self.steps = [step.model_name for step in self.config.ensemble_scheduling.step]
        self.step_configs = {model: _read(self.repository / model / "config.pbtxt") for model in self.steps}
        self.fused = self.layout == "fused"
        if self.fused:
            self.encoder_model = self.steps[0]
            steps = json.loads((self.repository / self.encoder_model / "1" / "steps.json").read_text())
            if protocol.PARAM_ENCODER_MODEL in (steps["encoder"].get("parameters") or {}):
                raise TuneError(f"{name!r} runs its encoder in a native Triton backend; tune works on the "
                                "python-onnxruntime format, which the local server runs")
        else:
            roles = {model: _params(c).get(protocol.PARAM_ROLE) for model, c in self.step_configs.items()}
            encoders = [model for model, role in roles.items() if role == "encoder"]
            if len(encoders) != 1 or self.step_configs[encoders[0]].backend != "python":
                raise TuneError(f"{name!r}: tune works on the python-onnxruntime encoder, which the local server "
                                "runs")
            self.encoder_model = encoders[0]

    @property
    def models(self) -> List[str]:
        """The ensemble and its step models (what a candidate rewrites)."""
        return [self.name, *self.steps]

    def encoder_config(self):  # type: ignore[no-untyped-def]
        if self.fused:
            from google.protobuf.json_format import ParseDict
            from tritonclient.grpc import model_config_pb2 as mc

            steps = json.loads((self.repository / self.encoder_model / "1" / "steps.json").read_text())
            return ParseDict(steps["encoder"], mc.ModelConfig())
        return self.step_configs[self.encoder_model]

    def current(self) -> Knobs:
        """The knobs as exported (or as the last ``tune --apply`` left them)."""
        holder = self.step_configs[self.encoder_model]
        encoder = _params(self.encoder_config())
        batching = holder.dynamic_batching
        threads, budget = encoder.get(THREADS, "auto"), encoder.get(BUDGET, "auto")
        return Knobs(
            instances=holder.instance_group[0].count if holder.instance_group else 1,
            max_batch_size=holder.max_batch_size,
            queue_delay_us=batching.max_queue_delay_microseconds,
            preferred=tuple(batching.preferred_batch_size),
            threads=None if threads in ("", "auto", "0") else int(threads),
            budget=None if budget in ("", "auto") else int(budget),
            graph=encoder.get(protocol.PARAM_GRAPH, "fp32"),
        )

    def max_positions(self) -> int:
        return int(_params(self.encoder_config()).get("tritonize.max_positions", "0") or 0)

    # -- writing -------------------------------------------------------------------------
    def write(self, root: Path, knobs: Knobs, graphs: Optional[Dict[str, Path]] = None,
              record: Optional[Dict[str, Any]] = None) -> None:
        """Write ``knobs`` into the copies of this ensemble's models under ``root`` (their other files are
        there already). ``graphs`` maps a graph name to the version folder of an export that holds it."""
        from google.protobuf.json_format import MessageToDict, ParseDict
        from tritonclient.grpc import model_config_pb2 as mc

        from tritonize.exporters import configs

        root = Path(root)
        extra: Dict[str, str] = {}
        if record is not None:
            extra[PARAM_TUNED] = json.dumps(record, sort_keys=True)
        graph_params: Dict[str, str] = {}
        if graphs and knobs.graph in graphs:
            graph_params = self._install_graph(graphs[knobs.graph], root / self.encoder_model / "1")
        ensemble = mc.ModelConfig()
        ensemble.CopyFrom(self.config)
        ensemble.max_batch_size = knobs.max_batch_size
        configs.set_parameters(ensemble, {**{k: v for k, v in graph_params.items()}, **extra})
        configs.write_config(root / self.name, ensemble)
        for model, original in self.step_configs.items():
            config = mc.ModelConfig()
            config.CopyFrom(original)
            role = _params(config).get(protocol.PARAM_ROLE)
            holds_encoder = model == self.encoder_model
            _set_step(config, knobs, encoder=holds_encoder and not self.fused, role=role)
            if holds_encoder:
                configs.set_parameters(config, graph_params)
                if self.fused:  # the merged parameters of the pipeline say what its encoder step runs with
                    _set_encoder_params(config, knobs)
            configs.set_parameters(config, extra)
            configs.write_config(root / model, config)
        if self.fused:
            path = root / self.encoder_model / "1" / "steps.json"
            steps = json.loads(path.read_text())
            for role, data in steps.items():
                config = ParseDict(data, mc.ModelConfig())
                _set_step(config, knobs, encoder=role == "encoder", role=role)
                if role == "encoder":
                    configs.set_parameters(config, graph_params)
                steps[role] = MessageToDict(config, preserving_proto_field_name=True)
            path.write_text(json.dumps(steps, indent=1))

    @staticmethod
    def _install_graph(version_dir: Path, target: Path) -> Dict[str, str]:
        """Copy a graph variant's model.onnx (and external data) in; return its gate record."""
        for old in target.glob("model.onnx*"):
            old.unlink()
        for path in version_dir.glob("model.onnx*"):
            shutil.copy2(path, target / path.name)
        config = _read(version_dir.parent / "config.pbtxt")
        params = _params(config)
        return {key: params[key] for key in GRAPH_PARAMS if key in params}

    def config_files(self) -> Dict[Path, bytes]:
        """Every file a candidate rewrites (config.pbtxt, steps.json, the graph), as it is now."""
        files = {}
        for model in self.models:
            folder = self.repository / model
            for path in [folder / "config.pbtxt", *(folder / "1").glob("steps.json"), *(folder / "1").glob("model.onnx*")]:
                if path.is_file():
                    files[path] = path.read_bytes()
        return files

    def copy_into(self, root: Path) -> None:
        """A copy of this ensemble's models under ``root`` (hard links where the filesystem allows)."""
        for model in self.models:
            target = Path(root) / model
            if target.exists():
                shutil.rmtree(target)
            try:
                shutil.copytree(self.repository / model, target, copy_function=_link_or_copy)
            except OSError:
                shutil.copytree(self.repository / model, target)


def _link_or_copy(source: str, destination: str) -> None:
    import os

    if source.endswith(("config.pbtxt", "steps.json")):  # rewritten in place: never shared
        shutil.copy2(source, destination)
        return
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def _set_step(config: Any, knobs: Knobs, encoder: bool, role: Optional[str]) -> None:
    """The per-step knobs on one step's config; the encoder's own knobs too where ``encoder``."""
    old_batch = config.max_batch_size or 1
    config.max_batch_size = knobs.max_batch_size
    if config.instance_group:
        config.instance_group[0].count = knobs.instances
    batching = config.dynamic_batching
    batching.max_queue_delay_microseconds = knobs.queue_delay_us
    del batching.preferred_batch_size[:]
    batching.preferred_batch_size.extend(p for p in knobs.preferred if p <= knobs.max_batch_size)
    params = _params(config)
    if MAX_ROWS in params and params[MAX_ROWS] not in ("", "0"):  # rows per request: max_batch_size x windows
        windows = max(1, int(params[MAX_ROWS]) // old_batch)
        config.parameters[MAX_ROWS].string_value = str(windows * knobs.max_batch_size)
    if encoder:
        _set_encoder_params(config, knobs)


def _set_encoder_params(config: Any, knobs: Knobs) -> None:
    config.parameters[THREADS].string_value = "auto" if knobs.threads is None else str(knobs.threads)
    config.parameters[BUDGET].string_value = "auto" if knobs.budget is None else str(knobs.budget)
