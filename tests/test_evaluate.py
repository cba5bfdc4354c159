"""``mfsr evaluate`` end to end on a tiny real test set (6 LFW faces, x4, 32 -> 128 px):
baseline, folder of outputs with bad entries, a checkpoint, the command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from mfsr.config import to_dict
from mfsr.data.images import read_rgb, write_png
from mfsr.errors import MfsrError
from mfsr.evaluate import EvalOptions, evaluate
from mfsr.metrics.table import FaceSettings, read_csv

random_trunk_ok = pytest.mark.filterwarnings("ignore::mfsr.weights.RandomTrunkWarning")
NO_FACES = FaceSettings(enabled=False)


@pytest.fixture(scope="module")
def dataset(tiny_dataset) -> Path:
    """A dataset root whose test split holds 6 real samples (x4, 3 frames, HR 128)."""
    return tiny_dataset(128, (0, 0, 6), ("test",))


@pytest.fixture(autouse=True)
def empty_torch_home(tmp_path, monkeypatch):
    """No ImageNet trunk anywhere (as on this machine): LPIPS needs --random-trunk."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)


def ids(dataset: Path) -> list[str]:
    return sorted(p.name for p in (dataset / "test").iterdir() if p.is_dir())


@random_trunk_ok
def test_baseline_writes_every_result_file_and_reuses_hr_descriptors(dataset, tmp_path):
    opts = EvalOptions(
        data=dataset,  # a dataset root: its test split is used
        out=tmp_path / "run1",
        baseline="bicubic",
        random_trunk=True,
        cache_dir=tmp_path / "cache",
    )
    result = evaluate(opts)
    files = result.files
    assert {p.name for p in (tmp_path / "run1").iterdir()} == {
        "per_image.csv",
        "summary.json",
        "table.md",
        "verification_curve.png",
    }
    summary = json.loads(files["summary"].read_text())
    assert summary["counts"] == {
        "claimed": 6,
        "evaluated": 6,
        "excluded": 0,
        "excluded_by_reason": {},
        "limit": None,
    }
    assert (
        summary["method"]["kind"] == "baseline" and summary["method"]["model_config"]["scale"] == 4
    )
    conv = summary["conventions"]
    assert (
        conv["ssim"]["size"] == 11
        and conv["ssim"]["sigma"] == 1.5
        and "RGB" in conv["ssim"]["colour"]
    )
    assert conv["psnr"]["cap_db"] == 100 and conv["lpips"]["random_trunk"] is True
    assert summary["lpips_trunk"]["random"] is True
    m = summary["metrics"]
    for name in ("ssim", "mse", "psnr", "sharpness_diff", "lpips"):
        assert m[name]["n"] == 6 and m[name]["ci_low"] <= m[name]["mean"] <= m[name]["ci_high"]
    assert m["sharpness_diff"]["mean"] > 0  # bicubic is blurrier than the truth
    assert summary["ffr"]["n"] == 6 and 0 <= summary["ffr"]["no_face"]["count"] <= 6
    curve = summary["verification_curve"]
    assert len(curve["threshold"]) == len(curve["failure_rate"]) == 121
    assert summary["hr_descriptors"] == {
        "cache_dir": str(tmp_path / "cache"),
        "from_cache": 0,
        "computed": 6,
    }
    table = files["table"].read_text()
    assert "Evaluated **6 of 6** samples." in table and "random trunk" in table
    rows = read_csv(files["per_image"])
    assert sorted(r["id"] for r in rows) == ids(dataset)

    again = evaluate(EvalOptions(**{**vars(opts), "out": tmp_path / "run2"}))
    assert again.summary["hr_descriptors"]["from_cache"] == 6
    assert again.summary["hr_descriptors"]["computed"] == 0
    assert (tmp_path / "run2" / "per_image.csv").read_bytes() == files["per_image"].read_bytes()


def test_outputs_folder_with_missing_unreadable_and_wrong_size_outputs(dataset, tmp_path):
    names = ids(dataset)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    for name in names[:3]:  # perfect outputs: the HR images themselves
        shutil.copy(dataset / "test" / name / "hr.png", outputs / f"{name}.png")
    (outputs / f"{names[4]}.png").write_bytes(b"not an image")
    write_png(outputs / f"{names[5]}.png", np.zeros((64, 64, 3), dtype=np.uint8))
    write_png(outputs / "stranger.png", np.zeros((128, 128, 3), dtype=np.uint8))
    opts = EvalOptions(
        data=dataset / "test",
        out=tmp_path / "eval",
        outputs=outputs,
        lpips_net=None,
        faces=NO_FACES,
    )
    result = evaluate(opts)
    counts = result.summary["counts"]
    assert (counts["claimed"], counts["evaluated"], counts["excluded"]) == (6, 3, 3)
    assert counts["excluded_by_reason"] == {
        "output missing": 1,
        "output unreadable": 1,
        "output wrong size": 1,
    }
    excluded = {e["id"]: e for e in result.summary["excluded"]}
    assert set(excluded) == set(names[3:])
    assert "64x64, the HR target is 128x128" in excluded[names[5]]["detail"]
    assert result.summary["method"]["unmatched_files"] == ["stranger.png"]
    psnr = result.summary["metrics"]["psnr"]
    assert psnr["n"] == 3 and psnr["mean"] == 100.0 and psnr["n_capped"] == 3
    assert len(read_csv(result.files["per_image"])) == 3
    table = result.files["table"].read_text()
    assert "Evaluated **3 of 6** samples; **3 excluded**" in table
    assert "1 output missing" in table and "LPIPS" not in table.split("Conventions")[0]


def test_bad_inputs_are_clear_errors(dataset, tmp_path):
    def run(**kw):
        base = {
            "data": dataset / "test",
            "out": tmp_path / "e",
            "lpips_net": None,
            "faces": NO_FACES,
        }
        return evaluate(EvalOptions(**{**base, **kw}))

    (tmp_path / "empty").mkdir()
    with pytest.raises(MfsrError, match="no images in the outputs folder"):
        run(outputs=tmp_path / "empty")
    with pytest.raises(MfsrError, match="outputs folder not found"):
        run(outputs=tmp_path / "nowhere")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for name in ids(dataset):
        write_png(wrong / f"{name}.png", np.zeros((32, 32, 3), dtype=np.uint8))
    with pytest.raises(MfsrError, match=r"nothing to evaluate: all 6 .*output wrong size"):
        run(outputs=wrong)
    with pytest.raises(MfsrError, match="exactly one of `model`, `baseline` or `outputs`"):
        run(baseline="bicubic", outputs=wrong)
    with pytest.raises(MfsrError, match="`baseline` must be"):
        run(baseline="nearest")
    with pytest.raises(MfsrError, match="test set folder not found"):
        run(data=tmp_path / "nope", baseline="bicubic")
    assert not (tmp_path / "e").exists()  # nothing written on failure


def test_unreadable_sample_is_excluded_and_counted(dataset, tmp_path):
    copy = tmp_path / "set"
    shutil.copytree(dataset / "test", copy)
    broken = ids(dataset)[1]
    (copy / broken / "hr.png").write_bytes(b"\x89PNG truncated")
    result = evaluate(
        EvalOptions(
            data=copy, out=tmp_path / "e", baseline="bicubic", lpips_net=None, faces=NO_FACES
        )
    )
    assert result.summary["counts"]["excluded_by_reason"] == {"sample unreadable": 1}
    assert result.summary["excluded"][0]["id"] == broken
    assert result.summary["counts"]["evaluated"] == 5


def _save_tiny_model(path: Path, scale: int) -> dict:
    from mfsr.models import ModelConfig, build_model
    from mfsr.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig(name="unet_geu", scale=scale, n_frames=3, width=8, depth=2, n_geu=1)
    model = build_model(cfg)
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    save_checkpoint(path, tensors, {"model_config": to_dict(cfg)})
    return to_dict(cfg)


def test_model_checkpoint_and_run_folder(dataset, tmp_path):
    run_dir = tmp_path / "run"
    cfg = _save_tiny_model(run_dir / "checkpoints" / "best.safetensors", scale=4)
    common = {"data": dataset / "test", "lpips_net": None, "faces": NO_FACES, "batch_size": 4}
    by_dir = evaluate(EvalOptions(out=tmp_path / "a", model=run_dir, **common))
    method = by_dir.summary["method"]
    assert method["kind"] == "model" and method["model_config"] == cfg
    assert (
        method["checkpoint"].endswith("best.safetensors") and len(method["checkpoint_sha256"]) == 64
    )
    assert by_dir.summary["counts"]["evaluated"] == 6
    by_file = evaluate(
        EvalOptions(
            out=tmp_path / "b", model=run_dir / "checkpoints" / "best.safetensors", **common
        )
    )
    assert by_file.files["per_image"].read_bytes() == by_dir.files["per_image"].read_bytes()

    _save_tiny_model(tmp_path / "x2.safetensors", scale=2)
    with pytest.raises(MfsrError, match="wrong scale for this test set"):
        evaluate(EvalOptions(out=tmp_path / "c", model=tmp_path / "x2.safetensors", **common))
    with pytest.raises(MfsrError, match="checkpoint not found"):
        evaluate(EvalOptions(out=tmp_path / "c", model=tmp_path / "none.safetensors", **common))


def cli() -> typer.Typer:
    """The command as the main CLI registers it."""
    from mfsr.cli.evaluate import evaluate as command

    app = typer.Typer()
    app.command("evaluate")(command)
    return app


@random_trunk_ok
def test_command_line_with_worker_processes(dataset, tmp_path):
    args = ["--data", str(dataset), "--out", str(tmp_path / "out"), "--baseline", "bicubic"]
    args += ["--cache-dir", str(tmp_path / "cache"), "--limit", "3"]
    result = CliRunner().invoke(cli(), args)  # no ImageNet trunk and no --random-trunk
    assert isinstance(result.exception, MfsrError)
    assert "mfsr weights fetch alexnet" in str(result.exception)

    result = CliRunner().invoke(cli(), [*args, "--random-trunk", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "Evaluated **3 of 3** samples" in result.output
    assert "Only the first 3 samples" in result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["timing"]["workers"] == 2 and summary["counts"]["limit"] == 3
    hr = read_rgb(dataset / "test" / ids(dataset)[0] / "hr.png")
    assert hr.shape == (128, 128, 3)
