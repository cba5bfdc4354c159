"""How much the extra frames can add: classical multi-frame SR against the frame count.

On the validation samples of a dataset (default: the `quick` LFW x4 set and its `clean`
twin), for N = 1, 3, 7 centre frames: PSNR (float, mean over faces) of bicubic and of
classical fusion (:func:`mfsr.models.registration.shift_and_add`) with 0, 1, 3 and 10
back-projection steps, with the shifts measured (:func:`~mfsr.models.registration.register`)
and with the true shifts the degradation drew (an oracle for translation; rotation and zoom
are not undone by either). The gain of N = 7 over N = 1 is the multi-frame information a
registration-based method can reach under that degradation (docs/study.md "Fusion results").

    .venv/bin/python docs/frames_information.py                  # about 1 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from mfsr.data.dataset import SequenceDataset
from mfsr.models.registration import register, shift_and_add


def psnr(x: torch.Tensor, hr: torch.Tensor) -> float:
    """Mean PSNR (dB, float images in [0, 1] after clamping) over the batch."""
    mse = ((x.clamp(0, 1) - hr) ** 2).flatten(1).mean(1)
    return float((10 * torch.log10(1 / mse)).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", type=Path,
                   default=[Path("data/lfw-x4-128"), Path("data/lfw-x4-128-clean")])  # fmt: skip
    p.add_argument("--faces", type=int, default=160)
    args = p.parse_args()
    for data in args.data:
        ds = SequenceDataset(data / "val", n_frames=7)
        samples = ds.samples[: args.faces]
        items = [ds[i] for i in range(len(samples))]
        frames = torch.stack([it["frames"] for it in items])  # (B, 7, C, h, w)
        hr = torch.stack([it["hr"] for it in items])
        true = torch.tensor(
            [[f["shift"] for f in json.loads(s.meta.read_text())["degradation"]["drawn"]["frames"]]
             for s in samples], dtype=torch.float32,
        )  # fmt: skip
        scale = hr.shape[-1] // frames.shape[-1]

        bicubic = torch.nn.functional.interpolate(frames[:, 3], scale_factor=scale, mode="bicubic")
        print(f"{data} val, {len(samples)} faces: bicubic {psnr(bicubic, hr):.2f} dB")
        measured = register(frames)
        for label, shifts in (("measured", measured), ("true", true)):
            for n in (1, 3, 7):
                keep = slice(3 - n // 2, 3 - n // 2 + n)
                row = [psnr(shift_and_add(frames[:, keep], shifts[:, keep], scale, bp), hr)
                       for bp in (0, 1, 3, 10)]  # fmt: skip
                cells = ", ".join(f"bp {bp}: {v:.2f}" for bp, v in zip((0, 1, 3, 10), row))
                print(f"  {label:>8} shifts, N={n}: {cells}")


if __name__ == "__main__":
    main()
