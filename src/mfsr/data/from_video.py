"""``mfsr data from-video``: every window of a clip's tracked face becomes one sample folder.

The second of the two passes described in :mod:`mfsr.data.video`: the clip is decoded again
and each needed frame's crop is rendered; a window's crops are written as soon as its last
frame is read, so memory holds one window of crops whatever the clip's length.

Modes: ``eval`` renders crops at ``hr_size``; HR = the centre frame, LR = every frame degraded
without synthetic motion (the real motion stays). ``lr-only`` renders crops straight at
``hr_size // scale``: the video's own quality is the degradation and there is no HR.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from mfsr import __version__
from mfsr.config import to_dict
from mfsr.data.degrade import (
    BORDERS,
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
    plan_windows,
    render_crop,
)
from mfsr.data.video import MODES, Progress, Track, UndecodableVideo, iter_frames, track_face
from mfsr.data.video_folder import check_ids_free, check_settings
from mfsr.errors import BadArgument, DataError
from mfsr.faces import DEFAULT_KEEP_SCORE, DEFAULT_MIN_SCORE
from mfsr.locks import locked


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
        raise BadArgument(f"`seed` must be >= 0, got {seed}")
    if mode not in MODES:
        raise BadArgument(f"`mode` must be one of {', '.join(MODES)}, got {mode!r}")
    if border not in BORDERS:
        raise BadArgument(f"`border` must be one of {', '.join(BORDERS)}, got {border!r}")
    if n_frames < 1:
        raise BadArgument(f"`n_frames` must be >= 1, got {n_frames}")
    if scale < 1 or hr_size < scale or hr_size % scale:
        raise BadArgument(f"`hr_size` {hr_size} must be a positive multiple of `scale` {scale}")
    if stride < 1:
        raise BadArgument(f"`stride` must be >= 1, got {stride}")
    if not (enlarge > 0 and math.isfinite(enlarge)):
        raise BadArgument(f"`enlarge` must be a positive number, got {enlarge}")
    if max_frames is not None and max_frames < 1:
        raise BadArgument(f"`max_frames` must be >= 1, got {max_frames}")
    if not split or safe_id(split) != split:
        raise BadArgument(f"`split` {split!r} must be a plain folder name (letters, digits, ._-)")


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
    video, out = Path(video), Path(out)
    stride = n_frames if stride is None else stride
    _check_args(mode, n_frames, scale, hr_size, stride, enlarge, max_frames, split, border, seed)
    report = BuildReport() if report is None else report
    cfg = (degradation or load_degradation("default")) if mode == "eval" else None
    track = _track_or_skip(video, upsample, enlarge, max_frames, progress, report)
    if track is None:
        return report
    windows = _windows_or_skip(video, track, n_frames, stride, report)
    if not windows:
        return report
    check_ids_free(out / split, safe_id(video.stem), video)
    check_settings(out, {
        "mode": mode, "n_frames": n_frames, "scale": scale, "hr_size": hr_size,
        "stride": stride, "degradation": None if cfg is None else to_dict(cfg), "seed": seed,
        "enlarge": enlarge, "border": border, "upsample": upsample,
    })  # fmt: skip
    base_meta = {"identity": identity if identity is not None else video.stem, "split": split}
    base_meta |= {"scale": scale, "reference_index": n_frames // 2, "mode": mode}
    base_meta |= {"mfsr_version": __version__, "tracking": _tracking_meta(track, enlarge, border)}
    size = hr_size if mode == "eval" else hr_size // scale
    writer = _Writer(out / split, seed, cfg, base_meta, resume, report)
    _second_pass(video, track, windows, size, border, writer, progress)
    return report


def _track_or_skip(
    video: Path,
    upsample: int | None,
    enlarge: float,
    max_frames: int | None,
    progress: Progress | None,
    report: BuildReport,
) -> Track | None:
    """The face's track through ``video``; None (recorded in ``report``) if undecodable."""
    try:
        track = track_face(
            video,
            upsample=upsample,
            enlarge=enlarge,
            max_frames=max_frames,
            progress=None if progress is None else lambda d, t: progress(d, 2 * t),
        )
    except UndecodableVideo as exc:
        report.skip(str(video), exc.reason)
        return None
    if track.n_frames < track.declared_frames:
        report.notes.append(
            f"{video}: decoded {track.n_frames} of {track.declared_frames} frames (truncated?)"
        )
    return track


def _windows_or_skip(
    video: Path, track: Track, n_frames: int, stride: int, report: BuildReport
) -> list[range]:
    """The windows to write; none (and the reason in ``report.skipped``) when there are none."""
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
    return windows


def _tracking_meta(track: Track, enlarge: float, border: str) -> dict[str, Any]:
    return {
        "enlarge": enlarge,
        "border": border,
        "upsample": track.upsample,
        "min_score": DEFAULT_MIN_SCORE,
        "keep_score": DEFAULT_KEEP_SCORE,
        "max_gap": DEFAULT_MAX_GAP,
        "smooth": DEFAULT_SMOOTH,
    }


class _Writer:
    """Writes one window's sample folder (or keeps an existing one with ``resume``)."""

    def __init__(self, split_dir, seed, cfg, base_meta, resume, report):
        self.split_dir, self.seed, self.cfg = split_dir, seed, cfg
        self.base_meta, self.resume, self.report = base_meta, resume, report
        self.split = base_meta["split"]

    def __call__(self, track: Track, window: range, views: list[np.ndarray]) -> None:
        sample_id = f"{safe_id(track.video.stem)}_f{window[0]:06d}"
        if self.resume and (self.split_dir / sample_id).is_dir():
            self.report.kept[self.split] += 1
            return
        meta = {**self.base_meta, "source": _source_meta(track, window)}
        _write_window(self.split_dir, sample_id, views, self.seed, self.cfg, meta)
        self.report.written[self.split] += 1


def _second_pass(
    video: Path,
    track: Track,
    windows: list[range],
    size: int,
    border: str,
    write: _Writer,
    progress: Progress | None,
) -> None:
    """Decode ``video`` again and write each window once its last frame is read, holding the
    rendered crops of the pending windows only."""
    last = windows[-1][-1]
    total = track.n_frames + last + 1
    views: dict[int, np.ndarray] = {}
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
            write(track, window, [views[j] for j in window])
            window = next(pending, None)
            keep_from = window[0] if window is not None else i + 1
            views = {j: v for j, v in views.items() if j >= keep_from}
    if window is not None:
        raise DataError(f"{video}: the second decoding pass ended before frame {window[-1]}")
