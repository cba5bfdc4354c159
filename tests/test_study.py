"""mfsr study end to end on a tiny real set: every artefact produced and well-formed, random
trunks flagged, resumability (nothing retrained; a run without summary.json resumes), the
statistics helpers and the command line."""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from mfsr.errors import MfsrError
from mfsr.study import load_study_config, run_study
from mfsr.study import stats as sstats
from mfsr.study.config import TrainSpec, loss_slug
from mfsr.study.execute import (
    Reporter,
    device_groups,
    log_event,
    read_log,
    train_command,
    worker_groups,
)
from mfsr.study.results import BANNER

pytestmark = pytest.mark.filterwarnings("ignore::mfsr.weights.RandomTrunkWarning")

LOSSES = ("mse", "charbonnier", "feature", "lpips")
RUNS = [f"{loss}-s{seed}" for seed in (0, 1) for loss in LOSSES]  # seed-major


@pytest.fixture(scope="module")
def study_data(tiny_dataset) -> Path:
    """x4, 3 frames, HR 64 (LPIPS alex needs >= 31 px, CPBD >= 64 px): 12 train photos,
    4 val and 6 test samples."""
    return tiny_dataset(64, (12, 4, 6), ("val", "test"))


@pytest.fixture(scope="module")
def no_trunks(tmp_path_factory):
    """No ImageNet trunk anywhere (as on this machine): perceptual parts need random trunks."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch-home")))
    mp.setattr(torch.hub, "_hub_dir", None)
    yield
    mp.undo()


def smoke_config(data: Path, out: Path, cache: Path, **changes):
    """The smoke preset on the tiny set: tiny model, 2 epochs x 2 steps x batch 2, seeds 0, 1."""
    cfg = load_study_config(
        "smoke", [f"out_dir={out}", f"evaluate.cache_dir={cache}", "evaluate.limit=6"]
    )
    train = TrainSpec(
        "smoke",
        (
            f"data.dataset={data}",
            "data.build=null",
            "data.val_limit=4",
            "epochs=2",
            "steps_per_epoch=2",
            "batch_size=2",
        ),
    )
    return dataclasses.replace(cfg, train=train, **changes)


@pytest.fixture(scope="module")
def study(study_data, tmp_path_factory, no_trunks):
    root = tmp_path_factory.mktemp("studies")
    cfg = smoke_config(study_data, root, root / "cache")
    return cfg, run_study(cfg)


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("src", "href") and value is not None:
                self.refs.append(value)


def test_every_artefact_is_written_and_well_formed(study):
    _, result = study
    folder = result.folder
    choice = json.loads((folder / "single_frame.json").read_text())
    assert choice["loss"] in ("mse", "charbonnier")
    assert set(choice["val_psnr"]) == {"mse", "charbonnier"}
    assert choice["loss"] == max(choice["val_psnr"], key=choice["val_psnr"].get)
    single = [f"single-frame-{choice['loss']}-s{seed}" for seed in (0, 1)]
    assert result.counts.trained == [*RUNS, *single]
    assert len(result.counts.evaluated) == 8 + 2 + 2  # runs, bicubic + classical, single-frame

    # Table 1 as CSV: one row per method, random-trunk flags on the perceptual rows only
    with open(folder / "table1.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    labels = [r["method"] for r in rows]
    assert labels == [*LOSSES, "bicubic", "classical", f"single-frame ({choice['loss']})"]
    flags = {r["method"]: r["random_trunk_training"] for r in rows}
    assert flags == {**{lab: "0" for lab in labels}, "feature": "1", "lpips": "1"}
    for r in rows:
        for metric in ("ssim", "mse", "psnr", "sharpness_diff", "lpips"):
            low, mean, high = (float(r[f"{metric}_{k}"]) for k in ("ci_low", "mean", "ci_high"))
            assert low <= mean + 1e-12 and mean <= high + 1e-12
        assert float(r["ffr_no_face_of"]) == 6
        assert r["random_trunk_lpips"] == "1"
    mse_row = rows[0]
    assert float(mse_row["psnr_seed_sd"]) >= 0

    # JSON: methods, seeds, per-seed values, banner, test set
    doc = json.loads((folder / "table1.json").read_text())
    assert doc["test"]["n_images"] == 6 and doc["random_trunk"]["banner"] == BANNER
    assert doc["random_trunk"]["rows"] == ["feature", "lpips"]
    mse = doc["methods"][0]
    assert mse["seeds"] == [0, 1] and len(mse["metrics"]["psnr"]["seed_values"]) == 2
    assert doc["methods"][4]["seeds"] == [None]  # bicubic: one deterministic "run"

    # Markdown: the header and a row per loss; daggers and the banner
    md = (folder / "table1.md").read_text()
    assert "| method | seeds | SSIM ↑ | MSE ↓ | PSNR (dB) ↑ | sharpness diff. → 0 |" in md
    for loss in LOSSES:
        mark = " †" if loss in ("feature", "lpips") else ""
        assert re.search(rf"^\| {loss}{mark} \| 2 \|", md, re.M), loss
    assert BANNER in md and "‡" in md

    # LaTeX: a tabular with one line per method
    tex = (folder / "table1.tex").read_text()
    assert "\\begin{tabular}" in tex and "\\end{tabular}" in tex
    assert tex.count("\\\\\n") == 1 + len(rows) and "feature$^\\dagger$" in tex

    # significance: every pair of losses + single-frame vs its loss, Holm >= raw p
    sig = json.loads((folder / "significance.json").read_text())
    assert "Wilcoxon" in sig["method"] and "Holm" in sig["method"]
    for metric, tests in sig["tests"].items():
        assert len(tests) == 6 + 1, metric
        for t in tests:
            assert t["p_holm"] >= t["p"] - 1e-12 and 0 <= t["p"] <= 1
    assert "## PSNR (dB)" in (folder / "significance.md").read_text()

    # figures decode
    names = [f"bar_{m}" for m in ("ssim", "mse", "psnr", "sharpness_diff", "lpips")]
    names += ["bar_ffr_no_face", "bar_ffr_identity", "qualitative", "curves"]
    for name in names:
        with Image.open(folder / "figures" / f"{name}.png") as image:
            image.load()
            assert image.size[0] > 100 and image.size[1] > 100
    # qualitative grid (LR, bicubic, 4 losses, HR) for the first 4 test faces (the preset's)
    assert doc["qualitative_ids"] == doc["ids"][:4]

    # HTML: only embedded images and links to files that exist; no external resource
    page = (folder / "report.html").read_text()
    parser = _Refs()
    parser.feed(page)
    embedded = [r for r in parser.refs if r.startswith("data:")]
    assert len(embedded) == len(names)
    for ref in embedded:
        assert ref.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(ref.split(",", 1)[1]))) as image:
            image.load()
    for ref in parser.refs:
        if not ref.startswith("data:"):
            assert "://" not in ref and (folder / ref).is_file(), ref
    assert html.escape(BANNER) in page and "<script" not in page


def test_second_call_skips_everything_and_a_run_without_summary_resumes(study):
    cfg, first = study
    runs = first.folder / "runs"

    def stamps(pattern: str, parents: int) -> dict[str, int]:
        found = first.folder.glob(pattern)
        return {p.parents[parents].name: p.stat().st_mtime_ns for p in found}

    last = stamps("runs/*/checkpoints/last.safetensors", 1)
    evals = stamps("eval/*/summary.json", 0)
    assert len(last) == 10 and len(evals) == 12
    again = run_study(cfg)
    assert again.counts.trained == [] and again.counts.resumed == []
    assert len(again.counts.skipped) == 10 and again.counts.evaluated == []
    assert stamps("runs/*/checkpoints/last.safetensors", 1) == last
    assert stamps("eval/*/summary.json", 0) == evals

    (runs / "mse-s1" / "summary.json").unlink()
    third = run_study(cfg)
    assert third.counts.resumed == ["mse-s1"] and third.counts.trained == []
    assert third.counts.evaluated == ["mse-s1"]  # its summary is newer than its evaluation
    assert (runs / "mse-s1" / "summary.json").is_file()
    for name, stamp in last.items():
        if name != "mse-s1":
            assert (runs / name / "checkpoints" / "last.safetensors").stat().st_mtime_ns == stamp
    log = [json.loads(line) for line in (first.folder / "log.jsonl").read_text().splitlines()]
    assert [r["run"] for r in log if r["action"] == "resumed"] == ["mse-s1"]


def test_command_line_and_changed_settings(study, study_data, tmp_path):
    from mfsr.cli.study import study as study_command

    cfg, _ = study
    app = typer.Typer()
    app.command("study")(study_command)
    app.command("other")(lambda: None)  # keeps "study" a subcommand
    path = tmp_path / "study.yaml"
    import yaml

    from mfsr.config import to_dict

    path.write_text(yaml.safe_dump(to_dict(cfg)))
    out = CliRunner().invoke(app, ["study", "--config", str(path)])
    assert out.exit_code == 0, out.output
    assert "| mse | 2 |" in out.output and "0 run(s) trained" in out.output

    changed = dataclasses.replace(cfg, evaluate=dataclasses.replace(cfg.evaluate, limit=3))
    with pytest.raises(MfsrError, match="other evaluate settings"):
        run_study(changed)
    with pytest.raises(MfsrError, match="did you mean 'seeds'"):
        load_study_config("smoke", ["sedes=[1]"])
    with pytest.raises(MfsrError, match="duplicates"):
        load_study_config("smoke", ["seeds=[1, 1]"])
    with pytest.raises(MfsrError, match="unknown study preset"):
        load_study_config("nope")


def test_statistics_helpers():
    assert sstats.holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    rng = np.random.default_rng(0)
    base = rng.normal(20, 2, size=(3, 200))
    good = sstats.Method("a", "a", "loss", ["a0", "a1", "a2"], [0, 1, 2], {"psnr": base + 0.5})
    same = sstats.Method("b", "b", "loss", ["b0", "b1", "b2"], [0, 1, 2], {"psnr": base})
    row = sstats.compare(good, same, "psnr")
    assert row["better"] == "a" and row["p"] < 1e-6 and row["seeds_agree"] == 3
    assert row["ci_low"] == pytest.approx(0.5) and row["ci_high"] == pytest.approx(0.5)
    summary = sstats.summarize_metric(base)
    assert summary["ci_low"] < summary["mean"] < summary["ci_high"]
    assert summary["seed_t_ci"][0] < summary["mean"] < summary["seed_t_ci"][1]
    noisy = sstats.Method("c", "c", "loss", ["c0"], [0], {"psnr": base[:1] + rng.normal(0, 1, 200)})
    assert sstats.compare(noisy, same, "psnr")["p"] > 0.01
    assert loss_slug("charbonnier + 0.1 * lpips") == "charbonnier+0.1xlpips"


def test_parallel_launch_plan():
    assert device_groups((0, 1, 2, 3), 2) == [[0, 1], [2, 3]]
    assert device_groups((0, 1, 2), 2) == [[0, 1]]
    one = train_command(Path("c.yaml"), True, 1)
    assert one[1:] == ["-m", "mfsr", "train", "--config", "c.yaml", "--resume"]
    two = train_command(Path("c.yaml"), False, 2)
    assert two[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    # one entry per worker thread: each group runs_per_device times, round-robin
    assert worker_groups((0, 1, 2, 3), 2) == [[0, 1], [2, 3]]
    assert worker_groups((0, 1), 1, 2) == [[0], [1], [0], [1]]
    assert worker_groups((0, 1, 2), 2, 3) == [[0, 1]] * 3
    assert worker_groups((5,), 1, 3) == [[5], [5], [5]]


def test_runs_per_device_is_checked():
    cfg = load_study_config("smoke", ["parallel.devices=[0]", "parallel.runs_per_device=2"])
    assert cfg.parallel.runs_per_device == 2
    assert load_study_config("smoke").parallel.runs_per_device == 1
    for value in ("0", "-1"):
        with pytest.raises(MfsrError, match=r"parallel\.runs_per_device must be an integer >= 1"):
            load_study_config(
                "smoke", ["parallel.devices=[0]", f"parallel.runs_per_device={value}"]
            )
    for value in ("1.5", "true", "two"):
        with pytest.raises(MfsrError, match="runs_per_device: expected an integer"):
            load_study_config(
                "smoke", ["parallel.devices=[0]", f"parallel.runs_per_device={value}"]
            )
    with pytest.raises(MfsrError, match=r"parallel\.runs_per_device=2 needs parallel\.devices"):
        load_study_config("smoke", ["parallel.runs_per_device=2"])
    with pytest.raises(MfsrError, match="did you mean 'runs_per_device'"):
        load_study_config("smoke", ["parallel.run_per_device=2"])


@pytest.mark.parametrize("runs_per_device", [1, 2])
def test_runs_side_by_side_go_to_subprocesses(
    study_data, tmp_path, no_trunks, monkeypatch, runs_per_device
):
    """With parallel.devices each run is an `mfsr train` subprocess (here on the CPU: the
    tiny run ignores CUDA_VISIBLE_DEVICES), logged to <study>/logs/<run>.log. With
    parallel.runs_per_device=2 two runs share device 0 at the same time: every training
    subprocess waits at a barrier of runs_per_device parties before it starts, so with fewer
    concurrent workers the barrier times out and the runs fail."""
    import subprocess
    import threading

    seeds = tuple(range(3, 3 + runs_per_device))
    cfg = smoke_config(
        study_data,
        tmp_path,
        tmp_path / "cache",
        name="par",
        losses=("mse",),
        seeds=seeds,
        baselines=dataclasses.replace(
            load_study_config("smoke").baselines, classical=False, single_frame=False
        ),
        parallel=dataclasses.replace(
            load_study_config("smoke").parallel, devices=(0,), runs_per_device=runs_per_device
        ),
    )
    real_run = subprocess.run
    barrier = threading.Barrier(runs_per_device, timeout=60)
    lock = threading.Lock()
    active = [0, 0]  # now, most at once

    def run(cmd, *args, **kwargs):
        if "train" not in cmd:
            return real_run(cmd, *args, **kwargs)
        assert kwargs["env"]["CUDA_VISIBLE_DEVICES"] == "0"
        barrier.wait()
        with lock:
            active[0] += 1
            active[1] = max(active)
        try:
            return real_run(cmd, *args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(subprocess, "run", run)
    stages: list[str] = []

    class Stages(Reporter):
        def stage(self, text: str) -> None:
            stages.append(text)

    result = run_study(cfg, Stages())
    runs = [f"mse-s{seed}" for seed in seeds]
    assert sorted(result.counts.trained) == runs
    assert active[1] == runs_per_device
    for run_name in runs:
        assert (tmp_path / "par" / "runs" / run_name / "summary.json").is_file()
        assert "done:" in (tmp_path / "par" / "logs" / f"{run_name}.log").read_text()
        assert f"training {run_name} on GPU(s) [0]" in stages
    assert [m["key"] for m in result.doc["methods"]] == ["mse", "bicubic"]


def test_study_log_keeps_the_next_event_whole_after_a_torn_line(tmp_path):
    log_event(tmp_path, "trained", run="a", seconds=1.0)
    with open(tmp_path / "log.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"time": "2026-01-01T00:00:00", "act')  # a kill mid-write
    log_event(tmp_path, "evaluated", run="b", seconds=2.0)
    assert [(r["action"], r["run"]) for r in read_log(tmp_path)] == [
        ("trained", "a"),
        ("evaluated", "b"),
    ]


def test_a_study_from_before_a_setting_existed_goes_on(tmp_path):
    """study.yaml written by an older mfsr lacks settings added since: the study ran with their
    defaults, so it goes on; a setting that really differs is still refused."""
    import yaml

    from mfsr.study.run import _check_study_file

    cfg = load_study_config("smoke", [f"out_dir={tmp_path}"])
    saved, _ = _check_study_file(cfg)  # what a first call writes
    path = cfg.study_dir / "study.yaml"
    path.parent.mkdir(parents=True)
    del saved["evaluate"]["batch_size"], saved["parallel"]
    path.write_text(yaml.safe_dump(saved))
    settings, _ = _check_study_file(cfg)  # no error; study.yaml is rewritten in full
    assert "batch_size" in settings["evaluate"]
    saved["evaluate"]["batch_size"] = cfg.evaluate.batch_size + 1
    path.write_text(yaml.safe_dump(saved))
    with pytest.raises(MfsrError, match="other evaluate settings"):
        _check_study_file(cfg)


def test_a_killed_run_subprocess_is_named(study_data, tmp_path, no_trunks, monkeypatch):
    """A run subprocess killed by a signal (as the out-of-memory killer does) is reported as
    such, and the study stops with the failed run named; nothing else is lost."""
    import subprocess
    import sys

    cfg = smoke_config(
        study_data,
        tmp_path,
        tmp_path / "cache",
        name="killed",
        losses=("mse",),
        seeds=(5,),
        baselines=dataclasses.replace(
            load_study_config("smoke").baselines, classical=False, single_frame=False
        ),
        parallel=dataclasses.replace(load_study_config("smoke").parallel, devices=(0,)),
    )
    real_run = subprocess.run
    suicide = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]

    def run(cmd, *args, **kwargs):
        return real_run(suicide if "train" in cmd else cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    stages: list[str] = []

    class Stages(Reporter):
        def stage(self, text: str) -> None:
            stages.append(text)

    with pytest.raises(MfsrError, match=r"1 run\(s\) failed: mse-s5"):
        run_study(cfg, Stages())
    assert any("FAILED mse-s5 (killed by SIGKILL: the system stops" in s for s in stages), stages
