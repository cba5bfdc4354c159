"""Collect a study's evaluations into methods (rows of Table 1) and one results document.

Reads ``<study>/eval/<name>/per_image.csv`` and ``summary.json`` of every run and baseline,
aligns the per-image values on the test ids that every evaluation has (normally all of them;
any id missing somewhere is dropped everywhere and counted), and records which rows used a
random perceptual trunk: in training (the run's ``summary.json`` trunk list) or in the LPIPS
metric (the evaluation's ``lpips_trunk``).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mfsr import __version__
from mfsr.config import to_dict
from mfsr.metrics.table import read_csv
from mfsr.study import stats
from mfsr.study.config import StudyConfig
from mfsr.study.plan import RunSpec
from mfsr.train.config import TrainConfig

BANNER = (
    "feature/LPIPS rows trained with a RANDOM VGG/AlexNet trunk (ImageNet weights not "
    "available offline): they measure a random-feature loss, not the paper's perceptual losses"
)
LPIPS_BANNER = (
    "the LPIPS metric was computed with a RANDOM AlexNet trunk: its values are not comparable "
    "with published LPIPS"
)
STATISTICS = (
    "Values are means over seeds of each run's mean over the test images. 95% intervals: "
    "percentile bootstrap over test images (2,000 resamples, seed 0; images resampled jointly "
    "for all seeds of a method): they show test-set sampling uncertainty for these trained "
    "networks, not seed-to-seed variation, which is given separately (per-seed values, their SD "
    "and a t-interval over seeds in table1.json/csv). Pairwise tests: per image, each method's "
    "value averaged over its seeds; two-sided Wilcoxon signed-rank test on the paired "
    "differences (zero differences dropped), Holm-corrected within each metric over all pairs "
    "tested, significant at adjusted p < 0.05; with the mean difference and its paired "
    "bootstrap 95% interval, and how many shared seeds differ in the same direction. The tests "
    "treat the trained networks as fixed: with few seeds they say whether these networks differ "
    "on faces, not whether the losses would differ over many retrainings."
)


def read_rows(folder: Path) -> dict[str, dict[str, Any]]:
    """``per_image.csv`` of an evaluation folder as ``id -> row``."""
    return {r["id"]: r for r in read_csv(folder / "per_image.csv")}


def _summary(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "summary.json").read_text(encoding="utf-8"))


def _train_random(run_dir: Path) -> bool:
    path = run_dir / "summary.json"
    if not path.is_file():
        return False
    summary = json.loads(path.read_text(encoding="utf-8"))
    return any(t.get("random") for t in summary.get("trunks") or [])


def build_methods(
    study: StudyConfig,
    groups: list[tuple[str, str, str, list[RunSpec] | None, str | None]],
) -> tuple[list[stats.Method], list[str], int]:
    """Methods from ``groups`` of ``(key, label, kind, runs or None, loss)``: ``runs`` None
    means a baseline evaluated once into ``eval/<key>``. Returns ``(methods, ids, dropped)``
    with the per-image values aligned on ``ids``."""
    root = study.study_dir
    raw: list[tuple[stats.Method, list[dict[str, dict[str, Any]]]]] = []
    for key, label, kind, runs, loss in groups:
        names = [r.name for r in runs] if runs is not None else [key]
        seeds: list[int | None] = [r.seed for r in runs] if runs is not None else [None]
        tables = [read_rows(root / "eval" / n) for n in names]
        lp = [_summary(root / "eval" / n).get("lpips_trunk") or {} for n in names]
        method = stats.Method(key, label, kind, names, seeds, loss=loss)
        if runs:
            method.variant, method.n_frames = runs[0].variant, runs[0].n_frames
        method.random_lpips = any(t.get("random") for t in lp)
        method.random_train = runs is not None and any(
            _train_random(root / "runs" / r.name) for r in runs
        )
        raw.append((method, tables))
    all_ids = [set(t) for _, tables in raw for t in tables]
    ids = sorted(set.intersection(*all_ids)) if all_ids else []
    dropped = len(set.union(*all_ids) - set(ids)) if all_ids else 0
    methods = []
    for method, tables in raw:
        for metric in stats.METRICS:
            v = np.array(
                [[np.nan if t[i][metric] is None else t[i][metric] for i in ids] for t in tables],
                dtype=np.float64,
            )
            if np.isfinite(v).any():
                method.values[metric] = v
        methods.append(method)
    return methods, ids, dropped


def _train_doc(study: StudyConfig, base: TrainConfig) -> dict[str, Any]:
    return {
        "base_config": study.train.config,
        "overrides": list(study.train.overrides),
        "dataset": base.data.dataset,
        "model": to_dict(base.model),
        "epochs": base.epochs,
        "steps_per_epoch": base.steps_per_epoch,
        "batch_size": base.batch_size,
        "optim": to_dict(base.optim),
    }


def _method_doc(m: stats.Method) -> dict[str, Any]:
    return {
        "key": m.key,
        "label": m.label,
        "kind": m.kind,
        "loss": m.loss,
        "variant": m.variant,
        "n_frames": m.n_frames,
        "runs": m.runs,
        "seeds": m.seeds,
        "random_trunk_training": m.random_train,
        "random_trunk_lpips_metric": m.random_lpips,
        "metrics": stats.summarize(m),
    }


def results_document(
    study: StudyConfig,
    base: TrainConfig,
    methods: list[stats.Method],
    ids: list[str],
    dropped: int,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The study's results (``table1.json``): setup, statistics used, flags, every method's
    metrics (value, interval, per-seed values) and the pairwise tests."""
    metrics = [m for m in stats.METRICS if any(m in x.values for x in methods)]
    # the test folder and conventions: from a method that read the study's own dataset (a
    # frames-axis run may have read a view of it)
    whole = [m for m in methods if m.n_frames is None] or methods
    eval_summary = _summary(study.study_dir / "eval" / whole[0].runs[0]) if methods else {}
    any_train = any(m.random_train for m in methods)
    any_lpips = any(m.random_lpips for m in methods)
    return {
        "format": "mfsr-study",
        "format_version": 1,
        "mfsr_version": __version__,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "study": study.name,
        "config": to_dict(study),
        "train": _train_doc(study, base),
        "test": {
            "folder": eval_summary.get("data", {}).get("folder"),
            "split": study.evaluate.split,
            "limit": study.evaluate.limit,
            "n_images": len(ids),
            "ids_dropped": dropped,
        },
        "conventions": eval_summary.get("conventions"),
        "statistics": STATISTICS,
        "random_trunk": {
            "training": any_train,
            "lpips_metric": any_lpips,
            "rows": [m.key for m in methods if m.random_train],
            "banner": BANNER if any_train else None,
            "lpips_banner": LPIPS_BANNER if any_lpips else None,
        },
        "metrics": {
            k: {"label": stats.METRICS[k][0], "better": stats.METRICS[k][1]} for k in metrics
        },
        "methods": [_method_doc(m) for m in methods],
        "significance": stats.significance(methods, metrics),
        **extra,
    }
