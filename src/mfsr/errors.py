"""User-facing errors.

Every problem caused by the user's input (a file, a folder, a config field) is raised as an
:class:`MfsrError` whose message is one line naming the file or field and the reason. The CLI
prints such errors without a traceback and exits with status 2; so it does a file-system
:class:`OSError` (read-only, full, not a folder), with the path and what the command kept
(:func:`describe_os_error`, :func:`about`). Anything else is a bug.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator


class MfsrError(Exception):
    """A clear, one-line problem with the user's input or environment."""


class BadArgument(MfsrError, ValueError):
    """A bad argument of a library call. The message names arguments in backticks, in the
    library's words (```batch_size` must be >= 1, got 0``); the CLI shows each as the flag that
    sets it (``--batch-size must be >= 1, got 0``): :meth:`with_flags`."""

    def with_flags(self, flags: dict[str, str]) -> str:
        """The message with each ```name``` as ``flags[name]``, or as the bare name when no flag
        sets it (a config field, say)."""
        return _NAMED.sub(lambda m: flags.get(m[1], m[1]), str(self))


_NAMED = re.compile(r"`(\w+)`")


class Interrupted(KeyboardInterrupt):
    """A command stopped by Ctrl-C or SIGTERM, with what it kept and how to go on (the CLI
    prints it as one line); a ``KeyboardInterrupt``, so callers that stop on one still do."""


class DataError(MfsrError):
    """An input file (image, video, sample folder) that cannot be used; names the file."""


@contextlib.contextmanager
def about(path: str | os.PathLike) -> Iterator[None]:
    """Name ``path`` in an :class:`OSError` raised inside the block that names no file (the OS
    does not for a failed ``write``, e.g. a full disk), so the one-line error can say which."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = os.fspath(path)
        raise


def describe_os_error(exc: OSError) -> str:
    """One line for a file-system error: ``<path>: <reason>`` (or ``<path> -> <path2>``)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return reason
    where = os.fsdecode(exc.filename)
    if exc.filename2 is not None:
        where += f" -> {os.fsdecode(exc.filename2)}"
    return f"{where}: {reason}"
