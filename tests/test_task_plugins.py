"""A task plugin from outside tritonize, end to end, without one line of tritonize changed.

``tests/plugin_example`` is a package of its own (its own ``pyproject.toml``)
that registers the task ``text-tagging`` through the ``tritonize.tasks``
entry point. It is installed into a venv of its own, beside tritonize (the
venv sees this project's packages; tritonize's own venv does not see the
plugin). From that venv, ``tritonize export`` writes a repository with the
plugin's steps, a real tritonserver serves it, and the SDK, ``tritonize
predict`` and ``tritonize loadtest`` call it. The answers are checked against
``pipeline("text-classification")`` with the plugin's threshold.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_classifier

PLUGIN = Path(__file__).parent / "plugin_example"
TEXTS = ["The match was cancelled because of the storm.", "Shares rose after the vaccine was approved.",
         "no", "Café au lait, s'il vous plaît! 東京 🌸"]


@pytest.fixture(scope="module")
def plugin_python(tmp_path_factory) -> Path:
    """A venv beside tritonize's, with the outside plugin installed into it."""
    root = tmp_path_factory.mktemp("plugin-venv")
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin" / "python"
    site_packages = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        capture_output=True, text=True, check=True).stdout.strip())
    # tritonize and its dependencies come from this project's venv (its .pth files too: the editable install)
    (site_packages / "tritonize-beside.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site_packages), str(PLUGIN)], check=True, timeout=300)
    return python


def run(python: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([str(python), *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def served_tags(plugin_python, tmp_path_factory):
    from tritonize.deploy import LocalServer, free_port

    checkpoint = tiny_classifier("bert-multi")
    repository = tmp_path_factory.mktemp("tagging-repo")
    exported = run(plugin_python, "-m", "tritonize.cli", "export", str(checkpoint), "--task", "text-tagging",
                   "--name", "tags", "--repository", str(repository), "--option", "threshold=0.3")
    assert exported.returncode == 0, exported.stderr[-3000:]
    server = LocalServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                         ready_timeout=300)
    with server:
        yield server, checkpoint, repository


def reference(checkpoint: Path, threshold: float):
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(checkpoint), tokenizer=str(checkpoint))
    results = pipe(TEXTS, function_to_apply="sigmoid", top_k=None, truncation=True)
    return [[r for r in result if r["score"] >= threshold] for result in results]


def test_the_registry_is_what_every_layer_reads(plugin_python):
    # the plugin's venv knows the task in the CLI, the exporter registry, the SDK and the load test ...
    probe = textwrap.dedent("""
        import json
        from tritonize import tasks
        from tritonize.exporters.plugins import get_task
        from tritonize.client.tasks import codec_for
        from tritonize.loadtest.samples import builtin_samples
        print(json.dumps({
            "names": tasks.names(),
            "alias": tasks.get("tagging").name,
            "exporter": type(get_task("text-tagging")).__name__,
            "codec": type(codec_for("text-tagging")).__name__,
            "samples": len(builtin_samples()["text-tagging"]),
        }))
    """)
    seen = run(plugin_python, "-c", probe)
    assert seen.returncode == 0, seen.stderr[-2000:]
    found = json.loads(seen.stdout)
    assert "text-tagging" in found["names"] and "text-classification" in found["names"]
    assert found == {**found, "alias": "text-tagging", "exporter": "TextTaggingTask", "codec": "TaggingCodec",
                     "samples": 2}
    helped = run(plugin_python, "-m", "tritonize.cli", "export", "--help")
    assert "text-tagging" in helped.stdout
    # ... and tritonize's own venv, where the plugin is not installed, does not
    from tritonize import tasks

    assert "text-tagging" not in tasks.names()
    refused = subprocess.run([sys.executable, "-m", "tritonize.cli", "export", "x", "--task", "text-tagging",
                              "--name", "t"], capture_output=True, text=True)
    assert refused.returncode == 2 and "invalid choice: 'text-tagging'" in refused.stderr


def test_an_outside_task_is_exported_served_and_called(plugin_python, served_tags):
    server, checkpoint, repository = served_tags
    # the plugin's own step is in the repository, with tritonize's step base beside it
    pipeline_dir = repository / "tags_pipeline" / "1"
    assert "def tags(logits, labels, threshold)" in (pipeline_dir / "postprocess_step.py").read_text()
    assert (pipeline_dir / "tritonize_step.py").is_file()

    call = textwrap.dedent(f"""
        import json, sys
        from tritonize.client import Client, InvalidInput
        with Client({server.grpc_url!r}) as client:
            out = {{"default": [[t.to_dict() for t in r] for r in client.predict("tags", text={TEXTS!r})],
                   "strict": [[t.to_dict() for t in r] for r in client.predict("tags", text={TEXTS!r}, threshold=0.6)],
                   "one": [t.to_dict() for t in client.predict("tags", text={TEXTS[0]!r})]}}
            try:
                client.predict("tags", text="x", threshold=2)
            except InvalidInput as exc:
                out["bad"] = str(exc)
            try:
                client.predict("tags", text="x", top_k=2)
            except InvalidInput as exc:
                out["unknown"] = str(exc)
        print(json.dumps(out))
    """)
    called = run(plugin_python, "-c", call)
    assert called.returncode == 0, called.stderr[-3000:]
    out = json.loads(called.stdout)
    for key, threshold in (("default", 0.3), ("strict", 0.6)):
        expected = reference(checkpoint, threshold)
        assert [[t["label"] for t in r] for r in out[key]] == [[t["label"] for t in r] for r in expected]
        np.testing.assert_allclose([t["score"] for r in out[key] for t in r],
                                   [t["score"] for r in expected for t in r], atol=1e-5)
    assert any(out["default"]) and out["one"] == out["default"][0]
    assert "threshold must be a number in [0, 1], got 2" in out["bad"]
    assert "unexpected keyword argument 'top_k'" in out["unknown"] and "threshold" in out["unknown"]


def test_the_server_refuses_a_bad_threshold_alone(served_tags):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    server, _, _ = served_tags
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        text = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([[b"hello"]], dtype=object))
        with pytest.raises(InferenceServerException) as raised:
            client.infer("tags", [text], parameters={"threshold": "high"})
        assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert "request parameter threshold must be a number in [0, 1], got 'high'" in raised.value.message()
        assert client.infer("tags", [text]).as_numpy("COUNT").shape == (1, 1)  # the model is still up


def test_predict_and_loadtest_call_an_outside_task(plugin_python, served_tags, tmp_path):
    server, checkpoint, _ = served_tags
    predicted = run(plugin_python, "-m", "tritonize.cli", "predict", "tags", TEXTS[0], "--url", server.grpc_url,
                    "--param", "threshold=0.3")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    expected = reference(checkpoint, 0.3)[0]
    assert [t["label"] for t in json.loads(predicted.stdout)] == [t["label"] for t in expected]

    loaded = run(plugin_python, "-m", "tritonize.cli", "loadtest", "--host", server.grpc_url, "--models", "tags",
                 "--users", "2", "--spawn-rate", "2", "--run-time", "4s", "--warmup", "0",
                 "--csv", str(tmp_path / "csv"), timeout=180)
    assert loaded.returncode == 0, loaded.stdout[-2000:] + loaded.stderr[-2000:]
    requests = int(re.search(r"^grpc\s+text-tagging:tags\s+(\d+)", loaded.stdout, re.M).group(1))
    assert requests > 0
