"""The model side of ``mfsr enhance``: load a checkpoint or a baseline, check it, run batches.

:func:`load_enhancer` returns an :class:`Enhancer`: the model in eval mode on its device, its
geometry (frames N, scale, LR input size) and a JSON-able description of where it came from.
Calling it maps a batch of LR windows to enhanced faces in bounded memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mfsr.enhance.geometry import check_lr_size
from mfsr.errors import BadArgument, MfsrError
from mfsr.models import SCALES, ModelConfig, build_model
from mfsr.models.baselines import bicubic_upsample
from mfsr.train.checkpoint import load_model, resolve_checkpoint
from mfsr.weights import file_sha256

BASELINES = ("bicubic", "classical")
#: Defaults for the baselines (no checkpoint to read them from): the ``quick`` geometry.
BASELINE_FRAMES = 7
BASELINE_SCALE = 4
#: LR size used when neither ``--lr-size`` nor the checkpoint says (the ``quick`` preset's).
DEFAULT_LR_SIZE = 32

Warn = Callable[[str], None]


@dataclass
class Enhancer:
    """A model ready for enhancement.

    ``model``: ``(B, N, 3, lr, lr)`` float in [0, 1] -> ``(B, 3, s*lr, s*lr)``; ``label``: short
    name for image labels; ``multiple``: the LR side must divide by it; ``info``: JSON-able
    provenance (checkpoint path, tensor SHA-256, flags, config) or the baseline name.
    """

    model: nn.Module
    label: str
    n_frames: int
    scale: int
    lr_size: int
    multiple: int
    device: torch.device
    info: dict[str, Any] = field(default_factory=dict)
    #: average the outputs for the windows and their mirror images (twice the model time)
    flip_ensemble: bool = False

    @property
    def hr_size(self) -> int:
        """Output side in pixels (``scale * lr_size``)."""
        return self.scale * self.lr_size

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """``uint8 (B, N, lr, lr, 3)`` RGB windows -> ``uint8 (B, s*lr, s*lr, 3)`` faces.

        Runs as one batch on the model's device under ``torch.inference_mode``; the caller
        bounds memory by the batch size.
        """
        x = torch.tensor(np.asarray(windows), device=self.device)  # a copy: inputs may be read-only
        x = x.permute(0, 1, 4, 2, 3).float().div_(255.0)
        with torch.inference_mode():
            y = self.model(x)
            if self.flip_ensemble:  # self-ensemble: mirrored input, output mirrored back
                y = (y + self.model(x.flip(-1)).flip(-1)) / 2.0
        if not torch.isfinite(y).all():
            raise MfsrError(
                f"{self.label}: the model produced NaN or infinite values; no face is written "
                "(a diverged or corrupt model)"
            )
        return to_uint8(y)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(B, 3, H, W)`` float in [0, 1] -> ``uint8 (B, H, W, 3)`` (round half to even)."""
    y = images.detach().float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return y.permute(0, 2, 3, 1).cpu().numpy()


def bicubic_reference(windows: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upsampling (``align_corners=False``, clamped) of each window's reference frame:
    ``uint8 (B, N, lr, lr, 3)`` -> ``uint8 (B, s*lr, s*lr, 3)``, the comparison image."""
    ref = windows[:, windows.shape[1] // 2]
    x = torch.tensor(np.asarray(ref)).permute(0, 3, 1, 2).float() / 255.0
    return to_uint8(bicubic_upsample(x, scale))


def pick_device(device: str) -> torch.device:
    """``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:K``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise BadArgument(
            f"`device`: unknown device {device!r} (auto, cpu, cuda, cuda:0)"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadArgument(f"`device` {device}: CUDA is not available here; use `device` cpu")
    return dev


def trained_lr_size(meta: dict[str, Any]) -> int | None:
    """The LR side a checkpoint was trained on, from its stored training config
    (``data.build``: ``hr_size // scale``), else from the dataset's ``dataset.json`` if that
    folder exists; None if neither says."""
    data = (meta.get("train_config") or {}).get("data") or {}
    build = data.get("build") or {}
    if build.get("hr_size") and build.get("scale"):
        return int(build["hr_size"]) // int(build["scale"])
    dataset = data.get("dataset")
    if dataset:
        try:
            doc = json.loads((Path(dataset) / "dataset.json").read_text())
            return int(doc["lr_size"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return None


def _checkpoint_info(path: str, file: Path, meta: dict[str, Any]) -> dict[str, Any]:
    train = meta.get("train_config") or {}
    counters = meta.get("counters") or {}
    return {
        "kind": "checkpoint",
        "path": str(path),
        "file": str(file),
        "file_sha256": file_sha256(file),
        "tensors_sha256": meta.get("tensors_sha256"),
        "random_trunk": meta.get("random_trunk"),
        # the loss trunks it was trained with, less their path on the training machine
        "trunks": [{k: v for k, v in t.items() if k != "path"} for t in meta.get("trunks") or []],
        "model_config": meta.get("model_config"),
        "run_name": train.get("name"),
        "loss": train.get("loss"),
        "step": counters.get("step"),
        "epoch": counters.get("epoch"),
        "best_psnr": counters.get("best_psnr"),
    }


def load_enhancer(
    model: str | Path | None = None,
    baseline: str | None = None,
    *,
    n_frames: int | None = None,
    scale: int | None = None,
    lr_size: int | None = None,
    device: str = "auto",
    flip_ensemble: bool = False,
    warn: Warn | None = None,
) -> Enhancer:
    """A checkpoint (run folder or ``.safetensors``; ``best`` then ``last``) or a baseline.

    ``n_frames`` / ``scale``: for a checkpoint, a check (a different value is an error naming
    both); for a baseline, the geometry (defaults 7 and 4). ``lr_size``: default the size the
    checkpoint was trained on (:func:`trained_lr_size`), else :data:`DEFAULT_LR_SIZE`; a size
    other than the trained one is allowed with a warning. ``flip_ensemble``: average each
    output with the mirrored output of the mirrored input (self-ensemble; 2x model time).
    Raises :class:`MfsrError`.
    """
    if (model is None) == (baseline is None):
        raise BadArgument(
            "give exactly one of `model` CHECKPOINT (a run folder or .safetensors file) "
            f"or `baseline` {'|'.join(BASELINES)}"
        )
    if scale is not None and scale not in SCALES:
        raise BadArgument(f"`scale` must be one of {', '.join(map(str, SCALES))}, got {scale}")
    if n_frames is not None and not 1 <= n_frames <= 16:
        raise BadArgument(f"`n_frames` must be in 1..16, got {n_frames}")
    dev = pick_device(device)
    if baseline is not None:
        net, cfg, label, multiple, info = _baseline(baseline, n_frames, scale, dev)
        trained = None
    else:
        net, cfg, label, multiple, info, trained = _checkpoint(model, n_frames, scale, dev, warn)
    size = lr_size if lr_size is not None else (trained or DEFAULT_LR_SIZE)
    check_lr_size(size, multiple)
    if trained is not None and size != trained:
        _say(
            warn,
            f"the model was trained on {trained} px LR crops; at --lr-size {size} the face is "
            f"framed at a different pixel scale than in training",
        )
    info.update(
        {"config": {"name": cfg.name, "n_frames": cfg.n_frames, "scale": cfg.scale}},
        trained_lr_size=trained,
        lr_size_source="option" if lr_size is not None else "checkpoint" if trained else "default",
        flip_ensemble=flip_ensemble,
    )
    return Enhancer(net, label, cfg.n_frames, cfg.scale, size, multiple, dev, info, flip_ensemble)


def _baseline(name: str, n_frames: int | None, scale: int | None, dev: torch.device):
    """(net, config, label, LR-side multiple, provenance) of baseline ``name``."""
    if name not in BASELINES:
        raise BadArgument(f"`baseline` must be one of {', '.join(BASELINES)}, got {name!r}")
    cfg = ModelConfig(
        name=name, n_frames=n_frames or BASELINE_FRAMES, scale=scale or BASELINE_SCALE
    )
    info: dict[str, Any] = {"kind": "baseline", "baseline": name}
    return build_model(cfg).eval().to(dev), cfg, name, 1, info


def _checkpoint(
    model: str | Path, n_frames: int | None, scale: int | None, dev: torch.device, warn
):
    """(net, config, label, LR-side multiple, provenance, trained LR size) of a checkpoint;
    ``n_frames`` / ``scale`` given must match it."""
    net, cfg, meta = load_model(model, device=dev)
    file = resolve_checkpoint(model)
    if scale is not None and scale != cfg.scale:
        raise MfsrError(
            f"checkpoint {file} was trained at x{cfg.scale}, not --scale {scale}: leave "
            f"--scale out to use x{cfg.scale}, or give a checkpoint trained at x{scale}"
        )
    if n_frames is not None and n_frames != cfg.n_frames:
        raise MfsrError(
            f"checkpoint {file} takes {cfg.n_frames} frames per window, not --n-frames "
            f"{n_frames}: leave --n-frames out to use {cfg.n_frames}, or give a checkpoint "
            f"trained on {n_frames} frames"
        )
    multiple = 2 ** (cfg.depth - 1) if cfg.name == "unet_geu" else 1
    label = str(meta.get("train_config", {}).get("name") or Path(file).stem)
    if meta.get("random_trunk"):
        _say(warn, f"checkpoint {file} was trained with a RANDOM perceptual trunk")
    return (
        net,
        cfg,
        label,
        multiple,
        _checkpoint_info(str(model), file, meta),
        trained_lr_size(meta),
    )


def _say(warn: Warn | None, message: str) -> None:
    if warn is not None:
        warn(message)
