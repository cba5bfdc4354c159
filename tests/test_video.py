"""Real video -> sequence samples (mfsr.data.video, mfsr.data.track) on real VoxCeleb2 clips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import VIDEOS
from mfsr.data.degrade import Crop, load_degradation
from mfsr.data.from_video import build_from_video
from mfsr.data.images import read_rgb
from mfsr.data.report import BuildReport
from mfsr.data.track import link_detections, plan_windows, render_crop, segment_track, smooth_crops
from mfsr.data.video import UndecodableVideo, iter_frames, track_face
from mfsr.errors import DataError, MfsrError
from mfsr.evaluate.sources import resolve_test_set
from mfsr.faces import DEFAULT_MIN_SCORE, Face, detect_faces

CLIP_NAME = "Audio_Source_00086.mp4"  # 130 frames, 224x224, 25 fps, one face throughout


@pytest.fixture(scope="module")
def clip() -> Path:
    path = VIDEOS / CLIP_NAME
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (CI always has ../shared/data)")
    return path


def write_avi(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """Write RGB frames as an MJPG AVI (OpenCV's built-in writer; no codec needed)."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def folder_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# --- pure tracking logic on synthetic boxes ---------------------------------------------------


def box(cx: float, cy: float, size: float = 100.0, score: float = 1.0) -> Face:
    return Face(cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2, score)


def test_link_starts_on_largest_confident_face_and_follows_it():
    small, big = box(50, 50, 90), box(300, 300, 120)
    detections = [[small, big], [box(52, 50, 90), box(305, 300, 120, score=-0.1)]]
    picks = link_detections(detections, min_score=0.3, keep_score=-0.3, max_gap=3)
    assert picks[0] == big
    assert picks[1] is detections[1][1]  # nearest to the track, though weak; not the other face


def test_link_ignores_weak_start_and_far_faces_while_tracking():
    detections = [
        [box(100, 100, score=0.1)],  # too weak to start a track
        [box(100, 100, score=0.5)],  # starts it
        [box(100, 100, score=-0.2), box(400, 100, score=3.0)],  # weak but near wins
        [box(400, 100, score=3.0)],  # far away: a gap, not a jump
    ]
    picks = link_detections(detections, min_score=0.3, keep_score=-0.3, max_gap=3)
    assert picks[0] is None
    assert picks[2] is not None and picks[2].cx == 99.5
    assert picks[3] is None


def test_short_gaps_are_interpolated_long_gaps_split():
    picks = [box(100, 100), None, None, box(130, 100)] + [None] * 5 + [box(200, 200)]
    faces, interpolated, segments = segment_track(picks, max_gap=3)
    assert segments == [(0, 4), (9, 10)]
    assert interpolated == [False, True, True, False] + [False] * 6
    assert faces[1] is not None and faces[1].cx == pytest.approx(109.5)
    assert faces[5] is None


def test_smoothing_keeps_a_still_face_still_and_plan_windows():
    faces = [box(100 + (5 if i % 2 else -5), 100, 100 + 20 * (i % 2)) for i in range(30)]
    crops = smooth_crops(faces, [(0, 30)], enlarge=2.0, smooth=9)
    cx = np.array([c.cx for c in crops if c is not None])
    side = np.array([c.side for c in crops if c is not None])
    assert np.abs(np.diff(cx)).max() < 2.0  # raw boxes jump by 10 px every frame
    assert np.abs(np.diff(side)).max() < 2.0 and 200 < side.mean() < 240
    windows = plan_windows([(0, 12), (20, 26)], n_frames=5, stride=5)
    assert [(w.start, w.stop) for w in windows] == [(0, 5), (5, 10), (20, 25)]
    assert len(plan_windows([(0, 12)], n_frames=5, stride=2)) == 4


# --- tracking a real clip ---------------------------------------------------------------------


def test_track_real_clip(clip):
    track = track_face(clip, max_frames=60)
    assert track.n_frames == 60 and track.fps == 25.0 and (track.width, track.height) == (224, 224)
    assert track.upsample == 0
    assert sum(f is not None for f in track.faces) >= 57
    assert track.segments[0][1] - track.segments[0][0] >= 50
    crops = [c for c in track.crops if c is not None]
    arr = np.array([[c.cx, c.cy, c.side] for c in crops])
    side = arr[:, 2].mean()
    jumps = np.abs(np.diff(arr, axis=0)).max(axis=0)
    assert (jumps < 0.03 * side).all(), jumps  # smooth: < 3% of the crop per frame
    frames = list(iter_frames(clip, max_frames=60))
    for i in (0, 30, 59):
        crop = track.crops[i]
        assert crop is not None
        view = render_crop(frames[i], crop, 250)
        found = detect_faces(view, min_score=DEFAULT_MIN_SCORE)
        assert len(found) == 1, i
        # LFW-like framing: the face near the centre, about 105 px of 250
        assert abs(found[0].cx - 124.5) < 30 and abs(found[0].cy - 124.5) < 35
        assert 70 < found[0].size < 150


def test_render_crop_black_or_mirrored_outside_the_frame():
    frame = np.full((50, 50, 3), 200, np.uint8)
    black = render_crop(frame, Crop(24.5, 24.5, 100.0), 40)
    mirror = render_crop(frame, Crop(24.5, 24.5, 100.0), 40, border="mirror")
    assert black[0, 0].max() == 0 and black[20, 20].min() == 200
    assert mirror.min() == 200
    with pytest.raises(MfsrError, match="border"):
        render_crop(frame, Crop(24.5, 24.5, 10.0), 8, border="wrap")


# --- building samples -------------------------------------------------------------------------


def test_eval_mode_writes_degraded_windows_and_meta(clip, tmp_path):
    calls: list[tuple[int, int]] = []
    report = build_from_video(
        clip,
        tmp_path,
        n_frames=5,
        scale=4,
        hr_size=64,
        max_frames=20,
        seed=3,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert report.written == {"test": 4} and not report.skipped
    assert calls and calls[-1][0] == calls[-1][1]
    stem = Path(CLIP_NAME).stem
    ids = sorted(p.name for p in (tmp_path / "test").iterdir())
    assert ids == [f"{stem}_f{i:06d}" for i in (0, 5, 10, 15)]
    sample = tmp_path / "test" / f"{stem}_f000005"
    assert sorted(p.name for p in sample.iterdir()) == [
        "hr.png",
        *(f"lr_{i:02d}.png" for i in range(5)),
        "meta.json",
    ]
    assert read_rgb(sample / "hr.png").shape == (64, 64, 3)
    assert {read_rgb(sample / f"lr_{i:02d}.png").shape for i in range(5)} == {(16, 16, 3)}
    meta = json.loads((sample / "meta.json").read_text())
    assert meta["mode"] == "eval" and meta["split"] == "test" and meta["scale"] == 4
    assert meta["identity"] == stem and meta["reference_index"] == 2
    assert meta["seed"]["base"] == 3
    source = meta["source"]
    assert source["kind"] == "video" and source["path"] == str(clip)
    assert source["frame_indices"] == [5, 6, 7, 8, 9] and source["fps"] == 25.0
    assert len(source["boxes"]) == 5 and all(len(b) == 3 for b in source["boxes"])
    degradation = meta["degradation"]
    assert degradation["preset"] == "default"
    assert degradation["config"] == json.loads(json.dumps(_default_config()))
    drawn = degradation["drawn"]
    assert len(drawn["frames"]) == 5
    assert all(f["shift"] == [0.0, 0.0] and f["rotation"] == 0.0 for f in drawn["frames"])
    # the folder is a dataset root for mfsr evaluate (it was "no usable samples" before)
    assert resolve_test_set(tmp_path) == tmp_path / "test"
    with pytest.raises(MfsrError, match=r"has no 'val' split \(it has: test\)"):
        resolve_test_set(tmp_path, "val")


def _default_config() -> dict:
    from mfsr.config import to_dict

    return to_dict(load_degradation("default"))


def test_same_seed_gives_byte_identical_folders(clip, tmp_path):
    kwargs = {"max_frames": 14, "identity": "speaker-1", "split": "val"}  # 7 frames, x8, 256 px
    build_from_video(clip, tmp_path / "a", seed=5, **kwargs)
    build_from_video(clip, tmp_path / "b", seed=5, **kwargs)
    build_from_video(clip, tmp_path / "c", seed=6, **kwargs)
    a, b, c = (folder_bytes(tmp_path / x) for x in "abc")
    assert len(a) == 2 * 9 + 1 and a == b  # 2 sequences of 9 files, and from-video.json
    assert a.keys() == c.keys() and a != c
    assert json.loads(a["from-video.json"])["seed"] == 5
    meta = json.loads(a[f"val/{Path(CLIP_NAME).stem}_f000007/meta.json"])
    assert meta["identity"] == "speaker-1" and meta["lr_size"] == [32, 32]
    assert meta["hr_size"] == [256, 256] and meta["n_frames"] == 7


def test_lr_only_mode_writes_no_hr(clip, tmp_path):
    report = build_from_video(
        clip, tmp_path, mode="lr-only", n_frames=3, scale=4, hr_size=64, stride=2, max_frames=9
    )
    assert report.written == {"test": 4}  # windows start at 0, 2, 4, 6
    for sample in (tmp_path / "test").iterdir():
        assert not (sample / "hr.png").exists()
        assert read_rgb(sample / "lr_00.png").shape == (16, 16, 3)
        meta = json.loads((sample / "meta.json").read_text())
        assert meta["mode"] == "lr-only" and meta["has_hr"] is False
        assert "degradation" not in meta


def test_resume_keeps_existing_samples(clip, tmp_path):
    kwargs = {"mode": "lr-only", "n_frames": 5, "scale": 4, "hr_size": 64, "max_frames": 10}
    build_from_video(clip, tmp_path, **kwargs)
    report = build_from_video(clip, tmp_path, resume=True, **kwargs)
    assert report.kept == {"test": 2} and not report.written


# --- bad input --------------------------------------------------------------------------------


def skipped_reason(video: Path, out: Path, **kwargs) -> str:
    report = BuildReport()
    build_from_video(video, out, report=report, **kwargs)
    assert not report.written
    assert len(report.skipped) == 1
    where, reason = report.skipped[0]
    assert where == str(video)
    assert not (out / "test").exists() or not any((out / "test").iterdir())
    return reason


def test_zero_byte_file_is_skipped(tmp_path):
    video = tmp_path / "empty.mp4"
    video.write_bytes(b"")
    assert "empty file" in skipped_reason(video, tmp_path / "out")


def test_garbage_file_is_skipped(tmp_path):
    video = tmp_path / "garbage.mp4"
    video.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert "not a readable video" in skipped_reason(video, tmp_path / "out")
    with pytest.raises(UndecodableVideo, match=r"garbage\.mp4: not a readable video"):
        next(iter_frames(video))


def test_truncated_real_mp4_is_skipped(clip, tmp_path):
    video = tmp_path / "truncated.mp4"
    video.write_bytes(clip.read_bytes()[:8000])
    reason = skipped_reason(video, tmp_path / "out")
    assert "not a readable video" in reason or "no frame could be decoded" in reason


def test_video_without_a_face_is_skipped(tmp_path):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(6)]
    frames += [np.full((120, 160, 3), 90, np.uint8)] * 4
    video = write_avi(tmp_path / "noise.avi", frames)
    reason = skipped_reason(video, tmp_path / "out")
    assert reason.startswith("no face found") and "10 frames" in reason


def test_video_with_too_few_face_frames_is_skipped(clip, tmp_path):
    video = write_avi(tmp_path / "short.avi", list(iter_frames(clip, max_frames=3)))
    reason = skipped_reason(video, tmp_path / "out", n_frames=7)
    assert "too few consecutive frames" in reason and "longest run 3, 7 needed" in reason


def test_truncated_video_uses_the_decodable_frames(clip, tmp_path):
    full = write_avi(tmp_path / "full.avi", list(iter_frames(clip, max_frames=20)))
    half = tmp_path / "half.avi"
    half.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    report = build_from_video(half, tmp_path / "out", mode="lr-only", n_frames=3, hr_size=64)
    assert report.written["test"] >= 2
    assert any("half.avi: decoded" in note for note in report.notes)


def test_missing_path_or_folder_raises_naming_it(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(DataError, match=r"nope\.mp4: video file not found"):
        build_from_video(missing, tmp_path / "out")
    with pytest.raises(DataError, match="is a folder"):
        track_face(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hr_size": 250, "scale": 8}, "multiple of `scale`"),
        ({"n_frames": 0}, "n_frames"),
        ({"mode": "train"}, "`mode` must be one of"),
        ({"stride": 0}, "stride"),
        ({"enlarge": 0.0}, "enlarge"),
        ({"split": "a/b"}, "`split` 'a/b' must be a plain folder name"),
        ({"border": "wrap"}, "border"),
    ],
)
def test_bad_arguments_raise(tmp_path, kwargs, match):
    video = tmp_path / "never-read.mp4"
    with pytest.raises(MfsrError, match=match):
        build_from_video(video, tmp_path / "out", **kwargs)


def test_identity_defaults_to_clip_stem_and_ids_are_safe(clip, tmp_path):
    odd = tmp_path / "my clip.v2.mp4"
    shutil.copy(clip, odd)
    build_from_video(odd, tmp_path / "out", mode="lr-only", n_frames=4, hr_size=64, max_frames=8)
    ids = sorted(p.name for p in (tmp_path / "out" / "test").iterdir())
    assert ids == ["my_clip.v2_f000000", "my_clip.v2_f000004"]
    meta = json.loads((tmp_path / "out" / "test" / ids[0] / "meta.json").read_text())
    assert meta["identity"] == "my clip.v2"
