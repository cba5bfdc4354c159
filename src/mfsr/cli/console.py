"""Shared console helpers for commands: progress bars and the end-of-command summary."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mfsr.data.report import BuildReport

console = Console(stderr=True)


#: A bar without updates is shown after this many seconds (a slow start or a stalled download
#: shows its elapsed time; work refused at once shows no empty "0/?" bar).
QUIET_S = 1.0


class _Progress(Progress):
    """Shows a task from its first update, or once it has waited :data:`QUIET_S`."""

    def make_tasks_table(self, tasks: Iterable[Task]) -> Table:
        shown = [t for t in tasks if t.fields.get("updated") or (t.elapsed or 0.0) >= QUIET_S]
        return super().make_tasks_table(shown)


@contextmanager
def progress_bars(
    *columns: ProgressColumn,
) -> Iterator[Callable[[str], Callable[[int, int | None], None]]]:
    """One live rich display (``columns``: default description, bar, done/total and times);
    yields ``add(description) -> update(done, total)``, total None when unknown. A bar shows
    from its first update, or after :data:`QUIET_S` without one."""
    columns = columns or (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with _Progress(*columns, console=console) as progress:

        def add(description: str) -> Callable[[int, int | None], None]:
            task = progress.add_task(description, total=None, updated=False)

            def update(done: int, total: int | None) -> None:
                progress.update(task, completed=done, total=total, updated=True)

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
