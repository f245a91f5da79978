"""Find task and format plugins through entry points.

Built-in plugins register through the same entry point groups as third-party
ones (``tritonize.tasks`` and ``tritonize.formats`` in pyproject.toml), so an
OpenVINO format, say, is a package to install, not an edit to this one.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Dict, List

from tritonize.exporters.checkpoint import ExportError
from tritonize.exporters.formats.base import FormatPlugin
from tritonize.exporters.tasks.base import TaskPlugin

TASK_GROUP = "tritonize.tasks"
FORMAT_GROUP = "tritonize.formats"


def _entry_points(group: str) -> Dict[str, object]:
    found = {ep.name: ep for ep in entry_points(group=group)}
    if not found:
        raise ExportError(
            f"no plugins registered under {group!r}: is tritonize installed (pip install -e '.[export]')?"
        )
    return found


def task_names() -> List[str]:
    return sorted(_entry_points(TASK_GROUP))


def format_names() -> List[str]:
    return sorted(_entry_points(FORMAT_GROUP))


def get_task(name: str) -> TaskPlugin:
    found = _entry_points(TASK_GROUP)
    if name not in found:
        raise ExportError(f"unknown task {name!r}; available: {', '.join(sorted(found))}")
    return found[name].load()()  # type: ignore[attr-defined, no-any-return]


def get_format(name: str) -> FormatPlugin:
    found = _entry_points(FORMAT_GROUP)
    if name not in found:
        raise ExportError(f"unknown backend {name!r}; available: {', '.join(sorted(found))}")
    return found[name].load()()  # type: ignore[attr-defined, no-any-return]
