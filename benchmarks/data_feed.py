"""How fast can on-the-fly synthesis feed training?

Measures, in one run over the same LFW photos:

* image decoding alone (``read_rgb``),
* the bare degradation (``synthesize_sequence`` on already decoded photos),
* ``SyntheticSequenceDataset`` through a ``torch.utils.data.DataLoader`` (``collate``, batch 4 by
  default) for each ``--workers`` count: decoding + synthesis + tensor conversion + batching;
* the same for ``data.synthesis: device``: ``plan_sequence`` alone, the DataLoader of plans,
  and the device half (``synthesize_batch``) run here on the CPU in torch, per batch.

Warm-up batches (worker start-up included) are excluded. Every measurement is repeated
``--repeats`` times; the table gives the median and the range of ms/sample over the repeats.
Prints a Markdown table; ``--json`` also writes every repeat and the machine description.

    .venv/bin/python benchmarks/data_feed.py
    .venv/bin/python benchmarks/data_feed.py --scale 4 --hr-size 128 --workers 0,1,2 \\
        --json feed.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from mfsr.bench.run import machine
from mfsr.data.dataset import SourceImage, SyntheticSequenceDataset, collate
from mfsr.data.degrade import Crop, load_degradation, synthesize_sequence
from mfsr.data.device_synthesis import plan_sequence, plan_shapes, synthesize_batch
from mfsr.data.images import read_rgb

DEFAULT_LFW = Path(__file__).resolve().parents[1].parent / "shared/data/lfw/images_deepfunneled"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="folder of LFW identity folders")
    p.add_argument("--images", type=int, default=300, help="number of LFW photos to use")
    p.add_argument("--batches", type=int, default=50, help="timed batches per loader setting")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches before timing")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--scale", type=int, default=8)
    p.add_argument("--hr-size", type=int, default=256)
    p.add_argument("--frames", type=int, default=7)
    p.add_argument("--degradation", default="default", help="preset name or YAML path")
    p.add_argument("--workers", default="0,2", help="comma-separated DataLoader worker counts")
    p.add_argument("--repeats", type=int, default=3, help="repeat every measurement this often")
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch intra-op threads in the main process (default: torch's own choice); "
        "DataLoader workers always use 1",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    args.workers = [int(w) for w in str(args.workers).split(",") if w.strip()]
    if args.hr_size % args.scale:
        p.error(f"--hr-size {args.hr_size} is not divisible by --scale {args.scale}")
    if min(args.batches, args.images, args.batch_size, args.repeats) < 1 or args.warmup < 0:
        p.error("--batches, --images, --batch-size and --repeats must be >= 1, --warmup >= 0")
    return args


def pick_photos(root: Path, count: int) -> list[Path]:
    """``count`` photos spread over the identities: the first photo of every k-th identity."""
    if not root.is_dir():
        sys.exit(f"LFW not found at {root} (pass --lfw)")
    people = sorted(p for p in root.iterdir() if p.is_dir())
    step = max(1, len(people) // count)
    photos = []
    for person in people[::step]:
        first = sorted(person.glob("*.jpg"))[:1]
        photos.extend(first)
        if len(photos) == count:
            break
    if not photos:
        sys.exit(f"no .jpg photos under {root}")
    return photos


def _burn(loops: int, out) -> None:
    start = time.perf_counter()
    x = 0
    for i in range(loops):
        x += i
    out.put(time.perf_counter() - start)


def effective_cpus(n_procs: int, loops: int = 3_000_000) -> float:
    """How many CPUs' worth of work ``n_procs`` busy processes get right now: ``n_procs`` x (time
    of one alone) / (mean time of each when all run at once). On a shared VM this can be well
    below the CPU count; it bounds what extra loader workers can gain."""
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    times = []
    for procs in (1, n_procs):
        out = ctx.Queue()
        workers = [ctx.Process(target=_burn, args=(loops, out)) for _ in range(procs)]
        for w in workers:
            w.start()
        times.append(sum(out.get() for _ in workers) / procs)
        for w in workers:
            w.join()
    return round(n_procs * times[0] / times[1], 2)


def row(name: str, workers: str, samples: int, seconds: float) -> dict:
    return {
        "measurement": name,
        "workers": workers,
        "samples": samples,
        "seconds": round(seconds, 3),
        "samples_per_s": round(samples / seconds, 2),
        "ms_per_sample": round(1000.0 * seconds / samples, 2),
    }


def time_decode(photos: list[Path]) -> dict:
    read_rgb(photos[0])  # warm-up (imports, file cache)
    start = time.perf_counter()
    for path in photos:
        read_rgb(path)
    return row("decode only (`read_rgb`)", "-", len(photos), time.perf_counter() - start)


def time_synthesis(photos: list[Path], args: argparse.Namespace, n: int) -> dict:
    cfg = load_degradation(args.degradation)
    images = [read_rgb(p) for p in photos[:n]]

    def one(i: int) -> None:
        image = images[i % len(images)]
        crop = Crop.centred(image.shape[1], image.shape[0])
        rng = np.random.default_rng([args.seed, 0, i])
        synthesize_sequence(image, crop, args.hr_size, args.scale, args.frames, cfg, rng)

    for i in range(min(args.warmup * args.batch_size, n)):
        one(i)
    start = time.perf_counter()
    for i in range(n):
        one(i)
    return row("`synthesize_sequence` only", "-", n, time.perf_counter() - start)


def time_plan(photos: list[Path], args: argparse.Namespace, n: int) -> dict:
    cfg = load_degradation(args.degradation)
    shapes = plan_shapes([cfg], args.hr_size, args.scale)
    images = [read_rgb(p) for p in photos[:n]]

    def one(i: int) -> None:
        image = images[i % len(images)]
        crop = Crop.centred(image.shape[1], image.shape[0])
        rng = np.random.default_rng([args.seed, 0, i])
        plan_sequence(image, crop, args.hr_size, args.scale, args.frames, cfg, rng, shapes)

    for i in range(min(args.warmup * args.batch_size, n)):
        one(i)
    start = time.perf_counter()
    for i in range(n):
        one(i)
    return row(
        "`plan_sequence` only (device synthesis, CPU half)", "-", n, time.perf_counter() - start
    )


def time_device_half(ds: SyntheticSequenceDataset, args: argparse.Namespace) -> dict:
    """``synthesize_batch`` on this CPU (torch threads of the main process), per batch."""
    batches = [
        collate([ds.sample(b * args.batch_size + k, (0, b)) for k in range(args.batch_size)])
        for b in range(min(args.batches, 10))
    ]
    cpu = torch.device("cpu")
    synthesize_batch(batches[0], cpu, args.scale, args.hr_size, args.frames // 2)
    start = time.perf_counter()
    for batch in batches:
        synthesize_batch(batch, cpu, args.scale, args.hr_size, args.frames // 2)
    n = len(batches) * args.batch_size
    return row("`synthesize_batch` on this CPU (device half)", "-", n, time.perf_counter() - start)


def time_loader(ds: SyntheticSequenceDataset, args: argparse.Namespace, workers: int) -> dict:
    total = (args.warmup + args.batches) * args.batch_size
    order = [i % len(ds) for i in range(total)]  # a plain list is a valid sampler
    loader = DataLoader(
        ds, batch_size=args.batch_size, sampler=order, num_workers=workers, collate_fn=collate
    )
    it = iter(loader)
    for _ in range(args.warmup):
        next(it)
    start = time.perf_counter()
    n = 0
    for batch in it:
        n += len(batch["id"])
    seconds = time.perf_counter() - start
    del it
    if ds.plan_shapes is not None:
        return row("DataLoader of plans (decode + plan + collate)", str(workers), n, seconds)
    return row("DataLoader (decode + synthesis + tensors + collate)", str(workers), n, seconds)


def summarise(runs: list[list[dict]]) -> list[dict]:
    """Median over repeats (``runs[r][i]`` is measurement ``i`` of repeat ``r``)."""
    out = []
    for same in zip(*runs):
        ms = sorted(r["ms_per_sample"] for r in same)
        median_ms = float(np.median(ms))
        out.append(
            {
                "measurement": same[0]["measurement"],
                "workers": same[0]["workers"],
                "samples": same[0]["samples"],
                "repeats": len(same),
                "samples_per_s": round(1000.0 / median_ms, 2),
                "ms_per_sample": round(median_ms, 2),
                "ms_per_sample_min": ms[0],
                "ms_per_sample_max": ms[-1],
            }
        )
    return out


def table(rows: list[dict]) -> str:
    lines = [
        "| measurement | workers | samples x repeats | samples/s | ms/sample (median) "
        "| ms/sample (range) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['measurement']} | {r['workers']} | {r['samples']} x {r['repeats']} | "
            f"{r['samples_per_s']:.1f} | {r['ms_per_sample']:.1f} | "
            f"{r['ms_per_sample_min']:.1f}-{r['ms_per_sample_max']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    photos = pick_photos(args.lfw, args.images)
    cfg = load_degradation(args.degradation)
    sources = [SourceImage(p, p.parent.name, p.stem) for p in photos]
    ds = SyntheticSequenceDataset(
        sources, args.scale, args.frames, args.hr_size, cfg, seed=args.seed
    )
    plans = SyntheticSequenceDataset(
        sources, args.scale, args.frames, args.hr_size, cfg, seed=args.seed, plan=True
    )
    n_timed = args.batches * args.batch_size
    settings = {
        "photos": len(photos),
        "scale": args.scale,
        "hr_size": args.hr_size,
        "lr_size": args.hr_size // args.scale,
        "frames": args.frames,
        "degradation": cfg.name,
        "batch_size": args.batch_size,
        "timed_batches": args.batches,
        "warmup_batches": args.warmup,
        "repeats": args.repeats,
    }
    info = machine()
    info.update(nproc=info["cpus"], cpu_model=info["cpu"])
    print(
        f"# data feed: x{args.scale}, {args.frames} frames, HR {args.hr_size} -> LR "
        f"{args.hr_size // args.scale}, preset {cfg.name!r}, {len(photos)} LFW photos, "
        f"batch {args.batch_size}, {args.batches} timed batches after {args.warmup} warm-up",
        flush=True,
    )
    print(
        f"# {info['nproc']} CPUs ({info['cpu_model']}), torch {info['torch']}, "
        f"opencv {info['opencv']} ({info['opencv_threads']} threads)",
        flush=True,
    )
    runs, capacity = [], []
    for r in range(args.repeats):
        capacity.append(effective_cpus(info["nproc"]))
        rows = [time_decode(photos[:n_timed])]
        rows.append(time_synthesis(photos, args, n_timed))
        for workers in args.workers:
            rows.append(time_loader(ds, args, workers))
        rows.append(time_plan(photos, args, n_timed))
        for workers in args.workers:
            rows.append(time_loader(plans, args, workers))
        rows.append(time_device_half(plans, args))
        runs.append(rows)
        labels = ["decode", "synthesis", *(f"loader/{w}w" for w in args.workers), "plan"]
        labels += [*(f"plan-loader/{w}w" for w in args.workers), "device-half"]
        done = ", ".join(f"{k} {x['ms_per_sample']:.1f}" for k, x in zip(labels, rows))
        print(
            f"# repeat {r + 1}/{args.repeats}: {capacity[-1]:.2f} effective CPUs; ms/sample {done}",
            flush=True,
        )
    summary = summarise(runs)
    print()
    print(table(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "settings": settings,
            "machine": info,
            "effective_cpus_per_repeat": capacity,
            "summary": summary,
            "runs": runs,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
