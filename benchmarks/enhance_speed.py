"""``mfsr enhance`` throughput on CPU: faces per second, batched vs one window at a time.

Real LR windows are cut once from a VoxCeleb2 clip shrunk so the face is about 32 px wide
(:mod:`mfsr.enhance.source`: tracking, crops, registration), then each model enhances all of
them, one window per call (batch 1) and ``--batch-sizes`` windows per call, with 1 and 2
torch threads. Model time only (the ``Enhancer`` call: tensor conversion, forward pass, clamp,
back to 8-bit); each figure is the median of ``--repeats`` passes after one warm-up batch.
Finally one end-to-end run of :func:`mfsr.enhance.enhance_video` (decode, track, crop,
register, model, write PNGs and JSON) per model, with its stage timings.

Models: the ``classical`` baseline and a U-Net+GEU: ``--model`` (a checkpoint or run folder),
else a freshly initialised ``quick``-preset network at x4 (random weights: same cost as a
trained one, output meaningless; the output says so).

    .venv/bin/python benchmarks/enhance_speed.py [--model runs/quick] [--batch-sizes 1 4 16]
        [--windows 32] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mfsr.data.video import track_face
from mfsr.enhance import enhance_video, load_enhancer
from mfsr.enhance.geometry import all_windows
from mfsr.enhance.model import Enhancer
from mfsr.enhance.source import iter_windows
from mfsr.models import build_model, load_model_config

CLIP = Path("../shared/data/video-voxceleb2/Audio_Source_00086.mp4")
DOWNSCALE = 0.213  # its 150 px face -> about 32 px


def windows_from_clip(clip: Path, count: int, n_frames: int, lr_size: int) -> np.ndarray:
    """``uint8 (count, N, lr, lr, 3)`` registered LR windows (stride 1) from the shrunk clip."""
    track = track_face(clip, downscale=DOWNSCALE, max_frames=count + n_frames - 1)
    windows = all_windows(track.segments, n_frames)[:count]
    return np.stack(
        [w.lr for w in iter_windows(clip, track, windows, lr_size, downscale=DOWNSCALE)]
    )


def random_quick(scale: int = 4) -> Enhancer:
    cfg = load_model_config("quick", {"scale": scale})
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    info = {"kind": "random-init", "preset": "quick", "note": "random weights (timing only)"}
    return Enhancer(
        model, "quick (random init)", cfg.n_frames, cfg.scale, 32, 4, torch.device("cpu"), info
    )


def time_model(enhancer: Enhancer, windows: np.ndarray, batch: int, repeats: int) -> dict:
    enhancer(windows[:batch])  # warm-up
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(windows), batch):
            enhancer(windows[i : i + batch])
        passes.append(time.perf_counter() - start)
    median = statistics.median(passes)
    return {
        "batch": batch,
        "threads": torch.get_num_threads(),
        "faces": len(windows),
        "faces_per_s": round(len(windows) / median, 2),
        "ms_per_face": round(1000 * median / len(windows), 2),
        "range_ms_per_face": [
            round(1000 * p / len(windows), 2) for p in (min(passes), max(passes))
        ],
    }


def end_to_end(enhancer: Enhancer, clip: Path, batch: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        doc = enhance_video(clip, enhancer, tmp, downscale=DOWNSCALE, batch_size=batch)
    return {
        "batch": batch,
        "threads": torch.get_num_threads(),
        "faces": len(doc["windows"]),
        "frames": doc["input"]["frames_decoded"],
        "timings_s": {k: round(v, 3) for k, v in doc["timings_s"].items()},
        "faces_per_s": round(doc["faces_per_s"]["end_to_end"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--model", help="checkpoint or run folder (default: random quick x4)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--batch-size", type=int, default=None, help="end to end (default: auto)")
    parser.add_argument("--windows", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    net = load_enhancer(args.model) if args.model else random_quick()
    models = {"classical": load_enhancer(baseline="classical"), net.label: net}
    print(
        f"# {platform.processor() or platform.machine()}, nproc {os.cpu_count()}, "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.2f} at start"
    )
    if not args.model:
        print("# U-Net: a freshly initialised quick-preset network (no checkpoint given)")
    windows = windows_from_clip(args.clip, args.windows, net.n_frames, net.lr_size)
    print(
        f"# {len(windows)} windows of {windows.shape[1]} x {windows.shape[2]} px from {args.clip}"
    )
    rows, e2e = [], []
    print("| model | threads | batch | faces | faces/s | ms/face (median) | ms/face (range) |")
    print("|---|---|---|---|---|---|---|")
    for name, enhancer in models.items():
        for threads in args.threads:
            torch.set_num_threads(threads)
            for batch in args.batch_sizes:
                r = {"model": name, **time_model(enhancer, windows, batch, args.repeats)}
                rows.append(r)
                lo, hi = r["range_ms_per_face"]
                print(
                    f"| {name} | {threads} | {batch} | {r['faces']} | {r['faces_per_s']} | "
                    f"{r['ms_per_face']} | {lo}-{hi} |",
                    flush=True,
                )
    torch.set_num_threads(1)
    for name, enhancer in models.items():
        e2e.append({"model": name, **end_to_end(enhancer, args.clip, args.batch_size)})
        print(f"# end to end, {name}, 1 thread, batch {args.batch_size}: {e2e[-1]}", flush=True)
    print(f"# load average {os.getloadavg()[0]:.2f} at end")
    if args.json:
        doc = {"model_rows": rows, "end_to_end": e2e, "model": net.info}
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
