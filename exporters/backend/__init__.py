"""Python-backend model code that the exporter copies into a repository.

Each step file here becomes ``<model>/1/model.py``, and ``tritonize_step.py``
(what every step shares: parameters, string inputs, error codes) is copied
beside it. They import only numpy, the Triton Python-backend utilities and
their own runtime (tokenizers, onnxruntime), and read everything else from
their own ``config.pbtxt``, so a repository runs in any tritonserver with the
Python backend, not only next to this package.
"""

from __future__ import annotations

import shutil
from pathlib import Path

CODE = Path(__file__).resolve().parent
SHARED = "tritonize_step.py"


def install_step(source: str, version_dir: Path, as_name: str = "model.py", code: Path = CODE) -> None:
    """Copy step ``source`` (a file of ``code``, by default this folder) as ``version_dir/model.py``
    (or ``as_name``), with the shared module beside it."""
    version_dir.mkdir(parents=True, exist_ok=True)
    path = Path(code) / source
    if not path.is_file():
        path = CODE / source  # a plugin may reuse the built-in steps (the tokenizer, say)
    shutil.copy2(path, version_dir / as_name)
    shutil.copy2(CODE / SHARED, version_dir / SHARED)
