"""Shared fixtures: tiny checkpoints, one exported repository, one real tritonserver.

Everything here is real: checkpoints are built with transformers/tokenizers,
exported with optimum, served by the pip-installed tritonserver, and compared
with transformers pipelines.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator

import pytest

from checkpoints import ARCHITECTURES, make_tiny_checkpoint

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_CACHE = REPO_ROOT / ".cache" / "test-checkpoints"

# Served in the three-model layout (--layout steps), so that tests can reach their encoder step; every
# other model is served in the default fused layout. Parity tests cover both.
STEPS_LAYOUT = {"bert-single", "roberta-single", "ner-bert", "ner-xlm-roberta", "ner-modernbert", "qa-deberta-v2"}

# Architectures that transformers has a question-answering head for but optimum cannot export to ONNX
# for that task: the QA suite checks that their export fails with a clear error instead of serving them.
NO_QA_EXPORT = ("modernbert",)
QA_ARCHITECTURES = tuple(arch for arch in ARCHITECTURES if arch not in NO_QA_EXPORT)


def layout_of(name: str) -> str:
    return "steps" if name in STEPS_LAYOUT else "fused"


def step_model(name: str, role: str) -> str:
    """The model that holds ``role`` (tokenizer, encoder, postprocess) of ensemble ``name``."""
    return f"{name}_{role}" if name in STEPS_LAYOUT else f"{name}_pipeline"


# name -> (architecture, problem_type, num_labels)
CLASSIFIERS: Dict[str, tuple] = {
    **{f"{arch}-single": (arch, "single_label_classification", 3) for arch in ARCHITECTURES},
    "bert-multi": ("bert", "multi_label_classification", 4),
    "roberta-multi": ("roberta", "multi_label_classification", 4),
    "xlm-roberta-multi": ("xlm-roberta", "multi_label_classification", 5),
    "distilbert-regression": ("distilbert", "regression", 1),
    "electra-one-label": ("electra", None, 1),
}


def tiny_classifier(name: str) -> Path:
    arch, problem_type, num_labels = CLASSIFIERS[name]
    return make_tiny_checkpoint(
        arch,
        CHECKPOINT_CACHE / f"text-classification-{name}",
        "text-classification",
        problem_type=problem_type,
        num_labels=num_labels,
    )


def python_model(repository: Path, name: str, body: str) -> None:
    """A one-input (X, FP32) one-output (Y) Python model whose model.py is ``body``."""
    from tritonize.exporters import configs
    from tritonize.exporters.configs import Tensor

    config = configs.model_config(
        name, backend="python", max_batch_size=4,
        inputs=[Tensor("X", "fp32", (1,))], outputs=[Tensor("Y", "fp32", (1,))],
    )
    configs.write_config(repository / name, config)
    (repository / name / "1").mkdir(parents=True, exist_ok=True)
    (repository / name / "1" / "model.py").write_text(body)


@dataclass
class Served:
    url: str
    repository: Path
    checkpoints: Dict[str, Path]
    server: object


def serve_exports(repository: Path, exports: list, checkpoints: Dict[str, Path]) -> Iterator[Served]:
    """Export every ``ExportOptions`` of ``exports`` into ``repository``, then serve it on a real tritonserver."""
    from tritonize.deploy import LocalServer, free_port
    from tritonize.exporters.export import export

    log = io.StringIO()
    for options in exports:
        export(options, stream=log)
    server = LocalServer(
        repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), ready_timeout=300,
    )
    with server:
        yield Served(server.grpc_url, repository, dict(checkpoints), server)


@pytest.fixture(scope="session")
def classifier_checkpoints() -> Dict[str, Path]:
    return {name: tiny_classifier(name) for name in CLASSIFIERS}


@pytest.fixture(scope="session")
def served_classifiers(tmp_path_factory, classifier_checkpoints) -> Iterator[Served]:
    """Every tiny classifier exported into one repository and served by one tritonserver."""
    from tritonize.exporters.export import ExportOptions

    repository = tmp_path_factory.mktemp("classifiers") / "model_repository"
    exports = [
        ExportOptions(str(checkpoint), "text-classification", name, repository, layout=layout_of(name))
        for name, checkpoint in classifier_checkpoints.items()
    ]
    # a short max length, to check truncation against the pipeline's
    exports.append(ExportOptions(str(classifier_checkpoints["bert-single"]), "text-classification",
                                 "bert-short", repository, max_length=16, max_batch_size=4))
    yield from serve_exports(repository, exports, classifier_checkpoints)


def tiny_ner(arch: str) -> Path:
    return make_tiny_checkpoint(arch, CHECKPOINT_CACHE / f"token-classification-{arch}", "token-classification")


@pytest.fixture(scope="session")
def served_ner(tmp_path_factory) -> Iterator[Served]:
    """A tiny NER model of every architecture, exported (default strategy: simple) and served."""
    from tritonize.exporters.export import ExportOptions

    repository = tmp_path_factory.mktemp("ner") / "model_repository"
    checkpoints = {arch: tiny_ner(arch) for arch in ARCHITECTURES}
    exports = [
        ExportOptions(str(checkpoint), "token-classification", f"ner-{arch}", repository,
                      layout=layout_of(f"ner-{arch}"))
        for arch, checkpoint in checkpoints.items()
    ]
    # short windows, so that windowing is exercised on ordinary texts too
    exports.append(ExportOptions(str(checkpoints["roberta"]), "token-classification", "ner-short", repository,
                                 max_length=24, task_options={"aggregation_strategy": "first", "stride": 6}))
    yield from serve_exports(repository, exports, checkpoints)


def rampart_checkpoint() -> Path:
    """The real Rampart PII NER model, dequantized into a HF checkpoint (cached)."""
    import subprocess
    import sys

    output = REPO_ROOT / ".cache" / "checkpoints" / "rampart-pii"
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "rampart_checkpoint.py"), "--output", str(output)],
        check=True, capture_output=True, text=True,
    )
    return output


@pytest.fixture(scope="session")
def served_rampart(tmp_path_factory) -> Iterator[Served]:
    from tritonize.exporters.export import ExportOptions

    checkpoint = rampart_checkpoint()
    repository = tmp_path_factory.mktemp("rampart") / "model_repository"
    exports = [ExportOptions(str(checkpoint), "token-classification", "pii", repository)]
    yield from serve_exports(repository, exports, {"pii": checkpoint})


def tiny_qa(arch: str) -> Path:
    return make_tiny_checkpoint(arch, CHECKPOINT_CACHE / f"question-answering-{arch}", "question-answering")


@pytest.fixture(scope="session")
def served_qa(tmp_path_factory) -> Iterator[Served]:
    """A tiny QA model of every architecture, exported with the pipeline's defaults, and served."""
    from tritonize.exporters.export import ExportOptions

    repository = tmp_path_factory.mktemp("qa") / "model_repository"
    checkpoints = {arch: tiny_qa(arch) for arch in QA_ARCHITECTURES}
    exports = [
        ExportOptions(str(checkpoint), "question-answering", f"qa-{arch}", repository,
                      layout=layout_of(f"qa-{arch}"))
        for arch, checkpoint in checkpoints.items()
    ]
    # small windows: every context spans many windows
    exports.append(ExportOptions(str(checkpoints["bert"]), "question-answering", "qa-small-windows", repository,
                                 task_options={"max_seq_len": 48, "doc_stride": 16, "max_question_len": 16}))
    yield from serve_exports(repository, exports, checkpoints)
