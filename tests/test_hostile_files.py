"""The hostile-input corpus, files: generated bad or awkward photos, videos, frames,
checkpoints, sequence folders and tensors through the real commands.

Every case runs ``mfsr`` in-process (``mfsr.cli.main``, the console entry point) on files that
the test generates (tests/hostile_corpus.py) and checks what the user gets: exit status 2 with
exactly one ``error:`` line naming the file or field and no traceback, or a counted skip in the
command's report, or (for awkward but legitimate input) a normal result. Errors must leave no
output that looks complete. docs/reliability.md lists the cases; the settings half (configs,
presets, options, damaged runs) is tests/test_hostile_settings.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hostile_corpus as hc
from helpers import CLIP, LFW_PHOTO, assert_no_complete_output, assert_one_line_error, require, run
from mfsr.data.images import write_png


@pytest.fixture(scope="module")
def photo() -> Path:
    return require(LFW_PHOTO)


# -- photos through `mfsr data build`: counted skips or conversions --------------------------


@pytest.fixture(scope="module")
def photo_build(tmp_path_factory, photo):
    root = tmp_path_factory.mktemp("hostile photos")
    source = root / "source folder ünï"
    fates = hc.write_photo_folder(source, photo, outside=root / "outside.jpg")
    out = root / "dataset"
    from mfsr.cli import main

    with pytest.raises(SystemExit) as info:
        main(["data", "build", "--source", str(source), "--out", str(out), "--scale", "4",
              "--frames", "3", "--hr-size", "32", "--counts", f"{len(fates) - 1},0,0"])  # fmt: skip
    assert info.value.code == 0
    report = json.loads((out / "build-report.json").read_text())
    skipped = {str(Path(s["where"]).relative_to(source)): s["reason"] for s in report["skipped"]}
    written = {json.loads(m.read_text())["source"]["path"] for m in out.glob("train/*/meta.json")}
    return fates, skipped, written, report


@pytest.mark.parametrize("name", hc.PHOTO_NAMES)
def test_photo(photo_build, name):
    fates, skipped, written, _ = photo_build
    key = next(k for k in fates if k.endswith("/" + name))
    fate = fates[key]
    if fate == "used":
        assert key not in skipped, skipped.get(key)
        assert any(w.endswith(name) for w in written), f"{key} was not turned into a sample"
    else:
        assert key in skipped, f"{key} was neither used nor reported as skipped"
        assert fate in skipped[key] and "\n" not in skipped[key], skipped[key]


def test_photo_build_counts_every_skip(photo_build):
    fates, skipped, _, report = photo_build
    assert len(skipped) == sum(f != "used" for f in fates.values())
    assert sum(report["skip_reasons"].values()) == len(skipped)


# -- videos through `mfsr enhance --video` and `mfsr data from-video` ----------------------


@pytest.fixture(scope="module")
def videos(tmp_path_factory, photo):
    clip = require(CLIP)
    return hc.video_corpus(tmp_path_factory.mktemp("hostile videos"), clip, photo)


@pytest.mark.parametrize("name", hc.VIDEO_NAMES)
def test_video_enhance(videos, name, tmp_path, capsys):
    path, fate = videos[name]
    out = tmp_path / "out"
    code, output = run(capsys, "enhance", "--video", path, "--baseline", "bicubic",
                       "--out", out, "--threads", "1")  # fmt: skip
    assert_one_line_error(code, output, str(path), fate)
    assert_no_complete_output(out)


@pytest.mark.parametrize("name", hc.VIDEO_NAMES)
def test_video_dataset(videos, name, tmp_path, capsys):
    path, fate = videos[name]
    out = tmp_path / "set"
    code, output = run(capsys, "data", "from-video", "--video", path, "--out", out)
    assert_one_line_error(code, output)
    assert path.name in output and fate in output  # named with its reason (skip line or error)
    assert_no_complete_output(out)


# -- frames through `mfsr enhance --frames` ------------------------------------------------


def _frames(folder: Path, case: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for k in range(7):
        size = 33 if (case == "different-sizes" and k == 3) else 32
        path = folder / f"frame {k} é.png"
        write_png(path, rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        paths.append(path)
    bad = paths[3]
    if case == "garbage-frame":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 100)
    elif case == "zero-byte-frame":
        bad.write_bytes(b"")
    elif case == "bomb-frame":
        bad.write_bytes(hc.huge_png(100_000, 100_000))
    elif case == "missing-frame":
        bad.unlink()
    elif case == "one-pixel-frame":
        write_png(bad, np.zeros((1, 1, 3), np.uint8))
    elif case == "folder-as-frame":
        bad.unlink()
        bad.mkdir()
    return paths


FRAME_CASES = {
    "different-sizes": "warning: frames are 32-33 px",  # documented: shrunk to the LR size
    "garbage-frame": "corrupt or truncated image",
    "zero-byte-frame": "empty file",
    "bomb-frame": "decompression bomb",
    "missing-frame": "not found",
    "one-pixel-frame": "1x1",
    "folder-as-frame": "is a folder",
}


@pytest.mark.parametrize("case", sorted(FRAME_CASES))
def test_frames(case, tmp_path, capsys):
    paths = _frames(tmp_path / "in", case)
    out = tmp_path / "out"
    code, output = run(capsys, "enhance", "--frames", *paths, "--baseline", "bicubic",
                       "--out", out, "--threads", "1")  # fmt: skip
    if FRAME_CASES[case].startswith("warning:"):
        assert code == 0 and FRAME_CASES[case] in output and "Traceback" not in output, output
        assert (out / "enhance.json").is_file()
        return
    assert_one_line_error(code, output, FRAME_CASES[case], "frame 3")
    assert_no_complete_output(out)


# -- checkpoints through `mfsr enhance --model` --------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from helpers import tiny_checkpoint

    root = tmp_path_factory.mktemp("hostile checkpoints")
    good = tiny_checkpoint(root / "good.safetensors", 7)
    marker = root / "CODE-RAN"
    return hc.checkpoint_corpus(root / "files", good, marker), marker


@pytest.mark.parametrize("name", hc.CHECKPOINT_NAMES)
def test_checkpoint(checkpoints, name, tmp_path, capsys):
    corpus, marker = checkpoints
    path, fate = corpus[name]
    frames = _frames(tmp_path / "in", "fine")
    out = tmp_path / "out"
    code, output = run(capsys, "enhance", "--frames", *frames, "--model", path,
                       "--out", out, "--threads", "1")  # fmt: skip
    assert_one_line_error(code, output, str(path), fate)
    assert_no_complete_output(out)
    assert not marker.exists(), "loading a checkpoint executed code from it"


# -- sequence folders through `mfsr evaluate` ----------------------------------------------


def _sample(root: Path, name: str, lr: int = 16, hr: int = 64) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(name))
    for k in range(3):
        write_png(folder / f"lr_{k:02d}.png", rng.integers(0, 256, (lr, lr, 3), dtype=np.uint8))
    write_png(folder / "hr.png", rng.integers(0, 256, (hr, hr, 3), dtype=np.uint8))
    return folder


def _break(sample: Path, case: str, outside: Path) -> None:
    if case == "seq-frame-sizes-differ":
        write_png(sample / "lr_01.png", np.zeros((17, 17, 3), np.uint8))
    elif case == "seq-hr-not-a-multiple":
        write_png(sample / "hr.png", np.zeros((63, 63, 3), np.uint8))
    elif case == "seq-garbage-frame":
        (sample / "lr_01.png").write_bytes(b"garbage" * 50)
    elif case == "seq-zero-byte-hr":
        (sample / "hr.png").write_bytes(b"")
    elif case == "seq-bomb-frame":
        (sample / "lr_01.png").write_bytes(hc.huge_png(100_000, 100_000))
    elif case == "seq-missing-frame":
        (sample / "lr_01.png").unlink()
    elif case == "seq-extra-frame":
        write_png(sample / "lr_03.png", np.zeros((16, 16, 3), np.uint8))
    elif case == "seq-missing-hr":
        (sample / "hr.png").unlink()
    elif case == "seq-link-outside":
        write_png(outside, np.zeros((16, 16, 3), np.uint8))
        (sample / "lr_01.png").unlink()
        (sample / "lr_01.png").symlink_to(outside)
    elif case == "seq-meta-garbage":
        (sample / "meta.json").write_text("{not json")


SEQUENCE_CASES = {  # case -> what the exclusion reason says
    "seq-frame-sizes-differ": "differ",
    "seq-hr-not-a-multiple": "multiple",
    "seq-garbage-frame": "not a readable image",
    "seq-zero-byte-hr": "empty file",
    "seq-bomb-frame": "decompression bomb",
    "seq-meta-garbage": "meta.json",
    "seq-missing-frame": "has 2 LR frames",
    "seq-extra-frame": "has 4 LR frames",
    "seq-missing-hr": "no HR target",
    "seq-link-outside": "outside the dataset folder",
}


@pytest.mark.parametrize("case", sorted(SEQUENCE_CASES))
def test_sequence_folder(case, tmp_path, capsys):
    """A bad sample is excluded and counted (claimed = evaluated + excluded), the rest scored."""
    data = tmp_path / "set with spaces"
    _sample(data, "good one")
    _sample(data, "good two")
    _break(_sample(data, "bad-é"), case, tmp_path / "outside.png")
    out = tmp_path / "eval"
    code, output = run(capsys, "evaluate", "--data", data, "--baseline", "bicubic", "--out", out,
                       "--no-ffr", "--no-lpips", "--torch-threads", "1")  # fmt: skip
    assert code == 0 and "Traceback" not in output, output
    counts = json.loads((out / "summary.json").read_text())["counts"]
    assert (counts["claimed"], counts["evaluated"], counts["excluded"]) == (3, 2, 1), counts
    text = " ".join(output.split())
    assert "bad-é" in text and SEQUENCE_CASES[case] in text, output


# -- NaN / inf tensors: never a silently wrong image or metric -----------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_tensors(bad):
    import torch

    from mfsr.enhance.model import Enhancer
    from mfsr.errors import MfsrError
    from mfsr.metrics import psnr, ssim

    images = torch.rand(2, 3, 16, 16)
    broken = images.clone()
    broken[1, 0, 3, 3] = bad
    for metric in (psnr, ssim):
        with pytest.raises(ValueError, match="NaN/inf"):
            metric(broken, images)

    class Diverged(torch.nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 3, 64, 64), bad)

    enhancer = Enhancer(Diverged(), "diverged", 3, 4, 16, 1, torch.device("cpu"))
    with pytest.raises(MfsrError, match="NaN or infinite"):
        enhancer(np.zeros((1, 3, 16, 16, 3), np.uint8))


def test_the_file_corpus_keeps_its_cases():
    n = (
        len(hc.PHOTO_NAMES) + 2 * len(hc.VIDEO_NAMES) + len(FRAME_CASES) + len(hc.CHECKPOINT_NAMES)
        + len(SEQUENCE_CASES) + 3
    )  # fmt: skip
    assert n >= 86, n  # 86 cases on 2026-11-29 (3: the non-finite tensors)


def test_a_bad_single_frame_is_reported_before_any_padding(tmp_path, capsys):
    """One frame for a 7-frame model is padded, with a warning; a frame that cannot be read
    is reported alone (the padding warning once came first)."""
    code, output = run(capsys, "enhance", "--frames", tmp_path, "--baseline", "bicubic",
                       "--out", tmp_path / "out")  # fmt: skip
    assert_one_line_error(code, output, "is a folder, not an image")
    assert "padded" not in output
