"""Exclusive locks on output folders, so that two runs writing the same folder cannot both "succeed".

``with folder_lock(out):`` holds an advisory ``fcntl.flock`` on a lock file beside ``out``
(``.NAME.lock`` in its parent, holding the holder's pid) for as long as the block runs. A second process that
asks for the same folder fails at once with `FolderLockedError`, which names the holder's pid. The kernel
releases the lock when its holder exits however it exits (SIGKILL included), so a lock file left behind by a
dead process is stale and simply taken over. Within one process the lock is re-entrant (the CLI holds it for the
whole run, and `pdeflow.store.atomic_folder` takes it again for the final rename).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path


class FolderLockedError(FileExistsError):
    """Another process holds the lock of the folder (the message names its pid)."""


_held: dict[Path, tuple[int, int]] = {}  # lock file -> (file descriptor, depth) held by this process
_guard = threading.Lock()


def lock_path(folder: str | Path) -> Path:
    """The lock file of ``folder``: ``.NAME.lock`` beside it."""
    folder = Path(folder).expanduser().resolve()
    return folder.parent / f".{folder.name}.lock"


def holder_pid(folder: str | Path) -> int | None:
    """The pid written in ``folder``'s lock file (``None`` if there is none or it is unreadable); the pid of the
    process holding the lock only while the lock is held."""
    try:
        return int(lock_path(folder).read_text().strip())
    except (OSError, ValueError):
        return None


def _acquire(path: Path, folder: Path) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            pid = holder_pid(folder)
            raise FolderLockedError(
                f"{folder} is being written by another pdeflow run (pid {pid if pid else 'unknown'}); wait for it "
                "to finish or choose another folder.") from None
        try:  # the holder before us may have removed the file after we opened it: lock the file that is there
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder``'s exclusive lock for the ``with`` block (module docstring); yields the lock file's path.

    Raises `FolderLockedError` if another process holds it, ``PermissionError`` if the lock file cannot be
    created (the folder's parent must exist and be writable)."""
    folder = Path(folder).expanduser().resolve()
    path = lock_path(folder)
    with _guard:
        if path in _held:
            fd, depth = _held[path]
            _held[path] = (fd, depth + 1)
        else:
            try:
                fd = _acquire(path, folder)
            except FolderLockedError:
                raise
            except OSError as error:
                raise PermissionError(f"cannot create the lock file {path} ({error.strerror or error}); choose a "
                                      "folder whose parent is writable.") from error
            _held[path] = (fd, 1)
    try:
        yield path
    finally:
        with _guard:
            fd, depth = _held[path]
            if depth > 1:
                _held[path] = (fd, depth - 1)
            else:
                del _held[path]
                with contextlib.suppress(OSError):
                    os.unlink(path)  # still holding the lock: a waiting process re-checks the file it locked
                os.close(fd)
