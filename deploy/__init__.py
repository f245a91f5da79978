"""How a model repository runs: the local tritonserver (``local.py``), and the
NGC container / Kubernetes manifests beside it."""

from tritonize.deploy.local import LocalServer, ServerError, TritonInstall, free_port

__all__ = ["LocalServer", "ServerError", "TritonInstall", "free_port"]
