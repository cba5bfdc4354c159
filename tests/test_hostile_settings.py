"""The hostile-input corpus, settings: bad configs, study and degradation presets, numeric
options and damaged run folders through the real commands.

As tests/test_hostile_files.py: every case runs ``mfsr`` in-process and checks for exit status
2 with exactly one ``error:`` line naming the file, field or option and no traceback, and no
output that looks complete. docs/reliability.md lists the cases.
"""

from __future__ import annotations

import pytest

from helpers import (
    CLIP,
    LFW,
    LFW_PHOTO,
    assert_no_complete_output,
    assert_one_line_error,
    overrides,
    require,
    run,
)
from mfsr.study.config import STUDY_PRESETS
from mfsr.train.config import TRAIN_PRESETS

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
        "model.fusion: expected one of 'early', 'shared', 'registered', 'flow', got 'late'",
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
def test_degradation_preset(name, tmp_path, capsys):
    photo = require(LFW_PHOTO)
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
        "enhance": ["--video", require(CLIP)],
        "build": ["--source", require(LFW)],
        "from-video": ["--video", require(CLIP)],
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
    damage, fragment = RESUME_CASES[name]
    args = ["train", "--config", "smoke"]
    for item in overrides(resume_data, tmp_path, "epochs=2"):
        args += ["--set", item]
    assert run(capsys, *args)[0] == 0
    damage(tmp_path / "smoke" / "config.yaml")
    assert_one_line_error(*run(capsys, *args, "--resume"), fragment)


def test_the_settings_corpus_keeps_its_cases():
    n = (
        len(CONFIG_CASES) + len(STUDY_CASES) + len(DEGRADATION_CASES) + len(OPTION_CASES)
        + len(RESUME_CASES) + 1
    )  # fmt: skip
    assert n >= 69, n  # 69 cases on 2026-11-29 (1: the missing split)
