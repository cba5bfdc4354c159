"""Score a finished study's networks on another test set (e.g. the `clean` degradation).

Every trained run of ``--study`` (``runs/*/summary.json``) is evaluated with ``mfsr
evaluate`` on the test split of ``--data`` (a dataset made like the study's, same photos and
seed, other degradation); a run with fewer frames than ``--data`` reads its centre frames
through a frames view (``<study>/other-data/<name>/frames-<N>``). Bicubic and classical fusion
are scored too. Rows are the study's rows (runs grouped without their ``-s<seed>``); the
listed pairs are tested as in the study (per image, mean over seeds; Wilcoxon signed-rank,
paired bootstrap interval; seeds agreeing), without a multiple-comparison correction.

    .venv/bin/python docs/evaluate_study_on.py --study studies/fusion \\
        --data data/lfw-x4-128-clean --json fusion-clean.json
"""

from __future__ import annotations

import argparse
import json
from itertools import combinations
from pathlib import Path

import numpy as np

from mfsr.evaluate import EvalOptions, evaluate
from mfsr.metrics.table import FaceSettings
from mfsr.study import stats
from mfsr.study.plan import reference_view
from mfsr.study.results import read_rows
from mfsr.train.checkpoint import load_model

METRICS = ("psnr", "ssim")


def score(data: Path, out: Path, **source) -> Path:
    if not (out / "summary.json").is_file():
        opts = EvalOptions(data=data, out=out, lpips_net=None, batch_size=8,
                           faces=FaceSettings(enabled=False), **source)  # fmt: skip
        evaluate(opts)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    n_data = json.loads((args.data / "dataset.json").read_text())["n_frames"]
    work = args.study / "other-data" / args.data.name
    rows: dict[str, list[tuple[int | None, Path]]] = {}
    for run in sorted(args.study.glob("runs/*/summary.json")):
        run = run.parent
        _, cfg, _ = load_model(run)
        data = args.data
        if cfg.n_frames != n_data:
            data = reference_view(args.data, work / f"frames-{cfg.n_frames}", {"test": None},
                                  cfg.n_frames)  # fmt: skip
        stem, seed = run.name.rsplit("-s", 1)
        rows.setdefault(stem, []).append((int(seed), score(data, work / "eval" / run.name,
                                                           model=run)))  # fmt: skip
        print(f"{run.name}: evaluated")
    for name in ("bicubic", "classical"):
        rows[name] = [(None, score(args.data, work / "eval" / name, baseline=name))]
    tables = {k: [(s, read_rows(f)) for s, f in v] for k, v in rows.items()}
    ids = sorted(set.intersection(*(set(t) for v in tables.values() for _, t in v)))
    methods = {}
    for key, runs in tables.items():
        m = stats.Method(key, key, "loss", [key], [s for s, _ in runs])
        for metric in METRICS:
            m.values[metric] = np.array([[float(t[i][metric]) for i in ids] for _, t in runs])
        methods[key] = m
    doc = {"data": str(args.data), "n_images": len(ids), "rows": {}, "pairs": []}
    print(f"\n{args.data} test, {len(ids)} faces")
    for key, m in methods.items():
        s = stats.summarize_metric(m.values["psnr"])
        doc["rows"][key] = {metric: stats.summarize_metric(m.values[metric]) for metric in METRICS}
        seeds = ", ".join(f"{v:.2f}" for v in s["seed_values"])
        print(f"{key:>28}: PSNR {s['mean']:.2f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}] ({seeds})")
    for a, b in combinations(methods.values(), 2):
        c = stats.compare(a, b, "psnr")
        doc["pairs"].append(c)
        print(f"{a.key} - {b.key}: {c['mean_diff']:+.3f} dB [{c['ci_low']:+.3f}, "
              f"{c['ci_high']:+.3f}], p {c['p']:.2g}, seeds agree {c['seeds_agree']}"
              f"/{c['seeds_shared']}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
