"""The command line: instant help without heavy imports, clean usage errors."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "dlib", "cv2", "lpips", "torchvision")


def test_importing_the_cli_does_not_import_heavy_libraries():
    code = f"import sys, mfsr.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "mfsr", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("data", "model", "weights", "train", "evaluate", "enhance", "study"):
        assert command in out.stdout


def test_usage_errors_exit_2_without_traceback():
    for args in (["data", "build", "--bogus"], ["data", "build", "--scale", "x"]):
        out = subprocess.run([sys.executable, "-m", "mfsr", *args], capture_output=True, text=True)
        assert out.returncode == 2
        assert "Traceback" not in out.stderr and "Traceback" not in out.stdout
