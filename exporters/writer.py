"""Write the models of one export into a repository, all or nothing.

Every model of an export is first written into a staging folder on the
repository's own filesystem, so that the final renames are atomic:

* beside the repository, where its parent is on the same filesystem (the
  usual case: Triton never sees the staging folder);
* inside the repository, as a hidden folder, where the repository is a mount
  point of its own (a Kubernetes volume, an NFS share, a tmpfs): a rename from
  the parent's filesystem would fail with EXDEV. Triton lists every folder of
  a repository, hidden ones too (measured with 2.51): a server in poll mode
  logs a poll failure for it while the export runs, and a server that starts
  in those seconds refuses to start ("failed to load all models"; Kubernetes
  restarts it). A running server in explicit or none mode never looks.

Only when every model is complete are the old folders moved aside and the new
ones renamed in. If anything fails while they are swapped, every move made so
far is undone, so a model is never left deleted: the repository is as it was.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple


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


def _same_filesystem(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


class RepositoryWriter:
    def __init__(self, repository: Path) -> None:
        self.repository = Path(repository).resolve()

    def scratch_root(self, token: str) -> Path:
        """Where this export's staging and replaced folders go: on the repository's filesystem."""
        parent = self.repository.parent
        if _same_filesystem(parent, self.repository):
            return parent / f".{self.repository.name}.tritonize-{token}"
        return self.repository / f".tritonize-{token}"

    @contextmanager
    def transaction(self) -> Iterator[Staging]:
        self.repository.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:8]
        scratch = self.scratch_root(token)
        scratch.mkdir()
        staging = Staging(scratch / "staging")
        staging.root.mkdir()
        try:
            yield staging
            self._swap_in(staging, scratch / "replaced")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _swap_in(self, staging: Staging, trash: Path) -> None:
        trash.mkdir()
        moves: List[Tuple[Path, Path]] = []  # (from, to), in the order they were made

        def move(source: Path, destination: Path) -> None:
            source.rename(destination)
            moves.append((source, destination))

        try:
            for name, new in staging.models.items():
                target = self.repository / name
                if target.exists():
                    move(target, trash / name)
                move(new, target)
            for name in staging.retired - set(staging.models):
                target = self.repository / name
                config = target / "config.pbtxt"
                if config.is_file() and "tritonize.role" in config.read_text(errors="replace"):
                    move(target, trash / name)
        except BaseException:
            for source, destination in reversed(moves):  # undo: the old models come back
                destination.rename(source)
            raise
