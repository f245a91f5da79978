"""``tritonize export``: a checkpoint becomes a tokenizer -> encoder -> postprocess ensemble."""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, TextIO

import tritonize
from tritonize import protocol
from tritonize.exporters import configs, plugins
from tritonize.exporters.backend import install_step
from tritonize.exporters.checkpoint import ExportError, open_checkpoint
from tritonize.exporters.configs import Tensor
from tritonize.exporters.formats.base import FormatPlugin
from tritonize.exporters.formats.onnx import python_encoder_config
from tritonize.exporters.onnx_export import OnnxEncoder, build_encoder, supported_check
from tritonize.exporters.configs import DynamicBatcher, QueuePolicy
from tritonize.exporters.tasks.base import DEFAULT_LIMITS, ExportSpec, RequestLimits, TaskPlugin

from tritonize.exporters.writer import RepositoryWriter, Staging
from tritonize.exporters import accuracy, variants
from tritonize.exporters.accuracy import DEFAULT_MIN_AGREEMENT

DEFAULT_QUEUE = QueuePolicy()
PRECISIONS = ("fp32", "fp16")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class ExportOptions:
    checkpoint: str
    task: str
    name: str
    repository: Path = Path("model_repository")
    backend: str = "python-onnxruntime"
    max_batch_size: int = 32
    instances: int = 1
    max_length: Optional[int] = None
    atol: float = 1e-4
    max_text_chars: int = DEFAULT_LIMITS.max_text_chars
    max_windows: int = DEFAULT_LIMITS.max_windows
    max_batch_tokens: Optional[int] = None  # None: 512 on CPU (at least the max length), 16384 on GPU
    max_queue_size: int = DEFAULT_QUEUE.max_queue_size
    queue_timeout_ms: float = 0.0
    optimize: Optional[str] = None  # O1 | O2 | O3 (optimum's ORTOptimizer levels)
    quantize: Optional[str] = None  # int8 (optimum's ORTQuantizer, dynamic)
    quantize_for: Optional[str] = None  # avx2 | avx512 | avx512_vnni | arm64 (None: this CPU)
    int8_recipe: Optional[str] = None  # one recipe of variants.INT8_RECIPES (None: each in turn)
    eval_texts: Optional[Path] = None  # the accuracy gate's inputs (None: the built-in set)
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    threads: Optional[int] = None  # ORT intra-op threads per encoder instance (None: cores / instances)
    allow_spinning: bool = True  # measured: faster at 1 caller and at saturation (benchmarks/serving.py)
    layout: Optional[str] = None  # fused | steps (None: fused where the format can, else steps)
    device: str = "cpu"  # cpu | cuda | cuda:N: KIND_CPU or KIND_GPU instance groups for the encoder
    precision: str = "fp32"  # fp32 | fp16 (optimum O4 behind the accuracy gate; TensorRT: the engine's)
    trt_accelerator: bool = False  # --backend onnxruntime on a GPU: ORT's TensorRT execution provider
    task_options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportResult:
    name: str
    repository: Path
    models: List[str]
    max_abs_diff: float
    seconds: float
    graph: Dict[str, str] = field(default_factory=dict)  # the served graph and its gate record
    backend: str = "python-onnxruntime"
    device: str = "cpu"
    precision: str = "fp32"
    task: str = ""
    #: what the task plugin chose, and why (TaskPlugin.summary), e.g. feature-extraction's pooling
    task_summary: Dict[str, Any] = field(default_factory=dict)


class Progress:
    """Numbered stages with their durations, on stderr."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self.stream = total, 0, stream

    @contextmanager
    def __call__(self, message: str) -> Iterator[None]:
        self.done += 1
        self.stream.write(f"[{self.done}/{self.total}] {message} ...")
        self.stream.flush()
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            self.stream.write(" failed\n")
            raise
        self.stream.write(f" {time.perf_counter() - started:.1f}s\n")
        self.stream.flush()


def _check_options(options: ExportOptions) -> None:
    if not NAME_PATTERN.match(options.name):
        raise ExportError(
            f"model name {options.name!r} is not valid: use letters, digits, '_', '-' or '.' "
            "(at most 100 characters, starting with a letter or digit)"
        )
    if options.max_batch_size < 1:
        raise ExportError(f"--max-batch-size must be at least 1, got {options.max_batch_size}")
    if options.instances < 1:
        raise ExportError(f"--instances must be at least 1, got {options.instances}")
    if options.atol <= 0:
        raise ExportError(f"--atol must be positive, got {options.atol}")
    for flag, value in (("--max-text-chars", options.max_text_chars), ("--max-windows", options.max_windows),
                        ("--max-queue-size", options.max_queue_size), ("--queue-timeout-ms", options.queue_timeout_ms)):
        if value < 0:
            raise ExportError(f"{flag} must be 0 (no limit) or more, got {value}")
    if not 0.0 <= options.min_agreement <= 1.0:
        raise ExportError(f"--min-agreement must be between 0 and 1, got {options.min_agreement}")
    if options.threads is not None and options.threads < 1:
        raise ExportError(f"--threads must be at least 1, got {options.threads}")
    if (options.quantize_for or options.int8_recipe) and not options.quantize:
        raise ExportError("--quantize-for and --int8-recipe need --quantize int8")
    if options.int8_recipe:
        variants.recipes_for("avx2", options.int8_recipe)  # refuses an unknown recipe before any work
    if options.max_batch_tokens is not None and options.max_batch_tokens < 0:
        raise ExportError(f"--max-batch-tokens must be 0 (no budget) or more, got {options.max_batch_tokens}")


def _device(options: ExportOptions, fmt: FormatPlugin) -> configs.Device:
    """The export's device, checked against the format, the precision and the accelerator."""
    try:
        device = configs.Device.parse(options.device)
    except ValueError as exc:
        raise ExportError(f"--device: {exc}") from None
    if fmt.gpu_only and not device.is_gpu:
        raise ExportError(f"backend {fmt.name!r} runs only on GPUs: add --device cuda (or cuda:N)")
    if options.precision not in PRECISIONS:
        raise ExportError(f"--precision {options.precision!r} is not one of {', '.join(PRECISIONS)}")
    if options.precision == "fp16" and not device.is_gpu:
        raise ExportError("--precision fp16 is for GPUs (ONNX Runtime's CPU kernels are fp32): add --device cuda")
    if options.precision == "fp16" and (options.optimize or options.quantize):
        raise ExportError("--precision fp16 is optimum's O4 graph: it does not combine with --optimize or --quantize")
    if options.trt_accelerator and (fmt.name != "onnxruntime" or not device.is_gpu):
        raise ExportError("--trt-accelerator is for --backend onnxruntime with --device cuda "
                          "(use --backend tensorrt for a TensorRT engine of its own)")
    return device


def _onnx_precision(fmt: FormatPlugin, options: ExportOptions) -> bool:
    """Whether ``--precision`` is the served ONNX graph's (optimum O4), or the TensorRT builder's flag
    (``--backend tensorrt``, and ORT's TensorRT accelerator: they take the fp32 graph)."""
    return fmt.in_process or (fmt.name == "onnxruntime" and not options.trt_accelerator)


def _serving(options: ExportOptions, max_length: int) -> tuple:
    """The request limits and the steps' batcher of an export, checked against the model's max length."""
    budget = options.max_batch_tokens
    if budget and budget < max_length:
        raise ExportError(
            f"--max-batch-tokens {budget} is below the max length {max_length}: one full sequence must fit "
            f"in a batch; give at least {max_length} (or 0 for no budget)"
        )
    limits = RequestLimits(options.max_text_chars, options.max_windows, budget)
    queue = QueuePolicy(options.max_queue_size, int(options.queue_timeout_ms * 1000))
    return limits, DynamicBatcher(queue=queue)


def _write_tokenizer(spec: ExportSpec, task: TaskPlugin, fmt: FormatPlugin, encoder: OnnxEncoder,
                     model_dir: Path, name: str) -> configs.mc.ModelConfig:
    from tritonize.exporters.formats.base import ENCODER_INPUTS

    version_dir = model_dir / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    backend_tokenizer = spec.checkpoint.tokenizer.backend_tokenizer
    # Truncation and padding are the step's own business (see tokenizer.py):
    # a tokenizer.json that pads or truncates (some checkpoints ship one that
    # cuts at 128) would change every answer.
    backend_tokenizer.no_truncation()
    backend_tokenizer.no_padding()
    backend_tokenizer.save(str(version_dir / "tokenizer.json"))
    install_step(task.tokenizer_source, version_dir, code=task.code_dir)
    outputs = task.tokenizer_outputs(spec, [ENCODER_INPUTS[n] for n in encoder.input_names])
    return _python_step(
        spec, name, task.tokenizer_inputs(spec), outputs,
        {
            protocol.PARAM_TASK: spec.task,
            protocol.PARAM_ROLE: "tokenizer",
            protocol.PARAM_MAX_LENGTH: str(spec.max_length),
            protocol.PARAM_PAD_TO_MULTIPLE_OF: str(fmt.pad_to_multiple_of),
            "tritonize.pad_token_id": str(spec.checkpoint.tokenizer.pad_token_id or 0),
            "tritonize.windows": "1" if task.windowed else "0",
            "tritonize.max_text_chars": str(spec.limits.max_text_chars),
            "tritonize.max_windows": str(spec.limits.max_windows if task.windowed else 0),
            **task.tokenizer_parameters(spec),
        },
    )


def _write_postprocess(spec: ExportSpec, task: TaskPlugin, model_dir: Path, name: str) -> configs.mc.ModelConfig:
    version_dir = model_dir / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    install_step(task.postprocess_source, version_dir, code=task.code_dir)
    task.write_postprocess_files(spec, version_dir)
    return _python_step(
        spec, name, task.postprocess_inputs(spec), task.ensemble_outputs(spec),
        {
            protocol.PARAM_TASK: spec.task,
            protocol.PARAM_ROLE: "postprocess",
            **task.postprocess_parameters(spec),
        },
    )


def _identity(tensors: List[Tensor]) -> Dict[str, str]:
    return {t.name: t.name for t in tensors}


def write_models(spec: ExportSpec, task: TaskPlugin, fmt: FormatPlugin, encoder: OnnxEncoder,
                 staging: Staging, layout: str = "steps") -> List[str]:
    """The step models and the ensemble NAME over them; returns the model names, the ensemble first."""
    names = {role: protocol.step_name(spec.name, role) for role in (*protocol.ROLES, protocol.PIPELINE)}
    fused = layout == "fused"
    shared = staging.model_dir(names[protocol.PIPELINE]) if fused else None

    def step_dir(role: str) -> Path:
        return shared if shared is not None else staging.model_dir(names[role])

    def placed(role: str, config: configs.mc.ModelConfig) -> configs.mc.ModelConfig:
        """Steps layout: the step's config.pbtxt; fused: its model.py becomes ``<role>_step.py``."""
        if shared is None:
            configs.write_config(step_dir(role), config)
        else:
            (shared / "1" / "model.py").rename(shared / "1" / f"{role}_step.py")
        return config

    # the postprocess first: in the fused layout the tokenizer's tokenizer.json must be the one that stays
    postprocess = placed("postprocess", _write_postprocess(spec, task, step_dir("postprocess"), names["postprocess"]))
    tokenizer = placed("tokenizer", _write_tokenizer(spec, task, fmt, encoder, step_dir("tokenizer"),
                                                    names["tokenizer"]))
    bls = fused and not fmt.in_process  # a native encoder model, which the pipeline calls through BLS
    if bls:
        assert shared is not None
        native = fmt.write_encoder(spec, encoder, task.encoder_outputs, staging.model_dir(names["encoder"]),
                                   names["encoder"])
        configs.write_config(staging.model_dir(names["encoder"]), native.config)
        install_step("encoder_onnxruntime.py", shared / "1", as_name="encoder_step.py")
        encoder_config = python_encoder_config(spec, encoder, task.encoder_outputs, names["encoder"], native.config)
    else:
        step = fmt.write_encoder(spec, encoder, task.encoder_outputs, step_dir("encoder"), names["encoder"])
        encoder_config = placed("encoder", step.config)

    inputs, outputs = task.ensemble_inputs(spec), task.ensemble_outputs(spec)
    if shared is not None:
        pipeline = _write_pipeline(spec, task, shared, names[protocol.PIPELINE], tokenizer, encoder_config,
                                   postprocess, configs.CPU if bls else spec.device)
        configs.write_config(shared, pipeline)
        steps = [(names[protocol.PIPELINE], _identity(task.tokenizer_inputs(spec)), _identity(outputs))]
        models = [names["ensemble"], names[protocol.PIPELINE], *([names["encoder"]] if bls else [])]
    else:
        tokenizer_outputs = [Tensor(o.name, "int64") for o in tokenizer.output]
        steps = [
            (names["tokenizer"], _identity(task.tokenizer_inputs(spec)), _identity(tokenizer_outputs)),
            (names["encoder"], step.input_map, step.output_map),
            (names["postprocess"], _identity(task.postprocess_inputs(spec)), _identity(outputs)),
        ]
        models = [names[role] for role in protocol.ROLES]
    ensemble = configs.ensemble_config(
        names["ensemble"],
        inputs=inputs,
        outputs=outputs,
        max_batch_size=spec.max_batch_size,
        steps=steps,
        parameters={
            protocol.PARAM_TASK: spec.task,
            protocol.PARAM_ROLE: "ensemble",
            protocol.PARAM_SOURCE: spec.checkpoint.source,
            protocol.PARAM_VERSION: tritonize.__version__,
            protocol.PARAM_MAX_LENGTH: str(spec.max_length),
            "tritonize.backend": fmt.name,
            protocol.PARAM_LAYOUT: layout,
            protocol.PARAM_DEVICE: str(spec.device),
            protocol.PARAM_PRECISION: spec.precision,
            **spec.graph,
            protocol.PARAM_MAX_TEXT_CHARS: str(spec.limits.max_text_chars),
            **({protocol.PARAM_MAX_WINDOWS: str(spec.limits.max_windows)} if task.windowed else {}),
            **task.ensemble_parameters(spec),
        },
    )
    ensemble_dir = staging.model_dir(names["ensemble"])
    (ensemble_dir / "1").mkdir(exist_ok=True)  # Triton wants a version folder, even for ensembles
    configs.write_config(ensemble_dir, ensemble)
    for name in names.values():  # a re-export in the other layout retires the steps of the first
        if name not in models:
            staging.retire(name)
    return models


def _write_pipeline(spec: ExportSpec, task: TaskPlugin, model_dir: Path, name: str,
                    tokenizer: configs.mc.ModelConfig, encoder: configs.mc.ModelConfig,
                    postprocess: configs.mc.ModelConfig, device: configs.Device) -> configs.mc.ModelConfig:
    """The fused layout's one step: the three steps' code and files, each step's config in steps.json."""
    from google.protobuf.json_format import MessageToDict

    version_dir = model_dir / "1"
    steps = {"tokenizer": tokenizer, "encoder": encoder, "postprocess": postprocess}
    (version_dir / "steps.json").write_text(json.dumps(
        {role: MessageToDict(config, preserving_proto_field_name=True) for role, config in steps.items()},
        indent=1,
    ))
    install_step("pipeline.py", version_dir)
    parameters = {}
    for config in steps.values():
        parameters.update({key: value.string_value for key, value in config.parameters.items()})
    parameters.update({protocol.PARAM_ROLE: protocol.PIPELINE, protocol.PARAM_LAYOUT: "fused"})
    return _python_step(spec, name, task.tokenizer_inputs(spec), task.ensemble_outputs(spec), parameters, device)


def _python_step(spec: ExportSpec, name: str, inputs: List[Tensor], outputs: List[Tensor],
                 parameters: Dict[str, Any], device: configs.Device = configs.CPU) -> configs.mc.ModelConfig:
    """A Python-backend step's config: its tensors and parameters, the export's batcher and instances."""
    config = configs.model_config(name, backend="python", max_batch_size=spec.max_batch_size, inputs=inputs,
                                  outputs=outputs, parameters=parameters)
    configs.add_dynamic_batching(config, spec.batcher)
    configs.add_instances(config, spec.instances, device)
    return config


def export(options: ExportOptions, stream: TextIO = sys.stderr) -> ExportResult:
    """Export ``options.checkpoint`` into ``options.repository``; all or nothing."""
    started = time.perf_counter()
    _check_options(options)
    task = plugins.get_task(options.task)
    fmt = plugins.get_format(options.backend)
    if task.windowed and not fmt.supports_windows:
        raise ExportError(
            f"backend {fmt.name!r} cannot serve {task.name} yet (long texts are split into windows); "
            "use --backend python-onnxruntime"
        )
    layout = options.layout or ("fused" if fmt.supports_fused else "steps")
    if layout not in protocol.LAYOUTS:
        raise ExportError(f"--layout {layout!r} is not one of {', '.join(protocol.LAYOUTS)}")
    if layout == "fused" and not fmt.supports_fused:
        raise ExportError(f"backend {fmt.name!r} cannot run the fused layout (one Python stub); use --layout steps")
    if layout == "steps" and task.windowed and not fmt.in_process:
        raise ExportError(
            f"backend {fmt.name!r} takes [rows, tokens], not the [texts, windows, tokens] of {task.name}: "
            "use --layout fused (the pipeline step sends the windows to the native encoder through BLS)"
        )
    device = _device(options, fmt)
    variant = variants.Variant(options.optimize, options.quantize, options.quantize_for,
                               precision=options.precision if _onnx_precision(fmt, options) else "fp32")
    if variant.needs_cuda:
        variants.require_cuda(f"--precision {options.precision}")
    eval_set = None if variant.plain else accuracy.read_eval_set(task, options.eval_texts)
    progress = Progress(total=5 if variant.plain else 7, stream=stream)

    with progress(f"opening checkpoint {options.checkpoint}"):
        checkpoint = open_checkpoint(options.checkpoint)
        task.check_checkpoint(checkpoint)
        supported_check(checkpoint, task)  # before any weights load: optimum must export this head
        max_length = checkpoint.max_length(options.max_length)
        limits, batcher = _serving(options, max_length)
        spec = ExportSpec(
            name=options.name,
            task=task.name,
            checkpoint=checkpoint,
            max_batch_size=options.max_batch_size,
            instances=options.instances,
            max_length=max_length,
            windowed=task.windowed,
            limits=limits,
            batcher=batcher,
            options=task.options(checkpoint, {**options.task_options, "max_length": max_length}),
            threads=options.threads,
            allow_spinning=options.allow_spinning,
            device=device,
            precision=options.precision,
            trt_accelerator=options.trt_accelerator,
        )
        spec.encoder_parameters = task.encoder_parameters(spec)

    writer = RepositoryWriter(options.repository)
    with tempfile.TemporaryDirectory(prefix="tritonize-export-") as tmp:
        encoder, model = build_encoder(checkpoint, task, Path(tmp), spec.max_length, options.atol, progress)
        if not variant.plain:
            assert eval_set is not None
            encoder = _gated_variant(variant, encoder, model, task, spec, eval_set, options.min_agreement,
                                     Path(tmp) / "variants", progress, options.int8_recipe)
        del model
        with progress(f"writing {options.name} into {writer.repository}"):
            with writer.transaction() as staging:
                models = write_models(spec, task, fmt, encoder, staging, layout)
    seconds = time.perf_counter() - started
    gate = ""
    if not variant.plain:
        gate = (f"; {spec.graph[protocol.PARAM_GRAPH]} graph agrees with the pipeline on "
                f"{float(spec.graph[protocol.PARAM_AGREEMENT]):.2%} of {spec.graph[protocol.PARAM_EVAL_INPUTS]} inputs")
    stream.write(
        f"exported {options.name} ({task.name}, {fmt.name}) to {writer.repository}: "
        f"{', '.join(models)}; ONNX vs PyTorch max |diff| {encoder.max_abs_diff:.1e}{gate}; {seconds:.1f}s\n"
    )
    return ExportResult(options.name, writer.repository, models, encoder.max_abs_diff, seconds, dict(spec.graph),
                        fmt.name, str(device), options.precision, task.name, task.summary(spec))


def _gated_variant(variant: variants.Variant, encoder: OnnxEncoder, model: Any, task: TaskPlugin,
                   spec: ExportSpec, eval_set: accuracy.EvalSet, min_agreement: float, work_dir: Path,
                   progress: Progress, int8_recipe: Optional[str] = None) -> OnnxEncoder:
    """The variant's encoder, if it answers as the pipeline does on the evaluation set; else ExportError.

    For int8 the recipes are tried in order (each keeps more of the graph in
    fp32), and the first that passes is served.
    """
    inputs = eval_set.inputs
    with progress(f"answering {len(inputs)} evaluation inputs ({eval_set.source}) with the PyTorch pipeline"):
        expected = accuracy.answers(task, model, spec, inputs)
    recipes: list = [None]
    if variant.quantize:
        recipes = variants.recipes_for(variant.target or variants.detect_target(), int8_recipe)
    tried = []
    with progress(f"building the {variant.name} graph (optimum) and gating it at {min_agreement:.2%} agreement"):
        for recipe in recipes:
            path = variants.build(variant, encoder.path, spec.checkpoint, work_dir, recipe)
            result = accuracy.compare(expected, accuracy.variant_answers(task, path, spec, inputs, variant.provider), inputs)
            tried.append((recipe, result))
            if result.rate >= min_agreement:
                spec.graph = {
                    protocol.PARAM_GRAPH: variant.name,
                    **({protocol.PARAM_INT8_RECIPE: recipe.name} if recipe else {}),
                    protocol.PARAM_AGREEMENT: f"{result.rate:.4f}",
                    protocol.PARAM_EVAL_INPUTS: str(result.total),
                    protocol.PARAM_EVAL_SOURCE: eval_set.source,
                }
                return OnnxEncoder(path, encoder.input_names, encoder.output_names, encoder.output_ranks,
                                   encoder.max_abs_diff)
    scores = "; ".join(
        f"{recipe.name if recipe else variant.name}: {result.agreed}/{result.total} ({result.rate:.2%})"
        for recipe, result in tried
    )
    raise ExportError(
        f"the {variant.name} graph answers differently from the pipeline: agreement below --min-agreement "
        f"{min_agreement:.2%} on {len(inputs)} evaluation inputs ({eval_set.source}) [{scores}]; for example "
        f"{tried[-1][1].examples[0] if tried[-1][1].examples else ''}. Nothing was written. Export the plain "
        "fp32 graph, or another --optimize level, or lower --min-agreement if these answers are acceptable"
    )


def _short(graph: Dict[str, str]) -> Dict[str, Any]:
    """The gate record with short keys, numbers as numbers."""
    out: Dict[str, Any] = {key.split(".", 1)[1]: value for key, value in graph.items()}
    for key, kind in (("agreement", float), ("eval_inputs", int)):
        if key in out:
            out[key] = kind(out[key])
    return out


def summary(result: ExportResult) -> str:
    return json.dumps(
        {"name": result.name, "repository": str(result.repository), "models": result.models,
         "max_abs_diff": result.max_abs_diff, "seconds": round(result.seconds, 2), "backend": result.backend,
         "device": result.device, "precision": result.precision, **_short(result.graph),
         **({"task": result.task} if result.task else {}), **result.task_summary}
    )
