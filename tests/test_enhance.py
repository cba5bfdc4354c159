"""mfsr enhance: real clip -> enhanced faces (baseline and a tiny checkpoint), frames, errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from helpers import CLIP, tiny_checkpoint
from mfsr.cli.enhance import enhance
from mfsr.data.images import read_rgb, write_png
from mfsr.enhance import enhance_frames, enhance_video, load_enhancer
from mfsr.enhance.geometry import check_face_size, frame_plan, select_windows
from mfsr.errors import MfsrError

SMALL = 0.213  # --downscale: face box ~32 px, like low-definition footage
FAST = ["--threads", "1", "--max-frames", "24"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small tensors: one torch thread is much faster on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def clip() -> Path:
    if not CLIP.exists():
        pytest.skip(f"shared data not found at {CLIP} (CI always has ../shared/data)")
    return CLIP


@pytest.fixture(scope="module")
def ckpt3(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny3.safetensors", 3)


def run_cli(*args: str):
    app = typer.Typer()
    app.command("enhance")(enhance)

    @app.callback()
    def _root() -> None:
        """test app"""

    return CliRunner().invoke(app, ["enhance", *args])


def test_video_with_classical_baseline_end_to_end(clip, tmp_path):
    out = tmp_path / "out"
    args = ["--video", str(clip), "--baseline", "classical", "--out", str(out)]
    result = run_cli(*args, "--downscale", str(SMALL), *FAST)
    assert result.exit_code == 0, result.output + repr(result.exception)
    doc = json.loads((out / "enhance.json").read_text())
    assert doc["model"] == {**doc["model"], "kind": "baseline", "baseline": "classical"}
    assert (doc["n_frames"], doc["scale"], doc["lr_size"], doc["hr_size"]) == (7, 4, 32, 128)
    assert doc["input"]["downscale"] == SMALL and doc["input"]["frames_decoded"] == 24
    assert doc["face_size"]["verdict"] == "shrunk"  # 32 px face, 13 px in the LR crop
    assert any("shrunk" in w for w in doc["warnings"])
    windows = doc["windows"]
    assert [w["frames"][0] for w in windows] == [0, 7, 14]  # default: non-overlapping
    for w in windows:
        assert w["reference_frame"] == w["frames"][3] and len(w["crops"]) == 7
        assert read_rgb(out / w["face"]).shape == (128, 128, 3)
        assert read_rgb(out / w["side_by_side"]).shape[1] == 2 * 128 + 2
        before, after = np.abs(w["shifts_lr_px"]).max(), np.abs(w["residual_lr_px"]).max()
        assert after <= max(before, 0.01)  # registration never makes alignment worse
    assert doc["timings_s"]["total"] > 0 and doc["faces_per_s"]["model"] > 0
    # A second run into the same folder is refused without --overwrite (the library names its
    # argument; mfsr.cli.main shows the flag: tests/test_storage_faults.py).
    again = run_cli(*args, "--downscale", str(SMALL), *FAST)
    assert isinstance(again.exception, MfsrError) and "`overwrite`" in str(again.exception)


def test_tiny_checkpoint_batched_equals_one_at_a_time(clip, ckpt3, tmp_path):
    enhancer = load_enhancer(ckpt3)
    assert (enhancer.n_frames, enhancer.scale, enhancer.lr_size) == (3, 4, 32)
    kw = {"downscale": SMALL, "max_frames": 24, "every": 4}
    batched = enhance_video(clip, enhancer, tmp_path / "b", batch_size=3, **kw)
    single = enhance_video(clip, enhancer, tmp_path / "s", batch_size=1, **kw)
    assert len(batched["windows"]) == len(single["windows"]) == 6  # frames 0..23, stride 4
    assert batched["model"]["tensors_sha256"] and batched["model"]["file"] == str(ckpt3)
    for a, b in zip(batched["windows"], single["windows"]):
        fa, fb = read_rgb(tmp_path / "b" / a["face"]), read_rgb(tmp_path / "s" / b["face"])
        assert np.abs(fa.astype(int) - fb).max() <= 1
    at = enhance_video(clip, enhancer, tmp_path / "at", at=[0.5], **{**kw, "every": None})
    assert [w["reference_frame"] for w in at["windows"]] == [12]  # 0.5 s at 25 fps
    kw = {"downscale": SMALL, "max_frames": 10, "every_frame": True}
    every = enhance_video(clip, enhancer, tmp_path / "all", **kw)
    assert [w["frames"][0] for w in every["windows"]] == list(range(8))


def test_frames_fewer_than_n_and_larger_than_lr(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    paths = []
    for k in range(3):
        path = tmp_path / f"f{k}.png"
        write_png(path, np.roll(base, k, axis=1))
        paths.append(str(path))
    out = tmp_path / "out"
    result = run_cli("--frames", *paths, "--baseline", "classical", "--out", str(out))
    assert result.exit_code == 0, result.output + repr(result.exception)
    doc = json.loads((out / "enhance.json").read_text())
    assert doc["windows"][0]["frames"] == [0, 0, 0, 1, 2, 2, 2]
    assert doc["windows"][0]["reference_path"] == paths[1]
    warnings = doc["warnings"]
    assert any("padded by repeating" in w and "1 1 1 2 3 3 3" in w for w in warnings)
    assert any("area averaging" in w for w in warnings)  # 64 px frames shrunk to 32
    assert read_rgb(out / "face_000001.png").shape == (128, 128, 3)
    assert read_rgb(out / "lr_000001.png").shape == (32, 32, 3)
    # More frames than N: the N centred on the middle one.
    many = enhance_frames(paths * 3, load_enhancer(baseline="bicubic", n_frames=5), tmp_path / "m")
    assert many["windows"][0]["frames"] == [2, 3, 4, 5, 6]
    assert any("centred" in w for w in many["warnings"])


def test_registration_modes(clip, tmp_path):
    enhancer = load_enhancer(baseline="bicubic", n_frames=5)
    kw = {"downscale": SMALL, "max_frames": 15, "every": 5}
    docs = {
        m: enhance_video(clip, enhancer, tmp_path / m, register=m, **kw) for m in ("none", "full")
    }
    assert all(w["residual_lr_px"] is None for w in docs["none"]["windows"])
    full = docs["full"]["registration"]
    assert full["max_abs_residual_lr_px"] < 0.1 <= full["max_abs_shift_lr_px"]
    with pytest.raises(MfsrError, match="`register` must be one of"):
        enhance_video(clip, enhancer, tmp_path / "bad", register="sideways", **kw)
    # option conflicts are refused before the slow tracking: a missing clip is not even opened
    with pytest.raises(MfsrError, match="at most one of `every`, `at` and `every_frame`"):
        enhance_video(tmp_path / "none.mp4", enhancer, tmp_path / "bad", every=3, every_frame=True)


def test_single_image_with_one_frame_model(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "n1.safetensors", n_frames=1)
    image = tmp_path / "face.png"
    write_png(image, np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    result = run_cli("--frames", str(image), "--model", str(ckpt), "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output + repr(result.exception)
    doc = json.loads((tmp_path / "o" / "enhance.json").read_text())
    assert doc["warnings"] == [] and doc["windows"][0]["frames"] == [0]
    assert read_rgb(tmp_path / "o" / "face_000000.png").shape == (128, 128, 3)


def test_unreadable_and_faceless_videos(tmp_path):
    enhancer = load_enhancer(baseline="bicubic")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    with pytest.raises(MfsrError, match=r"garbage\.mp4"):
        enhance_video(garbage, enhancer, tmp_path / "o1")
    with pytest.raises(MfsrError, match="not found"):
        enhance_video(tmp_path / "missing.mp4", enhancer, tmp_path / "o2")
    blank = tmp_path / "blank.avi"
    writer = cv2.VideoWriter(str(blank), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 64))
    for k in range(10):
        writer.write(np.full((64, 64, 3), 20 * k, np.uint8))
    writer.release()
    with pytest.raises(MfsrError, match="no face found in 10 frames"):
        enhance_video(blank, enhancer, tmp_path / "o3")


def test_checkpoint_mismatch_and_bad_lr_size(ckpt3):
    with pytest.raises(MfsrError, match=r"trained at x4, not --scale 2"):
        load_enhancer(ckpt3, scale=2)
    with pytest.raises(MfsrError, match=r"takes 3 frames per window, not --n-frames 7"):
        load_enhancer(ckpt3, n_frames=7)
    with pytest.raises(MfsrError, match=r"not a multiple of 2.*use 32 or 34"):
        load_enhancer(ckpt3, lr_size=33)
    with pytest.raises(MfsrError, match="exactly one of"):
        load_enhancer()


def test_face_too_large_and_too_small(clip, tmp_path):
    enhancer = load_enhancer(baseline="bicubic")
    with pytest.raises(MfsrError, match=r"face too large.*--lr-size \d+.*--downscale 0\.2"):
        enhance_video(clip, enhancer, tmp_path / "o1", max_frames=8)  # 150 px face at x4
    big = load_enhancer(baseline="bicubic", lr_size=160)
    with pytest.raises(MfsrError, match=r"face too small.*Use --lr-size \d+"):
        enhance_video(clip, big, tmp_path / "o2", max_frames=8, downscale=SMALL)
    tiny = tmp_path / "tiny.png"
    write_png(tiny, np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(MfsrError, match=r"frames too small.*--lr-size 16"):
        enhance_frames([tiny], enhancer, tmp_path / "o3")


def test_geometry_rules():
    assert frame_plan(7, 7)[0] == list(range(7))
    assert frame_plan(1, 7)[0] == [0] * 7
    assert frame_plan(4, 7)[:2] == ([0, 0, 1, 2, 3, 3, 3], 2)
    assert frame_plan(9, 7)[:2] == (list(range(1, 8)), 4)
    segments = [(0, 20), (30, 37)]
    assert [w[0] for w in select_windows(segments, 7, 40, 25.0)[0]] == [0, 7, 30]
    assert len(select_windows(segments, 7, 40, 25.0, every_frame=True)[0]) == 14 + 1
    windows, notes = select_windows(segments, 7, 40, 25.0, at=[0.88])  # frame 22: untracked
    assert [w[3] for w in windows] == [16] and "nearest window" in notes[0]
    with pytest.raises(MfsrError, match="outside the clip"):
        select_windows(segments, 7, 40, 25.0, at=[2.0])
    with pytest.raises(MfsrError, match="at most one"):
        select_windows(segments, 7, 40, 25.0, every=3, every_frame=True)
    verdicts = [check_face_size(f, 2.4, 32, 4, 4).verdict for f in (8, 20, 32, 60)]
    assert verdicts == ["too-small", "ok", "shrunk", "too-large"]
    # the suggested --downscale is of the original frames: 0.5 already applied, face 60 px
    assert "--downscale 0.267 (face about 32 px)" in check_face_size(60, 2.4, 32, 4, 4, 0.5).message
    # a 32 px face is itself too large for a 16 px x4 model, too small for a 128 px one: no
    # --downscale that would go round in a circle
    assert "--downscale" not in check_face_size(60, 2.4, 16, 4, 4).message
    assert "--downscale" not in check_face_size(250, 2.4, 128, 4, 4).message  # nor too small


def test_flip_ensemble_averages_the_mirrored_pass(ckpt3):
    plain = load_enhancer(ckpt3)
    both = load_enhancer(ckpt3, flip_ensemble=True)
    assert both.info["flip_ensemble"] and not plain.info["flip_ensemble"]
    windows = np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32, 3), dtype=np.uint8)
    x = torch.tensor(windows).permute(0, 1, 4, 2, 3).float() / 255
    with torch.inference_mode():
        y = plain.model(x)
        want = (y + plain.model(x.flip(-1)).flip(-1)) / 2
    expected = want.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(both(windows), expected)
    assert not np.array_equal(both(windows), plain(windows))
