"""Everything a training run needs before its first step (:func:`set_up`): the process group,
the run folder, the data, the model, loss and optimizer, a resumed state, the logs.

The order of the steps is part of the result: the model's initial weights, a random
perceptual trunk and the optimizer draw from the generator seeded just before them, so a
resumed or repeated run on the CPU is bit-identical.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from mfsr.config import read_yaml, to_dict, with_defaults, write_text_atomic
from mfsr.errors import BadArgument, MfsrError
from mfsr.losses import build_loss
from mfsr.models import ModelConfig, build_model
from mfsr.train.checkpoint import read_checkpoint, read_init_weights
from mfsr.train.config import CUDA_GRAPH_MODES, TrainConfig
from mfsr.train.data import (
    ValBatches,
    check_geometry,
    ensure_dataset,
    train_dataset,
    val_dataset,
)
from mfsr.train.logs import RunLog, environment
from mfsr.train.state import Checkpointer, restore_training_state
from mfsr.train.validation import quality


@dataclass
class Run:
    """A run ready to train. ``model`` is the module whose weights are saved, ``net`` what the
    step calls (``model``, wrapped by DDP and/or ``torch.compile``); ``counters``: ``step``,
    ``epoch``, ``step_in_epoch``, ``best_psnr``, ``skipped`` (saved in every checkpoint)."""

    cfg: TrainConfig
    rank: int
    world: int
    device: torch.device
    run_dir: Path
    hr_size: int
    train_set: Any
    model: torch.nn.Module
    net: torch.nn.Module
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    graphs: bool  # CUDA graphs: each step must be marked
    counters: dict[str, Any]
    trunks: list[dict]
    log: RunLog
    val_batches: ValBatches
    bicubic_psnr: float | None
    checkpointer: Checkpointer

    @property
    def master(self) -> bool:
        """Rank 0: validates, logs and writes checkpoints."""
        return self.rank == 0


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


def check_run_dir(cfg: TrainConfig, resume: bool) -> dict | None:
    """Check the run folder (nothing is written); returns the checkpoint to resume or None."""
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
        return {"path": last}
    if last.exists():
        raise BadArgument(
            f"{run_dir}: a run with checkpoints already exists; add `resume` to continue it or "
            "choose another `name`"
        )
    return None


def write_json(path: Path, data: dict) -> None:
    """``data`` as indented JSON, written atomically."""
    write_text_atomic(path, json.dumps(data, indent=1, default=str) + "\n")


def _data(
    cfg: TrainConfig, resume: bool, master: bool, world: int, resume_from: dict | None
) -> tuple[dict, dict | None]:
    """(the dataset's ``dataset.json``, the checkpoint to resume), the same on every rank."""
    meta = ensure_dataset(cfg) if master else None
    if world > 1:
        box = [meta, resume_from]
        torch.distributed.broadcast_object_list(box, src=0)
        meta, resume_from = box
        if resume and not master:
            resume_from = {"path": cfg.run_dir / "checkpoints" / "last.safetensors"}
    check_geometry(cfg, meta)  # type: ignore[arg-type]
    return meta, resume_from  # type: ignore[return-value]


def _cuda_flags(cfg: TrainConfig) -> None:
    if cfg.deterministic:
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def _wrapped(cfg: TrainConfig, model: torch.nn.Module, world: int, device: torch.device):
    """What the step calls: ``model`` under DDP (several processes) and torch.compile."""
    net = model
    if world > 1:
        ids = [device] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if cfg.compile:
        net = torch.compile(net, mode=cfg.compile_mode)
    return net


def set_up(cfg: TrainConfig, resume: bool) -> Run:
    """Build the run (see the module docstring); raises :class:`MfsrError` for a run folder,
    dataset, fine-tuning source or checkpoint that cannot be used."""
    rank, world, device = setup_distributed(cfg)
    master, cuda, run_dir = rank == 0, device.type == "cuda", cfg.run_dir
    resume_from = check_run_dir(cfg, resume) if master else None
    init_state, init = None, None
    if cfg.init_from is not None and not resume:  # read (or refused) before any data is built
        init_state, init = read_init_weights(cfg)
    meta, resume_from = _data(cfg, resume, master, world, resume_from)
    train_set, val_set = train_dataset(cfg, meta), val_dataset(cfg)
    if cuda:
        _cuda_flags(cfg)
    torch.manual_seed(cfg.seed)  # the weights, a random trunk, then the optimizer
    model = build_model(cfg.model).to(device)
    if cuda and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(cfg.loss, device=device, random_trunk=cfg.random_trunk, **cfg.loss_options)
    optimizer = build_optimizer(cfg, model)
    amp = cfg.amp if cuda else "none"
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    counters = {"step": 0, "epoch": 0, "step_in_epoch": 0, "best_psnr": None, "skipped": 0}
    if init_state is not None:
        model.load_state_dict(init_state)
    if master and resume_from is None:  # only now: a setup error leaves no run folder behind
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
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
            write_json(run_dir / "init_from.json", init)
        write_json(run_dir / "env.json", env)
    log = RunLog(run_dir, master, counters["step"] if resume_from else None)
    val_batches = ValBatches(val_set, cfg.val_batch(cuda), device)  # read once, then kept
    return Run(
        cfg, rank, world, device, run_dir, meta["hr_size"], train_set, model,
        _wrapped(cfg, model, world, device), loss_fn, optimizer, scaler,
        {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp),
        cfg.compile and cuda and cfg.compile_mode in CUDA_GRAPH_MODES,
        counters, trunks, log, val_batches,
        bicubic_psnr(val_batches, cfg) if master else None,
        Checkpointer(run_dir, cfg, trunks, model, optimizer, scaler),
    )  # fmt: skip


@torch.no_grad()
def bicubic_psnr(val_batches: ValBatches, cfg: TrainConfig) -> float:
    """Mean validation PSNR of bicubic upsampling of the reference frame (the bar to clear)."""
    bicubic = build_model(
        replace(ModelConfig(), name="bicubic", n_frames=cfg.model.n_frames, scale=cfg.model.scale)
    )
    values = [quality(bicubic(frames), hr)[0] for frames, hr in val_batches]
    return float(torch.cat(values).mean())
