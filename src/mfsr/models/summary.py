"""Model size and cost: trainable parameters and FLOPs per sample, and a table formatter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from mfsr.models import ModelConfig, build_model


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters (elements of tensors with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def summarize(cfg: ModelConfig, lr_size: int = 32) -> dict[str, Any]:
    """Parameters and forward FLOPs of one sample for the model ``cfg`` describes.

    FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` over one eval-mode forward
    pass of a ``(1, N, C, lr_size, lr_size)`` input; it counts a multiply-add as 2 FLOPs and
    covers convolutions (also transposed) and matrix products, not element-wise ops,
    interpolation, pooling or FFTs (so the baselines report about 0). Training costs about 3x
    the forward FLOPs. Returns a dict with ``name``, ``n_frames``, ``scale``, ``width``,
    ``depth``, ``n_geu``, ``fusion``, ``lr_size``, ``hr_size`` (px), ``params`` (count) and
    ``gflops`` (1e9 FLOPs per sample).
    """
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state untouched
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        frames = torch.rand(1, cfg.n_frames, cfg.in_channels, lr_size, lr_size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(frames)
    learned = cfg.name == "unet_geu"
    return {
        "name": cfg.name,
        "n_frames": cfg.n_frames,
        "scale": cfg.scale,
        "width": cfg.width if learned else None,
        "depth": cfg.depth if learned else None,
        "n_geu": cfg.n_geu if learned else None,
        "fusion": cfg.fusion if learned else None,
        "lr_size": lr_size,
        "hr_size": lr_size * cfg.scale,
        "params": count_parameters(model),
        "gflops": counter.get_total_flops() / 1e9,
    }


_COLUMNS = (
    ("model", lambda r: r["name"]),
    ("N", lambda r: str(r["n_frames"])),
    ("scale", lambda r: f"x{r['scale']}"),
    ("width", lambda r: "-" if r["width"] is None else str(r["width"])),
    ("depth", lambda r: "-" if r["depth"] is None else str(r["depth"])),
    ("GEU", lambda r: "-" if r["n_geu"] is None else str(r["n_geu"])),
    ("fusion", lambda r: r["fusion"] or "-"),
    ("LR -> HR", lambda r: f"{r['lr_size']} -> {r['hr_size']}"),
    ("params", lambda r: f"{r['params'] / 1e6:.3f} M"),
    ("GFLOPs/sample", lambda r: f"{r['gflops']:.3f}"),
)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows from :func:`summarize` -> a Markdown table (readable as plain text too)."""
    cells = [[fmt(r) for _, fmt in _COLUMNS] for r in rows]
    heads = [h for h, _ in _COLUMNS]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    right = {"N", "params", "GFLOPs/sample"}

    def line(values: Sequence[str]) -> str:
        padded = [
            v.rjust(w) if h in right else v.ljust(w) for v, w, h in zip(values, widths, heads)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if h in right else "-" * (w + 2) for w, h in zip(widths, heads)
    )
    return "\n".join([line(heads), rule + "|", *(line(c) for c in cells)])
