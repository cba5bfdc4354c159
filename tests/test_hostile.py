"""The hostile-input corpus: 138 generated bad or awkward inputs through the real commands.

Every case runs ``mfsr`` in-process (``mfsr.cli.main``, the console entry point) on files that
the test generates (tests/hostile_corpus.py) and checks what the user gets: exit status 2 with
exactly one ``error:`` line naming the file or field and no traceback, or a counted skip in the
command's report, or (for awkward but legitimate input) a normal result. Errors must leave no
output that looks complete. docs/reliability.md lists the cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hostile_corpus as hc
from helpers import LFW, VIDEOS, assert_no_complete_output, assert_one_line_error, require, run
from mfsr.data.images import write_png
from mfsr.study.config import STUDY_PRESETS
from mfsr.train.config import TRAIN_PRESETS

PHOTO = "Aaron_Eckhart/Aaron_Eckhart_0001.jpg"
CLIP = "Audio_Source_00086.mp4"


@pytest.fixture(scope="module")
def photo() -> Path:
    return require(LFW / PHOTO)


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
    clip = require(VIDEOS / CLIP)
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


# -- configs through `mfsr train`, `mfsr study` and `mfsr data build` ----------------------


def _smoke_yaml(change: str) -> str:
    base = (TRAIN_PRESETS / "smoke.yaml").read_text()
    return base + change if change.startswith("\n") else change


CONFIG_CASES = {  # name -> (YAML text or a change appended to smoke.yaml, extra args, fragment)
    "unknown-key": ("\nwarmup_stepz: 3\n", [], "warmup_stepz"),
    "misspelt-key": ("\nepoch: 3\n", [], "did you mean 'epochs'"),
    "wrong-type": ("\nbatch_size: four\n", [], "batch_size"),
    "negative-value": ("\nepochs: -2\n", [], "epochs"),
    "negative-seed": ("\nseed: -1\n", [], "seed must be >= 0"),
    "nan-value": ("\noptim: {lr: .nan}\n", [], "optim.lr"),
    "inf-value": ("\noptim: {lr: .inf}\n", [], "optim.lr"),
    "bad-nested-type": ("\nmodel: 7\n", [], "model"),
    "yaml-syntax": ("name: [unclosed\n", [], "YAML"),
    "top-level-list": ("- a\n- b\n", [], "mapping"),
    "empty-file": ("", [], "empty"),
    "binary-garbage": ("\x00\x01\x02\xff", [], "smoke-bad.yaml"),
    "set-without-equals": ("\n", ["--set", "epochs"], "epochs"),
    "set-unknown-field": ("\n", ["--set", "model.widht=8"], "did you mean 'width'"),
    "set-wrong-type": ("\n", ["--set", "epochs=many"], "epochs"),
    "unknown-loss": ("\nloss: mse + 0.1 * vibes\n", [], "vibes"),
    "bad-scale": ("\nmodel: {name: unet_geu, n_frames: 3, scale: 3}\n", [], "scale"),
    "extends-unknown": ("extends: nosuch\n", [], "unknown training preset 'nosuch'"),
    "extends-not-a-name": ("extends: {a: 1}\n", [], "extends"),
    "init-from-missing": ("\ninit_from: /nonexistent-run\n", [], "/nonexistent-run"),
    "synthesis-unknown": ("\n", ["--set", "data.synthesis=gpu"], "one of 'cpu', 'device'"),
    "synthesis-device-frozen": (
        "\n",
        ["--set", "data.synthesis=device", "--set", "data.train=frozen"],
        "device needs data.train: synthetic",
    ),
    "compile-mode-unknown": ("\ncompile: true\n", ["--set", "compile_mode=turbo"], "compile_mode"),
    "compile-mode-without-compile": (
        "\n",
        ["--set", "compile_mode=reduce-overhead"],
        "compile_mode 'reduce-overhead' needs compile: true",
    ),
    "workers-negative": ("\n", ["--set", "data.workers=-1"], "data: workers must be >= 0"),
    "loader-timeout-negative": (
        "\n",
        ["--set", "data.loader_timeout_s=-1"],
        "data: loader_timeout_s must be >= 0",
    ),
    "val-batch-zero": ("\n", ["--set", "data.val_batch_size=0"], "val_batch_size must be >= 1"),
    "fusion-unknown": (
        "\n",
        ["--set", "model.fusion=late"],
        "model.fusion: expected one of 'early', 'shared', 'registered', got 'late'",
    ),
    "back-projection-negative": ("\n", ["--set", "model.back_projection=-1"], "back_projection"),
    "back-projection-too-many": ("\n", ["--set", "model.back_projection=99"], "back_projection"),
    "back-projection-float": ("\n", ["--set", "model.back_projection=1.5"], "back_projection"),
    "identity-bad-chip": (
        "\nloss: identity\nloss_options: {identity: {chip: [0.5, 0.5]}}\n",
        [],
        "chip",
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_train_config(name, tmp_path, capsys):
    text, extra, fragment = CONFIG_CASES[name]
    path = tmp_path / "smoke-bad.yaml"
    path.write_bytes(_smoke_yaml(text).encode("latin-1"))
    out = tmp_path / "runs"
    args = ["train", "--config", path, "--set", f"out_dir={out}", *extra]
    code, output = run(capsys, *args)
    assert_one_line_error(code, output, fragment)
    assert_no_complete_output(out)


STUDY_CASES = {
    "unknown-study-key": ("seedz: [0]\n", "seedz"),
    "unknown-study-loss": ("losses: [mse, vibes]\n", "vibes"),
    "study-wrong-type": ("seeds: zero\n", "seeds"),
    "runs-per-device-without-devices": (
        "parallel: {devices: [], gpus_per_run: 1, runs_per_device: 2}\n",
        "runs_per_device=2 needs parallel.devices",
    ),
    "variants-not-a-mapping": ("variants: [early, registered]\n", "variants"),
    "variant-bad-name": ("variants: {'a/b': [model.fusion=early]}\n", "plain name"),
    "variant-bad-override": (
        "variants: {late: [model.fusion=late]}\n",
        "run mse-late-s0: model.fusion",
    ),
    "variant-unknown-field": ("variants: {x: [model.fusoin=early]}\n", "did you mean 'fusion'"),
    "frames-duplicate": ("frames: [1, 3, 1]\n", "frames has duplicates"),
    "frames-zero": ("frames: [0, 3]\n", "frame count >= 1"),
    "seeds-negative": ("seeds: [-1, 0]\n", "seeds must be >= 0"),
    "frames-not-a-list": ("frames: many\n", "frames"),
    "runs-per-device-zero": (
        "parallel: {devices: [0], gpus_per_run: 1, runs_per_device: 0}\n",
        "parallel.runs_per_device must be an integer >= 1",
    ),
}


@pytest.mark.parametrize("name", sorted(STUDY_CASES))
def test_study_config(name, tmp_path, capsys):
    text, fragment = STUDY_CASES[name]
    path = tmp_path / "study-bad.yaml"
    path.write_text((STUDY_PRESETS / "smoke.yaml").read_text() + text)
    out = tmp_path / "studies"
    code, output = run(capsys, "study", "--config", path, "--out-dir", out)
    assert_one_line_error(code, output, fragment)
    assert_no_complete_output(out)


DEGRADATION_CASES = {
    "low-above-high": ("blur:\n  sigma: [2.0, 1.0]\n", "sigma"),
    "unknown-degradation-key": ("blurr: {}\n", "blurr"),
    "negative-noise": ("noise:\n  gaussian_std: [-1.0, 2.0]\n", "gaussian_std"),
}


@pytest.mark.parametrize("name", sorted(DEGRADATION_CASES))
def test_degradation_preset(name, tmp_path, capsys, photo):
    text, fragment = DEGRADATION_CASES[name]
    preset = tmp_path / "bad-degradation.yaml"
    preset.write_text(text)
    source = tmp_path / "src" / "Someone"
    source.mkdir(parents=True)
    (source / "a.jpg").write_bytes(photo.read_bytes())
    out = tmp_path / "set"
    code, output = run(capsys, "data", "build", "--source", source.parent, "--out", out,
                       "--degradation", preset)  # fmt: skip
    assert_one_line_error(code, output, fragment)
    assert_no_complete_output(out)


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


# -- numeric options that are NaN, infinite or out of range: one line at the boundary ----------

OPTION_CASES = {
    "enhance --at nan": (["enhance", "--baseline", "classical", "--at", "nan"], "--at"),
    "data build --max-upscale inf": (["data", "build", "--max-upscale", "inf"], "--max-upscale"),
    "data build --max-upscale nan": (["data", "build", "--max-upscale", "nan"], "--max-upscale"),
    "evaluate --min-score nan": (["evaluate", "--min-score", "nan"], "--min-score"),
    "evaluate --threshold inf": (["evaluate", "--threshold", "inf"], "--threshold"),
    "evaluate --threshold -1": (["evaluate", "--threshold", "-1"], "--threshold"),
    "data build --seed -1": (["data", "build", "--seed", "-1"], "--seed"),
    "data build --workers 0": (["data", "build", "--workers", "0"], "--workers must be >= 1"),
    "data build --face-size 1": (["data", "build", "--face-size", "1"], "--face-size"),
    "data from-video --seed -1": (["data", "from-video", "--seed", "-1"], "--seed must be >= 0"),
    # the library names its arguments; the CLI shows the flag, also where the two differ
    "data build --frames 0": (["data", "build", "--frames", "0"], "--frames must be in 1..64"),
    "data from-video --frames 0": (["data", "from-video", "--frames", "0"], "--frames must be >="),
    "bench --compile-mode turbo": (["bench", "--compile-mode", "turbo"], "--compile-mode must be"),
    "bench --eval-images 0": (["bench", "--eval-images", "0"], "--eval-images must be >= 1"),
    "bench --eval-images -3": (["bench", "--eval-images", "-3"], "--eval-images must be >= 1"),
}


@pytest.mark.parametrize("case", OPTION_CASES)
def test_non_finite_numeric_options(case, capsys, tmp_path):
    args, option = OPTION_CASES[case]
    where = {
        "enhance": ["--video", require(VIDEOS / CLIP)],
        "build": ["--source", require(LFW)],
        "from-video": ["--video", require(VIDEOS / CLIP)],
        "evaluate": ["--data", tmp_path, "--baseline", "bicubic", "--no-lpips"],
        "bench": ["--config", "smoke", "--quick"],
    }[args[1] if args[0] == "data" else args[0]]
    code, output = run(capsys, *args, *where, "--out", tmp_path / "out")
    assert_one_line_error(code, output, option)
    assert not (tmp_path / "out").exists()


def test_a_missing_split_is_named(resume_data, capsys, tmp_path):
    """A dataset root without the asked split (it was "no usable samples" before)."""
    args = ["evaluate", "--data", resume_data, "--split", "train", "--baseline", "bicubic"]
    code, output = run(capsys, *args, "--no-lpips", "--no-ffr", "--out", tmp_path / "out")
    assert_one_line_error(code, output, "has no 'train' split (it has: test, val)", "--split")
    assert not (tmp_path / "out").exists()


def test_the_corpus_has_at_least_50_cases():
    n = (
        len(hc.PHOTO_NAMES) + 2 * len(hc.VIDEO_NAMES) + len(FRAME_CASES) + len(hc.CHECKPOINT_NAMES)
        + len(CONFIG_CASES) + len(STUDY_CASES) + len(DEGRADATION_CASES) + len(SEQUENCE_CASES)
        + len(OPTION_CASES) + len(RESUME_CASES) + 1
    )  # fmt: skip
    assert n >= 50, n


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


# -- a run folder damaged before `mfsr train --resume` ----------------------------------------

RESUME_CASES = {
    "config-deleted": (lambda p: p.unlink(), "config file not found"),
    "config-broken-yaml": (lambda p: p.write_text(p.read_text() + "a: [\n"), "invalid YAML"),
    "config-a-list": (lambda p: p.write_text("- 1\n"), "expected a mapping"),
    "config-not-utf8": (lambda p: p.write_bytes(b"name: \xff\xfe\n"), "cannot be read"),
    "config-edited": (
        lambda p: p.write_text(p.read_text().replace("epochs: 2", "epochs: 3")),
        "config differs from the run's (epochs)",
    ),
}


@pytest.fixture(scope="module")
def resume_data(tiny_dataset):
    return tiny_dataset(32, (12, 4, 4), ("val", "test"))


@pytest.mark.parametrize("name", sorted(RESUME_CASES))
def test_resume_a_damaged_run(name, resume_data, tmp_path, capsys):
    from helpers import overrides

    damage, fragment = RESUME_CASES[name]
    args = ["train", "--config", "smoke"]
    for item in overrides(resume_data, tmp_path, "epochs=2"):
        args += ["--set", item]
    assert run(capsys, *args)[0] == 0
    damage(tmp_path / "smoke" / "config.yaml")
    assert_one_line_error(*run(capsys, *args, "--resume"), fragment)
