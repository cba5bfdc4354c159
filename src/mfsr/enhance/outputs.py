"""What ``mfsr enhance`` writes: enhanced faces, labelled side-by-side images, ``enhance.json``.

Files in the output folder (``<frame>``: the reference frame's index, 6 digits):

* ``face_<frame>.png``: the enhanced face, ``uint8`` RGB, ``scale * lr_size`` px square;
* ``side_by_side_<frame>.png``: bicubic upsampling of the reference LR crop | the enhanced
  face, each under a label bar;
* ``lr_<frame>.png``: the reference frame's LR crop as the model saw it (``lr_size`` px);
* ``enhance.json``: what was done (see ``docs/enhance.md``).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mfsr import __version__
from mfsr.config import write_text_atomic
from mfsr.data.images import write_png
from mfsr.data.video import Track
from mfsr.enhance.geometry import SizeCheck
from mfsr.enhance.model import Enhancer
from mfsr.enhance.source import MAX_SHIFT, WindowCrops
from mfsr.errors import BadArgument
from mfsr.weights import file_sha256

JSON_NAME = "enhance.json"
PATTERNS = ("face_*.png", "side_by_side_*.png", "lr_*.png", JSON_NAME)
GAP = 2  # px between the two panels


def check_out(out: Path, overwrite: bool) -> list[Path]:
    """Enhance results already in ``out`` (files matching :data:`PATTERNS`); raises
    :class:`MfsrError` if ``out`` holds a finished result (``enhance.json``, written last) and
    not ``overwrite``, or if ``out`` is a file. Faces without ``enhance.json`` are an enhance
    stopped part-way: they are returned for replacing, so a rerun completes the folder."""
    if out.exists() and not out.is_dir():
        raise BadArgument(f"`out` {out}: exists and is not a folder")
    old = [p for pattern in PATTERNS for p in out.glob(pattern)] if out.is_dir() else []
    if (out / JSON_NAME).is_file() and not overwrite:
        raise BadArgument(
            f"`out` {out}: already holds an enhance result ({JSON_NAME} and "
            f"{len(old) - 1} image(s)); use `overwrite` to replace it, or another folder"
        )
    return old


def prepare_out(out: Path, overwrite: bool) -> None:
    """Create ``out``, deleting earlier enhance results in it (a finished one only with
    ``overwrite``; see :func:`check_out`). Other files are left alone."""
    for path in check_out(out, overwrite):
        path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _label(width: int, text: str) -> np.ndarray:
    """A dark ``uint8 (bar, width, 3)`` strip with ``text`` in white, bar = max(12, width/8)."""
    bar = max(12, width // 8)
    strip = np.full((bar, width, 3), 40, np.uint8)
    font_scale = bar / 36.0
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    x = max(2, (width - tw) // 2)
    y = (bar + th) // 2
    cv2.putText(
        strip, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1, cv2.LINE_AA
    )
    return strip


def labelled_row(images: list[np.ndarray], labels: list[str]) -> np.ndarray:
    """Same-size ``uint8 (H, W, 3)`` images side by side, each under a label bar, with white
    gaps: ``uint8 (bar + H, k W + (k - 1) GAP, 3)``."""
    w = images[0].shape[1]
    panels = [np.vstack([_label(w, t), img]) for t, img in zip(labels, images)]
    gap = np.full((panels[0].shape[0], GAP, 3), 255, np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [gap, panel]
    return np.hstack(row)


def side_by_side(bicubic: np.ndarray, enhanced: np.ndarray, labels: tuple[str, str]) -> np.ndarray:
    """``uint8 (H, W, 3)`` bicubic | enhanced with a label bar over each."""
    return labelled_row([bicubic, enhanced], list(labels))


def model_doc(enhancer: Enhancer, batch_size: int) -> dict[str, Any]:
    """The record's description of the model (provenance, geometry, device)."""
    return {
        "model": enhancer.info,
        "n_frames": enhancer.n_frames,
        "scale": enhancer.scale,
        "lr_size": enhancer.lr_size,
        "hr_size": enhancer.hr_size,
        "device": str(enhancer.device),
        "batch_size": batch_size,
    }


def window_entry(window: WindowCrops, track: Track, files: dict[str, str]) -> dict[str, Any]:
    """The record of one enhanced window: frames, times, crops, registration, output files."""
    ref = window.frames[len(window.frames) // 2]
    return {
        "reference_frame": ref,
        "time_s": ref / track.fps if track.fps else None,
        "frames": list(window.frames),
        "interpolated": [track.interpolated[i] for i in window.frames],
        "crops": [[c.cx, c.cy, c.side] for c in window.crops],
        "shifts_lr_px": window.shifts,
        "residual_lr_px": window.residual,
        "registered": window.applied,
        **files,
    }


def write_face(
    out: Path,
    frame: int,
    enhanced: np.ndarray,
    bicubic: np.ndarray,
    lr: np.ndarray,
    labels: tuple[str, str],
) -> dict[str, str]:
    """Write ``face_<frame>.png`` (enhanced), ``side_by_side_<frame>.png`` (bicubic |
    enhanced, labelled) and ``lr_<frame>.png`` (the reference LR crop the model saw, ``uint8
    (lr, lr, 3)``); returns their names under the keys ``face``, ``side_by_side``, ``lr``."""
    names = {k: f"{k}_{frame:06d}.png" for k in ("face", "side_by_side", "lr")}
    write_png(out / names["face"], enhanced)
    write_png(out / names["side_by_side"], side_by_side(bicubic, enhanced, labels))
    write_png(out / names["lr"], lr)
    return names


def rounded(value: Any, digits: int = 3) -> Any:
    """Floats (also in nested lists/dicts and NumPy arrays) rounded; non-finite -> None."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return round(v, digits) + 0.0 if math.isfinite(v) else None  # + 0.0: no "-0.0"
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    return value


def _one_line(match: re.Match) -> str:
    """Join a JSON array's lines; only whitespace containing a newline (never inside a string)
    is touched."""
    text = re.sub(r"^\[\s*\n\s*", "[", match.group(0))
    text = re.sub(r"\s*\n\s*\]$", "]", text)
    return re.sub(r"\s*\n\s*", " ", text)


def write_json(out: Path, doc: dict[str, Any]) -> Path:
    """Write ``doc`` (rounded to 3 decimals) as ``out/enhance.json``; returns the path."""
    path = out / JSON_NAME
    text = json.dumps(rounded(doc), indent=1, allow_nan=False)
    # Arrays of scalars on one line (only whitespace between tokens changes: still valid JSON).
    text = re.sub(r"\[[^\[\]{}]*\]", _one_line, text)
    write_text_atomic(path, text + "\n")  # last, whole or not at all: it marks a finished run
    return path


def clip_doc(
    name: str, sha256: str, track: Track, max_frames: int | None, downscale: float
) -> dict[str, Any]:
    """The record's ``input``: the clip (name, sha256), how it was read and its frames."""
    return {
        "kind": "video",
        "path": name,
        "sha256": sha256,
        "fps": track.fps,
        "frames_decoded": track.n_frames,
        "declared_frames": track.declared_frames,
        "max_frames": max_frames,
        "downscale": downscale,
        "processed_frame_size": [track.width, track.height],
    }


def video_record(
    video: Path,
    track: Track,
    reading: dict[str, Any],
    size: SizeCheck,
    model: dict[str, Any],
    selection: dict[str, Any],
    register: str,
    entries: list[dict[str, Any]],
    warnings: list[str],
    timings: dict[str, float],
) -> dict[str, Any]:
    """The ``enhance.json`` document of a clip (docs/enhance.md). ``reading``: ``max_frames``,
    ``downscale``, ``enlarge``; ``model``: :func:`model_doc`; ``entries``: :func:`window_entry`
    per window; ``timings`` in seconds."""
    before = np.concatenate([np.abs(e["shifts_lr_px"]).ravel() for e in entries])
    after = [e["residual_lr_px"] for e in entries if e["residual_lr_px"] is not None]
    after_all = np.concatenate([np.abs(a).ravel() for a in after]) if after else None
    model_s, total_s = timings["model"], timings["total"]
    return {
        "mfsr_version": __version__,
        "input": clip_doc(
            str(video), file_sha256(video), track, reading["max_frames"], reading["downscale"]
        ),
        "tracking": {
            "upsample": track.upsample,
            "enlarge": reading["enlarge"],
            "segments": [list(s) for s in track.segments],
            "coordinates": "crops [cx, cy, side] in px of the processed (downscaled) frames",
        },
        "face_size": size.to_dict(),
        **model,
        "selection": selection,
        "registration": {
            "mode": register,
            "method": "translation measured by phase correlation + Lucas-Kanade on the LR "
            "crops; integer: crop moved by the whole LR px of the shift, full: by all of it, "
            "none: measured only (frames re-rendered from the clip)",
            "max_shift_lr_px": MAX_SHIFT,
            "median_abs_shift_lr_px": float(np.median(before)),
            "max_abs_shift_lr_px": float(before.max()),
            "median_abs_residual_lr_px": None if after_all is None else float(np.median(after_all)),
            "max_abs_residual_lr_px": None if after_all is None else float(after_all.max()),
        },
        "windows": entries,
        "warnings": warnings,
        "timings_s": timings,
        "faces_per_s": {
            "model": len(entries) / model_s if model_s > 0 else None,
            "end_to_end": len(entries) / total_s,
        },
    }
