"""User-facing errors.

Every problem caused by the user's input (a file, a folder, a config field) is raised as an
:class:`MfsrError` whose message is one line naming the file or field and the reason. The CLI
prints such errors without a traceback and exits with status 2; anything else is a bug.
"""

from __future__ import annotations


class MfsrError(Exception):
    """A clear, one-line problem with the user's input or environment."""


class DataError(MfsrError):
    """An input file (image, video, sample folder) that cannot be used; names the file."""
