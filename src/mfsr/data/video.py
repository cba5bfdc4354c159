"""Real video: decode it and track the one face (the first pass of ``mfsr data from-video``
and ``mfsr enhance``).

Two passes over the video keep memory bounded by one window of crops, whatever the video length:

1. *Track* (:func:`track_face`): decode frame by frame, detect faces (dlib HOG), keep only the
   boxes. Link them into one track (the face nearest the previous position), fill gaps of up to
   ``max_gap`` frames by linear interpolation and split the track at longer gaps into segments.
   Smooth box centre and size inside each segment with a centred moving average and derive a
   square crop per frame (side = ``enlarge`` x box size).
2. *Write* (:func:`mfsr.data.from_video.build_from_video`): decode again and render each
   needed frame's crop (:func:`mfsr.data.degrade.render_view`); every window of ``n_frames``
   consecutive tracked frames becomes one sample folder (:mod:`mfsr.data.sample`).

Crop parts outside the frame are black by default, as in LFW's deep-funneled images (84% of
300 sampled LFW images have a black corner). LFW-like framing needs about 2.4x the face box,
more than tightly cropped clips hold (VoxCeleb2 224 px frames: 150 px box -> 360 px crop), and
mirroring (``border="mirror"``) then puts mirrored copies of the face around it.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mfsr.data.degrade import Crop
from mfsr.data.track import (
    DEFAULT_ENLARGE,
    DEFAULT_MAX_GAP,
    DEFAULT_SMOOTH,
    link_detections,
    segment_track,
    smooth_crops,
)
from mfsr.errors import BadArgument, DataError
from mfsr.faces import DEFAULT_KEEP_SCORE, DEFAULT_MIN_SCORE, Face, detect_faces

DETECT_MAX_SIDE = 960  # larger frames are shrunk for detection only (speed); boxes scaled back
MODES = ("eval", "lr-only")

Progress = Callable[[int, int], None]


class UndecodableVideo(DataError):
    """A video file that exists but cannot be decoded; ``reason`` omits the path."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class Track:
    """Where the face is in each decoded frame of a video (frame indices start at 0).

    ``faces[i]``: the detected (or, if ``interpolated[i]``, interpolated) box, None if absent;
    ``crops[i]``: the smoothed square crop (pixels of the full frame), None outside segments;
    ``segments``: ``[start, end)`` frame ranges with a face in every frame, in order.
    ``n_frames``: frames decoded; ``declared_frames``: the container's frame count (capped by
    ``max_frames``; 0 if unknown), more than ``n_frames`` for a truncated file.
    """

    video: Path
    n_frames: int
    declared_frames: int
    fps: float | None
    width: int
    height: int
    upsample: int
    faces: list[Face | None]
    interpolated: list[bool]
    crops: list[Crop | None]
    segments: list[tuple[int, int]]


def _open_capture(path: Path) -> cv2.VideoCapture:
    """``cv2.VideoCapture`` of ``path``; a name that is not valid UTF-8 (undecodable bytes,
    which Python keeps as surrogates) is opened through an ASCII-named symlink, because
    OpenCV crashes the process on it (a segmentation fault, measured with OpenCV 4.14)."""
    ffmpeg = cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG)
    backend = cv2.CAP_FFMPEG if ffmpeg else cv2.CAP_ANY
    try:
        str(path).encode("utf-8")
        return cv2.VideoCapture(str(path), backend)
    except UnicodeEncodeError:
        pass
    with tempfile.TemporaryDirectory(prefix="mfsr-video-") as tmp:
        link = Path(tmp) / "video"
        os.symlink(os.path.abspath(path), link)
        return cv2.VideoCapture(str(link), backend)  # open now: the link may go afterwards


class VideoReader:
    """An opened video: ``fps`` (None if unknown), ``frame_count`` (the container's estimate,
    capped by ``max_frames``); iterating yields ``uint8 (H, W, 3)`` RGB frames in order.

    Raises :class:`DataError` (naming the file) if the path is missing or a folder, and
    :class:`UndecodableVideo` if the file is empty, corrupt or yields no frame at all.
    """

    def __init__(self, video: str | os.PathLike, max_frames: int | None = None) -> None:
        self.path = path = Path(video)
        if not path.exists():
            raise DataError(f"{path}: video file not found")
        if path.is_dir():
            raise DataError(f"{path}: is a folder, not a video file")
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        if size == 0:
            raise UndecodableVideo(path, "empty file (0 bytes)")
        self._cap = _open_capture(path)
        if not self._cap.isOpened():
            self._cap.release()
            raise UndecodableVideo(path, "not a readable video (unknown format or corrupt)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        self.fps = fps if math.isfinite(fps) and fps > 0 else None
        count = int(max(self._cap.get(cv2.CAP_PROP_FRAME_COUNT), 0))
        self.max_frames = max_frames
        self.frame_count = min(count, max_frames) if max_frames is not None else count

    def __iter__(self) -> Iterator[np.ndarray]:
        count = 0
        try:
            while self.max_frames is None or count < self.max_frames:
                ok, frame = self._cap.read()
                if not ok or frame is None:
                    break
                if frame.ndim == 2:
                    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
                count += 1
                yield cv2.cvtColor(frame[:, :, :3], cv2.COLOR_BGR2RGB)
        finally:
            self._cap.release()
        if count == 0:
            raise UndecodableVideo(self.path, "no frame could be decoded (corrupt or truncated)")


def iter_frames(video: str | os.PathLike, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Decoded frames of ``video`` in order as ``uint8 (H, W, 3)`` RGB, at most ``max_frames``;
    errors as :class:`VideoReader`."""
    yield from VideoReader(video, max_frames)


#: dlib upsampling levels tried in turn when none is given (faces from about 80, 40, 20 px).
UPSAMPLE_LEVELS = (0, 1, 2)
#: A level is accepted when it tracks the face in at least this fraction of the frames ...
MIN_COVERAGE = 0.5
#: ... and its median box is at least this x the smallest box it can report (dlib's 80 px
#: window / 2**level): boxes at that limit are clamped to it (a 32 px face found at level 1
#: gets a 39 px box, framing the crop 20% too wide), so the next level is tried.
MIN_BOX_MARGIN = 1.25
DLIB_WINDOW = 80.0


def shrink(frame: np.ndarray, downscale: float) -> np.ndarray:
    """``uint8 (H, W, 3)`` resized by ``downscale`` (<= 1) with area averaging."""
    if downscale == 1.0:
        return frame
    h, w = frame.shape[:2]
    size = (max(1, round(w * downscale)), max(1, round(h * downscale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _detect(frame: np.ndarray, upsample: int, threshold: float) -> list[Face]:
    side = max(frame.shape[:2])
    if side <= DETECT_MAX_SIDE:
        return detect_faces(frame, upsample, threshold)
    f = DETECT_MAX_SIDE / side
    small = cv2.resize(frame, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    return [face.scaled(1.0 / f) for face in detect_faces(small, upsample, threshold)]


def _scan(
    video: Path,
    upsample: int,
    threshold: float,
    max_frames: int | None,
    downscale: float,
    progress: Progress | None,
) -> tuple[list[list[Face]], tuple[int, int], VideoReader]:
    reader = VideoReader(video, max_frames)
    detections: list[list[Face]] = []
    shape = (0, 0)
    for frame in reader:
        frame = shrink(frame, downscale)
        shape = frame.shape[1], frame.shape[0]
        detections.append(_detect(frame, upsample, threshold))
        if progress is not None:
            progress(len(detections), max(reader.frame_count, len(detections)))
    return detections, shape, reader


def track_face(
    video: str | os.PathLike,
    *,
    upsample: int | None = None,
    min_score: float = DEFAULT_MIN_SCORE,
    keep_score: float = DEFAULT_KEEP_SCORE,
    max_gap: int = DEFAULT_MAX_GAP,
    smooth: int = DEFAULT_SMOOTH,
    enlarge: float = DEFAULT_ENLARGE,
    max_frames: int | None = None,
    downscale: float = 1.0,
    progress: Progress | None = None,
) -> Track:
    """Track the one face of ``video`` (first pass; see the module docstring).

    Frames are first shrunk by ``downscale`` (<= 1, area averaging); boxes and crops are in
    pixels of the shrunk frames. ``upsample``: one dlib HOG level (0: faces >= ~80 px, 1: >= ~40
    px, 2: >= ~20 px; each 4x slower), or None for :data:`UPSAMPLE_LEVELS` in turn until one
    covers the face well (:data:`MIN_COVERAGE`, :data:`MIN_BOX_MARGIN`; else the best one).
    ``progress(done, total)`` counts frames of each level tried. Raises :class:`DataError` /
    :class:`UndecodableVideo` for missing or undecodable files.
    """
    if not 0.0 < downscale <= 1.0:
        raise BadArgument(f"`downscale` must be in (0, 1], got {downscale}")
    if upsample is not None and not 0 <= upsample <= 3:
        raise BadArgument(f"`upsample` must be 0, 1, 2 or 3, got {upsample}")
    video = Path(video)
    threshold = min(min_score, keep_score)
    best = None
    for level in UPSAMPLE_LEVELS if upsample is None else (upsample,):
        detections, shape, reader = _scan(video, level, threshold, max_frames, downscale, progress)
        picks = link_detections(detections, min_score, keep_score, max_gap)
        sizes = [p.size for p in picks if p is not None]
        covered = len(sizes) >= MIN_COVERAGE * len(detections)
        clear = bool(sizes) and np.median(sizes) >= MIN_BOX_MARGIN * DLIB_WINDOW / 2**level
        rank = (covered and clear, covered, len(sizes))
        if best is None or rank > best[0]:
            best = (rank, level, picks, len(detections), shape, reader)
        if covered and clear:
            break
    assert best is not None
    _, level, picks, n, (width, height), reader = best
    faces, interpolated, segments = segment_track(picks, max_gap)
    crops = smooth_crops(faces, segments, enlarge, smooth)
    return Track(
        video,
        n,
        reader.frame_count,
        reader.fps,
        width,
        height,
        level,
        faces,
        interpolated,
        crops,
        segments,
    )
