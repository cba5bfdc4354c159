"""mfsr train: outputs, DDP equivalence, NaN handling, config errors (kills: test_crash.py; stream,
validation, optimizer: test_train_data.py)."""

from __future__ import annotations

import csv
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import model_tensors, overrides
from mfsr.errors import MfsrError
from mfsr.study.config import STUDY_PRESETS, load_study_config
from mfsr.train.checkpoint import load_model, read_checkpoint
from mfsr.train.config import TRAIN_PRESETS, load_train_config
from mfsr.train.loop import lr_at, train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tiny_dataset) -> Path:
    return tiny_dataset(32, (12, 4, 0), ("val",))


def test_run_folder_and_checkpoints(tiny_data, tmp_path):
    cfg = load_train_config("smoke", overrides(tiny_data, tmp_path))
    summary = train(cfg)
    run = tmp_path / "smoke"
    for name in (
        "config.yaml",
        "env.json",
        "train.csv",
        "val.csv",
        "summary.json",
        "checkpoints/last.safetensors",
        "checkpoints/best.safetensors",
        "samples/epoch_0003.png",
    ):
        assert (run / name).exists(), name
    assert list((run / "tb").iterdir())
    assert summary["steps"] == 12 and summary["best_val_psnr"] > 10
    model, mcfg, meta = load_model(run)
    assert mcfg.n_frames == 3 and not model.training
    assert meta["random_trunk"] is False and meta["counters"]["step"] in (4, 8, 12)
    with open(run / "val.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [4, 8, 12]
    # Same seed, same CPU: identical weights.
    again = tmp_path / "again"
    train(load_train_config("smoke", overrides(tiny_data, again)))
    first, second = model_tensors(run), model_tensors(again / "smoke")
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_compiled_training_keeps_bare_checkpoints(tiny_data, tmp_path):
    """compile: true with the CUDA-graph mode (on the CPU torch.compile runs without graphs):
    the run trains, its checkpoints hold the bare model's keys (no ``_orig_mod.``), load
    eagerly, and its weights stay within float rounding of the eager run's."""
    sets = ("epochs=1", "compile=true", "compile_mode=reduce-overhead")
    summary = train(load_train_config("smoke", overrides(tiny_data, tmp_path / "c", *sets)))
    assert summary["steps"] == 4
    compiled = model_tensors(tmp_path / "c" / "smoke")
    eager = tmp_path / "e" / "smoke"
    train(load_train_config("smoke", overrides(tiny_data, tmp_path / "e", "epochs=1")))
    reference = model_tensors(eager)
    assert compiled.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(compiled[key], reference[key], rtol=1e-3, atol=1e-4)
    model, _, meta = load_model(tmp_path / "c" / "smoke")
    assert meta["train_config"]["compile_mode"] == "reduce-overhead"
    with torch.no_grad():
        assert model(torch.rand(1, 3, 3, 8, 8)).shape == (1, 3, 32, 32)  # eager, x4


def test_existing_run_and_resume_errors(tiny_data, tmp_path):
    cfg = load_train_config("smoke", overrides(tiny_data, tmp_path, "epochs=1"))
    with pytest.raises(MfsrError, match="nothing to resume"):
        train(cfg, resume=True)
    train(cfg)
    with pytest.raises(MfsrError, match="already exists; add `resume`"):
        train(cfg)
    changed = load_train_config("smoke", overrides(tiny_data, tmp_path, "epochs=1", "optim.lr=0.5"))
    with pytest.raises(MfsrError, match=r"config differs.*optim"):
        train(changed, resume=True)


def test_resume_a_run_from_before_a_config_field_existed(tiny_data, tmp_path):
    """A run whose config.yaml lacks fields added since (as an older mfsr wrote it) ran with
    their defaults: it resumes. A field set to something else is still refused."""
    import yaml

    cfg = load_train_config("smoke", overrides(tiny_data, tmp_path, "epochs=1"))
    train(cfg)
    path = tmp_path / "smoke" / "config.yaml"
    saved = yaml.safe_load(path.read_text())
    del saved["compile_mode"], saved["data"]["synthesis"]
    path.write_text(yaml.safe_dump(saved))
    longer = load_train_config("smoke", overrides(tiny_data, tmp_path, "epochs=2"))
    with pytest.raises(MfsrError, match=r"config differs.*epochs"):
        train(longer, resume=True)
    saved["epochs"] = 2  # as if the older run had been started for 2 epochs
    path.write_text(yaml.safe_dump(saved))
    assert train(longer, resume=True)["steps"] == 8
    path.write_text("- not a config\n")
    with pytest.raises(MfsrError, match="not a training config"):
        train(longer, resume=True)


def test_config_errors(tiny_data, tmp_path):
    with pytest.raises(MfsrError, match=r"optim.lrr: unknown key \(did you mean 'lr'\?\)"):
        load_train_config("smoke", ["optim.lrr=1"])
    with pytest.raises(MfsrError, match=r"epochs: expected an integer"):
        load_train_config("smoke", ["epochs=many"])
    with pytest.raises(MfsrError, match="unknown training preset 'nosuch'"):
        load_train_config("nosuch")
    # a bad --set is blamed on the override, not the preset file (it once was); a bad file on
    # the file, unless overridden; a file that only the override makes valid is accepted
    with pytest.raises(MfsrError, match=r"smoke\.yaml, overridden: foo: unknown key"):
        load_train_config("smoke", ["foo=bar"])
    bad = tmp_path / "t.yaml"
    bad.write_text("extends: smoke\nepochs: many\n")
    with pytest.raises(MfsrError, match=r"t\.yaml: epochs: expected an integer"):
        load_train_config(str(bad), ["seed=1"])
    assert load_train_config(str(bad), ["epochs=3"]).epochs == 3
    with pytest.raises(MfsrError, match=r"t\.yaml, overridden: optim\.lr: expected"):
        load_train_config(str(bad), ["epochs=3", "optim.lr=abc"])  # the file's error is fixed
    cfg = load_train_config("smoke", overrides(tiny_data, tmp_path, "model.scale=2"))
    with pytest.raises(MfsrError, match=r"dataset has scale = 4 but model\.scale = 2"):
        train(cfg)


def test_extends_merges_a_base_preset(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("extends: smoke\nname: child\noptim: {lr: 2.0e-4}\nepochs: 1\n")
    base, cfg = load_train_config("smoke"), load_train_config(str(child))
    assert (cfg.name, cfg.epochs, cfg.optim.lr) == ("child", 1, 2.0e-4)
    assert cfg.optim.schedule == base.optim.schedule and cfg.model == base.model
    assert cfg.data == base.data
    # the shipped fine-tuning preset differs from quick only where it says
    tuned = load_train_config("quick-identity")
    assert tuned.model == load_train_config("quick").model and tuned.init_from == "runs/quick"
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"extends: {loop}\n")
    with pytest.raises(MfsrError, match=r"extends: .* leads back"):
        load_train_config(str(loop))
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: [smoke]\n")
    with pytest.raises(MfsrError, match=r"bad\.yaml: extends: expected a preset name"):
        load_train_config(str(bad))
    missing = tmp_path / "missing.yaml"
    missing.write_text("extends: nosuch\n")
    with pytest.raises(MfsrError, match="unknown training preset 'nosuch'"):
        load_train_config(str(missing))


def test_init_from_fine_tunes_with_the_identity_loss(tiny_data, tmp_path):

    base = tmp_path / "base"
    train(load_train_config("smoke", overrides(tiny_data, base, "epochs=1")))
    source, _, meta = load_model(base / "smoke")
    tuned = tmp_path / "tuned"
    spec = "charbonnier + 0.02 * identity"
    extra = ("epochs=1", f"init_from={base / 'smoke'}", f"loss={spec}", "optim.lr=1e-9")
    train(load_train_config("smoke", overrides(tiny_data, tuned, *extra)))
    run = tuned / "smoke"
    record = json.loads((run / "init_from.json").read_text())
    assert record["tensors_sha256"] == meta["tensors_sha256"] and record["step"] == 4
    after = model_tensors(run)
    assert all(torch.allclose(v, after[k], atol=1e-5) for k, v in source.state_dict().items())
    env = json.loads((run / "env.json").read_text())
    assert [t["name"] for t in env["trunks"]] == ["dlib_face_resnet_v1"]
    assert "identity" in (run / "train.csv").read_text()
    # another architecture: one line naming the field, and no run folder
    wider = tmp_path / "wider"
    cfg = load_train_config("smoke", overrides(tiny_data, wider, *extra, "model.width=16"))
    with pytest.raises(MfsrError, match=r"init_from .*model\.width: 8 there, 16 here"):
        train(cfg)
    assert not (wider / "smoke").exists()


def test_lr_schedule():
    cfg = load_train_config(
        "smoke",
        [
            "optim.schedule=cosine",
            "optim.warmup_steps=2",
            "optim.lr=1.0",
            "epochs=1",
            "steps_per_epoch=12",
        ],
    )
    values = [lr_at(cfg, s) for s in range(12)]
    assert values[0] == 0.5 and values[1] == 1.0 and values[2] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(values[2:])) and values[-1] < 0.05


class NaNAt(torch.nn.Module):
    """A loss that returns NaN at one call, else MSE (to test the NaN policy)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.calls, self.last_terms = at, 0, {}

    def forward(self, pred, target):
        self.calls += self.training
        value = torch.mean((pred - target) ** 2)
        if self.training and self.calls == self.at:
            value = value * float("nan")
        self.last_terms = {"mse": value.detach()}
        return value

    def trunk_info(self):
        return []


def test_nan_stops_without_touching_the_checkpoint_or_is_skipped(tiny_data, tmp_path, monkeypatch):
    import mfsr.train.setup

    monkeypatch.setattr(mfsr.train.setup, "build_loss", lambda *a, **k: NaNAt(at=6))
    cfg = load_train_config("smoke", overrides(tiny_data, tmp_path))
    with pytest.raises(MfsrError, match=r"non-finite loss .* at step 5"):
        train(cfg)
    _, meta = read_checkpoint(tmp_path / "smoke" / "checkpoints" / "last.safetensors")
    assert meta["counters"]["step"] == 4  # the epoch-1 checkpoint, never overwritten
    # checked only at sync points (here the end of epoch 2, step 8): same step named, nothing
    # written from the diverged steps 6-8
    late = load_train_config("smoke", overrides(tiny_data, tmp_path / "late", "log_every=100"))
    with pytest.raises(MfsrError, match=r"non-finite loss \(nan\) at step 5 \(epoch 1\)"):
        train(late)
    _, meta = read_checkpoint(tmp_path / "late" / "smoke" / "checkpoints" / "last.safetensors")
    assert meta["counters"]["step"] == 4
    skip = load_train_config("smoke", overrides(tiny_data, tmp_path / "skip", "nan_policy=skip"))
    assert train(skip)["skipped_batches"] == 1


def _cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "mfsr", "train", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


@pytest.mark.slow
def test_two_process_ddp_equals_one_process_with_double_batch(tiny_data, tmp_path):
    common = overrides(tiny_data, tmp_path, "epochs=2", "log_every=1")
    flags = [a for s in common for a in ("--set", s)]
    single = _cli(["--config", "smoke", *flags, "--set", "batch_size=4", "--name", "single"])
    assert single.wait(timeout=300) == 0, single.stderr.read()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "mfsr",
            "train",
            "--config",
            "smoke",
            *flags,
            "--set",
            "batch_size=2",
            "--name",
            "ddp",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a, b = model_tensors(tmp_path / "single"), model_tensors(tmp_path / "ddp")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    assert (tmp_path / "ddp" / "summary.json").exists()


def test_smoke_preset_from_the_command_line(tmp_path, lfw_root):
    """The README's smoke command: builds its tiny LFW set, trains, writes safetensors."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mfsr",
            "train",
            "--config",
            "smoke",
            "--set",
            f"out_dir={tmp_path / 'runs'}",
            "--set",
            f"data.dataset={tmp_path / 'data'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best val PSNR" in result.stderr
    _, cfg, meta = load_model(tmp_path / "runs" / "smoke" / "checkpoints" / "last.safetensors")
    assert cfg.scale == 4 and meta["counters"]["step"] == 10


def test_presets_are_package_data_found_from_any_folder(tmp_path):
    """Training and study presets come with the package, not from the source tree's layout."""
    code = (
        "from mfsr.train.config import load_train_config as t; "
        "from mfsr.study.config import load_study_config as s; "
        "print(t('quick').model.fusion, s('fusion').name, t('quick-identity').init_from)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["registered", "fusion", "runs/quick"]


def test_every_shipped_preset_loads():
    """A preset that does not load would fail only when a user asks for it."""
    for path in sorted(TRAIN_PRESETS.glob("*.yaml")):
        cfg = load_train_config(path.stem)
        assert cfg.model.scale == cfg.data.build.scale, path.name
    for path in sorted(STUDY_PRESETS.glob("*.yaml")):
        study = load_study_config(path.stem)
        load_train_config(study.train.config, list(study.train.overrides))
    x8 = load_train_config("quick-x8")
    assert (x8.model.scale, x8.data.build.hr_size, x8.model.n_frames) == (8, 256, 7)


def test_the_loss_as_a_mapping_of_weights(tmp_path):
    path = tmp_path / "mapped.yaml"
    path.write_text("extends: smoke\nloss: {charbonnier: 1, identity: 0.02}\n")
    assert load_train_config(str(path)).loss == "1.0 * charbonnier + 0.02 * identity"
    for text, message in [
        ("loss: {charbonnier: heavy}\n", r"mapped\.yaml: loss\.charbonnier: .* got 'heavy'"),
        ("loss: {}\n", r"mapped\.yaml: loss: empty mapping"),
        ("loss: {charbonnier: 1, nosuch: 1}\n", r"unknown loss 'nosuch'"),
        ("loss: {charbonnier: -1}\n", r"loss\.charbonnier: the weight must be a positive"),
    ]:
        path.write_text("extends: smoke\n" + text)
        with pytest.raises(MfsrError, match=message):
            load_train_config(str(path))
