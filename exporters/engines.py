"""``tritonize build-engines REPOSITORY``: TensorRT engines, built on the GPU that serves them.

An engine is tied to the GPU model and the TensorRT version that built it,
so ``tritonize export --backend tensorrt`` writes only the ONNX graph and the
build recipe (``tritonize.trt_profile``, ``tritonize.precision``) into each
``tensorrt_plan`` model. This command, run on the serving GPU (an init
container in Kubernetes, before tritonserver starts), turns each
``NAME_encoder/1/model.onnx`` into ``model.plan`` with:

* ``trtexec`` when it is on PATH (the NGC TensorRT images), else
* the TensorRT Python API (``pip install tensorrt`` of the version the
  tritonserver image links, e.g. 10.5 for 24.10).

An engine is rebuilt only when the GPU, the TensorRT version or the recipe
changed (recorded in ``model.plan.json``), or with ``--force``. A plan is
written to a temporary file and renamed in, so a failed build never leaves a
half-written engine for Triton to load.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from tritonize import protocol
from tritonize.exporters import configs
from tritonize.exporters.checkpoint import ExportError
from tritonize.exporters.formats.tensorrt import ENGINE_FILE, PARAM_PROFILE


@dataclass(frozen=True)
class EngineJob:
    """One ``tensorrt_plan`` model of a repository and its build recipe."""

    model: str
    version_dir: Path
    profile: Dict[str, Dict[str, List[int]]]  # input -> {min, opt, max}: [rows, tokens]
    precision: str

    @property
    def onnx(self) -> Path:
        return self.version_dir / "model.onnx"

    @property
    def plan(self) -> Path:
        return self.version_dir / ENGINE_FILE

    @property
    def record(self) -> Path:
        return self.version_dir / (ENGINE_FILE + ".json")

    def shapes(self, key: str) -> str:
        return ",".join(f"{name}:{'x'.join(str(d) for d in dims[key])}" for name, dims in self.profile.items())

    def trtexec_command(self, trtexec: str = "trtexec", out: Optional[Path] = None) -> List[str]:
        command = [trtexec, f"--onnx={self.onnx}", f"--saveEngine={out or self.plan}",
                   f"--minShapes={self.shapes('min')}", f"--optShapes={self.shapes('opt')}",
                   f"--maxShapes={self.shapes('max')}", "--skipInference"]
        if self.precision == "fp16":
            command.append("--fp16")
        return command


def find_jobs(repository: Path, models: Optional[List[str]] = None) -> List[EngineJob]:
    repository = Path(repository)
    if not repository.is_dir():
        raise ExportError(f"model repository {repository} does not exist")
    jobs = []
    for config_path in sorted(repository.glob("*/config.pbtxt")):
        config = configs.read_config(config_path)
        if config.platform != "tensorrt_plan" or (models and config.name not in models):
            continue
        params = configs.parameters_of(config)
        if PARAM_PROFILE not in params:
            raise ExportError(f"{config.name}: a tensorrt_plan model without {PARAM_PROFILE}: not exported by "
                              "tritonize, build its engine yourself")
        jobs.append(EngineJob(config.name, config_path.parent / "1", json.loads(params[PARAM_PROFILE]),
                              params.get(protocol.PARAM_PRECISION, "fp32")))
    missing = sorted(set(models or ()) - {job.model for job in jobs})
    if missing:
        raise ExportError(f"no tensorrt_plan model named {', '.join(missing)} in {repository}")
    if not jobs:
        raise ExportError(f"{repository} holds no tensorrt_plan model (export one with --backend tensorrt "
                          "--device cuda)")
    return jobs


def _gpu_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", "0"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _builder() -> tuple:
    """(name, version, build function) of the TensorRT found here; ExportError if none."""
    trtexec = shutil.which("trtexec")
    try:
        import tensorrt  # type: ignore[import-not-found]
    except ImportError:
        tensorrt = None
    if tensorrt is not None:
        return "tensorrt", tensorrt.__version__, lambda job, out: _build_with_api(tensorrt, job, out)
    if trtexec:
        version = subprocess.run([trtexec, "--help"], capture_output=True, text=True).stdout.split("\n", 1)[0]
        return "trtexec", version.strip(), lambda job, out: _build_with_trtexec(trtexec, job, out)
    raise ExportError(
        "TensorRT is not installed here: no `tensorrt` Python package and no trtexec on PATH. Run build-engines "
        "on the GPU that serves the repository, with the TensorRT of its tritonserver image (for example "
        "pip install tensorrt==10.5.* in nvcr.io/nvidia/tritonserver:24.10-py3; the Kubernetes GPU overlay "
        "runs it as an init container)"
    )


def _build_with_trtexec(trtexec: str, job: EngineJob, out: Path) -> None:
    result = subprocess.run(job.trtexec_command(trtexec, out), capture_output=True, text=True)
    if result.returncode != 0:
        raise ExportError(f"{job.model}: trtexec failed (exit {result.returncode}): "
                          f"{(result.stdout + result.stderr).strip().splitlines()[-1:]}")


def _build_with_api(trt, job: EngineJob, out: Path) -> None:  # type: ignore[no-untyped-def]
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch, always
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(job.onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{job.model}: TensorRT could not parse {job.onnx}: {errors}")
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if tensor.dtype != trt.int64:  # the config (and the BLS requests) say TYPE_INT64
            raise ExportError(f"{job.model}: engine input '{tensor.name}' is {tensor.dtype}, not int64: "
                              "TensorRT 10 or later is needed")
    config = builder.create_builder_config()
    if job.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, dims in job.profile.items():
        profile.set_shape(name, dims["min"], dims["opt"], dims["max"])
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ExportError(f"{job.model}: TensorRT could not build the engine (see its log above)")
    out.write_bytes(bytes(engine))


def build_engines(repository: Path, models: Optional[List[str]] = None, force: bool = False,
                  dry_run: bool = False, say: Callable[[str], None] = print) -> List[EngineJob]:
    """Build the engine of every ``tensorrt_plan`` model (or of ``models``); returns the jobs built."""
    jobs = find_jobs(repository, models)
    if dry_run:
        for job in jobs:
            say(" ".join(job.trtexec_command()))
        return []
    tool, version, build = _builder()
    gpu = _gpu_name()
    built = []
    for job in jobs:
        recipe = {"gpu": gpu, "tensorrt": version, "tool": tool, "precision": job.precision, "profile": job.profile}
        if not force and job.plan.is_file() and job.record.is_file():
            try:
                if json.loads(job.record.read_text()) == recipe:
                    say(f"{job.model}: engine up to date ({gpu or 'unknown GPU'}, TensorRT {version})")
                    continue
            except ValueError:
                pass
        if not job.onnx.is_file():
            raise ExportError(f"{job.model}: {job.onnx} is missing; re-export the model")
        partial = job.plan.with_suffix(".plan.partial")
        say(f"{job.model}: building {job.precision} engine with {tool} {version} on {gpu or 'this GPU'} ...")
        try:
            build(job, partial)
            os.replace(partial, job.plan)
        finally:
            partial.unlink(missing_ok=True)
        job.record.write_text(json.dumps(recipe, indent=1))
        built.append(job)
    return built
