"""Study configuration: a preset (package data, ``mfsr/presets/study/<name>.yaml``) or a YAML
file, plus ``--set key=value`` overrides.

A study trains the same network once per (loss, seed) under identical conditions, evaluates
every run and the baselines on the same test split, and reports Table 1 with confidence
intervals and paired significance tests (see ``docs/study.md``). Every field is checked
strictly by :func:`mfsr.config.from_dict` (unknown keys, wrong types and bad values are one-line
errors naming the file and field).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfsr.config import PRESET_DIR, from_dict, merge, parse_overrides, read_yaml, resolve_preset
from mfsr.errors import MfsrError
from mfsr.losses import parse_spec

#: Study presets (one YAML each, ``mfsr/presets/study/*.yaml``): package data.
STUDY_PRESETS = PRESET_DIR / "study"

#: The paper's four losses (Mezina: MSE, Charbonnier, VGG19 feature reconstruction, LPIPS).
PAPER_LOSSES = ("mse", "charbonnier", "feature", "lpips")
#: Losses that need an ImageNet trunk (a random one offline, flagged everywhere).
PERCEPTUAL = ("feature", "lpips")
#: Pixel losses among which the single-frame baseline's loss is chosen.
PIXEL = ("mse", "charbonnier", "l1")


@dataclass(frozen=True)
class TrainSpec:
    """The base training config of every run: a training preset name (``mfsr/presets/train/``) or a
    YAML path, plus ``overrides`` (``key=value`` as for ``mfsr train --set``) applied to all."""

    config: str = "quick"
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class BaselineSpec:
    """Baselines evaluated on the same test faces.

    ``single_frame``: the U-Net+GEU with N = 1 (the reference frame only), trained with the
    best pixel loss: ``single_frame_loss``, or (None) the pixel loss of the study (mse,
    charbonnier, l1) with the highest validation PSNR (best epoch, mean over seeds).
    ``single_frame_seeds``: its seeds (None: the study's seeds).
    """

    bicubic: bool = True
    classical: bool = True
    single_frame: bool = True
    single_frame_loss: str | None = None
    single_frame_seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class EvalSpec:
    """How every method is scored (``mfsr evaluate`` options; see ``docs/metrics.md``).

    ``limit``: the first N test samples by id (None: all). ``ffr``: dlib face recognition on
    or off. ``lpips``: compute the LPIPS metric (AlexNet). ``workers``: processes for the
    per-image metrics (0: none). ``device``: ``auto`` = CUDA when available.
    """

    split: str = "test"
    limit: int | None = None
    ffr: bool = True
    lpips: bool = True
    workers: int = 0
    batch_size: int = 8
    device: str = "auto"
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"evaluate.limit must be >= 1, got {self.limit}")
        if self.workers < 0 or self.batch_size < 1:
            raise ValueError("evaluate.workers must be >= 0 and evaluate.batch_size >= 1")


@dataclass(frozen=True)
class QualitativeSpec:
    """The qualitative grid: ``ids`` (fixed test sample ids) or the first ``faces`` test ids;
    ``seed``: whose networks are shown (None: the study's first seed)."""

    faces: int = 6
    ids: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class ParallelSpec:
    """How runs share accelerators. ``devices``: CUDA device ids; empty = one run after
    another in this process (CPU, or one GPU). Otherwise the devices are cut into groups of
    ``gpus_per_run``; each group trains ``runs_per_device`` runs at a time (1: one), each in
    its own subprocess (``CUDA_VISIBLE_DEVICES`` = the group; ``torchrun`` when the group has
    several devices). Several runs per group are meant for small-batch, kernel-launch-bound
    runs (unmeasured); they need ``devices``."""

    devices: tuple[int, ...] = ()
    gpus_per_run: int = 1
    runs_per_device: int = 1

    def __post_init__(self) -> None:
        if self.gpus_per_run < 1:
            raise ValueError(f"parallel.gpus_per_run must be >= 1, got {self.gpus_per_run}")
        k = self.runs_per_device
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"parallel.runs_per_device must be an integer >= 1, got {k!r}")
        if k > 1 and not self.devices:
            raise ValueError(
                f"parallel.runs_per_device={k} needs parallel.devices (without devices the runs "
                "go one after another in this process)"
            )
        if self.devices and len(self.devices) < self.gpus_per_run:
            raise ValueError("parallel.devices has fewer devices than parallel.gpus_per_run")
        if len(set(self.devices)) != len(self.devices):
            raise ValueError("parallel.devices lists a device twice")


@dataclass(frozen=True)
class StudyConfig:
    """Everything that determines a study; its folder is ``<out_dir>/<name>/``."""

    name: str
    train: TrainSpec = field(default_factory=TrainSpec)
    out_dir: str = "studies"
    losses: tuple[str, ...] = PAPER_LOSSES
    loss_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0, 1, 2)
    # optional axes crossed with the losses: named sets of training overrides (e.g. the
    # frame fusion), and frame counts N (the centre N frames of each sample); empty = none
    variants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    frames: tuple[int, ...] = ()
    random_trunk: bool = False
    baselines: BaselineSpec = field(default_factory=BaselineSpec)
    evaluate: EvalSpec = field(default_factory=EvalSpec)
    qualitative: QualitativeSpec = field(default_factory=QualitativeSpec)
    parallel: ParallelSpec = field(default_factory=ParallelSpec)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"name {self.name!r} must be a plain folder name")
        if not self.losses:
            raise ValueError("losses must list at least one loss")
        if not self.seeds:
            raise ValueError("seeds must list at least one seed")
        if min(self.seeds) < 0:
            raise ValueError(f"seeds must be >= 0, got {list(self.seeds)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds has duplicates: {list(self.seeds)}")

        for loss in self.losses:
            parse_spec(loss)
        slugs = [loss_slug(loss) for loss in self.losses]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"losses has duplicates: {list(self.losses)}")
        for name in self.variants:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name):
                raise ValueError(f"variants: {name!r} must be a plain name (letters, digits, -_.+)")
        if len(set(self.frames)) != len(self.frames):
            raise ValueError(f"frames has duplicates: {list(self.frames)}")
        for n in self.frames:
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"frames: {n!r} is not a frame count >= 1")

    @property
    def study_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def loss_slug(spec: str) -> str:
    """A folder-safe name for a loss spec: ``"charbonnier + 0.1 * lpips"`` ->
    ``"charbonnier+0.1xlpips"``."""
    text = spec.strip().lower().replace(" ", "").replace("*", "x")
    text = re.sub(r"[^a-z0-9.+_-]+", "_", text).strip("._")
    if not text:
        raise MfsrError(f"loss {spec!r}: cannot make a run name from it")
    return text


def uses_perceptual(spec: str) -> bool:
    """True when loss ``spec`` has a ``feature`` or ``lpips`` term (needs an ImageNet trunk)."""
    names = set(re.findall(r"[a-z_]+", spec.lower()))
    return bool(names & set(PERCEPTUAL))


def load_study_config(name_or_path: str, overrides: list[str] | None = None) -> StudyConfig:
    """Read a study YAML, apply ``--set`` overrides (``seeds=[0]``, ``evaluate.limit=100``,
    ``train.overrides=[epochs=2]``), and check everything."""
    path = resolve_preset(name_or_path, "study", STUDY_PRESETS)
    data = merge(read_yaml(path), parse_overrides(overrides or []))
    return from_dict(StudyConfig, data, where=f"{path}: ")
