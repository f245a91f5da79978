"""How a model repository runs: the local tritonserver (``local.py``) and its stub healer (``healing.py``), and the
NGC container / Kubernetes manifests beside it."""

from tritonize.deploy.healing import HealEvent, StubMonitor
from tritonize.deploy.local import LocalServer, ServerError, TritonInstall, free_port, port_in_use

__all__ = ["HealEvent", "LocalServer", "ServerError", "StubMonitor", "TritonInstall", "free_port", "port_in_use"]
