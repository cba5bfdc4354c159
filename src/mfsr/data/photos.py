"""The photos of a ``mfsr data build`` source folder: which files are usable face photos.

Every file under the source is decoded once; what cannot be used (not an image, unreadable,
too small for the HR size, a link out of the folder, a FIFO) is a counted skip with its
reason. Linked person folders are followed once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mfsr.data.images import IMAGE_SUFFIXES, decode_rgb
from mfsr.data.report import BuildReport
from mfsr.data.sample import safe_id
from mfsr.errors import DataError, MfsrError

if TYPE_CHECKING:  # build.py imports this module
    from mfsr.data.build import BuildOptions


@dataclass(frozen=True)
class SourceItem:
    """A usable source photo."""

    id: str
    rel: str  # path relative to the source folder, POSIX style
    identity: str
    sha256: str


def _identity(rel: Path) -> str:
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _check_size(image: np.ndarray, opts: BuildOptions) -> str | None:
    h, w = image.shape[:2]
    if opts.crop == "face" and opts.face_size > min(w, h):
        return f"image {w}x{h} is smaller than the face crop {opts.face_size} px"
    side = opts.face_size if opts.crop == "face" else min(w, h)
    if side * opts.max_upscale < opts.hr_size:
        return (
            f"image {w}x{h} is too small for HR size {opts.hr_size} (crop {side} px would be "
            f"enlarged x{opts.hr_size / side:.2f} > --max-upscale {opts.max_upscale})"
        )
    return None


#: Folders a linked person folder may not lead into: reading their files never ends or blocks.
SYSTEM_FOLDERS = tuple(Path(p) for p in ("/dev", "/proc", "/sys"))


def source_files(root: Path, report: BuildReport) -> tuple[list[Path], set[Path]]:
    """Every non-folder entry under ``root`` sorted by path, and the real paths of the folders
    read (a file link whose target lies in none of them points outside the source). Links to
    folders are followed (a source assembled from linked person folders), once:
    a link into a folder already read (a loop, or a second name for one) or into a system
    folder is a counted skip, as is a folder that cannot be listed."""
    files: list[Path] = []
    seen: dict[Path, Path] = {}
    stack = [root]
    while stack:
        folder = stack.pop()
        real = folder.resolve()
        if real in seen:
            report.skip(str(folder), f"folder link to a folder already read ({seen[real]})")
            continue
        if any(real.is_relative_to(s) for s in SYSTEM_FOLDERS):
            report.skip(str(folder), f"folder link into a system folder ({real})")
            continue
        seen[real] = folder
        try:
            entries = sorted(folder.iterdir(), key=lambda p: p.name, reverse=True)
        except OSError as exc:
            report.skip(str(folder), f"folder cannot be read ({exc.strerror or exc})")
            continue
        for entry in entries:  # reversed onto the stack: folders are read in name order
            (stack if entry.is_dir() else files).append(entry)
    return sorted(files, key=lambda p: p.as_posix()), set(seen)


def scan_sources(
    opts: BuildOptions, report: BuildReport, progress: Callable[[int, int], None] | None = None
) -> list[SourceItem]:
    """Decode every file under ``opts.source``; usable photos are returned, the rest skipped."""
    root = opts.source
    if not root.is_dir():
        raise MfsrError(f"{root}: source folder not found")
    paths, folders = source_files(root, report)
    paths = paths[: opts.limit]
    items: list[SourceItem] = []
    for done, path in enumerate(paths, 1):
        rel = path.relative_to(root)
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            report.skip(str(path), f"not an image file (suffix {path.suffix or 'none'!r})")
        elif path.resolve().parent not in folders:
            report.skip(str(path), "link points outside the source folder")
        elif path.exists() and not path.is_file():  # a FIFO would block, a device never end
            report.skip(str(path), "not a regular file")
        else:
            try:
                data = path.read_bytes()
                if not data:
                    raise DataError(f"{path}: empty file (0 bytes)")
                reason = _check_size(decode_rgb(data, name=str(path)), opts)
            except DataError as exc:
                reason = str(exc).removeprefix(f"{path}: ")
            except OSError as exc:
                reason = f"cannot be read ({exc.strerror or exc})"
            if reason:
                report.skip(str(path), reason)
            else:
                sha = hashlib.sha256(data).hexdigest()
                items.append(
                    SourceItem(
                        safe_id(rel.with_suffix("").as_posix()), rel.as_posix(), _identity(rel), sha
                    )
                )
        if progress:
            progress(done, len(paths))
    if not paths:
        if report.skipped:  # only links that were not followed
            where, why = report.skipped[0]
            n = len(report.skipped)
            raise MfsrError(f"{root}: no photos; {n} skipped, e.g. {where}: {why}")
        raise MfsrError(f"{root}: the source folder is empty")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise MfsrError(f"{root}: two photos map to the same sample id; rename one of them")
    return items
