"""``mfsr train``: the training loop, read top to bottom (after nanoGPT's train.py); the set-up
is in :mod:`mfsr.train.setup`, validation in :mod:`mfsr.train.validation`.

Run folder ``<out_dir>/<name>/``: ``config.yaml`` (resolved), ``env.json``, ``train.csv``,
``val.csv``, ``tb/`` (TensorBoard), ``samples/epoch_XXXX.png``, ``checkpoints/last`` and
``best`` (by validation PSNR) ``.safetensors``, ``summary.json`` when finished.

Exact resume: the sample stream is a pure function of (seed, epoch, position) (see
:mod:`mfsr.train.data`), and a checkpoint holds model, optimizer, GradScaler, every RNG state
and the counters; the learning rate is a pure function of the step. On CPU a run killed at any
point and resumed from its last checkpoint ends bit-identical to an uninterrupted one.

Multi-GPU / multi-node: launch the same command under ``torchrun``; DistributedDataParallel
(NCCL on GPU, gloo on CPU), each process takes its slice of every global batch, rank 0 alone
validates, logs and writes checkpoints.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mfsr.errors import Interrupted, MfsrError, describe_os_error
from mfsr.locks import folder_lock
from mfsr.train.config import TrainConfig
from mfsr.train.data import TrainStream, batch_tensors, loader_errors, train_loader
from mfsr.train.setup import Run, build_optimizer, set_up, write_json
from mfsr.train.validation import validate

__all__ = ["build_optimizer", "lr_at", "resume_hint", "train", "validate"]


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based): warm-up, then constant or cosine."""
    o = cfg.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return o.lr
    total = cfg.epochs * cfg.steps_per_epoch
    progress = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
    return o.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train(
    cfg: TrainConfig, resume: bool = False, progress: Any = None, on_epoch: Any = None
) -> dict[str, Any]:
    """Run (or resume) training as configured; returns the summary (also in summary.json).

    ``progress(epoch, step_in_epoch, steps, info)`` is called after every step on rank 0;
    ``info`` (loss, lr, samples/s...) is given on logging steps, else None.
    ``on_epoch(epoch, values)`` gets each epoch's validation values on rank 0.
    Rank 0 holds the run folder's lock throughout (:func:`mfsr.locks.folder_lock`): a second
    process training the same run is refused. A file-system error (full, read-only) is raised
    as an :class:`MfsrError` naming the path and how to go on (:func:`resume_hint`), Ctrl-C or
    SIGTERM as :class:`~mfsr.errors.Interrupted` saying the same.
    """
    try:
        if int(os.environ.get("RANK", "0")) != 0:
            return _train(cfg, resume, progress, on_epoch)
        with folder_lock(cfg.run_dir, "run"):
            return _train(cfg, resume, progress, on_epoch)
    except OSError as exc:
        raise MfsrError(f"{describe_os_error(exc)}; {resume_hint(cfg.run_dir)}") from None
    except KeyboardInterrupt as exc:
        raise Interrupted(resume_hint(cfg.run_dir)) from exc


def resume_hint(run_dir: Path) -> str:
    """How to go on with ``run_dir`` after a failure: --resume if it has a checkpoint."""
    if (run_dir / "checkpoints" / "last.safetensors").exists():
        return f"the last checkpoint in {run_dir}/checkpoints is intact: add --resume"
    return "no checkpoint was written yet: start the run again"


class DivergenceWatch:
    """``nan_policy: stop``: the first step with a non-finite loss, and that loss, kept on the
    device so that a step needs no host sync; :meth:`check` (a sync) runs before logging,
    validation and checkpoints."""

    def __init__(self, run: Run):
        self.cfg, self.run_dir = run.cfg, run.run_dir
        self.step = torch.tensor(run.counters["step"], device=run.device)
        self.bad = (torch.tensor(-1, device=run.device), torch.tensor(0.0, device=run.device))

    def record(self, loss: torch.Tensor, finite: torch.Tensor) -> None:
        """Note this step's loss (device-side only), then count the step."""
        if self.cfg.nan_policy == "stop":
            step, value = self.bad
            first_bad = torch.where(finite | (step >= 0), step, self.step)
            self.bad = (first_bad, torch.where(first_bad == self.step, loss.detach(), value))
        self.step += 1

    def check(self) -> None:
        """Raise :class:`MfsrError` if a recorded step diverged."""
        step = int(self.bad[0])
        if step >= 0:
            raise MfsrError(
                f"non-finite loss ({float(self.bad[1])}) at step {step} (epoch "
                f"{step // self.cfg.steps_per_epoch}); the last good checkpoint is kept in "
                f"{self.run_dir}/checkpoints; lower optim.lr, set optim.grad_clip, or set "
                "nan_policy: skip"
            )


def _step(run: Run, batch: Any, lr: float, watch: DivergenceWatch):
    """One optimizer step on ``batch``: (samples, loss, finite, gradient norm or None)."""
    cfg = run.cfg
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    frames, hr = batch_tensors(batch, cfg, run.hr_size, run.device)  # (B, N, C, h, w), (B, C, H, W)
    if run.graphs:  # a new step: the last step's CUDA-graph outputs may be overwritten
        torch.compiler.cudagraph_mark_step_begin()
    with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
        loss = run.loss_fn(run.net(frames).float(), hr)
    finite = torch.isfinite(loss.detach())
    watch.record(loss, finite)
    grad_norm = None
    if cfg.nan_policy == "skip" and not finite:  # deciding to skip needs the value
        run.optimizer.zero_grad(set_to_none=True)
        run.counters["skipped"] += 1
    else:
        run.scaler.scale(loss).backward()
        run.scaler.unscale_(run.optimizer)
        clip = cfg.optim.grad_clip if cfg.optim.grad_clip is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), clip)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=True)
    return frames.shape[0], loss, finite, grad_norm


def _log_step(run: Run, epoch: int, lr: float, loss, finite, grad_norm, per_s: float) -> dict:
    """Write the step's line to the logs; returns it for the progress display."""
    finite = bool(finite)
    info = {
        "loss": float(loss.detach()),
        "lr": lr,
        "samples_per_s": per_s,
        "terms": {k: float(v) for k, v in run.loss_fn.last_terms.items()},
        "grad_norm": float(grad_norm) if finite and grad_norm is not None else None,
    }
    run.log.train(run.counters["step"], epoch, info)
    return info


def _end_of_epoch(run: Run, epoch: int, on_epoch: Callable | None) -> None:
    """Rank 0: validate, log, keep the best model so far."""
    values = validate(run.model, run.loss_fn, run.val_batches, run.cfg, run.run_dir, epoch)
    values["bicubic_psnr"] = run.bicubic_psnr
    run.log.val(run.counters["step"], epoch, values)
    if on_epoch is not None:
        on_epoch(epoch, values)
    best = run.counters["best_psnr"]
    if best is None or values["psnr"] > best:
        run.counters["best_psnr"] = values["psnr"]
        run.checkpointer.save("best", run.counters, full=False)
    run.model.train()


def _train(cfg: TrainConfig, resume: bool, progress: Any, on_epoch: Any) -> dict[str, Any]:
    run = set_up(cfg, resume)
    counters, master = run.counters, run.master
    watch = DivergenceWatch(run)
    started = time.perf_counter()
    # one loader for the rest of the run (its workers are forked once), split into epochs here
    stream = TrainStream(
        run.train_set, cfg, run.rank, run.world, counters["epoch"], counters["step_in_epoch"]
    )
    loader = train_loader(stream, cfg, run.device.type == "cuda")
    failure_at = lambda: f"training data, epoch {counters['epoch'] + 1}"  # noqa: E731
    with loader_errors(failure_at, lambda: resume_hint(run.run_dir)):
        batches = iter(loader)
        for epoch in range(counters["epoch"], cfg.epochs):
            first = counters["step_in_epoch"] if epoch == counters["epoch"] else 0
            run.model.train()
            run.loss_fn.train()
            tick, seen = time.perf_counter(), 0
            # range first: zip stops at the epoch's end without taking the next epoch's batch
            for step_in_epoch, batch in zip(range(first, cfg.steps_per_epoch), batches):
                lr = lr_at(cfg, counters["step"])
                size, loss, finite, grad_norm = _step(run, batch, lr, watch)
                counters["step"] += 1
                counters["step_in_epoch"] = step_in_epoch + 1
                seen += size * run.world
                end_of_epoch = counters["step_in_epoch"] == cfg.steps_per_epoch
                periodic = cfg.checkpoint_every and counters["step"] % cfg.checkpoint_every == 0
                log_step = master and counters["step"] % cfg.log_every == 0
                if log_step or end_of_epoch or periodic:  # host syncs only on these steps
                    watch.check()
                info = None
                if log_step:
                    per_s = seen / max(time.perf_counter() - tick, 1e-9)
                    info = _log_step(run, epoch, lr, loss, finite, grad_norm, per_s)
                if master and progress is not None:
                    progress(epoch, counters["step_in_epoch"], cfg.steps_per_epoch, info)
                if end_of_epoch:
                    counters["epoch"], counters["step_in_epoch"] = epoch + 1, 0
                    if master:
                        _end_of_epoch(run, epoch, on_epoch)
                if master and (end_of_epoch or periodic):
                    run.checkpointer.save("last", counters, full=True)
                if run.world > 1 and end_of_epoch:
                    torch.distributed.barrier()
        del batches  # stops the loader's workers now, not when collected
    run.log.close()
    return _finish(run, time.perf_counter() - started)


def _finish(run: Run, wall_s: float) -> dict[str, Any]:
    """The run's summary (``summary.json`` on rank 0); leaves the process group."""
    summary = {
        "steps": run.counters["step"],
        "epochs": run.cfg.epochs,
        "best_val_psnr": run.counters["best_psnr"],
        "bicubic_val_psnr": run.bicubic_psnr,
        "skipped_batches": run.counters["skipped"],
        "wall_s": wall_s,
        "random_trunk": run.cfg.random_trunk,
        "trunks": run.trunks,
        "device": str(run.device),
        "world_size": run.world,
    }
    if run.master:
        write_json(run.run_dir / "summary.json", summary)
    if run.world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary
