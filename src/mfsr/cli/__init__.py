"""The ``mfsr`` command line: a thin shell over the library.

Heavy libraries (torch, dlib, OpenCV) are imported inside the commands, so ``mfsr --help``
stays instant. User errors (:class:`mfsr.errors.MfsrError`) are printed as one line on stderr
with exit status 2, never as a traceback.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

import typer

from mfsr import __version__
from mfsr.cli.bench import bench as bench_command
from mfsr.cli.data import app as data_app
from mfsr.cli.enhance import enhance as enhance_command
from mfsr.cli.evaluate import evaluate as evaluate_command
from mfsr.cli.model import app as model_app
from mfsr.cli.models import app as models_app
from mfsr.cli.serve import serve as serve_command
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
app.add_typer(models_app, name="models")
app.add_typer(weights_app, name="weights")
app.command("train")(train_command)
app.command("evaluate")(evaluate_command)
app.command("enhance")(enhance_command)
app.command("study")(study_command)
app.command("bench")(bench_command)
app.command("serve")(serve_command)


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


#: What each command leaves behind when it stops part-way (a full or read-only disk, Ctrl-C,
#: SIGTERM), and how to go on; checked by tests/test_storage_faults.py and test_interrupts.py.
#: ``train`` says it itself: only it knows whether a checkpoint was written.
KEPT = {
    "data build": "finished samples are kept (each whole): rerun the same command to complete "
    "the dataset",
    "data fetch": "a download cut short is kept as a hidden .part file beside the target: rerun "
    "the same command to resume it",
    "data from-video": "finished sequences are kept (each whole): rerun the same command to "
    "rewrite them all",
    "evaluate": "no summary.json was written, so the folder holds no result: rerun the same "
    "command",
    "enhance": "faces written so far are kept, without enhance.json: rerun the same command to "
    "redo them",
    "study": "finished runs and evaluations are kept: rerun the same command to go on",
}


def _kept(argv: list[str]) -> str:
    words = [w for w in argv if not w.startswith("-")][:2]
    for key in (" ".join(words), words[0] if words else ""):
        if key in KEPT:
            return KEPT[key]
    return ""


def _interruption(exc: BaseException | None) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt behind typer's exit status 130, if any."""
    while exc is not None and not isinstance(exc, KeyboardInterrupt):
        exc = exc.__cause__ or exc.__context__
    return exc


#: Per command, the library arguments that its flags name otherwise (the rest are found by the
#: option's own name: ``batch_size`` -> ``--batch-size``).
RENAMED = {
    "enhance": {"every_frame": "--all"},
    "data build": {"n_frames": "--frames", "write_splits": "--splits"},
    "data from-video": {"n_frames": "--frames"},
}


def flags_of(argv: list[str]) -> dict[str, str]:
    """``{library argument: flag}`` for the command that ``argv`` runs (``data build`` ...)."""
    command, path = typer.main.get_command(app), []
    while path != argv and argv[len(path)] in getattr(command, "commands", {}):
        command = command.commands[argv[len(path)]]  # a group's subcommand
        path.append(argv[len(path)])
    flags = {
        p.name: max(p.opts, key=len)
        for p in command.params
        if p.name and any(o.startswith("--") for o in p.opts)
    }
    return flags | RENAMED.get(" ".join(path), {})


_TERMINATED: list[bool] = []  # set by the SIGTERM handler


def _on_sigterm(signum: int, frame: object) -> None:
    _TERMINATED.append(True)
    raise KeyboardInterrupt("SIGTERM")  # unwinds like Ctrl-C: locks released, temp files removed


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning MfsrError and a file-system OSError into a
    one-line message (exit status 2), and Ctrl-C or SIGTERM into one line saying what was kept
    (exit status 130 or 143).

    Usage errors (unknown option, bad value) are reported by typer itself (exit status 2).
    """
    from mfsr.errors import BadArgument, Interrupted, MfsrError, describe_os_error

    argv = sys.argv[1:] if argv is None else argv
    for stream in (sys.stdout, sys.stderr):  # names that are not UTF-8, even into a log file
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    _TERMINATED.clear()
    try:
        app(args=argv, prog_name="mfsr")
    except MfsrError as exc:
        line = exc.with_flags(flags_of(argv)) if isinstance(exc, BadArgument) else str(exc)
        typer.secho(f"error: {line}", fg="red", err=True)
        sys.exit(2)
    except OSError as exc:
        line = "; ".join(filter(None, (describe_os_error(exc), _kept(argv))))
        typer.secho(f"error: {line}", fg="red", err=True)
        sys.exit(2)
    except SystemExit as exc:
        stop = _interruption(exc) if exc.code == 130 else None
        if stop is None:
            raise
        said = str(stop) if isinstance(stop, Interrupted) else _kept(argv)
        how = "SIGTERM" if _TERMINATED else "Ctrl-C"
        typer.secho(f"interrupted ({how}): {said or 'nothing kept'}", fg="yellow", err=True)
        sys.exit(143 if _TERMINATED else 130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
