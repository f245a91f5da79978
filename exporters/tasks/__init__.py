"""Task plugins: what happens around the encoder for one pipeline task."""

from tritonize.exporters.tasks.base import ExportSpec, TaskPlugin

__all__ = ["ExportSpec", "TaskPlugin"]
