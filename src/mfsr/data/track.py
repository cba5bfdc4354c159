"""Face tracking maths on per-frame detections: link, fill gaps, segment, smooth, crop, render.

Pure functions on :class:`mfsr.faces.Face` boxes (pixels) and frame indices; no video I/O (that
is :mod:`mfsr.data.video`). Frame ``i`` of a video is ``detections[i]``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from mfsr.data.degrade import Crop, render_view
from mfsr.faces import Face

#: Crop side / dlib box size. On 300 random LFW images the dlib HOG box is 105 px (median) of the
#: 250 px image, i.e. LFW frames the face at 2.4x the dlib box; 2.4 reproduces that framing.
DEFAULT_ENLARGE = 2.4
#: The crop centre sits this fraction of the box size above the box centre: on LFW the dlib box
#: centre lies 0.13 box sizes below the image centre (the box covers brows to chin, not the head).
CENTRE_SHIFT = 0.13
#: Missing frames filled by interpolation; a longer gap splits the track (0.12 s at 25 fps).
DEFAULT_MAX_GAP = 3
#: Frames in the centred moving average of the box centre (0.36 s at 25 fps); size uses 3x this.
DEFAULT_SMOOTH = 9
#: A box continues the track if its centre is within this x the previous box size of it (and its
#: size within 2/3..3/2 of it: one or two of dlib's pyramid levels).
MAX_JUMP = 0.5


def _continues(prev: Face, face: Face) -> float | None:
    """Centre distance / previous size if ``face`` plausibly continues ``prev``, else None."""
    ratio = face.size / prev.size
    dist = math.hypot(face.cx - prev.cx, face.cy - prev.cy) / prev.size
    return dist if 2 / 3 <= ratio <= 1.5 and dist <= MAX_JUMP else None


def link_detections(
    detections: list[list[Face]], min_score: float, keep_score: float, max_gap: int
) -> list[Face | None]:
    """Pick one face per frame: a new track starts on the largest face scoring ``min_score``;
    while the last pick is at most ``max_gap`` frames back, the box nearest it (scoring at least
    ``keep_score``) continues the track and other faces are ignored."""
    picks: list[Face | None] = []
    prev: Face | None = None
    last = -(10**9)
    for i, faces in enumerate(detections):
        pick = None
        if prev is not None and i - last <= max_gap + 1:
            near = [
                (d, f)
                for f in faces
                if f.score >= keep_score
                if (d := _continues(prev, f)) is not None
            ]
            if near:
                pick = min(near, key=lambda t: (t[0], -t[1].score))[1]
        else:
            strong = [f for f in faces if f.score >= min_score]
            if strong:
                pick = max(strong, key=lambda f: (f.area, f.score))
        if pick is not None:
            prev, last = pick, i
        picks.append(pick)
    return picks


def segment_track(
    picks: list[Face | None], max_gap: int
) -> tuple[list[Face | None], list[bool], list[tuple[int, int]]]:
    """Fill gaps of <= ``max_gap`` frames between picks linearly; longer gaps split segments.
    Returns (faces, interpolated flags, ``[start, end)`` segments)."""
    faces = list(picks)
    interpolated = [False] * len(picks)
    found = [i for i, f in enumerate(picks) if f is not None]
    segments: list[tuple[int, int]] = []
    for a, b in itertools.pairwise(found):
        if b - a - 1 > max_gap:
            continue
        fa, fb = picks[a], picks[b]
        assert fa is not None and fb is not None
        for i in range(a + 1, b):
            t = (i - a) / (b - a)
            mix = [
                u + t * (v - u)
                for u, v in zip(
                    (fa.left, fa.top, fa.right, fa.bottom),
                    (fb.left, fb.top, fb.right, fb.bottom),
                    strict=True,
                )
            ]
            faces[i] = Face(*mix, score=min(fa.score, fb.score))
            interpolated[i] = True
    for i in found:
        if segments and i - segments[-1][1] <= max_gap:
            segments[-1] = (segments[-1][0], i + 1)
        else:
            segments.append((i, i + 1))
    return faces, interpolated, segments


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    half = max(window, 1) // 2
    if half == 0 or len(values) < 2:
        return values.astype(np.float64)
    padded = np.pad(values.astype(np.float64), half, mode="edge")
    return np.convolve(padded, np.full(2 * half + 1, 1.0 / (2 * half + 1)), mode="valid")


def smooth_crops(
    faces: list[Face | None], segments: list[tuple[int, int]], enlarge: float, smooth: int
) -> list[Crop | None]:
    """Square crop per frame: box centre averaged over ``smooth`` frames, size over
    ``3 * smooth`` (dlib's box size jumps between pyramid levels), within each segment."""
    crops: list[Crop | None] = [None] * len(faces)
    for start, end in segments:
        boxes = [faces[i] for i in range(start, end)]
        cx = _moving_average(np.array([b.cx for b in boxes]), smooth)
        cy = _moving_average(np.array([b.cy for b in boxes]), smooth)
        size = _moving_average(np.array([b.size for b in boxes]), 3 * smooth)
        for k in range(end - start):
            crops[start + k] = Crop(
                float(cx[k]), float(cy[k] - CENTRE_SHIFT * size[k]), float(enlarge * size[k])
            )
    return crops


def plan_windows(segments: list[tuple[int, int]], n_frames: int, stride: int) -> list[range]:
    """Frame-index windows of ``n_frames`` consecutive frames inside one segment, every
    ``stride`` frames from each segment's start."""
    return [range(s, s + n_frames) for a, b in segments for s in range(a, b - n_frames + 1, stride)]


def render_crop(frame: np.ndarray, crop: Crop, size: int, border: str = "black") -> np.ndarray:
    """The square ``crop`` (frame pixels) of ``frame`` (``uint8 (H, W, 3)``) resampled to
    ``uint8 (size, size, 3)``; parts outside the frame are black or (``"mirror"``) mirrored."""
    return render_view(frame, crop, size, scale=1, frame=None, border=border)
