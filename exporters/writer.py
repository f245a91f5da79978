"""Write the models of one export into a repository, all or nothing.

Every model of an export is first written into a staging folder beside the
repository (same filesystem, so renames are atomic). Only when all of them
are complete are the old folders moved aside and the new ones renamed in.
A failed export leaves the repository as it was.
"""

from __future__ import annotations

import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Set


class Staging:
    """Folders for the models of one export, not yet visible in the repository."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.models: Dict[str, Path] = {}
        self.retired: Set[str] = set()

    def model_dir(self, model_name: str) -> Path:
        path = self.root / model_name
        path.mkdir(parents=True, exist_ok=True)
        self.models[model_name] = path
        return path

    def retire(self, model_name: str) -> None:
        """A model of the same export that this one no longer has (the other layout's steps): removed
        with the swap, if it is a tritonize step (its config says ``tritonize.role``)."""
        self.retired.add(model_name)


class RepositoryWriter:
    def __init__(self, repository: Path) -> None:
        self.repository = Path(repository).resolve()

    @contextmanager
    def transaction(self) -> Iterator[Staging]:
        self.repository.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:8]
        staging = Staging(self.repository.parent / f".{self.repository.name}.staging-{token}")
        staging.root.mkdir()
        try:
            yield staging
            self._swap_in(staging, token)
        finally:
            shutil.rmtree(staging.root, ignore_errors=True)

    def _swap_in(self, staging: Staging, token: str) -> None:
        trash = self.repository.parent / f".{self.repository.name}.replaced-{token}"
        trash.mkdir()
        try:
            for name, new in staging.models.items():
                target = self.repository / name
                if target.exists():
                    target.rename(trash / name)
                new.rename(target)
            for name in staging.retired - set(staging.models):
                target = self.repository / name
                config = target / "config.pbtxt"
                if config.is_file() and "tritonize.role" in config.read_text(errors="replace"):
                    target.rename(trash / name)
        finally:
            shutil.rmtree(trash, ignore_errors=True)
