"""The prepared GPU check: everything mfsr has written for CUDA but could only test on a CPU.

For a session that is lent a GPU (15 minutes of device time, a bare machine whose python3 has
torch, torchvision, OpenCV, Pillow, safetensors, PyYAML, typer and rich, but not lpips or
dlib). Each part is timed and recorded on its own, so one failure does not lose the others; the
JSON is rewritten after every part:

1. the machine: torch, card, its bf16 peak (``mfsr.bench.training.BF16_PEAK_TFLOPS``);
2. a small x8 set (32 -> 256, 7 frames) built from ``--lfw`` photos (val and test frozen);
3. the bare ``paper`` training step per loss at batch 4 and ``--big-batch``, eager, plus
   ``torch.compile`` for charbonnier (and at batch 4 its CUDA-graph mode, ``reduce-overhead``):
   ms, samples/s, FLOPs, MFU (the issue's "MFU per loss");
4. ``data.synthesis: device`` on CUDA: ms per batch, and how far its frames are from the same
   plans synthesised on the CPU, and whether its JPEG stage (``mfsr.data.jpeg``, integer
   arithmetic) gives the same bits on the device as on the CPU;
5. validation metrics on CUDA (``mfsr.metrics.device``) against the NumPy ones, and the
   loop's validation pass per face at batch 4 and 32 (projected over a ``paper`` run);
6. the real ``train()`` loop on CUDA (bf16, channels_last, validation) with device synthesis,
   CPU synthesis, and device synthesis with the model compiled into CUDA graphs, against the
   bare step: ``loop_overhead``;
7. the projected ``paper`` run and study from the measured steps;
8. the fusions (``model.fusion``: early, registered with 1 and 3 back-projection steps) on the
   ``paper`` geometry, charbonnier, eager: the registered path's registration and shift-and-add
   on CUDA, and its cost over early fusion.

Prepare here (LFW is not on the device machine; lpips travels as a wheel)::

    mkdir -p data/gpu-lfw && ls -d ../shared/data/lfw/images_deepfunneled/*/ | head -400 | \\
        xargs -I{} cp -r {} data/gpu-lfw/
    echo /.whl/ >> .git/info/exclude
    .venv/bin/pip download --no-deps --only-binary=:all: -d .whl lpips==0.1.4

Run there (``run`` tool, carry ``data/gpu-lfw`` and ``.whl``)::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=src:/tmp/site python3 benchmarks/gpu_check.py --lfw data/gpu-lfw --out $OUT

It also runs on a CPU (``--device cpu --quick``) to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

LOSSES = ("mse", "charbonnier", "feature", "lpips")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lfw", type=Path, required=True, help="folder of LFW identity folders")
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json")
    p.add_argument("--device", default="cuda")
    p.add_argument("--big-batch", type=int, default=32, help="second batch size to time")
    p.add_argument("--quick", action="store_true", help="few timed calls (checks the script)")
    return p.parse_args(argv)


class Record:
    """Results by part, written to ``<out>/gpu_check.json`` after every part."""

    def __init__(self, out: Path) -> None:
        self.path = out / "gpu_check.json"
        out.mkdir(parents=True, exist_ok=True)
        self.doc: dict[str, Any] = {}

    def part(self, name: str, fn, *args) -> Any:
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            value = fn(*args)
            self.doc[name] = {"ok": True, "seconds": time.perf_counter() - start, "result": value}
        except Exception as exc:  # recorded; the other parts still run
            traceback.print_exc()
            value = None
            self.doc[name] = {"ok": False, "seconds": time.perf_counter() - start}
            self.doc[name]["error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(self.doc[name], default=str)[:1500], flush=True)
        self.path.write_text(json.dumps(self.doc, indent=1, default=str) + "\n", encoding="utf-8")
        return value


def machine(device: torch.device) -> dict[str, Any]:
    from mfsr.bench.training import bf16_peak_tflops

    peak, name = bf16_peak_tflops(device)
    return {"torch": torch.__version__, "device": name, "bf16_peak_tflops": peak}


def build_set(lfw: Path, root: Path) -> str:
    from mfsr.data.build import BuildOptions, build_dataset
    from mfsr.data.degrade import load_degradation

    out = root / "lfw-x8"
    photos = sum(1 for _ in lfw.glob("*/*.jpg"))
    build_dataset(
        BuildOptions(
            source=lfw,
            out=out,
            degradation=load_degradation("default"),
            counts=(photos - 96, 64, 32),
            write_splits=("val", "test"),
            workers=8,
        )
    )
    return str(out)


def paper(dataset: str, **changes: Any):
    from mfsr.train.config import load_train_config

    cfg = load_train_config("paper", [f"data.dataset={dataset}", "data.build=null"])
    return replace(cfg, **changes)


def timed_steps(dataset: str, device: torch.device, big: int, n: dict[str, int], runs) -> list:
    """The bare ``paper`` step at batch 4 and ``big`` for each of ``runs(batch_size)``:
    ``(fields for the row, model changes, loss, compile mode)``; a failure is recorded."""
    from mfsr.bench.training import bare_step, first_batch
    from mfsr.train.data import ensure_dataset, train_dataset

    rows = []
    for batch_size in (4, big):
        cfg = paper(dataset, batch_size=batch_size)
        batch = first_batch(cfg, train_dataset(cfg, ensure_dataset(cfg)))
        for fields, model, loss, compiled in runs(batch_size):
            run_cfg = replace(cfg, model=replace(cfg.model, **model))
            try:
                row = bare_step(run_cfg, batch, device, loss, n["steps"], n["warmup"], compiled)
            except Exception as exc:  # e.g. lpips missing: record, go on
                row = {"loss": loss, "error": f"{type(exc).__name__}: {exc}"}
            row.pop("device_name", None)
            rows.append({"batch_size": batch_size, **fields, **row})
            print(json.dumps(rows[-1], default=str), flush=True)
    return rows


def bare_steps(dataset: str, device: torch.device, big: int, n: dict[str, int]) -> list[dict]:
    def runs(batch_size: int) -> list:
        plan = [(loss, None) for loss in LOSSES] + [("charbonnier", "default")]
        if batch_size == 4:  # CUDA graphs: for launch-bound small batches
            plan.append(("charbonnier", "reduce-overhead"))
        return [({"compile": mode}, {}, loss, mode) for loss, mode in plan]

    return timed_steps(dataset, device, big, n, runs)


def device_synthesis(dataset: str, device: torch.device, big: int, n: dict[str, int]) -> dict:
    from mfsr.bench.training import first_batch, synthesis_step
    from mfsr.train.data import batch_tensors, ensure_dataset, train_dataset

    out: dict[str, Any] = {}
    for batch_size in (4, big):
        cfg = paper(dataset, batch_size=batch_size)
        ds = train_dataset(cfg, ensure_dataset(cfg))
        plan = first_batch(cfg, ds)["plan"]
        out[f"batch_{batch_size}"] = synthesis_step(cfg, plan, ds.hr_size, device, n["steps"])
    # the same plans on the CPU and on the device
    frames_cpu, hr_cpu = batch_tensors(plan, cfg, ds.hr_size, torch.device("cpu"))
    frames_dev, hr_dev = batch_tensors(plan, cfg, ds.hr_size, device)

    def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
        mse = torch.mean((a.double() * 255 - b.double().cpu() * 255) ** 2).item()
        return 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)

    out["hr_psnr_device_vs_cpu"] = psnr(hr_cpu, hr_dev)
    out["lr_psnr_device_vs_cpu"] = psnr(frames_cpu, frames_dev)
    out["lr_psnr_per_sequence"] = [psnr(a, b) for a, b in zip(frames_cpu, frames_dev)]
    out["jpeg"] = jpeg_check(frames_cpu, device, n["steps"])
    return out


def jpeg_check(frames: torch.Tensor, device: torch.device, steps: int) -> dict:
    """The JPEG stage alone on the batch's frames: bit-identical on the device? ms per batch."""
    from mfsr.bench.training import sync
    from mfsr.data.jpeg import jpeg_roundtrip

    lr8 = (frames * 255).round().byte().flatten(0, 1)
    quality = torch.randint(30, 96, (lr8.shape[0],), generator=torch.Generator().manual_seed(0))
    on_cpu = jpeg_roundtrip(lr8, quality)
    lr8, quality = lr8.to(device), quality.to(device)
    on_device = jpeg_roundtrip(lr8, quality)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        jpeg_roundtrip(lr8, quality)
    sync(device)
    return {
        "images": int(lr8.shape[0]),
        "identical_to_cpu": bool(torch.equal(on_cpu, on_device.cpu())),
        "ms_per_batch": (time.perf_counter() - start) / steps * 1000,
    }


def metrics(dataset: str, device: torch.device) -> dict:
    from mfsr.bench.training import sync
    from mfsr.metrics.device import psnr_ssim
    from mfsr.metrics.pixel import psnr, ssim
    from mfsr.models.baselines import bicubic_upsample
    from mfsr.train.data import val_dataset

    cfg = paper(dataset)
    ds = val_dataset(replace(cfg, data=replace(cfg.data, val_limit=32)))
    items = [ds[i] for i in range(len(ds))]
    frames = torch.stack([it["frames"] for it in items])
    hr = torch.stack([it["hr"] for it in items])
    sr = bicubic_upsample(frames[:, frames.shape[1] // 2], 8).clamp(0, 1)
    p_dev, s_dev = psnr_ssim(sr.to(device), hr.to(device))
    sync(device)
    start = time.perf_counter()
    for _ in range(5):
        psnr_ssim(sr.to(device), hr.to(device))
    sync(device)
    ms = (time.perf_counter() - start) / 5 / len(items) * 1000
    return {
        "images": len(items),
        "max_psnr_diff": float(np.abs(p_dev.cpu().numpy() - psnr(sr, hr)).max()),
        "max_ssim_diff": float(np.abs(s_dev.cpu().numpy() - ssim(sr, hr)).max()),
        "device_ms_per_image": ms,
    }


def validation(dataset: str, device: torch.device, n: dict[str, int]) -> dict:
    """The loop's validation pass at the seed's batch of 4 and at the CUDA default of 32, over
    the 64 val faces built here, projected to the seed's 837 faces x 300 epochs per run."""
    from mfsr.bench.training import validation as timed

    cfg = paper(dataset)
    out = {}
    for batch in (4, 32):
        row = timed(cfg, device, 64, batch, n["calls"])
        row["projected_837_faces_per_run_min"] = row["ms_per_face"] * 837 * 300 / 60000
        out[f"batch_{batch}"] = row
    return out


def loop(dataset: str, device: torch.device, bare: dict, n: dict[str, int]) -> dict:
    from mfsr.bench.training import loop_step_ms

    out = {}
    for name, synthesis, mode in (
        ("device", "device", None),
        ("cpu", "cpu", None),
        ("device, compiled reduce-overhead", "device", "reduce-overhead"),
    ):
        cfg = paper(dataset, device=str(device), random_trunk=True)
        cfg = replace(cfg, data=replace(cfg.data, synthesis=synthesis))
        if mode is not None:
            cfg = replace(cfg, compile=True, compile_mode=mode)
        try:
            ms = loop_step_ms(cfg, workers=4, steps=n["loop_steps"], warmup=n["warmup"])
        except Exception as exc:  # record, go on
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        out[name] = {"loop_ms": ms, "loop_overhead": ms / bare["ms"] if bare else None}
    return out


def fusions(dataset: str, device: torch.device, big: int, n: dict[str, int]) -> list[dict]:
    variants = (("early", 1), ("registered", 1), ("registered", 3))
    models = [{"fusion": f, "back_projection": k} for f, k in variants]
    return timed_steps(
        dataset, device, big, n, lambda _: [(m, m, "charbonnier", None) for m in models]
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    n = {"steps": 5, "warmup": 2, "loop_steps": 5, "calls": 2} if args.quick else {}
    n = n or {"steps": 30, "warmup": 5, "loop_steps": 40, "calls": 5}
    record = Record(args.out)
    record.part("machine", machine, device)
    with tempfile.TemporaryDirectory(prefix="mfsr-gpu-check-") as tmp:
        dataset = record.part("dataset", build_set, args.lfw, Path(tmp))
        if dataset is None:
            return 1
        rows = record.part("bare_step", bare_steps, dataset, device, args.big_batch, n) or []
        record.part("fusion", fusions, dataset, device, args.big_batch, n)
        record.part("device_synthesis", device_synthesis, dataset, device, args.big_batch, n)
        record.part("validation_metrics", metrics, dataset, device)
        record.part("validation", validation, dataset, device, n)
        bare = next((r for r in rows if r.get("loss") == "charbonnier" and "ms" in r), None)
        record.part("loop", loop, dataset, device, bare, n)
        steps = 300 * 500
        per_run = {
            r["loss"] + (f" compiled ({r['compile']})" if r["compile"] else "") + " batch 4": (
                r["ms"] * steps / 1000 / 3600
            )
            for r in rows
            if "ms" in r and r["batch_size"] == 4
        }
        record.part("projected_paper_run_hours_bare_step", lambda: per_run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
