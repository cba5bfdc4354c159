"""``mfsr train``: train a model from a preset or YAML config (``docs/training.md``)."""

from __future__ import annotations

from pathlib import Path

import typer

from mfsr.cli.options import data_root_option, use_data_root


def train(
    config: str = typer.Option(
        ..., help="Config preset (smoke, quick, quick-identity, quick-x8, paper) or a YAML path."
    ),
    set_: list[str] = typer.Option(
        None, "--set", help="Override a config field, e.g. --set optim.lr=3e-4 (repeatable)."
    ),
    name: str = typer.Option(None, help="Run name (folder under out_dir); default: the config's."),
    resume: bool = typer.Option(False, help="Continue the run from its last checkpoint."),
    data_root: Path = data_root_option(),
) -> None:
    """Train (or resume) a multi-frame SR model; writes runs/<name>/."""
    from mfsr.cli.console import console
    from mfsr.train.config import load_train_config

    use_data_root(data_root)

    overrides = list(set_ or []) + ([f"name={name}"] if name else [])
    cfg = load_train_config(config, overrides)

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from mfsr.train.loop import train as run_training

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
    ) as bars:
        tasks: dict[int, int] = {}
        status = {"text": ""}

        def update(epoch: int, step: int, steps: int, info: dict | None) -> None:
            if epoch not in tasks:
                tasks[epoch] = bars.add_task(
                    f"epoch {epoch + 1}/{cfg.epochs}", total=steps, status=""
                )
            if info is not None:
                status["text"] = f"loss {info['loss']:.4g}  {info['samples_per_s']:.1f} samples/s"
            bars.update(tasks[epoch], completed=step, status=status["text"])

        def epoch_done(epoch: int, v: dict) -> None:
            console.print(
                f"epoch {epoch + 1}/{cfg.epochs}: val PSNR {v['psnr']:.2f} dB (bicubic "
                f"{v['bicubic_psnr']:.2f}), SSIM {v['ssim']:.4f}, loss {v['loss']:.4g}"
            )

        summary = run_training(cfg, resume=resume, progress=update, on_epoch=epoch_done)
    best, bicubic = summary["best_val_psnr"], summary["bicubic_val_psnr"]
    if best is not None and bicubic is not None:
        console.print(
            f"[green]done:[/] {summary['steps']} steps in {summary['wall_s']:.0f} s; best val PSNR "
            f"{best:.2f} dB (bicubic {bicubic:.2f} dB); run folder {cfg.run_dir}"
        )
    if summary["random_trunk"]:
        console.print("[yellow]note:[/] this run used a RANDOM perceptual trunk (--random-trunk)")
