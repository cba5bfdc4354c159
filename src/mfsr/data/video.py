"""Real video -> sequence samples: decode, track the one face, crop it steadily, write windows.

Two passes over the video keep memory bounded by one window of crops, whatever the video length:

1. *Track* (:func:`track_face`): decode frame by frame, detect faces (dlib HOG), keep only the
   boxes. Link them into one track (the face nearest the previous position), fill gaps of up to
   ``max_gap`` frames by linear interpolation and split the track at longer gaps into segments.
   Smooth box centre and size inside each segment with a centred moving average and derive a
   square crop per frame (side = ``enlarge`` x box size).
2. *Write* (:func:`build_from_video`): decode again and render each needed frame's crop
   (:func:`mfsr.data.degrade.render_view`); every window of ``n_frames`` consecutive tracked
   frames becomes one sample folder (:mod:`mfsr.data.sample`).

Crop parts outside the frame are black by default, as in LFW's deep-funneled images (84% of
300 sampled LFW images have a black corner). LFW-like framing needs about 2.4x the face box,
more than tightly cropped clips hold (VoxCeleb2 224 px frames: 150 px box -> 360 px crop), and
mirroring (``border="mirror"``) then puts mirrored copies of the face around it.

Modes: ``eval`` renders crops at ``hr_size``; HR = the centre frame, LR = every frame degraded
without synthetic motion (the real motion stays). ``lr-only`` renders crops straight at
``hr_size // scale``: the video's own quality is the degradation and there is no HR.
"""

from __future__ import annotations

import math
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mfsr import __version__
from mfsr.config import to_dict
from mfsr.data.degrade import (
    BORDERS,
    Crop,
    DegradationConfig,
    degrade_views,
    load_degradation,
    sample_params,
)
from mfsr.data.report import BuildReport
from mfsr.data.sample import safe_id, write_sample
from mfsr.data.track import (
    DEFAULT_ENLARGE,
    DEFAULT_MAX_GAP,
    DEFAULT_SMOOTH,
    link_detections,
    plan_windows,
    render_crop,
    segment_track,
    smooth_crops,
)
from mfsr.data.video_folder import check_ids_free, check_settings
from mfsr.errors import DataError, MfsrError
from mfsr.faces import DEFAULT_KEEP_SCORE, DEFAULT_MIN_SCORE, Face, detect_faces
from mfsr.locks import locked

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
        raise MfsrError(f"--downscale must be in (0, 1], got {downscale}")
    if upsample is not None and not 0 <= upsample <= 3:
        raise MfsrError(f"--upsample must be 0, 1, 2 or 3, got {upsample}")
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


def _check_args(
    mode: str,
    n_frames: int,
    scale: int,
    hr_size: int,
    stride: int,
    enlarge: float,
    max_frames: int | None,
    split: str,
    border: str,
    seed: int,
) -> None:
    if seed < 0:
        raise MfsrError(f"seed must be >= 0, got {seed}")
    if mode not in MODES:
        raise MfsrError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if border not in BORDERS:
        raise MfsrError(f"border must be one of {', '.join(BORDERS)}, got {border!r}")
    if n_frames < 1:
        raise MfsrError(f"n_frames must be >= 1, got {n_frames}")
    if scale < 1 or hr_size < scale or hr_size % scale:
        raise MfsrError(f"hr_size {hr_size} must be a positive multiple of the scale {scale}")
    if stride < 1:
        raise MfsrError(f"stride must be >= 1, got {stride}")
    if not (enlarge > 0 and math.isfinite(enlarge)):
        raise MfsrError(f"enlarge must be a positive number, got {enlarge}")
    if max_frames is not None and max_frames < 1:
        raise MfsrError(f"max_frames must be >= 1, got {max_frames}")
    if not split or safe_id(split) != split:
        raise MfsrError(f"split name {split!r} must be a plain folder name (letters, digits, ._-)")


def _source_meta(track: Track, window: range) -> dict[str, Any]:
    crops = [track.crops[j] for j in window]
    return {
        "kind": "video",
        "path": str(track.video),
        "frame_indices": list(window),
        "fps": track.fps,
        "frame_size": [track.width, track.height],
        "boxes": [[round(c.cx, 3), round(c.cy, 3), round(c.side, 3)] for c in crops if c],
        "interpolated": [track.interpolated[j] for j in window],
    }


def _write_window(
    split_dir: Path,
    sample_id: str,
    views: list[np.ndarray],
    seed: int,
    cfg: DegradationConfig | None,
    meta: dict[str, Any],
) -> None:
    """eval (``cfg`` given): HR = centre view, LR = views degraded without synthetic motion;
    lr-only: the views are the LR frames."""
    hr, frames = None, views
    sample_seed = zlib.crc32(sample_id.encode("utf-8"))
    meta["seed"] = {"base": seed, "sample": sample_seed}
    if cfg is not None:
        rng = np.random.default_rng([seed, sample_seed])
        params = sample_params(cfg, len(views), rng, motion=False)
        frames = degrade_views(views, meta["scale"], params, rng)
        hr = views[params.reference_index]
        meta["degradation"] = {
            "preset": cfg.name,
            "config": to_dict(cfg),
            "drawn": params.to_dict(),
        }
    write_sample(split_dir, sample_id, frames, hr, meta)


@locked("dataset", "out")
def build_from_video(
    video: str | os.PathLike,
    out: str | os.PathLike,
    *,
    mode: str = "eval",
    n_frames: int = 7,
    scale: int = 8,
    hr_size: int = 256,
    stride: int | None = None,
    degradation: DegradationConfig | None = None,
    seed: int = 0,
    split: str = "test",
    identity: str | None = None,
    enlarge: float = DEFAULT_ENLARGE,
    border: str = "black",
    upsample: int | None = None,
    max_frames: int | None = None,
    resume: bool = False,
    report: BuildReport | None = None,
    progress: Progress | None = None,
) -> BuildReport:
    """Write every ``n_frames`` window of ``video``'s tracked face to ``out/split/<id>/``.

    Sample ids are ``<clip name>_f<first frame index, 6 digits>``. ``stride``: frames between
    window starts (default ``n_frames``: no overlap). ``degradation`` (eval mode; default preset
    ``default``) is drawn from ``numpy.random.default_rng([seed, crc32(sample_id)])``, so a
    sample is byte-identical for the same seed whatever else is built. ``border``: ``black`` or
    ``mirror`` for crop parts outside the frame. ``max_frames``: read at most this many frames.
    A video that cannot be decoded, shows no face or no ``n_frames`` consecutive frames with it
    is recorded in ``report.skipped`` and nothing is written; a missing file or bad arguments
    raise :class:`MfsrError`. ``resume``: keep (count as ``kept``) sample folders that already
    exist instead of rewriting them; the caller checks they were built with the same settings.
    ``progress(done, total)`` counts frames over both passes.
    """
    video = Path(video)
    stride = n_frames if stride is None else stride
    _check_args(mode, n_frames, scale, hr_size, stride, enlarge, max_frames, split, border, seed)
    report = BuildReport() if report is None else report
    cfg = (degradation or load_degradation("default")) if mode == "eval" else None
    track_progress = None if progress is None else lambda d, t: progress(d, 2 * t)
    try:
        track = track_face(
            video,
            upsample=upsample,
            enlarge=enlarge,
            max_frames=max_frames,
            progress=track_progress,
        )
    except UndecodableVideo as exc:
        report.skip(str(video), exc.reason)
        return report
    if track.n_frames < track.declared_frames:
        report.notes.append(
            f"{video}: decoded {track.n_frames} of {track.declared_frames} frames (truncated?)"
        )
    windows = plan_windows(track.segments, n_frames, stride)
    if not windows:
        longest = max((b - a for a, b in track.segments), default=0)
        reason = (
            f"no face found (in {track.n_frames} frames; dlib HOG score >= "
            f"{DEFAULT_MIN_SCORE}, upsample {track.upsample})"
            if not longest
            else f"too few consecutive frames with the face (longest run {longest}, "
            f"{n_frames} needed)"
        )
        report.skip(str(video), reason)
        return report
    size = hr_size if mode == "eval" else hr_size // scale
    stem, ref = safe_id(video.stem), n_frames // 2
    check_ids_free(Path(out) / split, stem, video)
    check_settings(Path(out), {
        "mode": mode, "n_frames": n_frames, "scale": scale, "hr_size": hr_size,
        "stride": stride, "degradation": None if cfg is None else to_dict(cfg), "seed": seed,
        "enlarge": enlarge, "border": border, "upsample": upsample,
    })  # fmt: skip
    base_meta = {
        "identity": identity if identity is not None else video.stem,
        "split": split,
        "scale": scale,
        "reference_index": ref,
        "mode": mode,
        "mfsr_version": __version__,
        "tracking": {
            "enlarge": enlarge,
            "border": border,
            "upsample": track.upsample,
            "min_score": DEFAULT_MIN_SCORE,
            "keep_score": DEFAULT_KEEP_SCORE,
            "max_gap": DEFAULT_MAX_GAP,
            "smooth": DEFAULT_SMOOTH,
        },
    }
    last = windows[-1][-1]
    total = track.n_frames + last + 1
    views: dict[int, np.ndarray] = {}  # rendered crops of the pending windows only
    pending = iter(windows)
    window: range | None = next(pending)
    for i, frame in enumerate(iter_frames(video, last + 1)):
        if progress is not None:
            progress(track.n_frames + i + 1, total)
        crop = track.crops[i]
        if crop is None or window is None or i < window[0]:
            continue
        views[i] = render_crop(frame, crop, size, border)
        while window is not None and window[-1] == i:
            sample_id = f"{stem}_f{window[0]:06d}"
            if resume and (Path(out) / split / sample_id).is_dir():
                report.kept[split] += 1
            else:
                meta = {**base_meta, "source": _source_meta(track, window)}
                views_w = [views[j] for j in window]
                _write_window(Path(out) / split, sample_id, views_w, seed, cfg, meta)
                report.written[split] += 1
            window = next(pending, None)
            keep_from = window[0] if window is not None else i + 1
            views = {j: v for j, v in views.items() if j >= keep_from}
    if window is not None:
        raise DataError(f"{video}: the second decoding pass ended before frame {window[-1]}")
    return report
