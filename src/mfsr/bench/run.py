"""``mfsr bench``: measure every stage in one run; write ``bench.json`` and ``bench.md``.

Sections (see :mod:`mfsr.bench.training`, :mod:`mfsr.bench.inference` and docs/benchmarks.md):
bare training step per loss (ms, samples/s, FLOP/s, MFU on CUDA), data feed per loader-worker
count and its ``feed_ratio``, the real loop step and ``loop_overhead``, the validation pass per
val face (projected over a run), inference per sequence at batch 1 and 32, evaluation time per
image for each metric, peak memory, and the projected wall time of a training run of the
config's budget for each loss.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from mfsr import __version__
from mfsr.bench import inference, training
from mfsr.bench.report import markdown
from mfsr.config import write_text_atomic
from mfsr.enhance.model import pick_device
from mfsr.errors import BadArgument, MfsrError
from mfsr.losses import parse_spec
from mfsr.metrics import to_uint8_images
from mfsr.models.baselines import bicubic_upsample
from mfsr.train.config import load_train_config
from mfsr.train.data import ensure_dataset, train_dataset, val_dataset

PAPER_LOSSES = ("mse", "charbonnier", "feature", "lpips")


@dataclass
class BenchOptions:
    """What to measure. ``quick``: fewer timed calls and images (a minute or two on a CPU)."""

    config: str = "quick"
    sets: list[str] = field(default_factory=list)
    out: Path = Path("bench")
    quick: bool = False
    device: str = "auto"
    workers: list[int] = field(default_factory=lambda: [0, 2])
    losses: list[str] = field(default_factory=lambda: list(PAPER_LOSSES))
    compile: bool = False
    compile_mode: str | None = None  # implies compile
    eval_images: int | None = None

    def counts(self) -> dict[str, int]:
        if self.quick:
            return {
                "steps": 6,
                "warmup": 2,
                "feed_batches": 6,
                "calls": 3,
                "images": 8,
                "rounds": 2,
            }
        return {
            "steps": 20, "warmup": 3, "feed_batches": 20, "calls": 10, "images": 32, "rounds": 3
        }  # fmt: skip


def machine(device: torch.device | None = None) -> dict[str, Any]:
    """The machine and library versions, for benchmark outputs."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cuda = device is not None and device.type == "cuda"
    return {
        "cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu": cpu,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(),
        "loadavg_before": list(os.getloadavg()),
    }


def _eval_pairs(cfg: Any, n: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(frames of the first val samples, bicubic outputs, HR targets) for the timings."""
    ds = val_dataset(cfg)
    items = [ds[i] for i in range(min(n, len(ds)))]
    if not items:
        raise MfsrError(f"{cfg.data.dataset}/val: no validation samples to time metrics on")
    frames = torch.stack([it["frames"] for it in items])
    reference = frames[:, frames.shape[1] // 2]
    sr = to_uint8_images(bicubic_upsample(reference, cfg.model.scale).clamp(0, 1))
    hr = to_uint8_images(torch.stack([it["hr"] for it in items]))
    return frames, sr, hr


def run_bench(opts: BenchOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure, write ``bench.json`` and ``bench.md`` into ``opts.out``; returns the document."""
    cfg = _checked_config(opts)
    device = pick_device(opts.device)
    n = opts.counts()
    started = time.perf_counter()
    doc = _header(opts, cfg, device)
    say(f"dataset {cfg.data.dataset}")
    dataset = train_dataset(cfg, ensure_dataset(cfg))  # listed once, used by every section
    batch = training.first_batch(cfg, dataset)
    doc["lr_size"] = list(batch["frames"].shape[-2:])
    bare = _training_sections(doc, opts, cfg, dataset, batch, device, n, say)
    say("data per batch in the main process")
    doc["data_ms_per_batch"] = training.batch_ms(cfg, dataset, n["feed_batches"])
    if "plan" in batch:
        say("device half of data.synthesis: device")
        synth = training.synthesis_step(cfg, batch["plan"], dataset.hr_size, device, n["steps"])
        synth["ratio"] = synth["samples_per_s"] / bare["samples_per_s"]
        doc["device_synthesis"] = synth
    _evaluation_sections(doc, opts, cfg, device, n, say)
    _projections(doc, cfg, bare)
    doc["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    doc["seconds"] = time.perf_counter() - started
    opts.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(opts.out / "bench.json", json.dumps(doc, indent=1) + "\n")
    write_text_atomic(opts.out / "bench.md", markdown(doc))
    return doc


def _checked_config(opts: BenchOptions):
    """The training config to time, with the options checked before any measurement."""
    if any(w < 0 for w in opts.workers):
        raise BadArgument(f"`workers` must be >= 0, got {opts.workers}")
    if opts.eval_images is not None and opts.eval_images < 1:  # 0 meant the default before
        raise BadArgument(f"`eval_images` must be >= 1, got {opts.eval_images}")
    for loss in opts.losses:
        parse_spec(loss)  # a misspelt --losses entry fails before any measurement
    cfg = load_train_config(opts.config, opts.sets)
    if opts.compile or opts.compile_mode:
        try:
            cfg = replace(cfg, compile=True, compile_mode=opts.compile_mode or cfg.compile_mode)
        except ValueError as exc:
            raise BadArgument(
                str(exc).replace("compile_mode", "`compile_mode`", 1)
            ) from None  # names the field
    return cfg


def _header(opts: BenchOptions, cfg, device) -> dict[str, Any]:
    """What was timed, and where."""
    return {
        "mfsr_version": __version__,
        "config": opts.config,
        "sets": opts.sets,
        "quick": opts.quick,
        "machine": machine(device),
        "model": {k: getattr(cfg.model, k) for k in ("width", "depth", "scale", "n_frames")},
        "batch_size": cfg.batch_size,
        "loss": cfg.loss,
        "compile": cfg.compile,
        "compile_mode": cfg.compile_mode if cfg.compile else None,
        "amp": cfg.amp if device.type == "cuda" else "none",
        "channels_last": cfg.channels_last and device.type == "cuda",
        "synthesis": cfg.data.synthesis if cfg.data.train == "synthetic" else None,
    }


def _training_sections(doc, opts, cfg, dataset, batch, device, n, say) -> dict[str, Any]:
    """The bare step per loss, the data feed, and the loop against the bare step; returns the
    bare step of the config's own loss (what the loop runs)."""
    mode = cfg.compile_mode if cfg.compile else None  # the bare step's torch.compile mode
    rows = []
    for loss in dict.fromkeys([cfg.loss, *opts.losses]):
        say(f"bare training step, loss {loss}")
        rows.append(training.bare_step(cfg, batch, device, loss, n["steps"], n["warmup"], mode))
    doc["bare_step"] = rows
    bare = rows[0]
    doc["feed"] = []
    for workers in opts.workers:
        say(f"data feed, {workers} loader workers")
        sps = training.feed_rate(cfg, dataset, workers, n["feed_batches"])
        doc["feed"].append(
            {"workers": workers, "samples_per_s": sps, "feed_ratio": sps / bare["samples_per_s"]}
        )
    # loop vs bare step in alternating rounds: this machine's speed drifts by 10-20 % between
    # minutes, so each round's ratio compares measurements taken moments apart
    rounds: list[dict[str, Any]] = []
    for r in range(n["rounds"]):
        say(f"training loop vs bare step, round {r + 1} of {n['rounds']}")
        b = (
            bare
            if r == 0
            else training.bare_step(cfg, batch, device, cfg.loss, n["steps"], n["warmup"], mode)
        )
        loops = {w: training.loop_step_ms(cfg, w, n["steps"], n["warmup"]) for w in opts.workers}
        rounds.append({"bare_ms": b["ms"], "loop_ms": loops})
    doc["loop_rounds"] = rounds
    doc["loop"] = [
        {
            "workers": w,
            "loop_ms": statistics.median(r["loop_ms"][w] for r in rounds),
            "bare_ms": statistics.median(r["bare_ms"] for r in rounds),
            "loop_overhead": statistics.median(r["loop_ms"][w] / r["bare_ms"] for r in rounds),
        }
        for w in opts.workers
    ]
    return bare


def _evaluation_sections(doc, opts, cfg, device, n, say) -> None:
    """The validation pass, inference at batch 1 and 32, and every evaluation metric."""
    say("validation pass")
    val_batch = cfg.val_batch(device.type == "cuda")
    faces = opts.eval_images or n["images"]
    doc["validation"] = training.validation(cfg, device, faces, val_batch, n["calls"])
    say("inference, batch 1 and 32")
    frames, sr, hr = _eval_pairs(cfg, faces)
    doc["inference"] = inference.inference(cfg, frames, device, [1, 32], n["calls"])
    say(f"evaluation metrics on {len(sr)} images")
    doc["metrics"] = inference.metrics(sr, hr, device)


def _projections(doc: dict[str, Any], cfg, bare: dict[str, Any]) -> None:
    """Projected training time per run (each loss) and per study of the paper's losses."""
    per_run = {
        r["loss"]: cfg.epochs * cfg.steps_per_epoch * r["ms"] / 1000 for r in doc["bare_step"]
    }
    doc["projected_train_s"] = per_run
    if all(loss in per_run for loss in PAPER_LOSSES):
        # a study of the paper's four losses + a single-frame run (costed as the config's loss,
        # slightly high: N = 1) x 3 seeds, training only; validation: 15 runs costed as the
        # config's loss
        doc["projected_study_train_s"] = 3 * (
            sum(per_run[x] for x in PAPER_LOSSES)
            + bare["ms"] * cfg.epochs * cfg.steps_per_epoch / 1000
        )
        doc["projected_study_validation_s"] = 15 * doc["validation"]["projected_per_run_s"]
