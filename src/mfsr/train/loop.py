"""``mfsr train``: the training loop, in one readable function (after nanoGPT's train.py).

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
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml

from mfsr.config import read_yaml, to_dict, with_defaults, write_text_atomic
from mfsr.errors import Interrupted, MfsrError, describe_os_error
from mfsr.locks import folder_lock
from mfsr.train.checkpoint import read_checkpoint, read_init_weights, save_checkpoint
from mfsr.train.config import CUDA_GRAPH_MODES, TrainConfig
from mfsr.train.data import (
    TrainStream,
    ValBatches,
    batch_tensors,
    check_geometry,
    ensure_dataset,
    loader_errors,
    train_dataset,
    train_loader,
    val_dataset,
)
from mfsr.train.logs import RunLog, environment, save_samples
from mfsr.train.state import pack_training_state, restore_training_state


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


def quality(sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image PSNR (dB) and SSIM of (B, 3, H, W) [0, 1] tensors, float64 on their device,
    with the conventions of ``docs/metrics.md`` (8-bit quantised RGB). On the CPU: the NumPy
    functions ``mfsr evaluate`` uses; on CUDA: their torch twin on the GPU (equal to about
    1e-12), so validation neither copies outputs to the host nor waits for the GPU."""
    if sr.device.type == "cuda":
        from mfsr.metrics.device import psnr_ssim

        return psnr_ssim(sr, hr)
    from mfsr.metrics.pixel import psnr, ssim

    return torch.from_numpy(psnr(sr, hr)), torch.from_numpy(ssim(sr, hr))


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam as configured; on CUDA its fused implementation (one kernel for all parameters
    instead of a dozen: a ``paper`` step at batch 4 is bound by kernel launches)."""
    cuda = next(model.parameters()).device.type == "cuda"
    return torch.optim.Adam(
        model.parameters(),
        lr=cfg.optim.lr,
        betas=cfg.optim.betas,
        weight_decay=cfg.optim.weight_decay,
        fused=True if cuda else None,
    )


def setup_distributed(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """(rank, world size, device) from torchrun's environment; initialises the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MfsrError(f"device {cfg.device!r} requested but CUDA is not available")
        device = torch.device("cuda", local if world > 1 or want == "cuda" else int(want[5:]))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return rank, world, device


def _check_run_dir(cfg: TrainConfig, resume: bool) -> tuple[Path, dict | None]:
    """Check the run folder (nothing is written); returns (folder, checkpoint to resume or
    None)."""
    run_dir = cfg.run_dir
    last = run_dir / "checkpoints" / "last.safetensors"
    resolved = to_dict(cfg)
    if resume:
        if not last.exists():
            raise MfsrError(f"{run_dir}: nothing to resume (no checkpoints/last.safetensors)")
        try:  # the run's settings, to refuse resuming it with others
            saved = with_defaults(TrainConfig, read_yaml(run_dir / "config.yaml"))
        except (MfsrError, TypeError, ValueError) as exc:
            raise MfsrError(
                f"cannot resume {run_dir}: its config.yaml is missing or not a training config "
                f"({exc}); "
                "restore it, or start a new run under another name"
            ) from None
        if saved != resolved:
            keys = sorted(k for k in set(saved) | set(resolved) if saved.get(k) != resolved.get(k))
            raise MfsrError(f"{run_dir}: config differs from the run's ({', '.join(keys)})")
        return run_dir, {"path": last}
    if last.exists():
        raise MfsrError(
            f"{run_dir}: a run with checkpoints already exists; add --resume to continue it or "
            "choose another name (--name or --set name=...)"
        )
    return run_dir, None


def _create_run_dir(cfg: TrainConfig) -> None:
    """Write the new run's folder and ``config.yaml`` (once data, model and loss are built, so
    a setup error leaves no run folder behind)."""
    (cfg.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    write_text_atomic(cfg.run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))


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


def _train(cfg: TrainConfig, resume: bool, progress: Any, on_epoch: Any) -> dict[str, Any]:
    from mfsr.losses import build_loss
    from mfsr.models import build_model

    rank, world, device = setup_distributed(cfg)
    master = rank == 0
    run_dir, resume_from = _check_run_dir(cfg, resume) if master else (cfg.run_dir, None)
    # fine-tuning source: read (and refused if unusable) before any data is built
    init_state, init = None, None
    if cfg.init_from is not None and not resume:
        init_state, init = read_init_weights(cfg)
    meta = ensure_dataset(cfg) if master else None
    if world > 1:
        box = [meta, resume_from]
        torch.distributed.broadcast_object_list(box, src=0)
        meta, resume_from = box
        if resume and not master:
            resume_from = {"path": run_dir / "checkpoints" / "last.safetensors"}
    check_geometry(cfg, meta)
    train_set, val_set = train_dataset(cfg, meta), val_dataset(cfg)

    cuda = device.type == "cuda"
    if cuda and cfg.deterministic:
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model).to(device)
    if cuda and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(cfg.loss, device=device, random_trunk=cfg.random_trunk, **cfg.loss_options)
    optimizer = build_optimizer(cfg, model)
    amp = cfg.amp if cuda else "none"
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")

    counters = {"step": 0, "epoch": 0, "step_in_epoch": 0, "best_psnr": None, "skipped": 0}
    if init_state is not None:
        model.load_state_dict(init_state)
    if master and resume_from is None:
        _create_run_dir(cfg)
    if master:
        for stale in run_dir.glob("checkpoints/.*.tmp-*"):
            stale.unlink()  # left by a process killed inside a checkpoint write
    if resume_from is not None:
        tensors, doc = read_checkpoint(resume_from["path"])
        counters = restore_training_state(model, optimizer, scaler, tensors, doc)
    trunks = [t.to_dict() for t in loss_fn.trunk_info()]
    if master:
        env = {**environment(device, world), "trunks": trunks, "random_trunk": cfg.random_trunk}
        if init is not None:  # written once: a resumed run keeps it
            _write_json(run_dir / "init_from.json", init)
        _write_json(run_dir / "env.json", env)
    log = RunLog(run_dir, master, counters["step"] if resume_from else None)

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if cuda else None
        )
    if cfg.compile:
        net = torch.compile(net, mode=cfg.compile_mode)
    graphs = cfg.compile and cuda and cfg.compile_mode in CUDA_GRAPH_MODES
    val_batches = ValBatches(val_set, cfg.val_batch(cuda), device)  # read once, then kept
    bicubic_psnr = _bicubic_psnr(val_batches, cfg) if master else None

    def checkpoint(name: str, full: bool) -> None:
        meta_doc = {
            "model_config": to_dict(cfg.model),
            "train_config": to_dict(cfg),
            "trunks": trunks,
            "random_trunk": cfg.random_trunk,
        }
        if full:
            tensors, doc = pack_training_state(model, optimizer, scaler, dict(counters))
            meta_doc.update(doc)
        else:
            tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
            meta_doc["counters"] = dict(counters)
        save_checkpoint(run_dir / "checkpoints" / f"{name}.safetensors", tensors, meta_doc)

    # nan_policy stop: the first step with a non-finite loss and that loss, kept on the device
    # so that a step needs no host sync; checked before logging, validation and checkpoints
    step_on_device = torch.tensor(counters["step"], device=device)
    bad = (torch.tensor(-1, device=device), torch.tensor(0.0, device=device))

    def stop_if_diverged() -> None:
        step = int(bad[0])
        if step >= 0:
            raise MfsrError(
                f"non-finite loss ({float(bad[1])}) at step {step} (epoch "
                f"{step // cfg.steps_per_epoch}); the last good checkpoint is kept in "
                f"{run_dir}/checkpoints; lower optim.lr, set optim.grad_clip, or set "
                "nan_policy: skip"
            )

    started = time.perf_counter()
    # one loader for the rest of the run (its workers are forked once), split into epochs here
    stream = TrainStream(train_set, cfg, rank, world, counters["epoch"], counters["step_in_epoch"])
    loader = train_loader(stream, cfg, cuda)

    def failure_at() -> str:
        return f"training data, epoch {counters['epoch'] + 1}"

    with loader_errors(failure_at, lambda: resume_hint(run_dir)):
        batches = iter(loader)
        for epoch in range(counters["epoch"], cfg.epochs):
            first = counters["step_in_epoch"] if epoch == counters["epoch"] else 0
            model.train()
            loss_fn.train()
            tick, seen = time.perf_counter(), 0
            # range first: zip stops at the epoch's end without taking the next epoch's batch
            for step_in_epoch, batch in zip(range(first, cfg.steps_per_epoch), batches):
                lr = lr_at(cfg, counters["step"])
                for group in optimizer.param_groups:
                    group["lr"] = lr
                frames, hr = batch_tensors(batch, cfg, meta["hr_size"], device)
                if graphs:  # a new step: the last step's CUDA-graph outputs may be overwritten
                    torch.compiler.cudagraph_mark_step_begin()
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    loss = loss_fn(net(frames).float(), hr)
                finite = torch.isfinite(loss.detach())
                # nan_policy stop: no host sync; remembered on the device, checked below
                if cfg.nan_policy == "stop":
                    first_bad = torch.where(finite | (bad[0] >= 0), bad[0], step_on_device)
                    bad = (
                        first_bad,
                        torch.where(first_bad == step_on_device, loss.detach(), bad[1]),
                    )
                step_on_device += 1
                if cfg.nan_policy == "skip" and not finite:  # deciding to skip needs the value
                    optimizer.zero_grad(set_to_none=True)
                    counters["skipped"] += 1
                else:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                    clip = cfg.optim.grad_clip if cfg.optim.grad_clip is not None else math.inf
                    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                counters["step"] += 1
                counters["step_in_epoch"] = step_in_epoch + 1
                seen += frames.shape[0] * world
                info = None
                end_of_epoch = counters["step_in_epoch"] == cfg.steps_per_epoch
                periodic = cfg.checkpoint_every and counters["step"] % cfg.checkpoint_every == 0
                log_step = master and counters["step"] % cfg.log_every == 0
                if log_step or end_of_epoch or periodic:  # host syncs only on these steps
                    stop_if_diverged()
                if log_step:
                    finite = bool(finite)
                    info = {
                        "loss": float(loss.detach()),
                        "lr": lr,
                        "samples_per_s": seen / max(time.perf_counter() - tick, 1e-9),
                        "terms": {k: float(v) for k, v in loss_fn.last_terms.items()},
                        "grad_norm": float(grad_norm) if finite else None,
                    }
                    log.train(counters["step"], epoch, info)
                if master and progress is not None:
                    progress(epoch, counters["step_in_epoch"], cfg.steps_per_epoch, info)
                if end_of_epoch:
                    counters["epoch"], counters["step_in_epoch"] = epoch + 1, 0
                if end_of_epoch and master:
                    values = validate(model, loss_fn, val_batches, cfg, run_dir, epoch)
                    values["bicubic_psnr"] = bicubic_psnr
                    log.val(counters["step"], epoch, values)
                    if on_epoch is not None:
                        on_epoch(epoch, values)
                    best = counters["best_psnr"]
                    if best is None or values["psnr"] > best:
                        counters["best_psnr"] = values["psnr"]
                        checkpoint("best", full=False)
                    model.train()
                if master and (end_of_epoch or periodic):
                    checkpoint("last", full=True)
                if world > 1 and end_of_epoch:
                    torch.distributed.barrier()
        del batches  # stops the loader's workers now, not when collected
    log.close()
    summary = {
        "steps": counters["step"],
        "epochs": cfg.epochs,
        "best_val_psnr": counters["best_psnr"],
        "bicubic_val_psnr": bicubic_psnr,
        "skipped_batches": counters["skipped"],
        "wall_s": time.perf_counter() - started,
        "random_trunk": cfg.random_trunk,
        "trunks": trunks,
        "device": str(device),
        "world_size": world,
    }
    if master:
        _write_json(run_dir / "summary.json", summary)
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary


def _write_json(path: Path, data: dict) -> None:
    import json

    write_text_atomic(path, json.dumps(data, indent=1, default=str) + "\n")


@torch.no_grad()
def _bicubic_psnr(val_batches: ValBatches, cfg: TrainConfig) -> float:
    """Mean validation PSNR of bicubic upsampling of the reference frame (the bar to clear)."""
    from mfsr.models import ModelConfig, build_model

    bicubic = build_model(
        replace(ModelConfig(), name="bicubic", n_frames=cfg.model.n_frames, scale=cfg.model.scale)
    )
    values = [quality(bicubic(frames), hr)[0] for frames, hr in val_batches]
    return float(torch.cat(values).mean())


@torch.no_grad()
def validate(
    model, loss_fn, val_batches: ValBatches, cfg: TrainConfig, run_dir: Path | None, epoch: int
) -> dict:
    """Loss, PSNR and SSIM on the validation samples; writes the epoch's sample image into
    ``run_dir`` (with ``cfg.samples`` > 0). Values stay on the device until the end: one host
    sync per pass, not one per batch."""
    model.eval()
    loss_fn.eval()
    losses, psnrs, ssims, first = [], [], [], None
    for frames, hr in val_batches:
        sr = model(frames).float()
        losses.append(loss_fn(sr, hr).double() * frames.shape[0])
        p, s = quality(sr, hr)
        psnrs.append(p)
        ssims.append(s)
        if first is None:
            ref = frames.shape[1] // 2
            first = (
                frames[: cfg.samples, ref].cpu(),
                sr[: cfg.samples].cpu(),
                hr[: cfg.samples].cpu(),
            )
    if cfg.samples and first is not None and run_dir is not None:
        save_samples(run_dir / "samples" / f"epoch_{epoch + 1:04d}.png", *first)
    n = sum(len(p) for p in psnrs)
    return {
        "loss": float(torch.stack(losses).sum()) / n,
        "psnr": float(torch.cat(psnrs).mean()),
        "ssim": float(torch.cat(ssims).mean()),
    }
