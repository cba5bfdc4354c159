"""The on-disk sequence sample: one folder per sample (see ``docs/data.md``).

::

    <split>/<sample_id>/
        lr_00.png ... lr_{N-1}.png   LR frames, 8-bit RGB PNG, all the same size
        hr.png                       HR target (absent in LR-only samples)
        meta.json                    provenance: source, identity, split, scale, seeds, degradation

A sample folder is written under a temporary name inside the split folder and renamed into
place only when every file is written, so a folder with the final name is always complete;
readers ignore leftover temporary folders (names starting with ``.``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mfsr.data.images import encode_png, read_rgb
from mfsr.errors import DataError, about

FORMAT_NAME = "mfsr-sequence"
FORMAT_VERSION = 1
META_NAME = "meta.json"
HR_NAME = "hr.png"
TMP_PREFIX = ".tmp-"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_id(text: str) -> str:
    """Make a folder-safe sample id from a name or relative path without suffix
    (``a/b c`` -> ``a__b_c``); dots inside the name are kept."""
    flat = text.replace("/", "__").replace("\\", "__")
    return _UNSAFE.sub("_", flat).strip("._") or "sample"


def lr_name(index: int) -> str:
    return f"lr_{index:02d}.png"


def dumps_meta(meta: dict[str, Any]) -> str:
    """Canonical JSON (sorted keys, fixed float repr) so equal metadata gives equal bytes."""
    return json.dumps(meta, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def write_sample(
    split_dir: str | os.PathLike,
    sample_id: str,
    frames: list[np.ndarray],
    hr: np.ndarray | None,
    meta: dict[str, Any],
) -> Path:
    """Write one sample folder atomically and return its path; replaces an existing one.

    ``frames``: N uint8 (h, w, 3) arrays of equal size; ``hr``: uint8 (H, W, 3) or None.
    ``meta`` is completed with the format name/version, id, frame count and sizes.
    """
    split_dir = Path(split_dir)
    split_dir.mkdir(parents=True, exist_ok=True)
    if not frames:
        raise DataError(f"{sample_id}: a sample needs at least one LR frame")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise DataError(f"{sample_id}: LR frames differ in size: {sorted(shapes)}")
    meta = {
        **meta,
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "id": sample_id,
        "n_frames": len(frames),
        "lr_size": [int(frames[0].shape[1]), int(frames[0].shape[0])],
        "has_hr": hr is not None,
    }
    if hr is not None:
        meta["hr_size"] = [int(hr.shape[1]), int(hr.shape[0])]
    final = split_dir / sample_id
    tmp = split_dir / f"{TMP_PREFIX}{sample_id}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        with about(final):
            for i, frame in enumerate(frames):
                (tmp / lr_name(i)).write_bytes(encode_png(frame))
            if hr is not None:
                (tmp / HR_NAME).write_bytes(encode_png(hr))
            (tmp / META_NAME).write_text(
                dumps_meta(meta), encoding="utf-8", errors="backslashreplace"
            )
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def remove_stale_tmp(split_dir: str | os.PathLike) -> int:
    """Delete temporary folders left by an interrupted write; returns how many."""
    count = 0
    split_dir = Path(split_dir)
    if split_dir.is_dir():
        for p in split_dir.iterdir():
            if p.name.startswith(TMP_PREFIX) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                count += 1
    return count


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Read a sample's meta.json; errors name the file."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing metadata file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable metadata ({exc})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: metadata must be a JSON object")
    return meta


@dataclass(frozen=True)
class SampleFiles:
    """Where one sample's files are: N LR frame paths (in order), HR path or None, meta or None."""

    id: str
    lr: tuple[Path, ...]
    hr: Path | None
    meta: Path | None


def load_sample(files: SampleFiles) -> tuple[list[np.ndarray], np.ndarray | None, dict]:
    """Read frames, HR and metadata of one sample; checks that all frames share one size."""
    frames = [read_rgb(p) for p in files.lr]
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        sizes = ", ".join(f"{p.name}: {f.shape[1]}x{f.shape[0]}" for p, f in zip(files.lr, frames))
        raise DataError(f"{files.lr[0].parent}: LR frames differ in size ({sizes})")
    hr = read_rgb(files.hr) if files.hr is not None else None
    meta = read_meta(files.meta) if files.meta is not None else {}
    return frames, hr, meta
