"""The unit tier: the Python-backend steps' pure logic, without a server (``make test-unit``, seconds).

The steps import ``tritonize_step`` as a top-level module (the Python backend
puts a model's version folder on ``sys.path``), so this tier puts the folder
they are copied from on ``sys.path``; ``tritonize_step`` imports without
``triton_python_backend_utils`` (``pb_utils`` is then None).
"""

import sys
from pathlib import Path

BACKEND = Path(__file__).resolve().parents[2] / "exporters" / "backend"
if str(BACKEND) not in sys.path:
    sys.path.insert(0, str(BACKEND))
