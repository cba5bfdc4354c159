"""PSNR and FFR identity against the frame count N for every run a study folder holds.

``mfsr study`` draws ``figures/frames.png`` for the rows of one configuration; the fusion
results in docs/study.md were trained in several passes (all variants at seed 0, some at 3
seeds), so this draws the same figure from whatever runs ``<study>/runs`` holds, each row
averaged over the seeds it has (the dots), with the baselines dashed:

    .venv/bin/python docs/make_fusion_figure.py --study studies/fusion \\
        --out docs/figures/fusion-frames.png
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from mfsr.study import stats
from mfsr.study.figures import FRAMES_METRICS, frames_plot
from mfsr.study.results import read_rows

RUN = re.compile(r"(?P<loss>[a-z]+)-(?P<variant>.+)-n(?P<n>\d+)-s(?P<seed>\d+)$")


def _number(cell: object) -> float:
    """A per-image cell as a float; empty (not judged) is NaN, and 0 stays 0."""
    return float("nan") if cell is None or cell == "" else float(cell)


def values(folders: list[Path], ids: list[str]) -> dict[str, np.ndarray]:
    """``metric -> (runs, images)`` from the runs' ``per_image.csv``, aligned on ``ids``."""
    rows = [read_rows(f) for f in folders]
    out = {}
    for m in FRAMES_METRICS:
        out[m] = np.array([[_number(r[i].get(m)) for i in ids] for r in rows])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    evals = args.study / "eval"
    ids = sorted(read_rows(evals / "bicubic"))
    groups: dict[tuple[str, str, int], list[Path]] = {}
    for folder in sorted(evals.iterdir()):
        if (match := RUN.match(folder.name)) and (folder / "per_image.csv").is_file():
            key = (match["loss"], match["variant"], int(match["n"]))
            groups.setdefault(key, []).append(folder)
    methods = []
    for (loss, variant, n), folders in groups.items():
        method = stats.Method(
            key=f"{loss}-{variant}-n{n}",
            label=f"{loss} {variant} N={n}",
            kind="loss",
            runs=[f.name for f in folders],
            seeds=[int(RUN.match(f.name)["seed"]) for f in folders],
            values=values(folders, ids),
            loss=loss,
            variant=variant,
            n_frames=n,
        )
        methods.append(method)
        print(f"{method.label}: {len(folders)} seed(s)")
    for name in ("bicubic", "classical"):
        method = stats.Method(
            key=name,
            label=name,
            kind="baseline",
            runs=[name],
            seeds=[None],
            values=values([evals / name], ids),
        )
        methods.append(method)
    doc = {
        "metrics": {
            k: {"label": stats.METRICS[k][0], "better": stats.METRICS[k][1]} for k in FRAMES_METRICS
        },
        "methods": [
            {
                "kind": m.kind,
                "label": m.label,
                "loss": m.loss,
                "variant": m.variant,
                "n_frames": m.n_frames,
                "seeds": m.seeds,
                "metrics": stats.summarize(m),
            }
            for m in methods
        ],
    }
    frames_plot(doc, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
