"""Checkpoints: one safetensors file, written atomically, loaded without executing code.

A checkpoint holds tensors (``model/<name>``, ``optim/<param index>/<key>``, ``rng/torch``,
``rng/cuda/<i>``) and a JSON document in the safetensors metadata (key ``mfsr``): the format
name and version, the model config, counters, optimizer hyper-parameters, Python/NumPy RNG
states and whatever else the trainer records. A SHA-256 over all tensor bytes is stored too and
checked on load, so a corrupted file is detected rather than silently used.

Writing goes to a temporary file in the same folder, is flushed to disk, then renamed over the
target: a crash mid-write leaves the previous checkpoint intact and never a half file under the
final name.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mfsr.config import from_dict, to_dict
from mfsr.errors import MfsrError, about
from mfsr.models import ModelConfig, build_model

FORMAT_NAME = "mfsr-checkpoint"
FORMAT_VERSION = 1


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over keys, dtypes, shapes and raw bytes of ``tensors`` (sorted by key)."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Atomically write ``tensors`` and the JSON-able ``meta`` to ``path`` (safetensors)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    doc = {
        **meta,
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "tensors_sha256": tensors_digest(tensors),
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with about(path):
            save_file(tensors, str(tmp), metadata={"mfsr": json.dumps(doc, allow_nan=False)})
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)


def read_checkpoint(
    path: str | os.PathLike, verify: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read (tensors, meta) from an mfsr checkpoint; every problem is one MfsrError line."""
    path = Path(path)
    if not path.is_file():
        raise MfsrError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            raw = (handle.metadata() or {}).get("mfsr")
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise MfsrError(
            f"{path}: not a readable safetensors checkpoint (truncated or corrupt?): {exc}"
        ) from None
    if raw is None:
        raise MfsrError(f"{path}: safetensors file without mfsr metadata (not an mfsr checkpoint)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise MfsrError(f"{path}: checkpoint metadata is not valid JSON") from None
    if meta.get("format") != FORMAT_NAME:
        raise MfsrError(f"{path}: not an mfsr checkpoint (format {meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise MfsrError(
            f"{path}: checkpoint format version {meta.get('format_version')} is not supported "
            f"(this mfsr reads version {FORMAT_VERSION})"
        )
    if verify and tensors_digest(tensors) != meta.get("tensors_sha256"):
        raise MfsrError(f"{path}: checkpoint is corrupt (tensor checksum mismatch)")
    return tensors, meta


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix/`` with the prefix removed."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}


def resolve_checkpoint(path: str | os.PathLike, which: str = "best") -> Path:
    """A checkpoint file, or a run folder -> its ``checkpoints/<which>.safetensors``
    (falling back to ``last`` when there is no ``best`` yet)."""
    path = Path(path)
    if path.is_dir():
        folder = path / "checkpoints"
        for name in (which, "last"):
            if (folder / f"{name}.safetensors").is_file():
                return folder / f"{name}.safetensors"
        raise MfsrError(f"{path}: run folder without checkpoints (expected {folder}/*.safetensors)")
    return path


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", which: str = "best"
) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """(model in eval mode, ModelConfig, checkpoint meta) from a checkpoint file or run folder.

    The architecture is rebuilt from the config stored in the checkpoint; a state dict that
    does not fit it, or NaN/inf weights (which would give silently black or garbage faces),
    is a clear error.
    """
    file = resolve_checkpoint(path, which)
    tensors, meta = read_checkpoint(file)
    if "model_config" not in meta:
        raise MfsrError(f"{file}: checkpoint has no model config")
    cfg = from_dict(ModelConfig, meta["model_config"], where=f"{file}: model_config")
    model = build_model(cfg)
    state = split_prefix(tensors, "model")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise MfsrError(
            f"{file}: checkpoint has non-finite (NaN/inf) weights in {len(bad)} tensor(s), "
            f"e.g. {bad[0]}; the run probably diverged - use an earlier checkpoint"
        )
    expected = model.state_dict()  # load_state_dict would cast ints into the float weights
    cast = [
        k
        for k, v in state.items()
        if k in expected and v.is_floating_point() != expected[k].is_floating_point()
    ]
    if cast:
        raise MfsrError(
            f"{file}: weights of the wrong type in {len(cast)} tensor(s), e.g. {cast[0]} is "
            f"{state[cast[0]].dtype} where the model holds {expected[cast[0]].dtype}"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise MfsrError(f"{file}: weights do not match the model config ({detail})") from None
    return model.to(device).eval(), cfg, meta


def read_init_weights(cfg: Any) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model weights of ``cfg.init_from`` (a run folder: its best, else last checkpoint; or
    a checkpoint file), the start of a fine-tuning run, and a record of where they came from.
    The stored model config must equal ``cfg.model``; every problem is one MfsrError line."""
    source, source_cfg, meta = load_model(cfg.init_from)
    ours, theirs = to_dict(cfg.model), to_dict(source_cfg)
    if ours != theirs:
        key = next(k for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k))
        raise MfsrError(
            f"init_from {cfg.init_from}: its model differs from this run's "
            f"(model.{key}: {theirs.get(key)!r} there, {ours.get(key)!r} here)"
        )
    counters = meta.get("counters") or {}
    record = {
        "path": str(cfg.init_from),
        "file": str(resolve_checkpoint(cfg.init_from)),
        "tensors_sha256": meta.get("tensors_sha256"),
        "loss": (meta.get("train_config") or {}).get("loss"),
        "step": counters.get("step"),
    }
    return source.state_dict(), record
