"""``mfsr study``: the loss-function study end to end (see ``docs/study.md``).

Registered in the main CLI as a single command (``app.command("study")(study)``); heavy
libraries are imported inside the command.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import typer

from mfsr.cli.options import data_root_option, use_data_root


def study(
    config: str = typer.Option(
        ..., help="Study preset (smoke, quick, fusion, quick-x8, paper) or a YAML path."
    ),
    set_: list[str] = typer.Option(
        None,
        "--set",
        help="Override a study field, e.g. --set seeds=[0] --set evaluate.limit=100 "
        "(repeatable; train.overrides takes a YAML list of KEY=VALUE strings).",
    ),
    name: str = typer.Option(None, help="Study name (folder under out_dir); default: config's."),
    out_dir: str = typer.Option(None, help="Parent folder of the study; default: the config's."),
    data_root: Path = data_root_option(),
) -> None:
    """Train one network per loss and seed, evaluate all and the baselines, write Table 1,
    significance tests, figures and report.html. Rerun to resume (finished runs are kept)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mfsr.cli.console import console
    from mfsr.study import Reporter, load_study_config, run_study
    from mfsr.weights import RandomTrunkWarning

    use_data_root(data_root)
    overrides = list(set_ or [])
    overrides += [f"name={name}"] if name else []
    overrides += [f"out_dir={out_dir}"] if out_dir else []
    cfg = load_study_config(config, overrides)
    if cfg.random_trunk:
        console.print(
            "[yellow]note:[/] random_trunk is on: feature/LPIPS losses and the LPIPS metric use a "
            "RANDOM trunk when the ImageNet weights are missing (flagged in every table)"
        )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bars:
        tasks: dict[str, int] = {}

        class Bars(Reporter):
            def stage(self, text: str) -> None:
                console.print(text, highlight=False)

            def progress(self, task: str, done: int, total: int) -> None:
                if task not in tasks:
                    for old in tasks.values():
                        bars.update(old, visible=False)
                    tasks[task] = bars.add_task(task, total=total)
                bars.update(tasks[task], completed=done, total=total)

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RandomTrunkWarning)  # said once, above
            result = run_study(cfg, Bars())
    c = result.counts
    typer.echo(result.files["table1.md"].read_text(encoding="utf-8"))
    console.print(
        f"[green]done:[/] {len(c.trained)} run(s) trained, {len(c.resumed)} resumed, "
        f"{len(c.skipped)} already finished; {len(c.evaluated)} evaluation(s) made, "
        f"{len(c.eval_skipped)} kept. Report: {result.files['report.html']}"
    )
    banner = result.doc["random_trunk"]["banner"]
    if banner:
        console.print(f"[yellow]warning:[/] {banner}", highlight=False)
