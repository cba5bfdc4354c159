"""Strict loading of YAML configs into dataclasses.

Unknown keys (with a "did you mean" hint), wrong value types and unreadable files are reported
as one-line :class:`~mfsr.errors.MfsrError` messages naming the file and the dotted field.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mfsr.errors import MfsrError, about

T = TypeVar("T")

PRESET_DIR = Path(__file__).parent / "presets"


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path``; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MfsrError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MfsrError(f"{path}: cannot be read ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise MfsrError(f"{path}: invalid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MfsrError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` under a hidden temporary name beside ``path``, then rename it into place:
    a reader, or a run killed or stopped by a full disk mid-write, sees the old file or the new
    one, never half. Raises ``OSError`` naming ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with about(path):
            tmp.write_bytes(data)
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not also leave the half-written copy
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """:func:`write_bytes_atomic` of ``text`` as UTF-8, a name that is not valid UTF-8 (kept by
    Python as lone surrogates) written as its escape, ``\\udcff``: valid JSON and YAML that
    reads back as the same name."""
    write_bytes_atomic(path, text.encode("utf-8", errors="backslashreplace"))


def resolve_preset(name_or_path: str, kind: str, folder: Path | None = None) -> Path:
    """A preset name (``default``) -> ``<folder>/<name>.yaml``; a path is returned as is.

    ``folder`` defaults to the packaged ``presets/<kind>/``; ``kind`` names the preset family in
    the error (``unknown degradation preset 'x'; known presets: ...``).
    """
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    folder = PRESET_DIR / kind if folder is None else folder
    preset = folder / f"{name_or_path}.yaml"
    if preset.exists():
        return preset
    known = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
    raise MfsrError(f"unknown {kind} preset {name_or_path!r}; known presets: {', '.join(known)}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check/convert ``value`` against the annotation ``tp``; raise MfsrError naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except MfsrError as exc:
                errors.append(str(exc))
        raise MfsrError(errors[0] if len(errors) == 1 else f"{where}: unexpected value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise MfsrError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise MfsrError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise MfsrError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise MfsrError(f"{where}: expected a mapping, got {value!r}")
        return {
            _convert(k, args[0], f"{where} key"): _convert(v, args[1], f"{where}.{k}")
            for k, v in value.items()
        }
    if origin is list:
        if not isinstance(value, list):
            raise MfsrError(f"{where}: expected a list, got {value!r}")
        return [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    return _scalar(value, tp, where)


def _scalar(value: Any, tp: Any, where: str) -> Any:
    """Check/convert a number, flag, string or one of a ``Literal``'s values."""
    if tp is float:
        if isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as a string
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MfsrError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise MfsrError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MfsrError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise MfsrError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise MfsrError(f"{where}: expected a string, got {value!r}")
        return value
    if typing.get_origin(tp) is typing.Literal:
        args = typing.get_args(tp)
        if value not in args:
            raise MfsrError(f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    raise MfsrError(f"{where}: unsupported field type {_type_name(tp)}")  # pragma: no cover


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data`` strictly: unknown keys and bad types are errors.

    ``where`` prefixes field names in messages (e.g. ``"preset.yaml: blur"``).
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {}
    sep = "." if where and not where.endswith(": ") else ""
    for key, value in data.items():
        name = f"{where}{sep}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise MfsrError(f"{name}: unknown key{hint}; known keys: {', '.join(fields)}")
        kwargs[key] = _convert(value, hints[key], name)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise MfsrError(f"{where.rstrip(': ') or cls.__name__}: {exc}") from None
    return obj


def with_defaults(cls: type, data: Any) -> Any:
    """A saved config ``data`` of dataclass ``cls`` as this version would write it: fields added
    since it was written get their defaults (the run used them). Returned unchanged if this
    version cannot read it, so that a comparison still names the differing keys."""
    with contextlib.suppress(MfsrError, AttributeError):
        return to_dict(from_dict(cls, data))
    return data


def load_dataclass(cls: type[T], path: str | Path) -> T:
    """Read YAML ``path`` into dataclass ``cls`` strictly (see :func:`from_dict`)."""
    return from_dict(cls, read_yaml(path), where=f"{path}: ")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[2, 3]"]`` -> nested ``{"a": {"b": 1}, "c": [2, 3]}`` (values are YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise MfsrError(f"setting {pair!r}: expected KEY=VALUE (e.g. optim.lr=3e-4)")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise MfsrError(f"setting {pair!r}: value is not valid YAML") from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise MfsrError(f"setting {pair!r}: {part} is set both as a value and a section")
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings are merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def from_file_and_overrides(
    cls: type[T], file_data: dict[str, Any], merged: dict[str, Any] | None, path: Path
) -> T:
    """:func:`from_dict` of ``merged`` (``file_data`` with overrides applied; None: no
    overrides). A bad value is blamed on the file at ``path`` when the file alone has the same
    error, else on the overrides (``<path>, overridden: <field>: ...``)."""
    own, overridden = f"{path}: ", f"{path}, overridden: "
    if merged is None:
        return from_dict(cls, file_data, where=own)
    try:
        return from_dict(cls, merged, where=overridden)
    except MfsrError as exc:
        try:
            from_dict(cls, file_data, where=own)
        except MfsrError as file_exc:  # the same error in the file alone: the file's own
            if str(file_exc).removeprefix(own) == str(exc).removeprefix(overridden):
                raise file_exc from None
        raise


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) -> plain dict/list values, tuples as lists (YAML/JSON friendly)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
