"""The clip side of ``mfsr enhance``: decode (optionally shrunk), track, crop and register.

Two passes over the clip keep memory bounded by one window of frame patches, whatever the clip's
length or resolution:

1. :func:`mfsr.data.video.track_face` decodes every frame (shrunk by ``downscale`` first, with
   area averaging, to simulate low-resolution footage) and tracks the face exactly as
   ``mfsr data from-video`` does (dlib HOG boxes, linking, gap filling, smoothed LFW-like square
   crops, 2.4 x the box; dlib upsampling levels 0, 1, 2 tried in turn for small faces).
2. :func:`iter_windows` decodes again, keeps for each frame of a pending window only the
   region of the frame its crop (plus a margin) needs, and when a window is complete renders
   its LR crops (:func:`mfsr.data.track.render_crop`: area averaging, black outside the frame)
   and registers them (:func:`register_window`).

**Registration** (``register``). The smoothed crop follows the head only on average, so
within a window each frame's face is still displaced from the reference's by a residual (head
motion faster than the 9-frame moving average). :func:`register_window` measures each frame's
translation to the reference on the LR crops (:func:`mfsr.models.baselines.estimate_shifts`:
phase correlation + Lucas-Kanade, sub-pixel) and, by mode:

* ``integer`` (default): re-renders a frame from the clip with the crop moved by the *whole*
  LR pixels of its shift (converted to clip px), so every frame lies within half an LR pixel
  of the reference, inside the +-1 LR px of motion the network saw in training, while the
  *sub-pixel* offsets between frames, which are what multi-frame super-resolution feeds on,
  are kept;
* ``full``: moves the crop by the whole measured shift (frames aligned to ~0.01 LR px). This
  removes the sub-pixel diversity: on the 14 VoxCeleb2 clips it lowered the classical
  baseline's gain over bicubic (see ``docs/enhance.md``);
* ``none``: shifts are measured and recorded only.

Shifts above :data:`MAX_SHIFT` LR px are treated as failed registration and left alone.
Rotation and zoom are not corrected. Each re-rendering is one resampling of the clip's pixels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from mfsr.data.degrade import Crop
from mfsr.data.track import (
    render_crop,
)
from mfsr.data.video import Track, VideoReader, shrink
from mfsr.errors import BadArgument, MfsrError
from mfsr.models.baselines import estimate_shifts

#: Largest residual shift (LR px) corrected by re-rendering; larger ones are unreliable.
MAX_SHIFT = 3.0

#: Registration modes (module docstring).
REGISTER_MODES = ("integer", "full", "none")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Patch:
    """The part of one frame a crop needs: ``pixels`` ``uint8 (h, w, 3)`` whose top-left pixel
    is frame pixel ``(x0, y0)``; ``crop``: the tracked square in frame px."""

    pixels: np.ndarray
    x0: int
    y0: int
    crop: Crop

    @staticmethod
    def cut(frame: np.ndarray, crop: Crop, lr_size: int) -> Patch:
        """Keep the crop plus a margin of :data:`MAX_SHIFT` + 2 LR px (clipped to the frame):
        enough to re-render it shifted by up to :data:`MAX_SHIFT` LR px."""
        margin = (MAX_SHIFT + 2.0) * crop.side / lr_size + 2.0
        half = crop.side / 2.0 + margin
        h, w = frame.shape[:2]
        x0, y0 = max(0, int(crop.cx - half)), max(0, int(crop.cy - half))
        x1, y1 = min(w, int(crop.cx + half) + 2), min(h, int(crop.cy + half) + 2)
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        return Patch(frame[y0:y1, x0:x1].copy(), x0, y0, crop)

    def render(self, size: int, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
        """The crop moved by ``(dx, dy)`` frame px, as ``uint8 (size, size, 3)`` (area
        averaging when shrinking; black outside the frame)."""
        c = self.crop
        return render_crop(
            self.pixels, Crop(c.cx - self.x0 + dx, c.cy - self.y0 + dy, c.side), size
        )


def measure_shifts(stack: np.ndarray) -> np.ndarray:
    """Translation of each frame to the reference ``N // 2`` in LR px, float64 ``(N, 2)`` of
    ``(dx, dy)``: frame ``k`` shows the face moved by ``+shift[k]``. ``stack``: ``uint8
    (N, h, w, 3)``. Uses :func:`mfsr.models.baselines.estimate_shifts`."""
    frames = torch.from_numpy(np.ascontiguousarray(stack)).permute(0, 3, 1, 2).double() / 255.0
    return estimate_shifts(frames).double().numpy()


@dataclass(frozen=True)
class WindowCrops:
    """One window ready for the model: ``frames`` (clip indices), ``lr`` ``uint8 (N, lr, lr,
    3)``, ``crops`` (tracked squares, frame px), ``shifts`` measured before registration and
    ``residual`` after it (LR px, ``(N, 2)``; ``residual`` None without registration),
    ``applied``: which frames were re-rendered."""

    frames: range
    lr: np.ndarray
    crops: list[Crop]
    shifts: np.ndarray
    residual: np.ndarray | None
    applied: list[bool]


def check_register(register: str) -> None:
    """Raise :class:`BadArgument` unless ``register`` is one of :data:`REGISTER_MODES`."""
    if register not in REGISTER_MODES:
        raise BadArgument(
            f"`register` must be one of {', '.join(REGISTER_MODES)}, got {register!r}"
        )


def register_window(patches: list[Patch], lr_size: int, register: str = "integer") -> WindowCrops:
    """Render a window's LR crops and align them to the reference frame by re-rendering each
    from its patch with the crop moved by the measured shift, rounded to whole LR px
    (``integer``), exact (``full``) or not at all (``none``); see the module docstring.
    ``frames`` of the result is a placeholder ``range(len(patches))``."""
    check_register(register)
    stack = np.stack([p.render(lr_size) for p in patches])
    shifts = measure_shifts(stack)
    crops = [p.crop for p in patches]
    applied = [False] * len(patches)
    if register == "none":
        return WindowCrops(range(len(patches)), stack, crops, shifts, None, applied)
    ref = len(patches) // 2
    out = stack.copy()
    for k, patch in enumerate(patches):
        dx, dy = shifts[k]
        if register == "integer":
            dx, dy = math.floor(dx + 0.5), math.floor(dy + 0.5)
        if k == ref or max(abs(dx), abs(dy)) > MAX_SHIFT or max(abs(dx), abs(dy)) < 1e-3:
            continue
        f = patch.crop.side / lr_size  # frame px per LR px
        out[k] = patch.render(lr_size, dx * f, dy * f)
        applied[k] = True
    residual = measure_shifts(out) if any(applied) else shifts
    return WindowCrops(range(len(patches)), out, crops, shifts, residual, applied)


def iter_windows(
    video: str | os.PathLike,
    track: Track,
    windows: list[range],
    lr_size: int,
    *,
    downscale: float = 1.0,
    register: str = "integer",
    progress: Progress | None = None,
) -> Iterator[WindowCrops]:
    """Second pass: decode ``video`` again (shrunk by ``downscale``) and yield each window of
    ``windows`` (sorted by start) as :class:`WindowCrops`, in order, holding patches of the
    pending windows' frames only. ``progress(done, total)`` counts windows."""
    if not windows:
        return
    needed = sorted({i for w in windows for i in w})
    wanted = set(needed)
    last = needed[-1]
    patches: dict[int, Patch] = {}
    pending = iter(windows)
    window: range | None = next(pending)
    done = 0
    for i, frame in enumerate(VideoReader(video, last + 1)):
        if i not in wanted:
            continue
        crop = track.crops[i]
        if crop is None:  # not reachable: windows lie inside tracked segments
            raise MfsrError(f"{video}: frame {i} has no tracked face")
        patches[i] = Patch.cut(shrink(frame, downscale), crop, lr_size)
        while window is not None and window[-1] <= i:
            result = register_window([patches[j] for j in window], lr_size, register)
            yield WindowCrops(
                window, result.lr, result.crops, result.shifts, result.residual, result.applied
            )
            done += 1
            if progress is not None:
                progress(done, len(windows))
            window = next(pending, None)
            keep_from = window[0] if window is not None else i + 1
            patches = {j: p for j, p in patches.items() if j >= keep_from}
    if window is not None:
        raise MfsrError(f"{video}: the second decoding pass ended before frame {window[-1]}")
