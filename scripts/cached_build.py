"""Helpers for scripts that build a directory once, cache it and publish it atomically.

Used by ``finetune_classifier.py`` and ``rampart_checkpoint.py`` (standard library only,
so importing it costs nothing).  The pattern they share:

* The finished output directory holds a *stamp* file: a JSON dict of everything the
  result depends on, including :func:`source_hash` of the script and of this module.
  A run whose stamp matches an existing, complete output is a cache hit
  (:func:`is_cached`).
* A non-empty directory without a stamp was not written by the script and is never
  replaced without ``--force`` (:func:`refuse_foreign_output`).
* The output is built in a temporary sibling ``.NAME.tmp-PID`` and renamed into place
  only when complete; a previous output is moved aside to ``.NAME.old-PID`` meanwhile
  and put back if anything fails (:func:`build_and_publish`).  So an interrupted run
  never leaves something that looks cached, and leftovers of runs that were killed hard
  are removed by the next run (:func:`remove_stale_temps`).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS_DIR = REPO_ROOT / ".cache" / "checkpoints"  # default home of the outputs (git-ignored)


def log(msg: str) -> None:
    """Progress line to stderr (stdout is kept for results)."""
    print(msg, file=sys.stderr, flush=True)


def print_result(summary: str, out: Path) -> None:
    """The result lines on stdout: a one-line summary, then the output directory."""
    print(summary, flush=True)
    print(out, flush=True)


def add_output_arguments(parser: argparse.ArgumentParser, default: Path, redo: str) -> None:
    """Add ``--output DIR`` (default ``default``) and ``--force`` (``redo`` the build anyway)."""
    parser.add_argument("--output", type=Path, default=default,
                        help=f"checkpoint directory (default: {default.relative_to(REPO_ROOT)} "
                             "under the repo root)")
    parser.add_argument("--force", action="store_true",
                        help=f"{redo} even if a matching checkpoint exists, and replace a "
                             "directory that this script did not write")


def find_package_dir(name: str) -> Path | None:
    """Directory of an installed package, found without importing it; None if absent.

    (Importing can fail or be slow for packages we only want data files from.)
    """
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


# ------------------------------------------------------------------------- stamp


def source_hash(script: str | Path) -> str:
    """SHA-256 over the source of ``script`` and of this module.

    Goes into the stamp, so editing either file invalidates cached outputs.
    """
    digest = hashlib.sha256()
    for path in (Path(script), Path(__file__)):
        digest.update(hashlib.sha256(path.resolve().read_bytes()).digest())
    return digest.hexdigest()


def read_json(path: Path):
    """Parsed JSON of ``path``, or None if it is missing or not valid JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_stamp(directory: Path, stamp_file: str, stamp: dict) -> None:
    """Write ``stamp`` as ``directory/stamp_file`` (pretty JSON)."""
    (directory / stamp_file).write_text(json.dumps(stamp, indent=2) + "\n")


def is_cached(out: Path, stamp_file: str, stamp: dict, required: Iterable[str]) -> bool:
    """True if ``out`` carries exactly ``stamp`` and every ``required`` file."""
    return read_json(out / stamp_file) == stamp and all((out / f).is_file() for f in required)


def refuse_foreign_output(out: Path, stamp_file: str) -> None:
    """Exit with an error if ``out`` exists but was not written by the script.

    That is: a non-directory, or a non-empty directory without ``stamp_file``.
    """
    foreign = out.is_dir() and any(out.iterdir()) and not (out / stamp_file).is_file()
    if foreign or (out.exists() and not out.is_dir()):
        sys.exit(f"error: {out} exists and was not written by this script; "
                 "use --force to replace it or pick another --output")


# --------------------------------------------------------------------- publishing


def staging_path(out: Path, kind: str) -> Path:
    """This process's sibling ``.NAME.KIND-PID`` of ``out`` (``kind``: ``tmp`` or ``old``)."""
    return out.parent / f".{out.name}.{kind}-{os.getpid()}"


def remove_stale_temps(out: Path) -> None:
    """Delete temp/old dirs left by runs that were killed hard (their pid is gone)."""
    for kind in ("tmp", "old"):
        for p in out.parent.glob(f".{out.name}.{kind}-*"):
            try:
                pid = int(p.name.rsplit("-", 1)[1])
                os.kill(pid, 0)
                continue  # that run is still going
            except ProcessLookupError:
                pass
            except (ValueError, PermissionError):
                continue
            log(f"removing leftover {p}")
            shutil.rmtree(p, ignore_errors=True)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so cleanup code runs (Ctrl-C already raises)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def chmod_to_umask(directory: Path) -> None:
    """Give every file in ``directory`` the usual umask mode (some writers use 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    for f in directory.iterdir():
        if f.is_file():
            f.chmod(0o666 & ~umask)


def build_and_publish(out: Path, build: Callable[[Path], T]) -> T:
    """Run ``build(tmp)`` in a fresh staging dir, then rename it to ``out``; return its result.

    Any exception (SIGTERM included) removes the staging dir, puts a previous ``out``
    back if it had been moved aside, and propagates.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    tmp, old = staging_path(out, "tmp"), staging_path(out, "old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    exit_on_sigterm()
    try:
        result = build(tmp)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            os.replace(old, out)
        raise
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    elif old.exists():
        old.unlink()
    return result
