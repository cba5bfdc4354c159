"""Finding sequence samples in a folder: the native layout or MLFDB-style layouts.

A layout is three path patterns relative to the dataset root, with ``{id}`` standing for the
sample id and shell wildcards (``*``, ``?``) allowed:

* native mfsr (``docs/data.md``): ``lr="{id}/lr_*.png"``, ``hr="{id}/hr.png"``,
  ``meta="{id}/meta.json"``;
* e.g. separate trees: ``lr="LR/x8/{id}/*.png"``, ``hr="HR/{id}.png"``, ``meta=None``.

LR frames of a sample are ordered by natural sort of their relative paths (``f2`` < ``f10``).
Samples that cannot be used are skipped with a reason and counted, never silently dropped.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from mfsr.data.sample import HR_NAME, META_NAME, SampleFiles
from mfsr.errors import DataError


@dataclass(frozen=True)
class FolderLayout:
    """Path patterns of a dataset layout (see module docstring)."""

    lr: str = "{id}/lr_*.png"
    hr: str | None = "{id}/" + HR_NAME
    meta: str | None = "{id}/" + META_NAME

    def __post_init__(self) -> None:
        if self.lr.count("{id}") != 1:
            raise DataError(f"LR pattern {self.lr!r} must contain {{id}} exactly once")


NATIVE = FolderLayout()


def _natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = []
    for token in re.split(r"(\{id\}|\*|\?)", pattern):
        if token == "{id}":
            out.append(r"(?P<id>[^/]+)")
        elif token == "*":
            out.append(r"[^/]*")
        elif token == "?":
            out.append(r"[^/]")
        else:
            out.append(re.escape(token))
    return re.compile("".join(out) + r"\Z")


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except ValueError:
        return False


def _one_match(root: Path, pattern: str | None, sample_id: str) -> Path | str | None:
    """The single file matching ``pattern`` for ``sample_id``; None if none; a reason if many."""
    if pattern is None:
        return None
    concrete = pattern.replace("{id}", glob.escape(sample_id))
    matches = sorted(Path(p) for p in glob.glob(str(root / concrete)))
    if len(matches) > 1:
        return f"{len(matches)} files match {pattern!r}"
    return matches[0] if matches else None


def find_samples(
    root: str | os.PathLike,
    layout: FolderLayout = NATIVE,
    n_frames: int | None = None,
    require_hr: bool = True,
) -> tuple[list[SampleFiles], list[tuple[str, str]]]:
    """List the samples under ``root``: (usable samples sorted by id, [(where, reason)] skipped).

    ``n_frames``: if given, samples with another number of LR frames are skipped.
    ``require_hr``: skip samples without an HR target (set False for LR-only samples).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    real_root = root.resolve()
    regex = _pattern_regex(layout.lr)
    frames: dict[str, list[str]] = {}
    for path in glob.glob(str(root / layout.lr.replace("{id}", "*"))):
        rel = Path(path).relative_to(root).as_posix()
        match = regex.match(rel)
        if match and not match.group("id").startswith("."):
            frames.setdefault(match.group("id"), []).append(rel)
    samples, skipped = [], []
    for sample_id in sorted(frames, key=_natural_key):
        rels = sorted(frames[sample_id], key=_natural_key)
        lr = tuple(root / r for r in rels)
        where = str(lr[0].parent)
        outside = [p for p in lr if not _inside(p, real_root)]
        if outside:
            skipped.append((str(outside[0]), "points outside the dataset folder"))
            continue
        if n_frames is not None and len(lr) != n_frames:
            skipped.append((where, f"has {len(lr)} LR frames, expected {n_frames}"))
            continue
        hr = _one_match(root, layout.hr, sample_id)
        meta = _one_match(root, layout.meta, sample_id)
        if isinstance(hr, str) or isinstance(meta, str):
            skipped.append((where, hr if isinstance(hr, str) else str(meta)))
            continue
        if hr is None and require_hr:
            skipped.append((where, "no HR target"))
            continue
        if hr is not None and not _inside(hr, real_root):
            skipped.append((str(hr), "points outside the dataset folder"))
            continue
        samples.append(SampleFiles(sample_id, lr, hr, meta))
    return samples, skipped
