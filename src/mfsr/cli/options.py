"""Options shared by several commands."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def data_root_option() -> Path | None:
    """``--data-root DIR``: where known datasets (``lfw``) are looked for first."""
    return typer.Option(
        None,
        "--data-root",
        help="Folder searched first for known datasets named in configs (lfw); default: "
        "$MFSR_DATA, then ./data, then ../shared/data. `mfsr data fetch lfw` fills it.",
    )


def use_data_root(root: Path | None) -> None:
    """Make ``--data-root`` the first data root, for this process and the runs it starts."""
    if root is not None:
        os.environ["MFSR_DATA"] = os.fspath(root)
