"""PSNR and FFR identity against the frame count N for every run a study folder holds.

``mfsr study`` draws ``figures/frames.png`` for the rows of one configuration; the fusion
results in docs/study.md were trained in several passes (all variants at seed 0, some at 3
seeds), so this draws the same figure from every run scored in ``<study>/eval``, each row
averaged over the seeds it has (the dots), with the baselines dashed:

    .venv/bin/python docs/make_fusion_figure.py --study studies/fusion \\
        --out docs/figures/fusion-frames.png
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from mfsr.study import stats
from mfsr.study.config import load_study_config
from mfsr.study.figures import FRAMES_METRICS, frames_plot
from mfsr.study.plan import RunSpec, method_label
from mfsr.study.results import build_methods

RUN = re.compile(r"(?P<loss>[a-z]+)-(?P<variant>.+)-n(?P<n>\d+)-s(?P<seed>\d+)$")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    # the folder's own study.yaml, pointed at the folder wherever it now lies
    study = load_study_config(str(args.study / "study.yaml"), [f"out_dir={args.study.parent}"])
    groups: dict[tuple[str, str, int], list[RunSpec]] = {}
    for folder in sorted((args.study / "eval").iterdir()):
        if (match := RUN.match(folder.name)) and (folder / "per_image.csv").is_file():
            loss, variant, n = match["loss"], match["variant"], int(match["n"])
            label = method_label(loss, variant, n)
            spec = RunSpec(folder.name, label, loss, int(match["seed"]), False, variant, n)
            groups.setdefault((loss, variant, n), []).append(spec)
    rows = [(r[0].method, r[0].method, "loss", r, r[0].loss) for r in groups.values()]
    rows += [(name, name, "baseline", None, None) for name in ("bicubic", "classical")]
    methods, _, _ = build_methods(study, rows)
    for m in methods:
        print(f"{m.label}: {len(m.runs)} run(s)")
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
