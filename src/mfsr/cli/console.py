"""Shared console helpers for commands: progress bars and the end-of-command summary."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mfsr.data.report import BuildReport

console = Console(stderr=True)


@contextmanager
def progress_bars(
    *columns: ProgressColumn,
) -> Iterator[Callable[[str], Callable[[int, int | None], None]]]:
    """One live rich display (``columns``: default description, bar, done/total and times);
    yields ``add(description) -> update(done, total)``, total None when unknown. A bar is shown
    from its first update: work refused before it starts leaves no empty "0/?" bar."""
    columns = columns or (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:

        def add(description: str) -> Callable[[int, int], None]:
            tasks: list = []

            def update(done: int, total: int | None) -> None:
                if not tasks:
                    tasks.append(progress.add_task(description, total=total))
                progress.update(tasks[0], completed=done, total=total)

            return update

        yield add


def print_report(report: BuildReport, title: str, max_lines: int = 20) -> None:
    """Counts per split, each skipped input with its reason (first ``max_lines``), notes."""
    table = Table(title=title)
    table.add_column("split")
    table.add_column("written", justify="right")
    table.add_column("already there", justify="right")
    for split in sorted(set(report.written) | set(report.kept)):
        table.add_row(split, str(report.written[split]), str(report.kept[split]))
    console.print(table)
    if report.skipped:
        console.print(f"[yellow]skipped {len(report.skipped)} input(s):")
        for where, reason in report.skipped[:max_lines]:
            console.print(f"  {where}: {reason}", markup=False, highlight=False)
        if len(report.skipped) > max_lines:
            console.print(f"  ... and {len(report.skipped) - max_lines} more (see the report file)")
        for reason, count in report.skip_reasons().most_common():
            console.print(f"  {count:6d} x {reason}", markup=False, highlight=False)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
