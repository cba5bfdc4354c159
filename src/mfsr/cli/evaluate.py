"""``mfsr evaluate``: score a model, a baseline or a folder of outputs on a test set.

Registered in the main CLI as a single command (``app.command("evaluate")(evaluate)``);
heavy libraries are imported inside the command.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

#: Default worker processes for the per-image metrics.
DEFAULT_WORKERS = 2


def evaluate(
    data: Path = typer.Option(
        ..., help="Test set: a folder of samples, or a dataset root (its --split folder is used)."
    ),
    out: Path = typer.Option(..., help="Folder for per_image.csv, summary.json, table.md."),
    model: Path = typer.Option(
        None, help="A checkpoint (.safetensors) or a run folder (its checkpoints/best)."
    ),
    baseline: str = typer.Option(None, help="A baseline instead of a model: bicubic, classical."),
    outputs: Path = typer.Option(
        None, help="Outputs of another method: a folder of <sample id>.png images."
    ),
    split: str = typer.Option("test", help="Split folder to use when --data is a dataset root."),
    batch_size: int = typer.Option(4, help="Samples per model batch."),
    device: str = typer.Option("cpu", help="Device for the model and LPIPS: cpu, cuda, cuda:1."),
    lpips_net: str = typer.Option("alex", help="LPIPS trunk: alex (as in the paper) or vgg."),
    no_lpips: bool = typer.Option(False, "--no-lpips", help="Do not compute LPIPS."),
    random_trunk: bool = typer.Option(
        False,
        "--random-trunk",
        help="If the LPIPS trunk weights are missing, use a random trunk (flagged in every "
        "result file; LPIPS values are then not comparable).",
    ),
    no_ffr: bool = typer.Option(False, "--no-ffr", help="Skip face recognition (dlib)."),
    min_score: float = typer.Option(
        0.0, help="dlib HOG detection score a face needs (0 = dlib's own threshold)."
    ),
    threshold: float = typer.Option(0.6, help="Descriptor distance above which identity fails."),
    workers: int = typer.Option(
        DEFAULT_WORKERS, help="Processes for the per-image metrics (0: this process only)."
    ),
    cache_dir: Path = typer.Option(
        None, help="Cache of HR face descriptors (default: $MFSR_CACHE or ~/.cache/mfsr)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the descriptor cache."),
    limit: int = typer.Option(None, help="Evaluate only the first N samples (by id)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an evaluation already in --out (its summary.json)."
    ),
    torch_threads: int = typer.Option(
        None, help="Torch threads for the model and LPIPS (default: 1 with workers)."
    ),
) -> None:
    """Score SR outputs against the HR truth: SSIM, MSE, PSNR, sharpness difference, LPIPS, FFR."""
    from mfsr.cli.console import console, progress_bars
    from mfsr.errors import MfsrError
    from mfsr.evaluate import EvalOptions
    from mfsr.evaluate import evaluate as run_evaluation
    from mfsr.metrics.table import FaceSettings
    from mfsr.weights import RandomTrunkWarning

    _check_device(device)
    opts = EvalOptions(
        data=data,
        out=out,
        model=model,
        baseline=baseline,
        outputs=outputs,
        split=split,
        batch_size=batch_size,
        device=device,
        lpips_net=None if no_lpips else lpips_net,
        random_trunk=random_trunk,
        faces=FaceSettings(enabled=not no_ffr, min_score=min_score, threshold=threshold),
        workers=workers,
        cache_dir=cache_dir,
        use_cache=not no_cache,
        limit=limit,
        torch_threads=torch_threads,
        overwrite=overwrite,
    )
    opts.validate()
    if threshold <= 0:
        raise MfsrError(f"--threshold must be > 0, got {threshold}")
    with warnings.catch_warnings(), progress_bars() as add:
        # said once, below, in one line (and in every result file)
        warnings.filterwarnings("ignore", category=RandomTrunkWarning)
        result = run_evaluation(opts, progress=add("evaluating"))
    excluded = result.summary["excluded"]
    if excluded:
        console.print(f"[yellow]excluded {len(excluded)} sample(s):")
        for item in excluded[:20]:
            console.print(f"  {item['id']}: {item['detail']}", markup=False, highlight=False)
        if len(excluded) > 20:
            console.print(f"  ... and {len(excluded) - 20} more (see summary.json)")
    unmatched = result.summary["method"].get("unmatched_files") or []
    if unmatched:
        console.print(
            f"[yellow]note:[/] {len(unmatched)} file(s) in the outputs folder match no "
            f"evaluated sample id (e.g. {unmatched[0]})"
        )
    trunk = result.summary.get("lpips_trunk")
    if trunk and trunk.get("random"):
        console.print(f"[yellow]warning:[/] LPIPS: {trunk.get('warning')}", highlight=False)
    typer.echo(result.files["table"].read_text(encoding="utf-8"))
    console.print(f"[green]done:[/] results in {out}")


def _check_device(device: str) -> None:
    import torch

    from mfsr.errors import MfsrError

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise MfsrError(f"--device: unknown device {device!r} (e.g. cpu, cuda, cuda:0)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MfsrError(f"--device {device}: CUDA is not available on this machine")
