"""One writer per folder: a run, a dataset, a study, an evaluation or an enhance output.

Two processes writing one folder at once interleave their logs and keep whichever checkpoint or
sample was written last, with both exiting 0 (docs/reliability.md). :func:`folder_lock` holds
an advisory lock on ``<folder>/.mfsr-lock`` for the whole command; a second writer is refused
at once with the holder's pid. The kernel releases the lock when its holder dies, however it
dies, so a lock left by a killed process is simply taken over.

Hand-written on ``fcntl.flock`` rather than the ``filelock`` package: filelock truncates the
lock file on every attempt, which would erase the holder's pid that the refusal names.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from mfsr.errors import MfsrError

LOCK_NAME = ".mfsr-lock"
F = TypeVar("F", bound=Callable[..., Any])

try:
    import fcntl
except ImportError:  # Windows: no flock; one writer per folder is then the user's to keep
    fcntl = None  # type: ignore[assignment]


#: Folders this process holds (resolved path -> depth): a nested lock of the same folder, e.g.
#: a training that builds its dataset, is already held (flock would refuse our own second open).
_HELD: dict[Path, int] = {}


def _make_folders(folder: Path, made: list[Path]) -> None:
    """Create ``folder`` and its missing parents, top down, adding each one this call makes to
    the front of ``made`` as it goes (deepest first; one that existed, or that another
    process made first, is not ours)."""
    for path in reversed((folder, *folder.parents)):
        if path.exists():
            continue
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        if path not in made:  # made again after a holder removed it: already listed
            made.insert(0, path)


def _remove_empty(made: list[Path]) -> None:
    """Remove the folders of ``made`` (deepest first) while they are empty."""
    for path in made:
        try:
            path.rmdir()
        except OSError:
            break


def _try_lock(path: Path, wait: bool, made: list[Path]) -> tuple[int | None, str]:
    """(open descriptor holding the lock, "") or (None, the holder's pid as written); the
    folders it creates are added to ``made``."""
    for _ in range(100):
        _make_folders(path.parent, made)  # again: a holder may remove a folder it made
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # removed again between the two calls (or a dangling link)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            return None, holder or "unknown"
        try:  # the holder before us may have removed the file after we opened it: retry
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd, ""
        except FileNotFoundError:
            pass
        os.close(fd)
    raise FileNotFoundError(2, "No such file or directory", str(path))


@contextlib.contextmanager
def folder_lock(folder: Path, what: str, wait: bool = False) -> Iterator[None]:
    """Hold ``folder``'s lock (creating the folder) while the block runs.

    ``what`` names the folder's kind in messages ("run", "dataset", ...). If another process
    holds it: :class:`MfsrError` naming its pid, or with ``wait`` a warning naming it and a wait
    until it is released. Re-entrant within a process. Raises :class:`MfsrError` if the folder
    cannot be created or locked. On leaving, the lock file is removed, and the folder and the
    parents the lock made too, where nothing else was written there.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise MfsrError(f"{folder}: exists and is not a folder")
    key = folder.resolve()
    if fcntl is None or key in _HELD:
        _HELD[key] = _HELD.get(key, 0) + 1
        try:
            yield
        finally:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]
        return
    made: list[Path] = []  # the folders the lock made, deepest first: removed again if empty
    try:  # _try_lock makes the folder
        path = folder / LOCK_NAME
        fd, holder = _try_lock(path, False, made)
        if fd is None and wait:
            warnings.warn(
                f"{folder}: waiting for mfsr process {holder} to finish writing this {what}",
                stacklevel=3,
            )
            fd, holder = _try_lock(path, True, made)
    except OSError as exc:
        _remove_empty(made)
        file = next((p for p in folder.parents if p.is_file()), None)
        why = f"{file} is a file, not a folder" if file else exc.strerror
        raise MfsrError(f"{folder}: cannot write the {what} folder ({why})") from None
    if fd is None:
        _remove_empty(made)
        raise MfsrError(
            f"{folder}: another mfsr process (pid {holder}) is writing this {what}; wait for it "
            "to finish, or use another folder"
        )
    _HELD[key] = 1
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            path.unlink()  # before the unlock: a process that opened it meanwhile retries
        os.close(fd)
        _remove_empty(made)  # only if empty: a command that failed before writing anything


def locked(what: str, param: str) -> Callable[[F], F]:
    """Decorator: the call holds :func:`folder_lock` on its argument ``param`` (a folder)."""

    def wrap(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            folder = signature.bind(*args, **kwargs).arguments[param]
            with folder_lock(Path(folder), what):
                return fn(*args, **kwargs)

        return call  # type: ignore[return-value]

    return wrap
