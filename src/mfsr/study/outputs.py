"""Everything a study writes from its evaluations: tables, figures, the qualitative grid and
the HTML report (see :mod:`mfsr.study.run` for the folder layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfsr.data.dataset import SequenceDataset
from mfsr.metrics.pixel import to_uint8_images
from mfsr.models import ModelConfig, build_model
from mfsr.study import figures, tables
from mfsr.study.config import StudyConfig
from mfsr.study.execute import read_log
from mfsr.study.report import write_report
from mfsr.study.results import build_methods, results_document
from mfsr.train.checkpoint import load_model
from mfsr.train.config import TrainConfig


def _timing(study_dir: Path) -> dict[str, float]:
    """Seconds spent training and evaluating, over every call (``log.jsonl``)."""
    out = {"training_s": 0.0, "evaluation_s": 0.0}
    for row in read_log(study_dir):
        key = {"trained": "training_s", "resumed": "training_s", "evaluated": "evaluation_s"}
        if row.get("action") in key:
            out[key[row["action"]]] += float(row.get("seconds", 0.0))
    return out


def qualitative_columns(
    study: StudyConfig, doc: dict[str, Any], data: Path
) -> tuple[list[tuple[str, list[np.ndarray]]], list[str]]:
    """Images of the qualitative grid: ``([(title, [uint8 (H, W, 3) per face])], ids)``.

    Faces: ``qualitative.ids``, else the first ``qualitative.faces`` evaluated test ids.
    Columns: LR reference frame (nearest-neighbour enlarged to the HR size), bicubic, the
    network of each loss row (each loss, variant and frame count) of seed ``qualitative.seed``
    (default: the first seed), HR.
    """
    q = study.qualitative
    dataset = SequenceDataset(data / study.evaluate.split, n_frames=None, require_hr=True)
    index = {s.id: i for i, s in enumerate(dataset.samples)}
    ids = [i for i in q.ids if i in index] or [i for i in doc["ids"] if i in index][: q.faces]
    if not ids:
        return [], []
    items = [dataset[index[i]] for i in ids]
    frames = torch.stack([it["frames"] for it in items])  # (K, N, 3, h, w)
    hr = torch.stack([it["hr"] for it in items])  # (K, 3, H, W)
    n, size = frames.shape[1], hr.shape[-2:]
    ref = frames[:, n // 2]
    lr_big = torch.nn.functional.interpolate(ref, size=size, mode="nearest")
    scale = size[0] // ref.shape[-2]
    bicubic = build_model(ModelConfig(name="bicubic", n_frames=n, scale=scale))
    columns = [("LR reference (nearest)", lr_big), ("bicubic", bicubic(frames))]
    seed = q.seed if q.seed is not None else study.seeds[0]
    for m in doc["methods"]:
        if m["kind"] != "loss" or seed not in m["seeds"]:
            continue
        run = study.study_dir / "runs" / m["runs"][m["seeds"].index(seed)]
        if not (run / "checkpoints").is_dir():
            continue
        model, cfg, _ = load_model(run, "cpu")
        first = n // 2 - cfg.n_frames // 2  # a run with fewer frames sees the centre ones
        with torch.no_grad():
            out = model(frames[:, first : first + cfg.n_frames])
        mark = " †" if m["random_trunk_training"] else ""
        columns.append((f"{m['label']} (seed {seed}){mark}", out))
    columns.append(("HR (truth)", hr))
    return [(t, list(to_uint8_images(x))) for t, x in columns], ids


def write_outputs(
    study: StudyConfig,
    base: TrainConfig,
    groups: list[Any],
    extra: dict[str, Any],
    data: Path,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write tables, figures and ``report.html``; returns ``(files, results document)``."""
    root = study.study_dir
    methods, ids, dropped = build_methods(study, groups)
    extra = {**extra, "timing": _timing(root), "ids": ids}
    doc = results_document(study, base, methods, ids, dropped, extra)
    columns, shown = qualitative_columns(study, doc, data)
    doc["qualitative_ids"] = shown
    files = tables.write_tables(doc, root)
    fig_dir = root / "figures"
    fig_dir.mkdir(exist_ok=True)
    for metric in doc["metrics"]:
        if metric == "identity_distance":
            continue
        path = fig_dir / f"bar_{metric}.png"
        figures.bar_chart(doc, metric, path)
        files[f"figures/bar_{metric}.png"] = path
    files["figures/curves.png"] = fig_dir / "curves.png"
    figures.curves(doc, root / "runs", files["figures/curves.png"])
    if study.frames:
        files["figures/frames.png"] = fig_dir / "frames.png"
        figures.frames_plot(doc, files["figures/frames.png"])
    if columns:
        files["figures/qualitative.png"] = fig_dir / "qualitative.png"
        figures.qualitative(columns, shown, files["figures/qualitative.png"])
    files["report.html"] = root / "report.html"
    write_report(doc, files, files["report.html"])
    return files, doc
