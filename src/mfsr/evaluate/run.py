"""The evaluation run: outputs for every test sample, per-image metrics, result files.

The main process reads samples, makes the outputs (model or baseline, in batches under
``torch.no_grad``) or reads them from a folder, and computes LPIPS; the NumPy/dlib metrics of
each pair (MSE, PSNR, SSIM, CPBD, faces) run in ``workers`` spawned processes (none: in this
process). HR face analyses are read from / written to the descriptor cache in the main process.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfsr.config import to_dict
from mfsr.errors import BadArgument, MfsrError
from mfsr.evaluate.report import write_results
from mfsr.evaluate.sources import (
    Exclusion,
    FolderOutputs,
    ModelOutputs,
    Sample,
    baseline_model,
    open_test_set,
    read_samples,
)
from mfsr.locks import folder_lock
from mfsr.metrics.ffr import DescriptorCache, FaceAnalysis, cache_key
from mfsr.metrics.perceptual import LPIPSMetric
from mfsr.metrics.table import FaceSettings, image_metrics, make_row, worker_init
from mfsr.train.checkpoint import load_model, resolve_checkpoint
from mfsr.weights import file_sha256

Progress = Callable[[int, int], None]


@dataclass
class EvalOptions:
    """What to evaluate and how. Exactly one of ``model`` / ``baseline`` / ``outputs``.

    ``data``: a test-set folder of samples (or an mfsr dataset root: its ``split`` folder).
    ``out``: folder for the result files. ``lpips_net``: ``alex``/``vgg``, or None to skip
    LPIPS. ``random_trunk``: accept a random LPIPS trunk (flagged). ``faces``: FFR settings
    (``enabled=False`` skips dlib). ``workers``: spawned processes for the per-image metrics
    (0: none, the default). With workers, call :func:`evaluate` from a script's
    ``if __name__ == "__main__":`` block (spawned processes re-import the main script).
    ``cache_dir``: descriptor cache root (default ``$MFSR_CACHE`` or ``~/.cache/mfsr``);
    ``use_cache=False`` disables it. ``limit``: evaluate the first N samples only.
    ``torch_threads``: torch threads of this process during the run (restored afterwards);
    default 1 when there are workers (they use the other cores; docs/benchmarks.md,
    "Component timings"), else torch's own setting.
    ``overwrite``: replace a finished evaluation in ``out`` (one with ``summary.json``).
    """

    data: Path
    out: Path
    model: Path | None = None
    baseline: str | None = None
    outputs: Path | None = None
    split: str = "test"
    batch_size: int = 4
    device: str = "cpu"
    lpips_net: str | None = "alex"
    random_trunk: bool = False
    faces: FaceSettings = field(default_factory=FaceSettings)
    workers: int = 0
    cache_dir: Path | None = None
    use_cache: bool = True
    limit: int | None = None
    bootstrap_seed: int = 0
    torch_threads: int | None = None
    overwrite: bool = False

    def validate(self) -> None:
        given = [n for n in ("model", "baseline", "outputs") if getattr(self, n) is not None]
        if len(given) != 1:
            raise BadArgument("give exactly one of `model`, `baseline` or `outputs`")
        if self.batch_size < 1:
            raise BadArgument(f"`batch_size` must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise BadArgument(f"`workers` must be >= 0, got {self.workers}")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise BadArgument(f"`torch_threads` must be >= 1, got {self.torch_threads}")
        if not math.isfinite(self.faces.min_score):
            raise BadArgument(f"`min_score` must be a finite number, got {self.faces.min_score}")
        if not 0 < self.faces.threshold < math.inf:  # also refuses NaN
            raise BadArgument(
                f"`threshold` must be a positive finite distance, got {self.faces.threshold}"
            )
        if self.lpips_net not in (None, "alex", "vgg"):
            raise BadArgument(f"`lpips_net` must be 'alex' or 'vgg', got {self.lpips_net!r}")


@dataclass
class EvalResult:
    """Rows of the per-image table, the summary written to ``summary.json``, the files."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    files: dict[str, Path]


class _Scorer:
    """Runs :func:`image_metrics` for each pair (pool or inline) and collects finished rows."""

    def __init__(self, opts: EvalOptions, pool: ProcessPoolExecutor | None) -> None:
        self.faces, self.pool = opts.faces, pool
        use = opts.use_cache and opts.faces.enabled
        self.cache = DescriptorCache(opts.cache_dir) if use else None
        self.pending: deque[tuple[str, float | None, str | None, Any]] = deque()
        self.rows: list[dict[str, Any]] = []
        self.hr_cached = self.hr_computed = 0
        self.max_pending = 4 * max(opts.workers, 2)  # bounds the images held in memory

    def submit(self, sample_id: str, sr: np.ndarray, hr: np.ndarray, lp: float | None) -> None:
        known: FaceAnalysis | None = None
        key = None
        if self.cache is not None:
            key = cache_key(hr, self.faces.min_score, self.faces.upsample)
            known = self.cache.get(key)
        if self.faces.enabled:
            if known is None:
                self.hr_computed += 1
            else:
                self.hr_cached += 1
        job = (sr, hr, self.faces, known)
        work: Any = self.pool.submit(image_metrics, *job) if self.pool else image_metrics(*job)
        self.pending.append((sample_id, lp, key if known is None else None, work))
        while len(self.pending) > (self.max_pending if self.pool else 0):
            self._finish_one()

    def _finish_one(self) -> None:
        sample_id, lp, key, work = self.pending.popleft()
        row, hr_face = work.result() if isinstance(work, Future) else work
        if key is not None and hr_face is not None and self.cache is not None:
            self.cache.put(key, hr_face)
        self.rows.append(make_row(sample_id, row, lp))

    def finish(self) -> None:
        while self.pending:
            self._finish_one()


def _output_maker(opts: EvalOptions, first: Sample | None) -> tuple[Any, dict[str, Any]]:
    """(outputs maker, description of the method). The folder and the model are opened before
    any sample is read (so a bad folder or checkpoint fails fast); a baseline is sized from the
    ``first`` sample, so it returns ``(None, {})`` until that sample is known."""
    if opts.outputs is not None:
        return FolderOutputs(opts.outputs), {"kind": "outputs", "folder": str(opts.outputs)}
    if opts.baseline is not None:
        if first is None:
            return None, {}
        model, cfg = baseline_model(opts.baseline, first)
        method = {"kind": "baseline", "name": opts.baseline, "model_config": cfg}
        return ModelOutputs(model, opts.device), method

    file = resolve_checkpoint(opts.model)  # type: ignore[arg-type]
    model, cfg, meta = load_model(file, opts.device)
    small = {k: v for k, v in meta.items() if len(repr(v)) <= 2000 and k != "model_config"}
    method = {
        "kind": "model",
        "path": str(opts.model),
        "checkpoint": str(file),
        "checkpoint_sha256": file_sha256(file),
        "model_config": to_dict(cfg),
        "checkpoint_meta": small,
    }
    return ModelOutputs(model, opts.device), method


def evaluate(opts: EvalOptions, progress: Progress | None = None) -> EvalResult:
    """Evaluate one method on a test set and write the result files into ``opts.out``:
    ``per_image.csv``, ``summary.json``, ``table.md``, ``verification_curve.png``.

    Raises :class:`MfsrError` for run-level problems, when no sample could be evaluated, and
    when ``opts.out`` holds a finished evaluation and not ``opts.overwrite``. ``summary.json``
    is written last: a folder without it (a run stopped part-way) is taken over silently.
    """
    opts.validate()
    _check_out(opts)  # before the slow part; again under the lock
    threads = opts.torch_threads or (1 if opts.workers > 0 else torch.get_num_threads())
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with folder_lock(Path(opts.out), "evaluation"):
            _check_out(opts)
            return _evaluate(opts, progress)
    finally:
        torch.set_num_threads(previous)


def _check_out(opts: EvalOptions) -> None:
    out = Path(opts.out)
    for name in ("data", "outputs"):  # a later evaluation would read the results as samples
        inside = getattr(opts, name)
        if inside is not None and out.resolve().is_relative_to(Path(inside).resolve()):
            raise BadArgument(f"`out` {out}: is inside `{name}` {inside}; choose another folder")
    if out.exists() and not out.is_dir():
        raise BadArgument(f"`out` {out}: exists and is not a folder")
    if (out / "summary.json").is_file() and not opts.overwrite:
        raise BadArgument(
            f"`out` {out}: already holds an evaluation (summary.json); "
            "use `overwrite` to replace it, or another folder"
        )


class _Pass:
    """One pass over the test set: outputs made in batches of one frame shape, scored as they
    come; samples that cannot be scored are added to ``exclusions``."""

    def __init__(self, opts: EvalOptions, scorer: _Scorer, lpips_metric, exclusions: list):
        self.opts, self.scorer, self.lpips, self.exclusions = opts, scorer, lpips_metric, exclusions
        self.maker, self.method = _output_maker(opts, None)

    def run(self, samples: Iterable, total: int, progress: Progress | None) -> None:
        done = len(self.exclusions)
        if progress:
            progress(done, total)
        batch: list[Sample] = []
        for item in samples:
            if isinstance(item, Exclusion):
                self.exclusions.append(item)
                done += 1
                continue
            if self.maker is None:
                self.maker, self.method = _output_maker(self.opts, item)
            full = len(batch) >= self.opts.batch_size
            if batch and (item.frames.shape != batch[0].frames.shape or full):
                done += self._score(batch)
                batch = []
                if progress:
                    progress(done, total)
            batch.append(item)
        if batch:
            done += self._score(batch)
            if progress:
                progress(done, total)

    def _score(self, batch: list[Sample]) -> int:
        """Make ``batch``'s outputs and submit them; returns how many samples it settled."""
        if isinstance(self.maker, FolderOutputs):
            pairs: list[tuple[Sample, np.ndarray]] = []
            for s in batch:
                got = self.maker.get(s)
                if isinstance(got, Exclusion):
                    self.exclusions.append(got)
                else:
                    pairs.append((s, got))
        else:
            pairs = list(zip(batch, self.maker(batch)))
        if pairs:
            srs = np.stack([p[1] for p in pairs])
            hrs = np.stack([p[0].hr for p in pairs])
            lps = self.lpips(srs, hrs) if self.lpips else [None] * len(pairs)
            for (s, sr), lp in zip(pairs, lps):
                self.scorer.submit(s.id, sr, s.hr, lp)
        return len(batch)


def _evaluate(opts: EvalOptions, progress: Progress | None) -> EvalResult:
    start = time.perf_counter()
    dataset, indices, exclusions, claimed = open_test_set(opts.data, opts.split, opts.limit)
    lpips_metric = None
    if opts.lpips_net is not None:
        lpips_metric = LPIPSMetric(opts.lpips_net, opts.device, opts.random_trunk)
    pool = _make_pool(opts.workers)
    try:
        scorer = _Scorer(opts, pool)
        scoring = _Pass(opts, scorer, lpips_metric, exclusions)
        scoring.run(read_samples(dataset, indices), claimed, progress)
        scorer.finish()
    except BrokenProcessPool:
        raise BadArgument(
            "evaluate: a metric worker process died abruptly (the system stops processes that "
            "run out of memory); nothing was written: run again with fewer `workers` (0: none)"
        ) from None
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    method = scoring.method
    if isinstance(scoring.maker, FolderOutputs):
        method["unmatched_files"] = scoring.maker.unmatched()
    rows = scorer.rows  # in the test set's order (results are collected first in, first out)
    if not rows:
        reasons = ", ".join(sorted({e.reason for e in exclusions})) or "no samples"
        raise MfsrError(f"nothing to evaluate: all {claimed} sample(s) were excluded ({reasons})")
    run = {
        "data": {"path": str(opts.data), "folder": str(dataset.root), "split": opts.split},
        "limit": opts.limit,
        "method": method,
        "claimed": claimed,
        "exclusions": [e.to_dict() for e in exclusions],
        "faces": opts.faces,
        "lpips_trunk": lpips_metric.trunk_info() if lpips_metric else None,
        "hr_descriptors": {
            "cache_dir": str(scorer.cache.root) if scorer.cache else None,
            "from_cache": scorer.hr_cached,
            "computed": scorer.hr_computed,
        },
        "timing": {
            "seconds": time.perf_counter() - start,
            "workers": opts.workers,
            "torch_threads": torch.get_num_threads(),
            "device": opts.device,
        },
        "bootstrap_seed": opts.bootstrap_seed,
    }
    summary, files = write_results(rows, run, Path(opts.out))
    return EvalResult(rows, summary, files)


def _make_pool(workers: int) -> ProcessPoolExecutor | None:
    """Spawned worker processes (NumPy, OpenCV, dlib, and torch for the face descriptors)."""
    if workers <= 0:
        return None

    context = mp.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=worker_init)
