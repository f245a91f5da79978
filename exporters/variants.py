"""Graph variants of the validated fp32 encoder, built with optimum's ORTOptimizer and ORTQuantizer.

``--optimize O1|O2|O3`` are optimum's optimization levels (O4 is fp16, for
GPUs); ``--quantize int8`` is ORTQuantizer's dynamic int8 with the
quantization config of the CPU that serves it (``avx2``, ``avx512``,
``avx512_vnni``, ``arm64``). Both together: int8 first, then the optimizer on
the int8 graph (quantizing a fused graph fails the quantizer's shape
inference on the fused operators).

Every variant other than the plain fp32 export goes through the accuracy
gate (``exporters/accuracy.py``). For int8 the gate tries the recipes of
``INT8_RECIPES`` in order and keeps the first that passes: each keeps more of
the graph in fp32 than the one before.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import re
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from tritonize.exporters.checkpoint import Checkpoint, ExportError

OPTIMIZE_LEVELS = ("O1", "O2", "O3")
FP16_LEVEL = "O4"
QUANTIZE_MODES = ("int8",)
CPU_TARGETS = ("avx2", "avx512", "avx512_vnni", "arm64")
# the operators of the activations that make the MatMul after them sensitive to int8
_ACTIVATIONS = {"Erf", "Gelu", "FastGelu", "BiasGelu", "QuickGelu", "Tanh"}
_LAYER = re.compile(r"(?:layer|layers|block|blocks)[._/](\d+)[._/]")


@dataclass(frozen=True)
class Variant:
    """Which graph is served: the plain fp32 export, fused, int8, or both."""

    optimize: Optional[str] = None  # O1 | O2 | O3 (O4: set by precision fp16)
    quantize: Optional[str] = None  # int8
    target: Optional[str] = None  # the CPU the int8 graph is built for (None: this machine's)
    precision: str = "fp32"  # fp16: optimum's O4 (fused, fp16 weights and activations, for GPUs)

    def __post_init__(self) -> None:
        if self.precision == "fp16":
            if self.optimize not in (None, FP16_LEVEL) or self.quantize:
                raise ExportError("--precision fp16 is optimum's O4 graph: it does not combine with "
                                  "--optimize or --quantize")
            object.__setattr__(self, "optimize", FP16_LEVEL)
        elif self.optimize is not None and self.optimize not in OPTIMIZE_LEVELS:
            raise ExportError(
                f"--optimize {self.optimize!r} is not one of {', '.join(OPTIMIZE_LEVELS)} "
                "(O4 is fp16 for GPUs: --device cuda --precision fp16)"
            )
        if self.quantize is not None and self.quantize not in QUANTIZE_MODES:
            raise ExportError(f"--quantize {self.quantize!r} is not one of {', '.join(QUANTIZE_MODES)}")
        if self.target is not None and self.target not in CPU_TARGETS:
            raise ExportError(f"--quantize-for {self.target!r} is not one of {', '.join(CPU_TARGETS)}")

    @property
    def needs_cuda(self) -> bool:
        """fp16 graphs are built for, and gated on, ONNX Runtime's CUDA execution provider."""
        return self.precision == "fp16"

    @property
    def provider(self) -> str:
        return "CUDAExecutionProvider" if self.needs_cuda else "CPUExecutionProvider"

    @property
    def plain(self) -> bool:
        return self.optimize is None and self.quantize is None

    @property
    def name(self) -> str:
        parts = [p for p in (self.optimize, self.quantize) if p]
        return "+".join(parts) if parts else "fp32"


@dataclass(frozen=True)
class Int8Recipe:
    """One way of quantizing: dynamic int8 weights of the MatMuls, per channel, some of them kept in fp32.

    The embeddings (Gather) and the task head (Gemm) stay fp32 in every
    recipe: they are a small share of the time and a large share of the error.
    """

    key: str  # what --int8-recipe takes
    name: str
    keep_ffn_output: bool = False  # the MatMul after each GELU: its inputs carry the outliers
    keep_edge_layers: bool = False  # the first and the last encoder layer
    only_ffn_input: bool = False  # int8 only for the MatMul before each GELU (the largest), all else fp32
    reduce_range: bool = False  # 7-bit weights: no u8s8 saturation on AVX2/AVX-512 without VNNI


INT8_RECIPES = (
    Int8Recipe("per-channel", "per-channel"),
    Int8Recipe("ffn-output-fp32", "per-channel, FFN output fp32", keep_ffn_output=True),
    Int8Recipe("reduce-range", "per-channel reduce-range, FFN output fp32", keep_ffn_output=True,
               reduce_range=True),
    Int8Recipe("edge-layers-fp32", "per-channel, FFN output, first and last layer fp32", keep_ffn_output=True,
               keep_edge_layers=True),
    Int8Recipe("ffn-input-only", "per-channel, FFN input only", only_ffn_input=True),
)


def recipes_for(target: str, only: Optional[str] = None) -> List[Int8Recipe]:
    """The int8 recipes the gate tries on ``target``, in order (``only``: that one alone).

    Reduce-range only where u8s8 can saturate: AVX2 and AVX-512 without VNNI.
    """
    if only is not None:
        chosen = [r for r in INT8_RECIPES if r.key == only]
        if not chosen:
            raise ExportError(f"--int8-recipe {only!r} is not one of {', '.join(r.key for r in INT8_RECIPES)}")
        return chosen
    return [r for r in INT8_RECIPES if not r.reduce_range or target in ("avx2", "avx512")]


def detect_target() -> str:
    """The quantization config that fits this machine's CPU."""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "arm64"
    try:
        flags = set()
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
                break
    except OSError:
        return "avx2"
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


def fp32_nodes(model_path: Path, recipe: Int8Recipe) -> List[str]:
    """The MatMul nodes that ``recipe`` keeps in fp32, found in the graph (not by a model's names)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {output: node for node in graph.node for output in node.output}

    consumers: dict = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def near_activation(node: "onnx.NodeProto", upward: bool, depth: int = 5) -> bool:
        """An activation within ``depth`` nodes above (the FFN output) or below (the FFN input) ``node``.

        GELU as exported is Div -> Erf -> Add -> Mul -> Mul: the Erf is at most four nodes from either MatMul.
        """
        if depth == 0:
            return False
        if upward:
            nexts = [p for i in node.input if (p := producer.get(i)) is not None]
        else:
            nexts = [c for o in node.output for c in consumers.get(o, [])]
        nexts = [n for n in nexts if n.op_type not in ("Constant", "Identity", "MatMul")]
        return any(n.op_type in _ACTIVATIONS or near_activation(n, upward, depth - 1) for n in nexts)

    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    keep = set()
    if recipe.only_ffn_input:
        keep.update(n.name for n in matmuls if not near_activation(n, upward=False))
    if recipe.keep_ffn_output:
        keep.update(n.name for n in matmuls if near_activation(n, upward=True))
    if recipe.keep_edge_layers:
        layers = {n.name: int(m.group(1)) for n in matmuls if (m := _LAYER.search(n.name))}
        if layers:
            edges = {min(layers.values()), max(layers.values())}
            keep.update(name for name, layer in layers.items() if layer in edges)
    return sorted(keep)


def _quiet() -> None:
    for name in ("optimum", "onnxruntime"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _finish(produced: Path, out_dir: Path, checkpoint: Checkpoint) -> Path:
    """``out_dir/model.onnx`` (one file, or with ``model.onnx.data`` beside it) and the checkpoint's config."""
    import onnx

    model = onnx.load(str(produced))
    out_dir.mkdir(parents=True, exist_ok=True)
    large = model.ByteSize() > 1_800_000_000
    onnx.save(model, str(out_dir / "model.onnx"), save_as_external_data=large,
              location="model.onnx.data" if large else None)
    checkpoint.config.save_pretrained(str(out_dir))
    return out_dir / "model.onnx"


def require_cuda(what: str) -> None:
    """Refuse, before any work, an fp16 export on a host whose ONNX Runtime cannot run CUDA."""
    import onnxruntime

    providers = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        raise ExportError(
            f"{what} builds the fp16 graph (optimum O4) and gates it on a GPU, with ONNX Runtime's "
            f"CUDAExecutionProvider; this host's onnxruntime has only {', '.join(providers)}. Export on the GPU "
            "host, with onnxruntime-gpu installed (pip install 'tritonize[export,serve-gpu]'), or export fp32"
        )


def build(variant: Variant, fp32_model: Path, checkpoint: Checkpoint, work_dir: Path,
          recipe: Optional[Int8Recipe] = None) -> Path:
    """Write ``variant`` of the fp32 graph ``fp32_model`` under ``work_dir``; returns its model.onnx."""
    from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    _quiet()
    source = work_dir / "fp32"
    if not (source / "model.onnx").exists():
        source.mkdir(parents=True, exist_ok=True)
        for path in fp32_model.parent.glob("model.onnx*"):
            shutil.copy2(path, source / path.name)
        checkpoint.config.save_pretrained(str(source))
    current = source / "model.onnx"
    stage = re.sub(r"[^A-Za-z0-9]+", "-", variant.name + ("-" + recipe.name if recipe else ""))
    # ONNX Runtime's fusion tools print() notes (e.g. "failed in shape inference" on DeBERTa's graph):
    # stdout is the CLI's JSON summary, so they go to stderr with the progress lines.
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        if variant.quantize:
            recipe = recipe or INT8_RECIPES[0]
            target = variant.target or detect_target()
            config = getattr(AutoQuantizationConfig, target)(
                is_static=False,
                per_channel=True,
                **({"reduce_range": True} if recipe.reduce_range else {}),
                operators_to_quantize=["MatMul"],
                nodes_to_exclude=fp32_nodes(current, recipe),
            )
            try:
                quantizer = ORTQuantizer.from_pretrained(current.parent, file_name=current.name)
                produced = quantizer.quantize(config, work_dir / f"{stage}-int8")
            except Exception as exc:  # optimum and onnxruntime raise their own kinds
                raise ExportError(f"optimum could not quantize the encoder to int8: {exc}") from exc
            current = _finish(next(Path(produced).glob("*quantized.onnx"))
                              if Path(produced).is_dir() else Path(produced),
                              work_dir / f"{stage}-int8-model", checkpoint)
        if variant.optimize:
            try:
                optimizer = ORTOptimizer.from_pretrained(current.parent, file_names=[current.name])
                out = work_dir / f"{stage}-{variant.optimize}"
                level = AutoOptimizationConfig.with_optimization_level(
                    variant.optimize, for_gpu=variant.needs_cuda)
                optimizer.optimize(level, out)
            except Exception as exc:
                raise ExportError(
                    f"optimum could not optimize the {checkpoint.model_type} encoder at {variant.optimize}: {exc}"
                ) from exc
            current = _finish(next(out.glob("*_optimized.onnx")), work_dir / f"{stage}-model", checkpoint)
    return current
