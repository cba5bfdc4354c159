"""Training-loop overhead: ``mfsr.train.loop.train`` step time vs a bare step, in one run.

The bare step is forward + loss + backward + Adam step of the same model on one fixed batch
already in memory. The loop step is the real ``train()`` (data synthesis or loading, collation,
lr schedule, NaN check, grad-norm, logging) timed between consecutive progress callbacks, after
warm-up, validation excluded. ``loop_overhead`` = median loop step / median bare step.

    .venv/bin/python benchmarks/train_loop.py [--config quick] [--steps 30] [--workers 0 2]
        [--set key=value ...] [--json out.json]

The dataset named by the config must exist or be buildable (see docs/training.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mfsr.data.dataset import collate
from mfsr.losses import build_loss
from mfsr.models import build_model
from mfsr.train.config import load_train_config
from mfsr.train.data import EpochStream, ensure_dataset, train_dataset
from mfsr.train.loop import train


def bare_steps(cfg, steps: int, warmup: int) -> list[float]:
    meta = ensure_dataset(cfg)
    stream = EpochStream(train_dataset(cfg, meta), cfg, epoch=0, rank=0, world=1, first_step=0)
    batch = collate([stream[i] for i in range(cfg.batch_size)])
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model).train()
    loss_fn = build_loss(cfg.loss, random_trunk=cfg.random_trunk, **cfg.loss_options)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        loss = loss_fn(model(batch["frames"]), batch["hr"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def data_steps(cfg, steps: int, warmup: int) -> list[float]:
    """Time to produce each batch in the main process (synthesis + collation), no training."""
    meta = ensure_dataset(cfg)
    stream = EpochStream(train_dataset(cfg, meta), cfg, epoch=0, rank=0, world=1, first_step=0)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        collate([stream[i * cfg.batch_size + k] for k in range(cfg.batch_size)])
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def loop_steps(cfg, steps: int, warmup: int, workers: int) -> list[float]:
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        run_cfg = load_train_config(
            CONFIG,
            [
                *SETS,
                f"out_dir={tmp}",
                "epochs=1",
                f"steps_per_epoch={warmup + steps}",
                "data.val_limit=4",
                "samples=0",
                f"log_every={warmup + steps}",
                f"data.workers={workers}",
            ],
        )
        train(run_cfg, progress=lambda *a: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1 :])]


def main() -> None:
    global CONFIG, SETS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="quick")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    CONFIG, SETS = args.config, args.sets
    cfg = load_train_config(args.config, args.sets)
    rows = []
    bare_before = bare_steps(cfg, args.steps, args.warmup)
    for workers in args.workers:
        loop = loop_steps(cfg, args.steps, args.warmup, workers)
        rows.append({"workers": workers, "loop_ms": 1000 * statistics.median(loop)})
    bare_after = bare_steps(cfg, args.steps, args.warmup)
    data_ms = 1000 * statistics.median(data_steps(cfg, args.steps, args.warmup))
    bare = 1000 * statistics.median(bare_before + bare_after)
    for row in rows:
        row["bare_ms"] = bare
        row["loop_overhead"] = row["loop_ms"] / bare
        # What the loop adds besides producing the data (meaningful for workers = 0, where the
        # batch is made in the step): the loop's own machinery.
        row["overhead_without_data"] = (row["loop_ms"] - data_ms) / bare
    result = {
        "config": args.config,
        "sets": args.sets,
        "steps": args.steps,
        "batch_size": cfg.batch_size,
        "model": {
            "width": cfg.model.width,
            "depth": cfg.model.depth,
            "scale": cfg.model.scale,
            "n_frames": cfg.model.n_frames,
        },
        "torch_threads": torch.get_num_threads(),
        "bare_ms_before": 1000 * statistics.median(bare_before),
        "bare_ms_after": 1000 * statistics.median(bare_after),
        "data_ms_per_batch": data_ms,
        "rows": rows,
    }
    print("| workers | loop step (ms) | bare step (ms) | loop_overhead | without data |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['workers']} | {row['loop_ms']:.1f} | {row['bare_ms']:.1f} | "
            f"{row['loop_overhead']:.3f} | {row['overhead_without_data']:.3f} |"
        )
    print(f"data (synthesis + collate) per batch in the main process: {data_ms:.1f} ms")
    print(
        f"bare step before/after the loop runs: {result['bare_ms_before']:.1f} / "
        f"{result['bare_ms_after']:.1f} ms"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


CONFIG: str = "quick"
SETS: list[str] = []

if __name__ == "__main__":
    main()
