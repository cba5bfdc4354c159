"""``mfsr enhance`` end to end: a clip (or a few frames) -> enhanced faces, side-by-sides, JSON.

:func:`enhance_video` tracks the face (:mod:`mfsr.enhance.source`), chooses windows
(:func:`mfsr.enhance.geometry.select_windows`), checks the face size against the model
(:func:`mfsr.enhance.geometry.check_face_size`), then streams registered LR windows through the
model ``batch_size`` at a time (fewer when they would not fit in memory:
:mod:`mfsr.enhance.memory`) and writes each result as soon as its batch is done. Memory is
bounded by one window of frame patches plus one batch, whatever the clip's length.

:func:`enhance_frames` does the same for already-cropped frames given as image files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mfsr import __version__
from mfsr.data.images import read_rgb
from mfsr.data.track import DEFAULT_ENLARGE
from mfsr.data.video import UPSAMPLE_LEVELS, Track, track_face
from mfsr.enhance.geometry import (
    SizeCheck,
    check_face_size,
    check_selection,
    frame_plan,
    round_multiple,
    select_windows,
)
from mfsr.enhance.memory import BatchCalls, fit_batch
from mfsr.enhance.model import Enhancer, bicubic_reference
from mfsr.enhance.outputs import (
    check_out,
    model_doc,
    prepare_out,
    video_record,
    window_entry,
    write_face,
    write_json,
)
from mfsr.enhance.source import (
    WindowCrops,
    check_register,
    iter_windows,
    measure_shifts,
)
from mfsr.errors import BadArgument, MfsrError
from mfsr.locks import locked

Warn = Callable[[str], None]
#: Windows per model call when not given: the fastest measured per device (docs/benchmarks.md,
#: "Enhance throughput": larger CPU batches spill the upsampling stage out of cache).
DEFAULT_BATCH = {"cpu": 4, "cuda": 32}
#: ``progress(stage, done, total)`` with stage ``track`` (frames) or ``enhance`` (windows).
StageProgress = Callable[[str, int, int], None]


class _Log:
    def __init__(self, warn: Warn | None) -> None:
        self.messages: list[str] = []
        self._warn = warn

    def __call__(self, message: str) -> None:
        self.messages.append(message)
        if self._warn is not None:
            self._warn(message)


def _batches(items: Iterable[WindowCrops], size: int) -> Iterator[list[WindowCrops]]:
    batch: list[WindowCrops] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _labels(enhancer: Enhancer) -> tuple[str, str]:
    return f"bicubic x{enhancer.scale}", f"{enhancer.label} x{enhancer.scale}"


def _no_windows_error(video: Path, n_decoded: int, segments: list, n: int, d: float) -> MfsrError:
    longest = max((b - a for a, b in segments), default=0)
    if not longest:
        shrunk = f" after --downscale {d:g}" if d != 1.0 else ""
        return MfsrError(
            f"{video}: no face found in {n_decoded} frames (dlib HOG detector, score >= 0.3, "
            f"upsampling {'/'.join(map(str, UPSAMPLE_LEVELS))}; faces narrower than about 20 px"
            f"{shrunk} or strongly turned away are not found)"
        )
    return MfsrError(
        f"{video}: the face is tracked for at most {longest} consecutive frames but the model "
        f"takes windows of {n}; use a model with at most {longest} frames, or crop frames "
        f"yourself and pass them with --frames"
    )


@locked("enhance output", "out")
def enhance_video(
    video: str | os.PathLike,
    enhancer: Enhancer,
    out: str | os.PathLike,
    *,
    every: int | None = None,
    at: list[float] | None = None,
    every_frame: bool = False,
    downscale: float = 1.0,
    max_frames: int | None = None,
    batch_size: int | None = None,
    register: str = "integer",
    upsample: int | None = None,
    enlarge: float = DEFAULT_ENLARGE,
    overwrite: bool = False,
    warn: Warn | None = None,
    progress: StageProgress | None = None,
) -> dict[str, Any]:
    """Enhance the face in ``video``; write into ``out`` (module docstring of
    :mod:`mfsr.enhance.outputs`) and return the ``enhance.json`` document.

    Window modes (``every`` / ``at`` / ``every_frame``) as in :func:`select_windows`.
    ``batch_size``: windows per model call (default :data:`DEFAULT_BATCH` for the device).
    ``downscale``: shrink frames first (simulating low-resolution footage). ``register``:
    ``integer``, ``full`` or ``none`` (:func:`mfsr.enhance.source.register_window`).
    Raises :class:`MfsrError`: unreadable video, no face, too few tracked frames, face too small
    or too large for the model (naming an LR size that fits), bad options.
    """
    video, out = Path(video), Path(out)
    log = _Log(warn)
    selection = {"every": every, "at": at, "every_frame": every_frame}
    batch_size = _checked_options(enhancer, batch_size, register, max_frames, selection)
    check_out(out, overwrite)  # refuse early, before the slow tracking
    batch_size = fit_batch(enhancer, batch_size, log)  # also before tracking
    started = time.perf_counter()
    clip = {"max_frames": max_frames, "downscale": downscale, "enlarge": enlarge}
    track = _track(video, clip, upsample, progress, log)
    track_s = time.perf_counter() - started
    windows, size = _windows_that_fit(video, track, enhancer, selection, enlarge, downscale, log)
    prepare_out(out, overwrite)

    calls = BatchCalls(enhancer, batch_size, log)
    stream = iter_windows(
        video,
        track,
        windows,
        enhancer.lr_size,
        downscale=downscale,
        register=register,
        progress=None if progress is None else lambda d, t: progress("enhance", d, t),
    )
    entries, model_s, write_s = _enhance_windows(stream, track, calls, enhancer, out)
    timings = _timings(started, track_s, model_s, write_s)
    model, windows_doc = model_doc(enhancer, calls.batch), _windows_doc(selection, enhancer)
    doc = video_record(
        video, track, clip, size, model, windows_doc, register, entries, log.messages, timings
    )
    write_json(out, doc)
    return doc


def _timings(started: float, track_s: float, model_s: float, write_s: float) -> dict[str, float]:
    """Wall seconds per stage since ``started``; cropping and registering is the rest."""
    total_s = time.perf_counter() - started
    return {
        "track": track_s,
        "crop_register": total_s - track_s - model_s - write_s,
        "model": model_s,
        "write": write_s,
        "total": total_s,
    }


def _windows_doc(selection: dict[str, Any], enhancer: Enhancer) -> dict[str, Any]:
    """``enhance.json``'s ``windows`` block: the mode and its option."""
    at, every = selection["at"], selection["every"]
    mode = "at" if at else "all" if selection["every_frame"] else "every"
    every = (every or enhancer.n_frames) if mode == "every" else None
    return {"mode": mode, "every": every, "at_s": at or None}


def _track(
    video: Path,
    clip: dict[str, Any],
    upsample: int | None,
    progress: StageProgress | None,
    log: _Log,
) -> Track:
    """Track the face through ``video`` (``clip``: max_frames, downscale, enlarge)."""
    track = track_face(
        video,
        upsample=upsample,
        progress=None if progress is None else lambda d, t: progress("track", d, t),
        **clip,
    )
    if track.n_frames < track.declared_frames:
        log(f"{video}: decoded {track.n_frames} of {track.declared_frames} frames (truncated?)")
    return track


def _checked_options(
    enhancer: Enhancer,
    batch_size: int | None,
    register: str,
    max_frames: int | None,
    selection: dict[str, Any],
) -> int:
    """The batch size (default :data:`DEFAULT_BATCH` for the device), options checked (before
    the slow tracking)."""
    check_selection(**selection)
    if batch_size is None:
        batch_size = DEFAULT_BATCH["cuda" if enhancer.device.type == "cuda" else "cpu"]
    if batch_size < 1:
        raise BadArgument(f"`batch_size` must be >= 1, got {batch_size}")
    check_register(register)
    if max_frames is not None and max_frames < 1:
        raise BadArgument(f"`max_frames` must be >= 1, got {max_frames}")
    return batch_size


def _windows_that_fit(
    video: Path,
    track: Track,
    enhancer: Enhancer,
    selection: dict[str, Any],
    enlarge: float,
    downscale: float,
    log: _Log,
) -> tuple[list[range], SizeCheck]:
    """The windows to enhance (:func:`select_windows`) and the face-size verdict; raises
    :class:`MfsrError` when there is none, or the face is too small or too large."""
    n = enhancer.n_frames
    windows, notes = select_windows(track.segments, n, track.n_frames, track.fps, **selection)
    for note in notes:
        log(note)
    if not windows:
        raise _no_windows_error(video, track.n_frames, track.segments, n, downscale)
    size = face_size(track, windows, enlarge, enhancer, downscale)
    if size.verdict in ("too-small", "too-large"):
        raise MfsrError(f"{video}: {size.message}")
    if size.message:
        log(size.message)
    return windows, size


def face_size(
    track: Track, windows: list[range], enlarge: float, enhancer: Enhancer, downscale: float = 1.0
) -> SizeCheck:
    """The verdict on the face's size in ``windows`` for ``enhancer`` (median tracked crop side
    / ``enlarge``, :func:`check_face_size`; ``downscale``: already applied to the frames)."""
    sides = [track.crops[i].side for w in windows for i in w]  # type: ignore[union-attr]
    face_px = float(np.median(sides)) / enlarge
    lr_size, scale, multiple = enhancer.lr_size, enhancer.scale, enhancer.multiple
    return check_face_size(face_px, enlarge, lr_size, scale, multiple, downscale)


def _enhance_windows(
    stream: Iterable[WindowCrops], track: Track, calls: BatchCalls, enhancer: Enhancer, out: Path
) -> tuple[list[dict[str, Any]], float, float]:
    """Enhance and write every window of ``stream``: (window records, model s, writing s)."""
    n, labels = enhancer.n_frames, _labels(enhancer)
    entries: list[dict[str, Any]] = []
    model_s = write_s = 0.0
    for batch in _batches(stream, calls.batch):
        lr = np.stack([w.lr for w in batch])
        t0 = time.perf_counter()
        faces = calls(lr)
        t1 = time.perf_counter()
        bicubic = bicubic_reference(lr, enhancer.scale)
        for w, face, bic in zip(batch, faces, bicubic):
            files = write_face(out, w.frames[n // 2], face, bic, w.lr[n // 2], labels)
            entries.append(window_entry(w, track, files))
        model_s += t1 - t0
        write_s += time.perf_counter() - t1
    return entries, model_s, write_s


def _square(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return image[y0 : y0 + s, x0 : x0 + s]


def load_frames(paths: list[Path], enhancer: Enhancer, log: Warn) -> list[np.ndarray]:
    """Read frame files as ``uint8 (lr, lr, 3)``: non-square ones are centre-cropped to a
    square, larger ones shrunk with area averaging (both with a warning). Smaller frames, or
    frames larger than the model's output, raise :class:`MfsrError` naming a size that fits."""
    lr, scale = enhancer.lr_size, enhancer.scale
    images = [read_rgb(p) for p in paths]
    odd = [p.name for p, im in zip(paths, images) if im.shape[0] != im.shape[1]]
    if odd:
        log(f"{len(odd)} frame(s) not square ({', '.join(odd[:3])}...): centre square used")
    images = [_square(im) for im in images]
    sides = sorted({im.shape[0] for im in images})
    small = sides[0]
    if small < lr:
        fit = round_multiple(small, enhancer.multiple, "down")
        hint = f"use --lr-size {fit}" if fit <= small else "this model needs larger crops"
        raise MfsrError(
            f"frames too small: the smallest is {small} px but the model takes {lr} px LR crops, "
            f"and enlarging them would add nothing; {hint} (a face framed like LFW, 2.4x the "
            f"face box)"
        )
    if sides[-1] > lr * scale:
        need = round_multiple(sides[-1] / scale, enhancer.multiple, "up")
        raise MfsrError(
            f"frames too large: {sides[-1]} px, larger than the enhanced output "
            f"({lr * scale} px at x{scale} from {lr} px): the model would discard detail they "
            f"already have; use --lr-size {need} or more, or no enhancement"
        )
    if sides[-1] > lr:
        log(
            f"frames are {'-'.join(map(str, (sides[0], sides[-1])))} px, larger than the model's "
            f"LR size {lr}: shrunk to {lr} px with area averaging (or pass --lr-size)"
        )
    return [
        im if im.shape[0] == lr else cv2.resize(im, (lr, lr), interpolation=cv2.INTER_AREA)
        for im in images
    ]


@locked("enhance output", "out")
def enhance_frames(
    paths: list[str | os.PathLike],
    enhancer: Enhancer,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    warn: Warn | None = None,
) -> dict[str, Any]:
    """Enhance already-cropped frames (image files, in order; reference = the middle one).

    Fewer or more frames than the model takes: :func:`mfsr.enhance.geometry.frame_plan` (with a
    warning). Frames are not resampled for registration (that would blur them); their shifts to
    the reference are measured and recorded. Writes ``face_<ref>.png``,
    ``side_by_side_<ref>.png`` (``<ref>``: 0-based index of the reference among the given
    files) and ``enhance.json``; returns the document.
    """
    out = Path(out)
    log = _Log(warn)
    files = [Path(p) for p in paths]
    started = time.perf_counter()
    check_out(out, overwrite)
    fit_batch(enhancer, 1, log)  # one window must fit
    images = load_frames(files, enhancer, log)  # first: a missing frame is the news, not padding
    plan, ref, note = frame_plan(len(files), enhancer.n_frames)
    if note:
        log(note)
    prepare_out(out, overwrite)
    window = np.stack([images[i] for i in plan])
    shifts = measure_shifts(window)
    t0 = time.perf_counter()
    face = BatchCalls(enhancer, 1, log)(window[None])[0]
    model_s = time.perf_counter() - t0
    bicubic = bicubic_reference(window[None], enhancer.scale)[0]
    names = write_face(out, ref, face, bicubic, window[len(plan) // 2], _labels(enhancer))
    doc: dict[str, Any] = {
        "mfsr_version": __version__,
        "input": {"kind": "frames", "paths": [str(p) for p in files]},
        **model_doc(enhancer, 1),
        "windows": [
            {
                "reference_frame": ref,
                "reference_path": str(files[ref]),
                "frames": plan,
                "paths": [str(files[i]) for i in plan],
                "shifts_lr_px": shifts,
                "registered": [False] * len(plan),
                **names,
            }
        ],
        "registration": {"mode": "none", "note": "shifts measured and recorded only"},
        "warnings": log.messages,
        "timings_s": {"model": model_s, "total": time.perf_counter() - started},
    }
    write_json(out, doc)
    return doc
