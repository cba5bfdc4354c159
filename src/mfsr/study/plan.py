"""What a study runs: one training run per (loss, seed), the single-frame baseline runs, and
the resolved training config of each, written to ``<study>/configs/<run>.yaml``.

Runs differ only in ``loss``, ``seed``, ``random_trunk`` (set for perceptual losses when the
study allows a random trunk) and the run folder; everything else comes from the same base
training config and overrides. The single-frame baseline is the same network with
``model.n_frames = 1``, trained and evaluated on a *reference-frame view* of the dataset
(:func:`reference_view`): the same samples with only their reference frame, so it sees
exactly the reference frames the multi-frame runs see, and its per-image results pair with
theirs on the same test faces.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mfsr.config import (
    from_dict,
    merge,
    parse_overrides,
    resolve_preset,
    to_dict,
    write_text_atomic,
)
from mfsr.data.folders import find_samples
from mfsr.errors import MfsrError
from mfsr.losses import parse_spec
from mfsr.study.config import StudyConfig, loss_slug, uses_perceptual
from mfsr.train.config import TRAIN_PRESETS, TrainConfig, read_training_yaml

SINGLE = "single-frame"


@dataclass(frozen=True)
class RunSpec:
    """One training run of the study.

    ``name``: folder under ``<study>/runs/`` (``<loss slug>[-<variant>][-n<N>]-s<seed>``, or
    ``single-frame-<loss slug>-s<seed>``). ``method``: the Table 1 row it belongs to (the loss
    spec, with the variant and frame count when the study has those axes, or
    ``single-frame``). ``loss``: the loss spec; ``seed``: the training seed; ``variant``: a key
    of the study's ``variants``; ``n_frames``: the frame count of a ``frames`` axis.
    """

    name: str
    method: str
    loss: str
    seed: int
    single_frame: bool = False
    variant: str | None = None
    n_frames: int | None = None


def method_label(loss: str, variant: str | None, n_frames: int | None) -> str:
    """The Table 1 row of a loss run: ``charbonnier``, ``charbonnier registered N=7``."""
    parts = [loss] + ([variant] if variant else []) + ([f"N={n_frames}"] if n_frames else [])
    return " ".join(parts)


def loss_runs(study: StudyConfig) -> list[RunSpec]:
    """The multi-frame runs: loss x variant x frame count x seed, seed-major (every row of
    the first seed first: a study stopped half-way has complete comparisons for its first
    seeds)."""
    runs = []
    for seed in study.seeds:
        for loss in study.losses:
            for variant in study.variants or [None]:
                for n in study.frames or [None]:
                    stem = loss_slug(loss) + (f"-{variant}" if variant else "")
                    stem += f"-n{n}" if n else ""
                    method = method_label(loss, variant, n)
                    runs.append(RunSpec(f"{stem}-s{seed}", method, loss, seed, False, variant, n))
    return runs


def single_frame_runs(study: StudyConfig, loss: str) -> list[RunSpec]:
    """The single-frame baseline runs, trained with ``loss``."""
    seeds = study.baselines.single_frame_seeds or study.seeds
    return [
        RunSpec(f"{SINGLE}-{loss_slug(loss)}-s{seed}", SINGLE, loss, seed, single_frame=True)
        for seed in seeds
    ]


def base_train_dict(study: StudyConfig) -> dict[str, Any]:
    """The base training config with the study's overrides, as a plain dict."""
    path = resolve_preset(study.train.config, "training", TRAIN_PRESETS)
    return merge(read_training_yaml(path), parse_overrides(list(study.train.overrides)))


def _loss_options(study: StudyConfig, base: dict[str, Any], spec: str) -> dict[str, Any]:
    """Per-term loss options for ``spec``: the base config's, then the study's, restricted to
    the terms the spec has (``build_loss`` refuses options for absent terms)."""
    names = {name for _, name in parse_spec(spec)}
    merged = merge(base.get("loss_options") or {}, study.loss_options)
    return {k: v for k, v in merged.items() if k in names}


def train_config(
    study: StudyConfig, run: RunSpec, view: Path | None = None, base: dict | None = None
) -> TrainConfig:
    """The resolved training config of ``run`` (``view``: the dataset view it reads: the
    reference-frame view of a single-frame run, the ``n_frames`` view of a frames-axis run;
    None: the study's dataset)."""
    base = base_train_dict(study) if base is None else base
    if run.variant is not None:
        base = merge(base, parse_overrides(list(study.variants[run.variant])))
    update: dict[str, Any] = {
        "name": run.name,
        "out_dir": str(study.study_dir / "runs"),
        "seed": run.seed,
        "loss": run.loss,
        "loss_options": _loss_options(study, base, run.loss),
        "random_trunk": bool(study.random_trunk and uses_perceptual(run.loss)),
    }
    if run.single_frame and view is None:  # pragma: no cover - a bug
        raise MfsrError(f"{run.name}: single-frame run without its reference-frame dataset")
    if run.single_frame or run.n_frames is not None:
        update["model"] = {"n_frames": 1 if run.single_frame else run.n_frames}
    if view is not None:
        update["data"] = {"dataset": str(view), "build": None}
    data = merge(base, update)
    data.pop("loss_options", None)
    data["loss_options"] = update["loss_options"]
    return from_dict(TrainConfig, data, where=f"study {study.name}, run {run.name}: ")


def write_run_config(cfg: TrainConfig, folder: Path) -> Path:
    """Write ``cfg`` (fully resolved) to ``<folder>/<run>.yaml``, the file a subprocess
    (``mfsr train --config``) reads; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{cfg.name}.yaml"
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        write_text_atomic(path, text)
    return path


def run_state(cfg: TrainConfig) -> str:
    """``finished`` (summary.json), ``interrupted`` (checkpoints, no summary) or ``new``."""
    if (cfg.run_dir / "summary.json").is_file():
        return "finished"
    if (cfg.run_dir / "checkpoints" / "last.safetensors").is_file():
        return "interrupted"
    return "new"


def _link(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (same file system), else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def reference_view(
    dataset: Path, out: Path, limits: dict[str, int | None], n_frames: int = 1
) -> Path:
    """A dataset folder at ``out`` whose samples are those of ``dataset`` reduced to their
    ``n_frames`` centre frames (frames ``N//2 - n_frames//2`` on, renumbered from ``lr_00.png``,
    so the reference stays the centre frame; ``hr.png`` and ``meta.json`` as they are): the
    single-frame baseline (``n_frames`` = 1) and the frame-count axis of a study.

    ``limits``: split -> how many samples (the first by id; None: all). ``dataset.json``
    (``n_frames``, ``reference_view_of``) and ``splits.json`` are copied, so synthetic
    training from the same photos works. Idempotent: existing samples are kept; each new one
    is written under a dot name and renamed into place.
    """
    meta = json.loads((dataset / "dataset.json").read_text(encoding="utf-8"))
    if not 1 <= n_frames <= meta.get("n_frames", n_frames):
        raise MfsrError(f"{dataset}: has {meta.get('n_frames')} frames, cannot keep {n_frames}")
    out.mkdir(parents=True, exist_ok=True)
    meta.update(n_frames=n_frames, reference_view_of=str(dataset))
    write_text_atomic(out / "dataset.json", json.dumps(meta, indent=1) + "\n")
    if (dataset / "splits.json").is_file():  # synthetic training reads the train photos here
        shutil.copy2(dataset / "splits.json", out / "splits.json")
    for split, limit in limits.items():
        if not (dataset / split).is_dir():
            raise MfsrError(f"{dataset}: no {split}/ split (the study needs it)")
        samples, _ = find_samples(dataset / split, n_frames=None, require_hr=True)
        for files in samples if limit is None else samples[:limit]:
            target = out / split / files.id
            if target.is_dir():
                continue
            tmp = out / split / f".tmp-{files.id}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            first = len(files.lr) // 2 - n_frames // 2
            for i, frame in enumerate(files.lr[first : first + n_frames]):
                _link(frame, tmp / f"lr_{i:02d}.png")
            _link(files.hr, tmp / "hr.png")
            if files.meta is not None:
                shutil.copy2(files.meta, tmp / "meta.json")
            os.replace(tmp, target)
    return out
