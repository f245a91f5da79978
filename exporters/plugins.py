"""Find task and format plugins through entry points.

Built-in plugins register through the same entry point groups as third-party
ones (``tritonize.tasks`` and ``tritonize.formats`` in pyproject.toml), so an
OpenVINO format, say, is a package to install, not an edit to this one. Tasks
come from the one registry every layer reads (:mod:`tritonize.tasks`): a
task's definition names its exporter plugin, loaded here.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Dict, List

from tritonize import tasks
from tritonize.exporters.checkpoint import ExportError
from tritonize.exporters.formats.base import FormatPlugin
from tritonize.exporters.tasks.base import TaskPlugin

TASK_GROUP = tasks.GROUP
FORMAT_GROUP = "tritonize.formats"


def _entry_points(group: str) -> Dict[str, object]:
    found = {ep.name: ep for ep in entry_points(group=group)}
    if not found:
        raise ExportError(
            f"no plugins registered under {group!r}: is tritonize installed (pip install -e '.[export]')?"
        )
    return found


def task_names() -> List[str]:
    return tasks.names()


def format_names() -> List[str]:
    return sorted(_entry_points(FORMAT_GROUP))


def get_task(name: str) -> TaskPlugin:
    try:
        definition = tasks.get(name)
    except tasks.UnknownTask as exc:
        raise ExportError(str(exc)) from None
    plugin = definition.load_exporter()
    if not isinstance(plugin, TaskPlugin) or plugin.name != definition.name:
        raise ExportError(f"task {name!r}: {definition.exporter} is not a TaskPlugin for {definition.name!r}")
    return plugin  # type: ignore[no-any-return]


def get_format(name: str) -> FormatPlugin:
    found = _entry_points(FORMAT_GROUP)
    if name not in found:
        raise ExportError(f"unknown backend {name!r}; available: {', '.join(sorted(found))}")
    return found[name].load()()  # type: ignore[attr-defined, no-any-return]
