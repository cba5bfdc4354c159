"""How long does the full metric suite take on a test set, with and without cached HR faces?

Runs ``mfsr.evaluate.evaluate`` twice on the same test set and the same outputs (the bicubic
baseline by default): first with an empty descriptor cache (every HR face is detected and
described), then again with the cache the first run filled. Metrics: SSIM, MSE, PSNR, CPBD of
HR and output (sharpness difference), LPIPS (AlexNet trunk; a random trunk of the same
architecture when the ImageNet file is absent: same cost), dlib FFR (HR + output). Prints a
Markdown table with wall time and the CPU time of all processes (this one and the metric
workers): on a shared machine, CPU seconds / 2 estimates the wall time on two free cores.
``--json`` also writes the figures and the machine description.

    .venv/bin/mfsr data build --source ../shared/data/lfw/images_deepfunneled \\
        --out /tmp/lfw753 --counts 0,0,753 --splits test --seed 0
    .venv/bin/python benchmarks/evaluate_speed.py --data /tmp/lfw753/test
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="test set folder (753 LFW faces)")
    p.add_argument("--baseline", default="bicubic", help="baseline producing the outputs")
    p.add_argument("--workers", type=int, default=2, help="metric worker processes")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, default=None, help="first N samples only")
    p.add_argument("--out", type=Path, default=None, help="keep the result files here")
    p.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    return p.parse_args(argv)


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message=".*RANDOM trunk.*")
    from mfsr.evaluate import EvalOptions, evaluate
    from mfsr.weights import cache_path

    trunk_missing = not cache_path("alexnet").is_file()
    cache = Path(tempfile.mkdtemp(prefix="mfsr-bench-cache-"))
    out_root = args.out or Path(tempfile.mkdtemp(prefix="mfsr-bench-eval-"))
    runs = []
    try:
        for label in ("first run (empty descriptor cache)", "second run (HR descriptors cached)"):
            opts = EvalOptions(
                data=args.data,
                out=out_root / f"run{len(runs) + 1}",
                baseline=args.baseline,
                batch_size=args.batch_size,
                random_trunk=trunk_missing,
                workers=args.workers,
                cache_dir=cache,
                limit=args.limit,
            )
            load = os.getloadavg()[0]
            cpu0 = _cpu_seconds()
            start = time.perf_counter()
            result = evaluate(opts)  # its worker processes have exited when it returns
            seconds = time.perf_counter() - start
            cpu = _cpu_seconds() - cpu0
            n = result.summary["counts"]["evaluated"]
            hr = result.summary["hr_descriptors"]
            runs.append(
                {
                    "run": label,
                    "images": n,
                    "seconds": seconds,
                    "ms_per_image": 1000 * seconds / n,
                    "cpu_seconds": cpu,
                    "cpus_used": cpu / seconds,
                    "hr_from_cache": hr["from_cache"],
                    "hr_computed": hr["computed"],
                    "loadavg_1min_before": load,
                }
            )
            print(f"{label}: {seconds:.1f} s, {cpu:.1f} CPU s, {n} images", file=sys.stderr)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if args.out is None:
            shutil.rmtree(out_root, ignore_errors=True)
    print(f"outputs: {args.baseline}; workers: {args.workers}; LPIPS trunk random: {trunk_missing}")
    print()
    print(
        "| run | images | HR faces from cache / computed | wall s | ms/image | CPU s "
        "(all processes) | CPUs used | load before |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r['run']} | {r['images']} | {r['hr_from_cache']} / {r['hr_computed']} | "
            f"{r['seconds']:.1f} | {r['ms_per_image']:.0f} | {r['cpu_seconds']:.1f} | "
            f"{r['cpus_used']:.2f} | {r['loadavg_1min_before']:.2f} |"
        )
    if args.json:
        from mfsr.bench.run import machine

        doc = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}
        args.json.write_text(json.dumps({**doc, "runs": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
