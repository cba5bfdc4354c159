"""What the page shows, without the web: a clip's tracked windows with quality hints, the
methods side by side for one window, the case-file sheet and its record.

A clip is tracked once (:func:`analyse`); every window of ``N`` consecutive tracked frames
(non-overlapping, as ``mfsr enhance`` takes them) is cropped and registered at once, so
picking a moment later costs only the model call (:func:`compare`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mfsr import __version__
from mfsr.data.degrade import Crop
from mfsr.data.track import DEFAULT_ENLARGE
from mfsr.data.video import Track, track_face
from mfsr.enhance.geometry import SIMULATED_FACE_PX, SizeCheck, select_windows
from mfsr.enhance.model import Enhancer, bicubic_reference
from mfsr.enhance.outputs import clip_doc, labelled_row, model_doc, window_entry
from mfsr.enhance.run import face_size
from mfsr.enhance.source import WindowCrops, iter_windows
from mfsr.errors import MfsrError

Progress = Callable[[str, int, int], None]  # (stage, done, total)
ENLARGE = DEFAULT_ENLARGE  # crop side / face box: LFW's framing, as `mfsr enhance` uses
METHODS = ("lr", "bicubic", "classical", "model", "model_flip")
LABELS = {
    "lr": "LR (nearest)",
    "bicubic": "bicubic",
    "classical": "classical",
    "model": "model",
    "model_flip": "model + flip",
}


@dataclass
class Analysis:
    """A tracked clip: ``windows[k]`` ready for the model, ``hints[k]`` its quality hints."""

    track: Track
    size: SizeCheck
    downscale: float
    note: str | None
    windows: list[WindowCrops]
    hints: list[dict[str, Any]]


def _scaled(track: Track, downscale: float) -> Track:
    """``track`` in the px of frames shrunk by ``downscale`` (pixel-centre coordinates)."""
    crops = [
        None
        if c is None
        else Crop(
            (c.cx + 0.5) * downscale - 0.5, (c.cy + 0.5) * downscale - 0.5, c.side * downscale
        )
        for c in track.crops
    ]
    return dataclasses.replace(
        track,
        crops=crops,
        width=round(track.width * downscale),
        height=round(track.height * downscale),
    )


def _hints(window: WindowCrops, track: Track) -> dict[str, Any]:
    """Face size (clip px), sharpness of the reference LR crop (variance of the Laplacian),
    median registration residual (LR px) and the mean detector score of the window."""
    ref = window.lr[len(window.frames) // 2]
    gray = cv2.cvtColor(ref, cv2.COLOR_RGB2GRAY)
    residual = window.residual if window.residual is not None else window.shifts
    scores = [track.faces[i].score for i in window.frames if track.faces[i] is not None]
    start = window.frames[0]
    return {
        "start": start,
        "frames": list(window.frames),
        "reference_frame": window.frames[len(window.frames) // 2],
        "time_s": round(window.frames[len(window.frames) // 2] / track.fps, 3)
        if track.fps
        else None,
        "face_px": round(float(np.median([c.side for c in window.crops])) / ENLARGE, 1),
        "sharpness": round(float(cv2.Laplacian(gray, cv2.CV_64F).var()), 1),
        "residual_lr_px": round(float(np.median(np.abs(residual))), 3),
        "detector_score": round(float(np.mean(scores)), 3) if scores else None,
        "interpolated": sum(track.interpolated[i] for i in window.frames),
    }


def quality(hint: dict[str, Any]) -> float:
    """One number to rank windows by (higher is better): sharp, well registered, well seen."""
    score = hint["detector_score"] if hint["detector_score"] is not None else 0.0
    return np.log1p(hint["sharpness"]) - 2.0 * hint["residual_lr_px"] + score - hint["interpolated"]


def analyse(video: Path, enhancer: Enhancer, progress: Progress) -> Analysis:
    """Track the face of ``video`` and prepare every window for ``enhancer``.

    A face larger than the model's input is shrunk to about 32 px (simulated low-resolution
    footage, said in ``note``), as ``mfsr enhance --downscale`` would. Raises
    :class:`MfsrError`: unreadable video, no face, no window of N tracked frames, face too
    small; or whatever ``progress`` raises (a cancellation).
    """
    n = enhancer.n_frames
    track = track_face(video, enlarge=ENLARGE, progress=lambda d, t: progress("tracking", d, t))
    windows, _ = select_windows(track.segments, n, track.n_frames, track.fps)
    if not windows:
        raise MfsrError(
            f"no stretch of {n} consecutive frames with a tracked face in {track.n_frames} "
            "decoded frames (the face is missing, too small or moves out of the frame)"
        )
    size = face_size(track, windows, ENLARGE, enhancer)
    face_px, downscale, note = size.face_px, 1.0, None
    if size.verdict == "too-small":
        raise MfsrError(size.message or "face too small")
    if size.verdict == "too-large":
        downscale = min(1.0, SIMULATED_FACE_PX / face_px)
        note = (
            f"The face is {face_px:.0f} px wide: the clip is already sharper than the model's "
            f"input. Frames are shrunk to {downscale:.3f}x (face about {SIMULATED_FACE_PX:.0f} "
            "px) to show what the model does with low-resolution footage."
        )
        track = _scaled(track, downscale)
    crops = list(
        iter_windows(
            video,
            track,
            windows,
            enhancer.lr_size,
            downscale=downscale,
            progress=lambda d, t: progress("cropping", d, t),
        )
    )
    hints = [_hints(w, track) for w in crops]
    return Analysis(track, size, downscale, note, crops, hints)


def compare(window: WindowCrops, enhancer: Enhancer, classical: Enhancer) -> dict[str, np.ndarray]:
    """Every method's face for one window: ``uint8 (s*lr, s*lr, 3)`` per :data:`METHODS`."""
    n, s = len(window.frames), enhancer.scale
    lr = window.lr[None]  # (1, N, lr, lr, 3)
    ref = window.lr[n // 2]
    return {
        "lr": np.repeat(np.repeat(ref, s, axis=0), s, axis=1),
        "bicubic": bicubic_reference(lr, s)[0],
        "classical": classical(lr)[0],
        "model": enhancer(lr)[0],
        "model_flip": dataclasses.replace(enhancer, flip_ensemble=True)(lr)[0],
    }


def sheet(faces: dict[str, np.ndarray], window: WindowCrops, title: str) -> np.ndarray:
    """The case-file sheet: the methods side by side over the N input frames (enlarged)."""
    top = labelled_row([faces[m] for m in METHODS], [LABELS[m] for m in METHODS])
    n = len(window.frames)
    side = top.shape[1] // n
    frames = [cv2.resize(f, (side, side), interpolation=cv2.INTER_NEAREST) for f in window.lr]
    bottom = labelled_row(frames, [f"frame {i}" for i in window.frames])
    width = max(top.shape[1], bottom.shape[1])
    pad = [
        np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=255)
        for p in (top, bottom)
    ]
    head = np.full((22, width, 3), 40, np.uint8)
    cv2.putText(
        head, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA
    )
    return np.vstack([head, pad[0], np.full((4, width, 3), 255, np.uint8), pad[1]])


def record(
    clip: dict[str, Any], analysis: Analysis, index: int, enhancer: Enhancer, files: dict[str, str]
) -> dict[str, Any]:
    """The case-file record of window ``index``: the keys of ``enhance.json``, one window."""
    track = analysis.track
    return {
        "mfsr_version": __version__,
        "input": clip_doc(clip["name"], clip["sha256"], track, None, analysis.downscale),
        "tracking": {"upsample": track.upsample, "enlarge": ENLARGE},
        "face_size": analysis.size.to_dict(),
        **model_doc(enhancer, 1),
        "registration": {"mode": "integer"},
        "methods": {m: LABELS[m] for m in METHODS},
        "quality": analysis.hints[index],
        "windows": [window_entry(analysis.windows[index], track, files)],
        "notes": [analysis.note] if analysis.note else [],
    }
