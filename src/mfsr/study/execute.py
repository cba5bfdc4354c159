"""Running a study's parts: training runs (skipped, resumed or new) and evaluations.

Training: with no ``parallel.devices`` the runs go one after another in this process
(:func:`mfsr.train.loop.train`). With devices, each device group trains
``parallel.runs_per_device`` runs at a time (one worker thread each), each run in a
subprocess, ``mfsr train --config <study>/configs/<run>.yaml [--resume]`` (under ``torchrun``
for a group of several GPUs), with ``CUDA_VISIBLE_DEVICES`` set to the group; its output goes
to ``<study>/logs/<run>.log``.

Every action is appended to ``<study>/log.jsonl`` (time, action, run, seconds), so the report
can state how long training took across sessions.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mfsr.errors import MfsrError
from mfsr.evaluate import EvalOptions, evaluate
from mfsr.metrics.table import FaceSettings
from mfsr.study.config import StudyConfig
from mfsr.study.plan import run_state, write_run_config
from mfsr.train.config import TrainConfig
from mfsr.train.loop import train


class Reporter:
    """Receives progress; the default ignores everything (the CLI shows it with rich)."""

    def stage(self, text: str) -> None:
        """A one-line note: what starts or finishes now."""

    def progress(self, task: str, done: int, total: int) -> None:
        """Steps of a training run or samples of an evaluation done so far."""


@dataclass
class Counts:
    """What one :func:`~mfsr.study.run_study` call did."""

    trained: list[str] = field(default_factory=list)  # started from scratch
    resumed: list[str] = field(default_factory=list)  # continued from checkpoints/last
    skipped: list[str] = field(default_factory=list)  # finished before (summary.json)
    evaluated: list[str] = field(default_factory=list)
    eval_skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return dict(vars(self))


def log_event(study_dir: Path, action: str, **info: Any) -> None:
    """Append one JSON line to ``<study>/log.jsonl``."""
    study_dir.mkdir(parents=True, exist_ok=True)
    row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "action": action, **info}
    path = study_dir / "log.jsonl"
    line = json.dumps(row, default=str) + "\n"
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":  # a kill tore the last line: keep this one whole
                line = "\n" + line
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)


def read_log(study_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``<study>/log.jsonl`` (unreadable lines are skipped)."""
    path = study_dir / "log.jsonl"
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def train_all(
    study: StudyConfig, cfgs: list[TrainConfig], counts: Counts, reporter: Reporter
) -> None:
    """Bring every run in ``cfgs`` to its end: finished runs are skipped, interrupted ones
    resumed, new ones trained. Raises MfsrError naming the runs that failed."""
    todo: list[tuple[TrainConfig, bool]] = []
    for cfg in cfgs:
        state = run_state(cfg)
        if state == "finished":
            counts.skipped.append(cfg.name)
        else:
            todo.append((cfg, state == "interrupted"))
    if not todo:
        return
    if study.parallel.devices:
        _train_parallel(study, todo, counts, reporter)
    else:
        for cfg, resume in todo:
            _train_here(study, cfg, resume, counts, reporter)


def _record_training(
    study: StudyConfig,
    cfg: TrainConfig,
    resume: bool,
    counts: Counts,
    seconds: float,
    **extra: Any,
) -> None:
    """Count a finished training session and add it to ``log.jsonl``."""
    (counts.resumed if resume else counts.trained).append(cfg.name)
    kind = "resumed" if resume else "trained"
    log_event(study.study_dir, kind, run=cfg.name, seconds=seconds, **extra)


def _train_here(
    study: StudyConfig, cfg: TrainConfig, resume: bool, counts: Counts, reporter: Reporter
) -> None:
    total = cfg.epochs * cfg.steps_per_epoch
    reporter.stage(f"{'resuming' if resume else 'training'} {cfg.name}")

    def progress(epoch: int, step: int, steps: int, info: Any) -> None:
        reporter.progress(f"train {cfg.name}", epoch * steps + step, total)

    reporter.progress(f"train {cfg.name}", 0, total)
    start = time.perf_counter()
    summary = train(cfg, resume=resume, progress=progress)
    seconds = time.perf_counter() - start
    _record_training(study, cfg, resume, counts, seconds, steps=summary["steps"],
                     device=summary["device"])  # fmt: skip
    psnr = summary["best_val_psnr"]
    reporter.stage(
        f"finished {cfg.name} in {seconds:.0f} s"
        + (f" (best val PSNR {psnr:.2f} dB)" if psnr is not None else "")
    )


def device_groups(devices: tuple[int, ...], per_run: int) -> list[list[int]]:
    """``(0, 1, 2, 3), 2`` -> ``[[0, 1], [2, 3]]`` (leftover devices are not used)."""
    return [list(devices[i : i + per_run]) for i in range(0, len(devices) - per_run + 1, per_run)]


def worker_groups(
    devices: tuple[int, ...], per_run: int, runs_per_device: int = 1
) -> list[list[int]]:
    """The device group of each parallel worker: every group of :func:`device_groups`
    ``runs_per_device`` times, round-robin so that the groups fill evenly first:
    ``(0, 1), 1, 2`` -> ``[[0], [1], [0], [1]]``."""
    groups = device_groups(devices, per_run)
    return [list(group) for _ in range(runs_per_device) for group in groups]


def train_command(config_path: Path, resume: bool, n_devices: int) -> list[str]:
    """The subprocess command line of one run (``torchrun`` for several devices)."""
    args = ["-m", "mfsr", "train", "--config", str(config_path)] + (["--resume"] if resume else [])
    if n_devices > 1:
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_devices}"]
        return [sys.executable, *launcher, *args]
    return [sys.executable, *args]


def _train_parallel(
    study: StudyConfig,
    todo: list[tuple[TrainConfig, bool]],
    counts: Counts,
    reporter: Reporter,
) -> None:
    p = study.parallel
    groups = worker_groups(p.devices, p.gpus_per_run, p.runs_per_device)
    jobs: queue.Queue[tuple[TrainConfig, bool]] = queue.Queue()
    for item in todo:
        jobs.put(item)
    failed: list[str] = []
    lock = threading.Lock()
    logs = study.study_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    def worker(group: list[int]) -> None:
        while True:
            try:
                cfg, resume = jobs.get_nowait()
            except queue.Empty:
                return
            path = write_run_config(cfg, study.study_dir / "configs")
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(map(str, group))}
            reporter.stage(f"{'resuming' if resume else 'training'} {cfg.name} on GPU(s) {group}")
            start = time.perf_counter()
            with open(logs / f"{cfg.name}.log", "a", encoding="utf-8") as handle:
                code = subprocess.run(
                    train_command(path, resume, len(group)),
                    env=env,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    check=False,
                ).returncode
            seconds = time.perf_counter() - start
            with lock:
                if code != 0 or run_state(cfg) != "finished":
                    failed.append(cfg.name)
                    log_event(study.study_dir, "failed", run=cfg.name, code=code, seconds=seconds)
                    reporter.stage(f"FAILED {cfg.name} ({ended(code)}); see {logs}/{cfg.name}.log")
                    continue
                _record_training(study, cfg, resume, counts, seconds, devices=group)
                reporter.stage(f"finished {cfg.name} in {seconds:.0f} s")

    threads = [threading.Thread(target=worker, args=(g,), daemon=True) for g in groups]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        raise MfsrError(
            f"{len(failed)} run(s) failed: {', '.join(sorted(failed))}; see "
            f"{logs}/<run>.log, fix the cause and rerun the study (finished runs are kept)"
        )


def ended(code: int) -> str:
    """How a subprocess ended, from its return code (negative: the signal that killed it)."""
    if code >= 0:
        return f"exit {code}"

    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    why = ": the system stops processes that run out of memory" if name == "SIGKILL" else ""
    return f"killed by {name}{why}"


def eval_device(study: StudyConfig) -> str:
    """The evaluation device: ``evaluate.device``; ``auto`` = the CPU without CUDA, else the
    first of ``parallel.devices``, else the current CUDA device."""
    if study.evaluate.device != "auto":
        return study.evaluate.device

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{study.parallel.devices[0]}" if study.parallel.devices else "cuda"


def evaluate_one(
    study: StudyConfig,
    name: str,
    data: Path,
    counts: Counts,
    reporter: Reporter,
    model: Path | None = None,
    baseline: str | None = None,
) -> Path:
    """Evaluate a run folder (``model``) or a baseline into ``<study>/eval/<name>/``, unless
    that folder already has a ``summary.json`` newer than the run's; returns the folder."""
    out = study.study_dir / "eval" / name
    done = out / "summary.json"
    if done.is_file():
        source = None if model is None else model / "summary.json"
        if source is None or not source.is_file() or done.stat().st_mtime >= source.stat().st_mtime:
            counts.eval_skipped.append(name)
            return out
    e = study.evaluate
    opts = EvalOptions(
        data=data,
        out=out,
        model=model,
        baseline=baseline,
        split=e.split,
        batch_size=e.batch_size,
        device=eval_device(study),
        lpips_net="alex" if e.lpips else None,
        random_trunk=study.random_trunk,
        faces=FaceSettings(enabled=e.ffr),
        workers=e.workers,
        cache_dir=Path(e.cache_dir) if e.cache_dir else None,
        limit=e.limit,
        overwrite=True,  # an evaluation older than its run is stale (checked above)
    )
    reporter.stage(f"evaluating {name}")
    start = time.perf_counter()
    result = evaluate(opts, progress=lambda d, t: reporter.progress(f"eval {name}", d, t))
    seconds = time.perf_counter() - start
    counts.evaluated.append(name)
    log_event(study.study_dir, "evaluated", run=name, seconds=seconds)
    psnr = result.summary["metrics"]["psnr"]["mean"]
    reporter.stage(f"evaluated {name} in {seconds:.0f} s (PSNR {psnr:.2f} dB)")
    return out
