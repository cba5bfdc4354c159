"""Study axes: variants (named training overrides, e.g. the frame fusion) and frame counts,
crossed with the losses; the frames views, rows, pairwise tests and the frames figure."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from PIL import Image

from mfsr.errors import MfsrError
from mfsr.study import load_study_config, run_study
from mfsr.study.config import BaselineSpec, EvalSpec, TrainSpec
from mfsr.study.execute import Reporter

VARIANTS = {"early": ("model.fusion=early",), "registered": ("model.fusion=registered",)}


@pytest.fixture(scope="module")
def axes_data(tiny_dataset) -> Path:
    """x4, 3 frames, HR 64: 12 train photos, 4 val and 6 test samples."""
    return tiny_dataset(64, (12, 4, 6), ("val", "test"))


def axes_config(data: Path, out: Path, **changes):
    cfg = load_study_config("smoke", [f"out_dir={out}", "name=axes"])
    train = TrainSpec(
        "smoke",
        (f"data.dataset={data}", "data.build=null", "data.val_limit=4", "epochs=1",
         "steps_per_epoch=2", "batch_size=2"),
    )  # fmt: skip
    settings = dict(
        train=train,
        losses=("mse",),
        seeds=(0,),
        variants=VARIANTS,
        frames=(1, 3),
        baselines=BaselineSpec(bicubic=True, classical=False, single_frame=False),
        evaluate=EvalSpec(limit=6, ffr=False, lpips=False, cache_dir=str(out / "cache")),
    )
    return dataclasses.replace(cfg, **{**settings, **changes})


@pytest.fixture(scope="module")
def axes_study(axes_data, tmp_path_factory):
    cfg = axes_config(axes_data, tmp_path_factory.mktemp("axes"))
    return cfg, run_study(cfg)


def test_every_loss_variant_and_frame_count_is_a_row(axes_study, axes_data):
    _, result = axes_study
    root = result.folder
    names = ["mse-early-n1-s0", "mse-early-n3-s0", "mse-registered-n1-s0", "mse-registered-n3-s0"]
    assert sorted(result.counts.trained) == names
    for name in names:
        run = json.loads((root / "runs" / name / "summary.json").read_text())
        assert run["steps"] == 2
        text = (root / "configs" / f"{name}.yaml").read_text()
        assert f"fusion: {name.split('-')[1]}" in text
        assert f"n_frames: {name[-4]}" in text
    # N = 1 reads a 1-frame view of the same samples; N = 3 the dataset itself
    view = root / "data" / "frames-1" / "test"
    sample = sorted(view.iterdir())[0]
    assert sorted(p.name for p in sample.iterdir()) == ["hr.png", "lr_00.png", "meta.json"]
    original = axes_data / "test" / sample.name / "lr_01.png"  # the reference of 3 frames
    assert (sample / "lr_00.png").read_bytes() == original.read_bytes()
    doc = result.doc
    rows = {m["label"]: m for m in doc["methods"]}
    assert list(rows) == [
        "mse early N=1", "mse early N=3", "mse registered N=1", "mse registered N=3", "bicubic"
    ]  # fmt: skip
    assert rows["mse registered N=3"]["variant"] == "registered"
    assert rows["mse registered N=3"]["n_frames"] == 3
    assert doc["test"]["folder"] == str(axes_data / "test")  # the study's data, not a view
    assert len(doc["significance"]["psnr"]) == 6  # every pair of the 4 network rows
    png = Image.open(result.files["figures/frames.png"])
    assert png.size[0] > 400  # one panel: PSNR (FFR is off here)
    assert "Frame count" in result.files["report.html"].read_text()
    assert "mse registered N=3" in (root / "table1.md").read_text()


def test_a_second_call_trains_nothing_and_a_changed_variant_is_refused(axes_study):
    cfg, _ = axes_study
    again = run_study(cfg)
    assert again.counts.trained == [] and len(again.counts.skipped) == 4
    changed = dataclasses.replace(
        cfg, variants={**VARIANTS, "registered": ("model.fusion=registered", "model.n_geu=0")}
    )
    with pytest.raises(MfsrError, match="other variants settings"):
        run_study(changed)
    notes: list[str] = []
    reporter = Reporter()
    reporter.stage = notes.append
    subset = dataclasses.replace(cfg, variants={"early": VARIANTS["early"]})
    assert run_study(subset, reporter).counts.trained == []
    assert any("study.yaml also names registered" in n for n in notes), notes
    assert "mse registered" not in (cfg.study_dir / "table1.md").read_text()
    with pytest.raises(MfsrError, match="other variants settings"):  # left out, not forgotten
        run_study(changed)
    assert len(run_study(cfg).doc["methods"]) == 5  # the whole study again


def test_bad_axes_are_one_line_errors(axes_data, tmp_path):
    for override, match in (
        ("frames=[1, 1]", "frames has duplicates"),
        ("frames=[0]", "frame count >= 1"),
        ("variants={'a b': []}", "plain name"),
    ):
        with pytest.raises(MfsrError, match=match):
            load_study_config("smoke", [override])
    with pytest.raises(MfsrError, match="has 3 frames per sample, not 7"):
        run_study(axes_config(axes_data, tmp_path, frames=(7,)))
