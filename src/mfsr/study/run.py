"""``run_study``: the paper's loss-function study end to end, resumable.

Folder ``<out_dir>/<name>/``::

    study.yaml          the study config (a later call must agree on train/evaluate/losses options)
    configs/<run>.yaml  the resolved training config of every run
    runs/<run>/         normal training run folders (mfsr train), <loss>-s<seed>
    data/reference-frame/  the reference-frame view of the dataset (single-frame baseline)
    eval/<name>/        mfsr evaluate results of every run and baseline
    log.jsonl           what each call did and how long it took
    single_frame.json   which pixel loss the single-frame baseline uses, and why
    table1.{md,csv,tex,json}, significance.{md,json}, figures/*.png, report.html

Resuming: a run with ``summary.json`` is skipped, one with checkpoints but no summary is
resumed, an evaluation with ``summary.json`` newer than its run's is skipped. The tables,
figures and report are rebuilt from the evaluations on every call (seconds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mfsr.config import to_dict, with_defaults, write_text_atomic
from mfsr.errors import MfsrError
from mfsr.locks import folder_lock
from mfsr.study import plan
from mfsr.study.config import PIXEL, StudyConfig, loss_slug
from mfsr.study.execute import Counts, Reporter, evaluate_one, read_log, train_all
from mfsr.study.outputs import write_outputs
from mfsr.train.config import TrainConfig
from mfsr.train.data import ensure_dataset

#: Sections of ``study.yaml`` that must not change between calls on one study folder.
FIXED = ("train", "loss_options", "random_trunk", "evaluate")


@dataclass
class StudyResult:
    """What :func:`run_study` did (``counts``), where (``folder``), the files it wrote
    (name -> path) and the results document (``table1.json``)."""

    folder: Path
    counts: Counts
    files: dict[str, Path]
    doc: dict[str, Any]


def _check_study_file(study: StudyConfig) -> tuple[dict[str, Any], list[str]]:
    """What to write to ``study.yaml``, refusing a call whose fixed sections or variants differ
    from the folder's, and the variants of earlier calls that this call leaves out: they stay
    in ``study.yaml`` (so a later call that changes one is still refused)."""
    path = study.study_dir / "study.yaml"
    now = to_dict(study)
    old_variants: dict[str, Any] = {}
    if path.is_file():
        before = with_defaults(StudyConfig, yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        changed = [k for k in FIXED if before.get(k) != now.get(k)]
        old_variants, variants = before.get("variants") or {}, now.get("variants") or {}
        if any(old_variants[k] != v for k, v in variants.items() if k in old_variants):
            changed.append("variants")  # a variant's runs would mix two settings
        if changed:
            raise MfsrError(
                f"{study.study_dir}: this study was run with other {', '.join(changed)} settings "
                "(study.yaml); use another name (--set name=...) or another out_dir"
            )
    left_out = [k for k in old_variants if k not in (now.get("variants") or {})]
    now["variants"] = {**old_variants, **(now.get("variants") or {})}
    return now, left_out


def choose_single_frame_loss(study: StudyConfig, loss_cfgs: list[TrainConfig]) -> dict[str, Any]:
    """The single-frame baseline's loss: ``baselines.single_frame_loss`` if set; else the pixel
    loss of the study with the best validation PSNR (best epoch of each run, mean over seeds);
    else charbonnier (the paper's best). Decided once and kept in ``single_frame.json``."""
    path = study.study_dir / "single_frame.json"
    fixed = study.baselines.single_frame_loss
    if fixed is not None:
        return {"loss": fixed, "rule": "set in the study config (baselines.single_frame_loss)"}
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    scores: dict[str, list[float]] = {}
    for cfg in loss_cfgs:
        if loss_slug(cfg.loss) in PIXEL:
            summary = json.loads((cfg.run_dir / "summary.json").read_text(encoding="utf-8"))
            if summary.get("best_val_psnr") is not None:
                scores.setdefault(cfg.loss, []).append(summary["best_val_psnr"])
    means = {k: sum(v) / len(v) for k, v in scores.items()}
    if means:
        best = max(means, key=means.__getitem__)
        choice = {
            "loss": best,
            "rule": "the study's pixel loss with the highest validation PSNR (best epoch per "
            "run, mean over seeds)",
            "val_psnr": means,
        }
    else:
        choice = {"loss": "charbonnier", "rule": "no pixel loss in the study: the paper's best"}
    write_text_atomic(path, json.dumps(choice, indent=1) + "\n")
    return choice


def _runs_table(cfgs: list[TrainConfig], study_dir: Path) -> list[dict[str, Any]]:
    """Per run: seed, loss, steps, training seconds (all sessions), best/bicubic val PSNR."""
    seconds: dict[str, float] = {}
    for row in read_log(study_dir):
        if row.get("action") in ("trained", "resumed"):
            seconds[row["run"]] = seconds.get(row["run"], 0.0) + float(row.get("seconds", 0))
    out = []
    for cfg in cfgs:
        path = cfg.run_dir / "summary.json"
        s = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        out.append(
            {
                "run": cfg.name,
                "loss": cfg.loss,
                "seed": cfg.seed,
                "frames": cfg.model.n_frames,
                "steps": s.get("steps"),
                "train_seconds": seconds.get(cfg.name),
                "best_val_psnr": s.get("best_val_psnr"),
                "bicubic_val_psnr": s.get("bicubic_val_psnr"),
                "random_trunk": any(t.get("random") for t in s.get("trunks") or []),
                "device": s.get("device"),
            }
        )
    return out


Group = tuple[str, str, str, list[plan.RunSpec] | None, str | None]  # a Table 1 row


def _loss_groups(runs: list[plan.RunSpec]) -> list[Group]:
    """Table 1 rows of the loss runs, in run order: ``(key, label, "loss", runs, loss)`` with
    the key the run name without its ``-s<seed>``."""
    groups: list[Group] = []
    for method in dict.fromkeys(r.method for r in runs):
        rows = [r for r in runs if r.method == method]
        groups.append((rows[0].name.rsplit("-s", 1)[0], method, "loss", rows, rows[0].loss))
    return groups


def _view_limits(study: StudyConfig, cfg: TrainConfig) -> dict[str, int | None]:
    """How many samples of each split a dataset view needs (None: all): the validation
    samples the runs read, the evaluated test samples, and frozen training samples."""
    limits: dict[str, int | None] = {"val": cfg.data.val_limit}
    if cfg.data.train == "frozen":  # training reads the frozen train/ samples too
        limits["train"] = None
    split, n = study.evaluate.split, study.evaluate.limit
    limits[split] = (
        None if n is None or limits.get(split, 0) is None else max(n, limits.get(split) or 0)
    )
    return limits


def _frames_view(study: StudyConfig, cfg: TrainConfig, data: Path, n: int, rep: Reporter) -> Path:
    """The dataset for runs with ``n`` frames: ``data`` itself when it has ``n`` frames, else
    its view with the centre ``n`` frames (``<study>/data/frames-<n>/``)."""
    meta = json.loads((data / "dataset.json").read_text(encoding="utf-8"))
    if meta.get("n_frames") == n:
        return data
    if n > meta.get("n_frames", 0):
        raise MfsrError(f"frames: {data} has {meta.get('n_frames')} frames per sample, not {n}")
    view = study.study_dir / "data" / f"frames-{n}"
    rep.stage(f"{n}-frame view of the dataset")
    plan.reference_view(data, view, _view_limits(study, cfg), n_frames=n)
    return view


def _dataset(study: StudyConfig, base_cfg: TrainConfig, rep: Reporter) -> Path:
    """The study's dataset, built once here, before any (parallel) run needs it; raises
    :class:`MfsrError` when it has no split to evaluate on."""
    rep.stage(f"dataset {base_cfg.data.dataset}")
    ensure_dataset(base_cfg)
    data = Path(base_cfg.data.dataset)
    if not (data / study.evaluate.split).is_dir():
        raise MfsrError(
            f"{data}: no {study.evaluate.split}/ split to evaluate on; build the dataset with "
            f"that split (data.build.splits in the training config, or mfsr data build --splits)"
        )
    return data


def run_study(study: StudyConfig, reporter: Reporter | None = None) -> StudyResult:
    """Train, evaluate and report a study (see the module docstring); returns what was done.

    Holds the study folder's lock throughout (a second process on the same study is refused).
    Raises :class:`MfsrError` for a bad setup (no test split, changed settings, failed runs).
    """
    with folder_lock(study.study_dir, "study"):
        return _run_study(study, reporter)


def _run_study(study: StudyConfig, reporter: Reporter | None) -> StudyResult:
    rep = reporter or Reporter()
    counts = Counts()
    root = study.study_dir
    base = plan.base_train_dict(study)
    runs = plan.loss_runs(study)
    checked = [plan.train_config(study, r, base=base) for r in runs]  # every config, first
    base_cfg = checked[0]  # its dataset is every run's (or the source of its frames view)
    settings, left_out = _check_study_file(study)
    data = _dataset(study, base_cfg, rep)
    write_text_atomic(root / "study.yaml", yaml.safe_dump(settings, sort_keys=False))
    views = {n: _frames_view(study, base_cfg, data, n, rep) for n in study.frames}
    sources = [views.get(r.n_frames, data) for r in runs]  # the data each run reads
    cfgs = [
        plan.train_config(study, r, view=None if v == data else v, base=base)
        for r, v in zip(runs, sources)
    ]
    for cfg in cfgs:
        plan.write_run_config(cfg, root / "configs")
    train_all(study, cfgs, counts, rep)
    for run, cfg, source in zip(runs, cfgs, sources):
        evaluate_one(study, run.name, source, counts, rep, model=cfg.run_dir)
    groups = _loss_groups(runs)
    for name in ("bicubic", "classical"):
        if getattr(study.baselines, name):
            evaluate_one(study, name, data, counts, rep, baseline=name)
            groups.append((name, name, "baseline", None, None))
    extra: dict[str, Any] = {"single_frame": None}
    all_cfgs = list(cfgs)
    if study.baselines.single_frame:
        choice = choose_single_frame_loss(study, cfgs)
        view = root / "data" / "reference-frame"
        rep.stage("reference-frame view of the dataset (single-frame baseline)")
        plan.reference_view(data, view, _view_limits(study, base_cfg))
        sf_runs = plan.single_frame_runs(study, choice["loss"])
        sf_cfgs = [plan.train_config(study, r, view=view, base=base) for r in sf_runs]
        for cfg in sf_cfgs:
            plan.write_run_config(cfg, root / "configs")
        train_all(study, sf_cfgs, counts, rep)
        for run, cfg in zip(sf_runs, sf_cfgs):
            evaluate_one(study, run.name, view, counts, rep, model=cfg.run_dir)
        label = f"single-frame ({choice['loss']})"
        groups.append((plan.SINGLE, label, "baseline", sf_runs, choice["loss"]))
        extra["single_frame"] = choice
        all_cfgs += sf_cfgs
    extra["runs"] = _runs_table(all_cfgs, root)
    rep.stage("tables, figures and report")
    if left_out:
        rep.stage(
            f"the report covers this call's variants only; study.yaml also names "
            f"{', '.join(left_out)} from an earlier call (list them in variants to report them)"
        )
    files, doc = write_outputs(study, base_cfg, groups, extra, data)
    return StudyResult(root, counts, files, doc)
