"""``mfsr data build``: a folder of face photos -> identity-disjoint frozen sequence splits.

Output layout (see ``docs/data.md``)::

    <out>/dataset.json        settings the set was built with (scale, frames, sizes, seed, ...)
    <out>/splits.json         split -> source photos (id, path, identity, sha256)
    <out>/build-report.json   counts written/kept and every skipped input with its reason
    <out>/{train,val,test}/<sample_id>/   one sample folder each (mfsr.data.sample)

Every sample is drawn from ``default_rng([seed, crc32(sample_id)])``, so a rebuild with the same
settings is byte-identical whatever the order or number of workers. Rerunning into the same
folder with the same settings resumes (complete samples are kept).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from mfsr import __version__
from mfsr.config import to_dict, write_text_atomic
from mfsr.data.degrade import Crop, DegradationConfig, synthesize_sequence
from mfsr.data.images import decode_rgb
from mfsr.data.photos import SourceItem, scan_sources
from mfsr.data.report import BuildReport
from mfsr.data.sample import dumps_meta, remove_stale_tmp, write_sample
from mfsr.errors import BadArgument, DataError, MfsrError
from mfsr.locks import LOCK_NAME, folder_lock

SPLITS = ("train", "val", "test")
PAPER_PROPORTIONS = (2504, 837, 753)  # the paper's train/val/test sizes


@dataclass(frozen=True)
class BuildOptions:
    """Settings of ``mfsr data build``; everything that changes the output is recorded."""

    source: Path
    out: Path
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    scale: int = 8
    n_frames: int = 7
    hr_size: int = 256
    seed: int = 0
    crop: Literal["whole", "face"] = "whole"
    face_size: int = 128  # side of the centred face crop, source px (crop="face")
    counts: tuple[int, int, int] | None = None  # exact train/val/test sizes; None: proportions
    proportions: tuple[float, float, float] = PAPER_PROPORTIONS
    max_per_identity: int | None = None
    limit: int | None = None  # consider only the first K files (sorted paths): quick small sets
    write_splits: tuple[str, ...] = SPLITS
    max_upscale: float = 1.25  # largest allowed enlargement of the source crop to the HR size
    overwrite: bool = False
    workers: int = 1

    def validate(self) -> None:
        if self.scale not in (2, 4, 8):
            raise BadArgument(f"`scale` must be 2, 4 or 8, got {self.scale}")
        if not 1 <= self.n_frames <= 64:
            raise BadArgument(f"`n_frames` must be in 1..64, got {self.n_frames}")
        if self.hr_size < self.scale * 2 or self.hr_size % self.scale:
            raise BadArgument(
                f"`hr_size` {self.hr_size} must be a multiple of `scale` {self.scale}"
            )
        if self.counts is not None and any(c < 0 for c in self.counts):
            raise BadArgument(f"`counts` must be >= 0, got {self.counts}")
        if self.counts is None and (min(self.proportions) < 0 or sum(self.proportions) <= 0):
            raise MfsrError(f"split proportions must be >= 0 and not all 0: {self.proportions}")
        if unknown := set(self.write_splits) - set(SPLITS):
            raise BadArgument(f"`write_splits`: unknown split(s) {sorted(unknown)}; use {SPLITS}")
        if self.limit is not None and self.limit < 1:
            raise BadArgument("`limit` must be >= 1")
        if self.max_per_identity is not None and self.max_per_identity < 1:
            raise BadArgument("`max_per_identity` must be >= 1")
        if self.face_size < 2:
            raise BadArgument(f"`face_size` must be >= 2 px, got {self.face_size}")
        if self.workers < 1:
            raise BadArgument(f"`workers` must be >= 1, got {self.workers}")
        if self.seed < 0:
            raise BadArgument(f"`seed` must be >= 0, got {self.seed}")
        if not 0 < self.max_upscale < math.inf:  # also refuses NaN
            raise BadArgument(
                f"`max_upscale` must be a positive finite number, got {self.max_upscale}"
            )

    def settings(self) -> dict:
        """What goes into dataset.json (everything that determines the samples' bytes)."""
        return {
            "format": "mfsr-dataset",
            "format_version": 1,
            "source": str(self.source),
            "scale": self.scale,
            "n_frames": self.n_frames,
            "hr_size": self.hr_size,
            "lr_size": self.hr_size // self.scale,
            "seed": self.seed,
            "crop": {
                "mode": self.crop,
                **({"face_size": self.face_size} if self.crop == "face" else {}),
            },
            "counts": list(self.counts) if self.counts is not None else None,
            "proportions": list(self.proportions) if self.counts is None else None,
            "max_per_identity": self.max_per_identity,
            "limit": self.limit,
            "max_upscale": self.max_upscale,
            "degradation": {"preset": self.degradation.name, "config": to_dict(self.degradation)},
            "mfsr_version": __version__,
        }


def _crop_for(image: np.ndarray, opts: BuildOptions) -> Crop:
    h, w = image.shape[:2]
    return Crop.centred(w, h, opts.face_size if opts.crop == "face" else None)


def assign_splits(items: list[SourceItem], opts: BuildOptions) -> dict[str, list[SourceItem]]:
    """Identity-disjoint train/val/test lists, reproducible from ``opts.seed``.

    Identities are taken in a seeded random order; each goes whole to the split that is
    relatively furthest below its target. In ``counts`` mode the sizes are exact: an identity
    that would overshoot contributes only the photos still needed (the rest go unused).
    """
    by_identity: dict[str, list[SourceItem]] = {}
    for it in items:
        by_identity.setdefault(it.identity, []).append(it)
    names = sorted(by_identity)
    rng = np.random.default_rng([opts.seed, 0x5151])
    order = [names[i] for i in rng.permutation(len(names))]
    groups = [by_identity[n][: opts.max_per_identity] for n in order]
    if opts.counts is not None:
        targets = list(opts.counts)
    else:
        total = sum(len(g) for g in groups)
        weights = np.asarray(opts.proportions, dtype=float) / sum(opts.proportions)
        targets = [int(round(total * w)) for w in weights[:2]]
        targets.append(total - sum(targets))
    splits: dict[str, list[SourceItem]] = {s: [] for s in SPLITS}
    for group in groups:
        deficits = [(t - len(splits[s])) / t if t else -1.0 for s, t in zip(SPLITS, targets)]
        best = int(np.argmax(deficits))
        if deficits[best] <= 0:
            break
        if opts.counts is not None:  # exact sizes: the last identity may be used in part
            group = group[: targets[best] - len(splits[SPLITS[best]])]
        splits[SPLITS[best]].extend(group)
    return splits


def _prepare_out(opts: BuildOptions, settings: dict) -> None:
    out = opts.out  # a folder: folder_lock refused a file in its place
    meta_path = out / "dataset.json"
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise MfsrError(f"{meta_path}: unreadable ({exc}); use --overwrite") from None
        if opts.overwrite:
            for name in (*SPLITS, "dataset.json", "splits.json", "build-report.json"):
                target = out / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        elif old != settings:
            changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise BadArgument(
                f"{out}: already holds a dataset built with other settings ({', '.join(changed)}"
                " differ); use `overwrite` or another `out`"
            )
    elif out.exists() and any(p.name != LOCK_NAME for p in out.iterdir()):
        raise MfsrError(
            f"{out}: folder is not empty and holds no mfsr dataset; choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, data: dict) -> None:
    write_text_atomic(path, dumps_meta(data))


def build_one(item: SourceItem, split: str, opts: BuildOptions) -> tuple[str, str]:
    """Synthesise and write one sample; returns (status, detail): written/kept/skipped."""
    split_dir = opts.out / split
    if (split_dir / item.id).is_dir():
        return "kept", ""
    path = opts.source / item.rel
    try:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != item.sha256:
            return "skipped", "file changed since it was scanned"
        image = decode_rgb(data, name=str(path))
    except (OSError, DataError) as exc:
        return "skipped", str(exc).removeprefix(f"{path}: ")
    sample_seed = zlib.crc32(item.id.encode("utf-8"))
    rng = np.random.default_rng([opts.seed, sample_seed])
    crop = _crop_for(image, opts)
    frames, hr, params = synthesize_sequence(
        image, crop, opts.hr_size, opts.scale, opts.n_frames, opts.degradation, rng
    )
    meta = {
        "source": {
            "kind": "image",
            "path": item.rel,
            "sha256": item.sha256,
            "size": [int(image.shape[1]), int(image.shape[0])],
        },
        "identity": item.identity,
        "split": split,
        "scale": opts.scale,
        "reference_index": params.reference_index,
        "crop": {"mode": opts.crop, "cx": crop.cx, "cy": crop.cy, "side": crop.side},
        "seed": {"base": opts.seed, "sample": sample_seed},
        "degradation": {
            "preset": opts.degradation.name,
            "config": to_dict(opts.degradation),
            "drawn": params.to_dict(),
        },
        "mfsr_version": __version__,
    }
    write_sample(split_dir, item.id, frames, hr, meta)
    return "written", ""


def build_dataset(
    opts: BuildOptions,
    report: BuildReport | None = None,
    scan_progress: Callable[[int, int], None] | None = None,
    build_progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Scan, split and write the dataset described by ``opts``; returns the report.

    Raises :class:`MfsrError` when no usable photo remains, or the output folder conflicts or
    lies inside the source.
    """
    opts.validate()
    report = report or BuildReport()
    opts = replace(opts, source=Path(opts.source), out=Path(opts.out))
    if opts.out.resolve().is_relative_to(opts.source.resolve()):
        # a rerun would read the samples as photos: identities leaking across the splits
        raise BadArgument(f"`out` {opts.out}: is inside `source` {opts.source}; choose another")
    settings = opts.settings()
    items = scan_sources(opts, report, scan_progress)
    if not items:
        raise MfsrError(f"{opts.source}: no usable face photos ({len(report.skipped)} skipped)")
    with folder_lock(opts.out, "dataset"):
        _write_dataset(opts, settings, items, report, build_progress)
    return report


def _write_dataset(
    opts: BuildOptions,
    settings: dict,
    items: list[SourceItem],
    report: BuildReport,
    build_progress: Callable[[int, int], None] | None,
) -> None:
    """Split ``items`` and write the dataset into ``opts.out`` (the caller holds its lock)."""
    _prepare_out(opts, settings)
    splits = assign_splits(items, opts)
    for split, target in zip(SPLITS, opts.counts or ()):
        if len(splits[split]) < target:
            report.notes.append(
                f"{split}: asked for {target} samples, only {len(splits[split])} available"
            )
    n_people = len({it.identity for it in items})
    for split in opts.write_splits:
        if not splits[split] and (opts.counts is None or opts.counts[SPLITS.index(split)]):
            report.notes.append(
                f"{split}: no samples: {len(items)} usable photo(s) of {n_people} identity(ies) "
                "are too few to give this split a whole identity; add photos"
            )
    split_table = {s: [to_dict(i) for i in splits[s]] for s in SPLITS}
    splits_path = opts.out / "splits.json"
    if splits_path.exists() and not opts.overwrite:
        try:
            same = json.loads(splits_path.read_text(encoding="utf-8")) == split_table
        except (OSError, json.JSONDecodeError):
            same = False
        if not same:
            raise BadArgument(
                f"{opts.out}: the source photos changed since this dataset was built (the splits "
                "would differ); use `overwrite` or another `out`"
            )
    _write_json(opts.out / "dataset.json", settings)
    _write_json(splits_path, split_table)
    jobs = [(it, s) for s in opts.write_splits for it in splits[s]]
    for s in opts.write_splits:
        remove_stale_tmp(opts.out / s)
    _run_jobs(jobs, opts, report, build_progress)
    _write_json(opts.out / "build-report.json", report.to_dict())


def _run_jobs(jobs, opts: BuildOptions, report: BuildReport, progress) -> None:
    def record(job, result) -> None:
        status, detail = result
        item, split = job
        if status == "skipped":
            report.skip(str(opts.source / item.rel), detail)
        elif status == "kept":
            report.kept[split] += 1
        else:
            report.written[split] += 1

    if opts.workers == 1:
        for done, job in enumerate(jobs, 1):
            record(job, build_one(job[0], job[1], opts))
            if progress:
                progress(done, len(jobs))
        return

    try:
        with ProcessPoolExecutor(max_workers=opts.workers) as pool:
            futures = [pool.submit(build_one, item, split, opts) for item, split in jobs]
            for done, (job, future) in enumerate(zip(jobs, futures), 1):
                record(job, future.result())
                if progress:
                    progress(done, len(jobs))
    except BrokenProcessPool:
        raise BadArgument(
            f"data build: a worker process died abruptly (the system stops processes that run "
            f"out of memory); the {sum(report.written.values()) + sum(report.kept.values())} "
            f"samples finished so far are kept in {opts.out}: run the same command again, with "
            "fewer `workers`"
        ) from None
