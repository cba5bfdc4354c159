"""Training-side measurements: data feed, bare step (per loss, FLOP/s, MFU), real loop step.

All times are wall seconds per call after warm-up calls, synchronised on CUDA; figures are the
median over the timed calls. ``feed_ratio`` = samples/s the data pipeline delivers / samples/s
the bare step consumes; ``loop_overhead`` = real ``train()`` step / bare step of the same model,
loss and batch (both from one run, so the machine's noise affects them alike).
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from mfsr.data.dataset import collate
from mfsr.losses import build_loss, parse_spec
from mfsr.models import build_model
from mfsr.train.config import CUDA_GRAPH_MODES, TrainConfig
from mfsr.train.data import TrainStream, ValBatches, batch_tensors, train_loader, val_dataset
from mfsr.train.loop import train
from mfsr.train.setup import build_optimizer
from mfsr.train.validation import validate

#: Dense bf16 tensor-core peak, TFLOP/s, by a substring of ``torch.cuda.get_device_name()``
#: (vendor data sheets; the SXM figures for H100/H200). Checked in order: first match wins.
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10", 125.0),
    ("RTX 4090", 165.2),
)


def bf16_peak_tflops(device: torch.device) -> tuple[float | None, str]:
    """(peak TFLOP/s or None, device name) for MFU; None on CPU or an unknown card."""
    if device.type != "cuda":
        return None, "cpu"
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS if key in name), None), name


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], calls: int, warmup: int, device: torch.device) -> list[float]:
    """Seconds of each of ``calls`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def stream(cfg: TrainConfig, dataset: Any, steps: int | None = None) -> Any:
    """Epoch 0 of the training stream over ``dataset`` (from
    :func:`mfsr.train.data.train_dataset`, built once), ``steps`` batches long."""
    if steps is not None:
        cfg = replace(cfg, steps_per_epoch=steps)
    return TrainStream(dataset, cfg, rank=0, world=1, end_epoch=1)


def first_batch(cfg: TrainConfig, dataset: Any) -> dict[str, Any]:
    """The run's first training batch (epoch 0), collated on the CPU. With
    ``data.synthesis: device`` its plans are kept under ``plan`` and synthesised (on the CPU)
    into ``frames`` and ``hr``."""
    items = stream(cfg, dataset)
    batch = collate([items[i] for i in range(cfg.batch_size)])
    if "source" in batch:
        frames, hr = batch_tensors(batch, cfg, dataset.hr_size, torch.device("cpu"))
        batch = {"plan": batch, "frames": frames, "hr": hr, "id": batch["id"]}
    return batch


def synthesis_step(
    cfg: TrainConfig, plan: dict[str, Any], hr_size: int, device: torch.device, calls: int
) -> dict[str, Any]:
    """Time of the device half of ``data.synthesis: device`` on one batch of plans (moved to
    the device inside the timed call, as in the loop)."""
    times = time_calls(lambda: batch_tensors(plan, cfg, hr_size, device), calls, 2, device)
    seconds = statistics.median(times)
    return {"ms": 1000 * seconds, "samples_per_s": cfg.batch_size / seconds}


def bare_step(
    cfg: TrainConfig,
    batch: dict[str, Any],
    device: torch.device,
    loss: str,
    steps: int,
    warmup: int,
    compile_mode: str | None = None,
) -> dict[str, Any]:
    """Forward + loss + backward + Adam step of ``cfg``'s model on one batch already on the
    device, with training's CUDA settings (``amp``, ``channels_last``), the model eager or
    ``torch.compile``d in ``compile_mode``; FLOPs per step counted by torch's FlopCounterMode
    (model and loss network, forward and backward)."""
    cuda = device.type == "cuda"
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model).to(device).train()
    if cuda and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(loss, device=device, random_trunk=True, **_options(cfg, loss))
    optimizer = build_optimizer(cfg, model)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp) if cuda else None
    net = model if compile_mode is None else torch.compile(model, mode=compile_mode)
    graphs = cuda and compile_mode in CUDA_GRAPH_MODES
    frames, hr = batch["frames"].to(device), batch["hr"].to(device)

    def step(module: torch.nn.Module = net) -> None:
        if graphs and module is net:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            value = loss_fn(module(frames).float(), hr)
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # first call outside the counter: lazy initialisation, compilation
    counter = FlopCounterMode(display=False)
    with counter:
        step(model)  # eager: the counter does not see inside compiled graphs
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = time_calls(step, steps, warmup, device)
    record = _step_record(cfg, device, counter.get_total_flops(), statistics.median(times))
    return {
        "loss": loss,
        "compile_mode": compile_mode,
        **record,
        "random_trunk": any(t.random for t in loss_fn.trunk_info()),
        "cuda_peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
        "steps_timed": len(times),
    }


def _step_record(
    cfg: TrainConfig, device: torch.device, flops: int, seconds: float
) -> dict[str, Any]:
    """Rate, FLOP/s and MFU of one step of ``flops`` FLOPs taking ``seconds``."""
    peak, card = bf16_peak_tflops(device)
    achieved = flops / seconds / 1e12
    return {
        "ms": 1000 * seconds,
        "samples_per_s": cfg.batch_size / seconds,
        "flops_per_step": flops,
        "tflops": achieved,
        "mfu": achieved / peak if peak else None,
        "peak_tflops_bf16": peak,
        "device_name": card,
    }


def _options(cfg: TrainConfig, loss: str) -> dict[str, Any]:
    names = {name for _, name in parse_spec(loss)}
    return {k: v for k, v in cfg.loss_options.items() if k in names}


def feed_rate(cfg: TrainConfig, dataset: Any, workers: int, batches: int) -> float:
    """Samples/s the training data pipeline (the loop's DataLoader, ``workers`` processes)
    delivers, alone, after one warm-up batch (worker start-up excluded). With
    ``data.synthesis: device`` that is plans, whose device half :func:`synthesis_step` times."""
    cfg = replace(cfg, data=replace(cfg.data, workers=workers))
    it = iter(train_loader(stream(cfg, dataset, batches + 1), cfg))
    next(it)
    start = time.perf_counter()
    n = sum(len(next(it)["id"]) for _ in range(batches))
    seconds = time.perf_counter() - start
    del it
    return n / seconds


def loop_step_ms(cfg: TrainConfig, workers: int, steps: int, warmup: int) -> float:
    """Median ms between consecutive steps of the real ``train()`` (one epoch of
    ``warmup + steps + 2`` steps in a temporary folder; the last step, which writes the log
    row, and the validation after it fall outside the timed steps)."""
    stamps: list[float] = []
    total = warmup + steps + 2
    with tempfile.TemporaryDirectory(prefix="mfsr-bench-") as tmp:
        run = replace(
            cfg,
            name="bench",
            out_dir=tmp,
            epochs=1,
            steps_per_epoch=total,
            samples=0,
            log_every=total,
            checkpoint_every=0,
            random_trunk=True,
            data=replace(cfg.data, workers=workers, val_limit=2, build=None),
        )
        train(run, progress=lambda *a: stamps.append(time.perf_counter()))
    gaps = [b - a for a, b in itertools.pairwise(stamps)][warmup : warmup + steps]
    return 1000 * statistics.median(gaps)


def batch_ms(cfg: TrainConfig, dataset: Any, batches: int) -> float:
    """Median ms to make one training batch in this process (synthesis or reading, tensors,
    collation): what the loop pays per step with no loader workers."""
    items = stream(cfg, dataset, batches)
    times = []
    for i in range(batches):
        start = time.perf_counter()
        collate([items[i * cfg.batch_size + k] for k in range(cfg.batch_size)])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def validation(
    cfg: TrainConfig, device: torch.device, faces: int, batch: int, passes: int
) -> dict[str, Any]:
    """Time of the loop's validation pass (:func:`mfsr.train.validation.validate`: the model in eval
    mode, the config's loss, PSNR and SSIM) per val face, over the first ``faces`` val samples
    kept in memory as the loop keeps them, ``batch`` per call; projected over the config's
    val set (``data.val_limit``) and epochs."""
    subset = val_dataset(cfg)
    val_faces = len(subset)
    subset.samples = subset.samples[:faces]
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model).to(device)
    if device.type == "cuda" and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(cfg.loss, device=device, random_trunk=True, **_options(cfg, cfg.loss))
    batches = ValBatches(subset, batch, device)
    list(batches)  # read from disk once and kept, as in the loop
    quiet = replace(cfg, samples=0)  # no sample image: nothing is written
    times = time_calls(lambda: validate(model, loss_fn, batches, quiet, None, 0), passes, 1, device)
    per_face = statistics.median(times) / max(len(subset), 1)
    return {
        "faces_timed": len(subset),
        "batch": batch,
        "ms_per_face": 1000 * per_face,
        "val_faces": val_faces,
        "projected_per_run_s": per_face * val_faces * cfg.epochs,
    }
