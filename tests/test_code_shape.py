"""Functions of up to 60 lines, modules of up to 400 (the developers' guide, issue 20).

A ratchet: functions and modules over the limit are listed in ``OVER_TODAY`` with their
length (none today); none may grow, none may be added, and one that comes under the limit must
leave the list. A CLI command's option declarations do not count (its length starts at its body).
Run ``python tests/test_code_shape.py`` to print the current list.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
MAX_FUNCTION, MAX_MODULE = 60, 400

OVER_TODAY: dict[str, int] = {}  # empty since issue 20: keep it so


def measure() -> dict[str, int]:
    """``{"<module>:<function>": lines, "<module>": lines}`` for everything over the limits."""
    over = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE:
            over[rel] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = node.body[0].lineno if rel.startswith("mfsr/cli/") else node.lineno
                length = node.end_lineno - start + 1  # type: ignore[operator]
                if length > MAX_FUNCTION:
                    over[f"{rel}:{node.name}"] = length
    return over


def test_no_function_or_module_grows_past_the_limits():
    over = measure()
    new = {k: v for k, v in over.items() if k not in OVER_TODAY}
    grown = {k: (OVER_TODAY[k], v) for k, v in over.items() if v > OVER_TODAY.get(k, v)}
    fixed = sorted(set(OVER_TODAY) - set(over))
    assert not new, f"new functions/modules over {MAX_FUNCTION}/{MAX_MODULE} lines: {new}"
    assert not grown, f"grew (listed, now): {grown}"
    assert not fixed, f"now within the limits: remove from OVER_TODAY: {fixed}"


if __name__ == "__main__":
    for name, lines in sorted(measure().items(), key=lambda kv: -kv[1]):
        print(f"{lines:5d}  {name}")
