"""The ``mfsr`` command line: a thin shell over the library.

Heavy libraries (torch, dlib, OpenCV) are imported inside the commands, so ``mfsr --help``
stays instant. User errors (:class:`mfsr.errors.MfsrError`) are printed as one line on stderr
with exit status 2, never as a traceback.
"""

from __future__ import annotations

import sys

import typer

from mfsr import __version__
from mfsr.cli.bench import bench as bench_command
from mfsr.cli.data import app as data_app
from mfsr.cli.enhance import enhance as enhance_command
from mfsr.cli.evaluate import evaluate as evaluate_command
from mfsr.cli.model import app as model_app
from mfsr.cli.study import study as study_command
from mfsr.cli.train import train as train_command
from mfsr.cli.weights import app as weights_app

app = typer.Typer(
    name="mfsr",
    help="Multi-frame face super-resolution: datasets, models, training, evaluation, study.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")
app.add_typer(weights_app, name="weights")
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.command("enhance")(enhance_command)
app.command("study")(study_command)
app.command("bench")(bench_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mfsr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Multi-frame face super-resolution toolkit."""


#: What each command leaves behind when the file system fails under it (read-only, full, not a
#: folder), and how to go on; each is checked by tests/test_storage_faults.py.
KEPT_ON_OS_ERROR = {
    "train": "the run folder keeps its settings, logs and last checkpoint; once fixed, rerun "
    "with --resume to continue from that checkpoint",
    "data build": "finished samples are kept (each whole); once fixed, rerun the same command "
    "to complete the dataset",
    "data from-video": "finished sequences are kept (each whole); once fixed, rerun the same "
    "command to rewrite them all",
    "evaluate": "no summary.json was written, so the folder holds no result; once fixed, rerun "
    "the same command",
    "enhance": "faces written so far are kept, without enhance.json; once fixed, rerun the same "
    "command to redo them",
    "study": "finished runs and evaluations are kept; once fixed, rerun the same command to go on",
}


def _kept(argv: list[str]) -> str:
    words = [w for w in argv if not w.startswith("-")][:2]
    for key in (" ".join(words), words[0] if words else ""):
        if key in KEPT_ON_OS_ERROR:
            return f"; {KEPT_ON_OS_ERROR[key]}"
    return ""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning MfsrError and a file-system OSError into a
    one-line message (exit status 2).

    Usage errors (unknown option, bad value) are reported by typer itself (exit status 2).
    """
    from mfsr.errors import MfsrError, describe_os_error

    argv = sys.argv[1:] if argv is None else argv
    try:
        app(args=argv, prog_name="mfsr")
    except MfsrError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    except OSError as exc:
        typer.secho(f"error: {describe_os_error(exc)}{_kept(argv)}", fg="red", err=True)
        sys.exit(2)
