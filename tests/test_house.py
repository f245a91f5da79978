"""House rules that keep the SDK light and the plugins discoverable."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "onnx", "onnxruntime", "optimum", "tokenizers")


def test_sdk_and_cli_import_nothing_heavy():
    code = (
        "import sys, tritonize.client, tritonize.cli, tritonize.protocol\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_builtin_plugins_come_from_entry_points():
    from importlib.metadata import entry_points

    tasks = {ep.name for ep in entry_points(group="tritonize.tasks")}
    formats = {ep.name for ep in entry_points(group="tritonize.formats")}
    assert "text-classification" in tasks
    assert {"python-onnxruntime", "onnxruntime"} <= formats
