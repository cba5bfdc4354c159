"""How well ``mfsr enhance`` predicts the memory of one window from its two small probes.

For each model, :func:`mfsr.enhance.memory.memory_model` (probes at 64 and 128 px) gives bytes
per LR pixel; each larger LR size is then measured directly (the least of two calls, as the
probes are) and the ratio predicted / measured printed. Above 1 the estimate errs high (a
smaller batch than needed), below 1 low (the kernel may kill the process; ``USABLE`` = 0.7
leaves room for a ratio down to 0.7). Models: a random ``paper`` (x8, width 64), the shipped
``quick-identity-x4`` and the small U-Net of ``tests/test_enhance_memory.py``; on the CPU the
peaks are Linux's resident size (``VmHWM``), so run it alone on the machine.

    PYTHONPATH=src python3 benchmarks/enhance_memory.py --sizes 192,256,320
"""

from __future__ import annotations

import argparse
import importlib.resources

import torch

from mfsr.enhance import load_enhancer
from mfsr.enhance.memory import memory_model, window_peak_bytes
from mfsr.enhance.model import Enhancer
from mfsr.models import ModelConfig, build_model, load_model_config

CPU = torch.device("cpu")


def enhancers() -> dict[str, Enhancer]:
    torch.manual_seed(0)
    paper = load_model_config("paper")
    small = ModelConfig(name="unet_geu", n_frames=3, scale=4, width=16, depth=2, n_geu=1)
    shipped = importlib.resources.files("mfsr.shipped") / "quick-identity-x4.safetensors"
    return {
        "paper (random)": Enhancer(build_model(paper).eval(), "paper", 7, 8, 64, 8, CPU),
        "quick-identity-x4": load_enhancer(str(shipped), lr_size=64, device="cpu"),
        "test U-Net": Enhancer(build_model(small).eval(), "unet", 3, 4, 64, 2, CPU),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="192,256,320", help="LR sizes to measure directly")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    print("| model | bytes per LR px (probes) | LR size | predicted MB | measured MB | ratio |")
    print("|---|---|---|---|---|---|")
    for name, enhancer in enhancers().items():
        per_px = memory_model(enhancer)
        if per_px is None:
            raise SystemExit("peak memory cannot be measured here (needs Linux's /proc)")
        for side in sizes:
            measured = min(window_peak_bytes(enhancer, side) for _ in range(2))
            predicted = per_px * side**2
            print(
                f"| {name} | {per_px:.0f} | {side} | {predicted / 1e6:.0f} | "
                f"{measured / 1e6:.0f} | {predicted / measured:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
