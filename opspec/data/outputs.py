"""Checks on where a data command will write, made before any work: a bad `--out` or `--dest` (an existing
file, a folder, a path under a file, a read-only folder, too little space) is one line and nothing is created.

A disk that fills up later anyway is caught by the canonical writer, which removes its temp file and names
the output (`CanonicalWriter`); these checks only spare the user a long generation that could never be saved.
"""

from __future__ import annotations

import os
import resource
import shutil
from pathlib import Path

from opspec.data.canonical import WRITE_MARGIN
from opspec.core.errors import OpspecError


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _existing_ancestor(folder: Path) -> Path:
    """The folder itself, or the nearest ancestor that exists (where the missing ones will be created)."""
    folder = Path(os.path.abspath(folder))
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def check_output_folder(folder: str | os.PathLike, *, flag: str) -> Path:
    """Refuse a folder that cannot be written: under a file, read-only, or not permitted. Returns the folder."""
    folder = Path(folder)
    existing = _existing_ancestor(folder)
    if not existing.is_dir():
        raise OpspecError(f"{flag} {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        why = "a read-only file system" if read_only else "permission denied"
        raise OpspecError(f"{flag} {folder}: cannot write in {existing} ({why})")
    return folder


def check_output_file(path: str | os.PathLike, *, force: bool, flag: str = "--out") -> Path:
    """Refuse an output file that exists (unless `force`), is a folder, or lies in a folder that cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise OpspecError(f"{flag} {path}: is a folder; expected the name of the file to write")
    if os.path.lexists(path) and not force:
        raise OpspecError(f"{path}: already exists (pass --force to replace it)")
    check_output_folder(path.parent, flag=flag)
    return path


def check_space(path: str | os.PathLike, needed: int, *, flag: str = "--out") -> None:
    """Refuse to start writing about `needed` bytes to `path` when the disk or the file-size limit has less room."""
    path = Path(path)
    existing = _existing_ancestor(path.parent)
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        return
    want = f"needs about {_human(needed)} (and {_human(WRITE_MARGIN)} of room while writing)"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and limit < needed + WRITE_MARGIN:
        raise OpspecError(f"{flag} {path}: {want}, but the file size limit (ulimit -f) is {_human(limit)}")
    if free < needed + WRITE_MARGIN:
        raise OpspecError(f"{flag} {path}: {want}, but only {_human(free)} is free in {existing}")
