"""``mfsr bench``: measure the speed of every stage in one run (see ``docs/benchmarks.md``).

Registered in the main CLI as a single command; heavy libraries are imported inside it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from mfsr.cli.options import data_root_option, use_data_root


def bench(
    config: str = typer.Option("quick", help="Training preset or YAML whose model/data to time."),
    set_: list[str] = typer.Option(
        None, "--set", help="Override a training-config field, e.g. --set batch_size=16."
    ),
    out: Path = typer.Option(Path("bench"), help="Folder for bench.json and bench.md."),
    quick: bool = typer.Option(False, "--quick", help="Fewer timed calls: a minute or two."),
    device: str = typer.Option("auto", help="auto (GPU if available), cpu, cuda, cuda:1."),
    workers: list[int] = typer.Option(
        None, "--workers", help="Loader worker counts to time (repeatable; default 0 and 2)."
    ),
    losses: str = typer.Option(
        "mse,charbonnier,feature,lpips", help="Comma-separated losses to time the step with."
    ),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the model."),
    compile_mode: str = typer.Option(
        None,
        "--compile-mode",
        help="torch.compile mode (implies --compile): default, reduce-overhead (CUDA graphs), "
        "max-autotune, max-autotune-no-cudagraphs.",
    ),
    eval_images: int = typer.Option(None, help="Images for the metric timings (default 8/32)."),
    data_root: Path = data_root_option(),
) -> None:
    """Time the data feed, the training step per loss (FLOP/s, MFU on CUDA), the real
    training loop, inference at batch 1 and 32, and every evaluation metric; write
    bench.json and bench.md. Feature/LPIPS steps use a random trunk if the ImageNet weights
    are missing (same cost; flagged)."""
    from mfsr.bench.run import BenchOptions, run_bench
    from mfsr.cli.console import console
    from mfsr.weights import RandomTrunkWarning

    use_data_root(data_root)
    opts = BenchOptions(
        config=config,
        sets=list(set_ or []),
        out=out,
        quick=quick,
        device=device,
        workers=list(workers) if workers else [0, 2],
        losses=[s.strip() for s in losses.split(",") if s.strip()],
        compile=compile_,
        compile_mode=compile_mode,
        eval_images=eval_images,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomTrunkWarning)
        run_bench(opts, say=lambda text: console.print(f"[dim]-[/] {text}", highlight=False))
    console.print((out / "bench.md").read_text(encoding="utf-8"), highlight=False, markup=False)
    console.print(f"done: {out / 'bench.json'}, {out / 'bench.md'}")
