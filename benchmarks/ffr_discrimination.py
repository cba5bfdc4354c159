"""Does FFR discriminate? dlib failures on true HR faces versus x8 bicubic reconstructions.

On the first ``--limit`` samples of a test set, runs the FFR part of ``mfsr evaluate`` (no LPIPS)
on three kinds of outputs:

* ``HR itself``: the true HR images (should fail about never);
* ``clean bicubic x8``: each HR image box-downsampled x8 and upsampled bicubically (no blur,
  noise or compression; the geometry of FACTS' table);
* ``bicubic baseline``: ``--baseline bicubic`` on the test set's own degraded LR frames.

Prints a Markdown table for every ``--min-score``; ``--json`` writes the figures.

    .venv/bin/python benchmarks/ffr_discrimination.py --data /tmp/lfw753/test --limit 150
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2

from mfsr.data.images import read_rgb, write_png
from mfsr.evaluate import EvalOptions, evaluate
from mfsr.evaluate.sources import open_test_set
from mfsr.metrics.table import FaceSettings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="test set folder")
    p.add_argument("--limit", type=int, default=150, help="first N samples (by id)")
    p.add_argument("--scale", type=int, default=8, help="factor of the clean bicubic outputs")
    p.add_argument("--min-score", default="0.0", help="comma-separated detection thresholds")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def write_outputs(data: Path, limit: int, scale: int, root: Path) -> dict[str, Path]:
    """Folders of HR copies and of clean bicubic reconstructions, named by sample id."""
    dataset, indices, _, _ = open_test_set(data, limit=limit)
    folders = {"HR itself": root / "hr", f"clean bicubic x{scale}": root / "bicubic"}
    for folder in folders.values():
        folder.mkdir(parents=True)
    for index in indices:
        files = dataset.samples[index]
        hr = read_rgb(files.hr)
        h, w = hr.shape[:2]
        small = cv2.resize(hr, (w // scale, h // scale), interpolation=cv2.INTER_AREA)
        up = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        shutil.copy(files.hr, folders["HR itself"] / f"{files.id}.png")
        write_png(folders[f"clean bicubic x{scale}"] / f"{files.id}.png", up)
    return folders


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="mfsr-ffr-"))
    results = []
    try:
        folders = write_outputs(args.data, args.limit, args.scale, root)
        for min_score in (float(s) for s in args.min_score.split(",")):
            faces = FaceSettings(min_score=min_score)
            kinds: list[tuple[str, dict]] = [(k, {"outputs": f}) for k, f in folders.items()]
            kinds.append(("bicubic baseline (degraded LR)", {"baseline": "bicubic"}))
            for label, source in kinds:
                start = time.perf_counter()
                result = evaluate(
                    EvalOptions(
                        data=args.data,
                        out=root / "eval" / f"{label}-{min_score}".replace(" ", "_"),
                        lpips_net=None,
                        faces=faces,
                        workers=args.workers,
                        cache_dir=root / "cache",
                        limit=args.limit,
                        **source,
                    )
                )
                f = result.summary["ffr"]
                results.append(
                    {
                        "outputs": label,
                        "min_score": min_score,
                        "n": f["n"],
                        "no_face": f["no_face"]["count"],
                        "hr_no_face": f["no_face"]["hr_no_face"],
                        "identity": f["identity"]["count"],
                        "judged": f["identity"]["n_judged"],
                        "far": f["identity"]["far"],
                        "far_of": f["identity"]["far_of"],
                        "median_distance": f["distance"]["median"],
                        "seconds": time.perf_counter() - start,
                    }
                )
                print(f"{label} (min score {min_score}): done", file=sys.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        "| outputs | min score | no face | identity fail (no face or d > 0.6) | d > 0.6 "
        "(of outputs with a face) | median distance |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['outputs']} | {r['min_score']:g} | {r['no_face']}/{r['n']} | "
            f"{r['identity']}/{r['judged']} | {r['far']}/{r['far_of']} | "
            f"{r['median_distance']:.3f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
