"""Where the ``registered`` fusion spends its time, per call, on a CPU or a GPU.

On an H200 (``benchmarks/gpu_check.py``, 2026-11-28) the ``paper`` training step with
``model.fusion: registered`` took about 30 ms more than early fusion at batch 4 and at batch 32
alike: a cost per call, not per face. This script splits it up, each figure the median of
``--calls`` synchronised calls after 3 warm-ups, on frames simulated from real LFW faces with
known sub-pixel motion (``--lfw``):

* ``register`` (phase correlation + Lucas-Kanade refinement), ``shift_and_add`` with 1 and 3
  back-projection steps, ``RegisteredFusion.classical`` (both plus the LR alignment), and the
  whole ``paper``-geometry U-Net+GEU forward + backward, early vs registered;
* on CUDA, ``classical`` and the registered step again with ``classical`` eager
  (``mfsr.models.registration.CUDA_GRAPHS = False``) and replayed from a CUDA graph;
* the operators launched per call (torch.profiler), the slowest by host time, and the
  synchronising calls (``torch.cuda.set_sync_debug_mode``), written to ``--out``.

    PYTHONPATH=src python3 benchmarks/registration_speed.py --lfw data/gpu-lfw --out /tmp/reg
"""

from __future__ import annotations

import argparse
import json
import statistics
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mfsr.bench.training import sync, time_calls
from mfsr.models import build_model, load_model_config, registration
from mfsr.models.fusion import RegisteredFusion
from mfsr.models.registration import register, shift_and_add, simulate_frames


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lfw", type=Path, required=True, help="folder of LFW identity folders")
    p.add_argument("--out", type=Path, required=True, help="folder for registration_speed.json")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 32])
    p.add_argument("--scale", type=int, default=8)
    p.add_argument("--calls", type=int, default=20)
    return p.parse_args(argv)


def faces(lfw: Path, count: int, scale: int, device: torch.device) -> torch.Tensor:
    """``(count, 7, 3, 32, 32)`` frames of real faces moved by up to +-1 LR px (seed 0)."""
    paths = sorted(lfw.glob("*/*.jpg"))[:count]
    size = 32 * scale
    hr = [np.asarray(Image.open(p).convert("RGB").crop((61, 61, 189, 189)).resize((size, size)))
          for p in paths]  # fmt: skip
    hr = torch.from_numpy(np.stack(hr)).permute(0, 3, 1, 2).double() / 255
    shifts = torch.rand(len(paths), 7, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    shifts[:, 3] = 0
    return simulate_frames(hr, shifts.double(), scale).float().to(device)


def median_ms(fn, device: torch.device, calls: int) -> float:
    return 1000 * statistics.median(time_calls(fn, calls, 3, device))


def model_step(fusion: str, scale: int, device: torch.device):
    cfg = load_model_config("paper", {"fusion": fusion, "scale": scale})
    torch.manual_seed(0)
    model = build_model(cfg).to(device).train()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)

    def step(frames: torch.Tensor) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(frames)
        out.float().mean().backward()

    return step


def ops_per_call(fn, device: torch.device) -> dict[str, Any]:
    """Operators launched by one call, the ten with the most host time, and sync calls."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        sync(device)
    events = prof.key_averages()
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:10]
    out: dict[str, Any] = {
        "aten_ops": sum(e.count for e in events if e.key.startswith("aten::")),
        "top_host_us": {e.key: [e.count, round(e.self_cpu_time_total)] for e in top},
    }
    if device.type == "cuda":
        out["kernels"] = sum(e.count for e in events if e.device_type.name == "CUDA")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            fn()
            torch.cuda.set_sync_debug_mode(0)
        out["syncs"] = [str(w.message).splitlines()[0][:160] for w in caught][:10]
    return out


def measure(frames: torch.Tensor, scale: int, device: torch.device, n: int) -> dict[str, Any]:
    head = RegisteredFusion(7, scale, 3, 64, 1).to(device)
    calls = {
        "register": lambda: register(frames),
        "shift_and_add_bp1": lambda: shift_and_add(frames, register(frames), scale, 1),
        "shift_and_add_bp3": lambda: shift_and_add(frames, register(frames), scale, 3),
        "classical": lambda: head.classical(frames),
    }
    for fusion in ("early", "registered"):
        step = model_step(fusion, scale, device)
        calls[f"step_{fusion}"] = lambda step=step: step(frames)
    row: dict[str, Any] = {}
    for graph in (False, True) if device.type == "cuda" else (False,):
        registration.CUDA_GRAPHS = graph  # graphs replace RegisteredFusion.classical alone
        tag = "graph" if graph else "eager"
        for name, fn in calls.items():
            if graph and name not in ("classical", "step_registered"):
                continue
            row[f"{name}_{tag}_ms"] = median_ms(fn, device, n)
            print(len(frames), name, tag, f"{row[f'{name}_{tag}_ms']:.2f} ms", flush=True)
        row[f"ops_registered_step_{tag}"] = ops_per_call(calls["step_registered"], device)
    row["ops_register"] = ops_per_call(calls["register"], device)
    if device.type == "cuda":  # the replay must give the eager call's numbers
        registration.CUDA_GRAPHS = False
        eager = head.classical(frames)
        registration.CUDA_GRAPHS = True
        diff = max((a - b).abs().max().item() for a, b in zip(eager, head.classical(frames)))
        row["graph_vs_eager_max_abs"] = diff
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        result["card"] = torch.cuda.get_device_name(device)
    for b in args.batch_sizes:
        frames = faces(args.lfw, b, args.scale, device)
        result[f"batch_{b}"] = measure(frames, args.scale, device, args.calls)
        path = args.out / "registration_speed.json"
        path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
