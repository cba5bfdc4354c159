"""Plot a run's training curve: train loss and validation PSNR against the bicubic baseline.

.venv/bin/python docs/make_training_curve.py runs/quick docs/figures/quick-training.png
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def main(run: Path, out: Path) -> None:
    train, val = read(run / "train.csv"), read(run / "val.csv")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot([int(r["step"]) for r in train], [float(r["loss"]) for r in train], lw=0.8)
    left.set(xlabel="step", ylabel="training loss", title=f"{run.name}: training loss")
    left.grid(alpha=0.3)
    steps = [int(r["step"]) for r in val]
    right.plot(steps, [float(r["psnr"]) for r in val], "o-", label="U-Net+GEU (val)")
    right.plot(steps, [float(r["bicubic_psnr"]) for r in val], "--", label="bicubic (val)")
    right.set(xlabel="step", ylabel="PSNR (dB)", title="validation PSNR")
    right.grid(alpha=0.3)
    right.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
