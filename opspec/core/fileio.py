"""Atomic file replacement and temp-file hygiene: write beside the target, fsync, rename.

A crash leaves the old file whole. Temp files are named `.NAME.<pid>@<host>.<random>.tmp`, so a
later writer of NAME can tell a stale one (its process is dead) from one being written now, and
removes the stale ones before writing. While a temp file exists it is registered with this
process; the SIGTERM/SIGINT handlers (`signal_cleanup`, installed by every CLI) remove them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0]) or "host"
_live_temps: dict[Path, int] = {}  # temp path -> pid that created it (a forked child must not remove them)
_lock = threading.RLock()  # re-entrant: FolderLock.__del__ may run (GC) while it is held


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def temp_prefix(path: str | os.PathLike) -> str:
    """The name prefix of this process's temp files (or folders) for `path`: `.NAME.<pid>@<host>.`;
    with the suffix ".tmp" (e.g. `tempfile.mkdtemp(prefix=..., suffix=".tmp")`) `remove_stale_temps` knows them."""
    return f".{Path(path).name}.{os.getpid()}@{_HOST}."


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temp files and folders of `path` (`.NAME.<pid>@<host>.*.tmp`) left by dead processes on this host.

    Temps of live processes, of other hosts, and names without a pid are left alone. Returns what was removed.
    """
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)@([A-Za-z0-9_-]+)\.[^/]+\.tmp$")
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob_escape(path.name)}.*.tmp"))
    except OSError:
        return removed
    for candidate in candidates:
        match = pattern.match(candidate.name)
        if match is None or match.group(2) != _HOST:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate)
            else:
                candidate.unlink()
            removed.append(candidate)
        except OSError:
            pass
    return removed


def glob_escape(name: str) -> str:
    """`name` with glob metacharacters escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces `path`, on error it is removed.

    Stale temps of the same target (their process is dead) are removed first. The finished file
    gets the usual permissions (0666 less the umask), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, name = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    with _lock:
        _live_temps[tmp] = os.getpid()
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        with _lock:
            _live_temps.pop(tmp, None)
        if tmp.exists():
            tmp.unlink()


def unwritable(path: str | os.PathLike) -> str | None:
    """Why `path` could not be written (its folder is a file, or not writable), or None if it can be tried.

    Checks the nearest existing ancestor, so a folder to be created counts as writable where its parent is.
    """
    path = Path(path)
    if path.is_dir():
        return f"{path}: is a folder, expected a file path"
    folder = path.parent
    while not folder.exists():
        if folder.is_symlink() or folder == folder.parent:
            break
        folder = folder.parent
    if folder.exists() and not folder.is_dir():
        return f"{path}: cannot write under {folder}, which is a file, not a folder"
    if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
        return f"{path}: cannot write in {folder} (permission denied)"
    return None


def live_temps() -> list[Path]:
    """The temp files this process is writing now."""
    with _lock:
        return [p for p, pid in _live_temps.items() if pid == os.getpid()]


def remove_live_temps() -> None:
    """Remove this process's temp files (from a signal handler: no locks, errors ignored)."""
    for tmp, pid in list(_live_temps.items()):
        if pid == os.getpid():
            try:
                os.unlink(tmp)
            except OSError:
                pass


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Replace `path` with `text` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def strict_json(obj: Any, **kwargs: Any) -> str:
    """json.dumps that refuses NaN and Infinity (they are not JSON), with one line naming the culprit."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError as err:
        raise ValueError(f"not finite, cannot be written as JSON: {obj!r:.200}") from err


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Replace `path` with `obj` as strict, indented JSON, atomically."""
    return atomic_write_text(path, strict_json(obj, indent=2) + "\n")


@contextmanager
def signal_cleanup() -> Iterator[None]:
    """While active, SIGTERM and SIGINT first remove this process's temp files.

    SIGTERM then ends the process by the signal (exit status 128 + 15, as `timeout`, Slurm and docker
    expect); SIGINT raises KeyboardInterrupt as usual. The previous handlers come back on exit.
    A no-op outside the main thread (Python only lets the main thread set handlers).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        remove_live_temps()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def on_int(signum: int, frame: Any) -> None:
        remove_live_temps()
        raise KeyboardInterrupt

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_int)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


class FolderLock:
    """An exclusive lock on a folder for this process (flock on `<folder>/.lock`), so one writer at a time.

    The lock file records the holder's pid. The OS releases the lock when the process ends, however it
    ends. Within one process the lock is re-entrant (a second FolderLock on the same folder shares it).
    """

    _held: dict[Path, list[Any]] = {}  # resolved folder -> [open file, count]

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._key: Path | None = None

    def holder(self) -> str:
        """The pid (and host) written by the process that holds the lock, or "unknown"."""
        try:
            return (self.folder / ".lock").read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def held_elsewhere(self) -> bool:
        """True if another process holds the lock now; probes without creating or writing the lock file."""
        if self.folder.resolve() in FolderLock._held:
            return False
        try:
            import fcntl

            fh = open(self.folder / ".lock")
        except (ImportError, OSError):  # no flock, or no lock file: nobody holds it
            return False
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False

    def acquire(self) -> bool:
        """Take the lock; False if another process holds it (nothing in the folder is changed then)."""
        if self._key is not None:
            return True
        key = self.folder.resolve()
        with _lock:
            if key in FolderLock._held:
                FolderLock._held[key][1] += 1
                self._key = key
                return True
        try:
            import fcntl
        except ImportError:  # no flock (Windows): one writer is then the user's responsibility
            self._key = key
            FolderLock._held[key] = [None, 1]
            return True
        fh = open(self.folder / ".lock", "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        with _lock:
            FolderLock._held[key] = [fh, 1]
        self._key = key
        return True

    def release(self) -> None:
        """Give the lock back (the last holder in this process closes the lock file)."""
        if self._key is None:
            return
        with _lock:
            entry = FolderLock._held.get(self._key)
            if entry is not None:
                entry[1] -= 1
                if entry[1] == 0:
                    del FolderLock._held[self._key]
                    if entry[0] is not None:
                        entry[0].close()
        self._key = None

    def __del__(self) -> None:
        self.release()
