"""Models: the U-Net+GEU network and two parameter-free baselines, built from a ModelConfig.

Every model maps ``frames``: float ``(B, N, C, h, w)`` in [0, 1] (reference frame at ``N // 2``)
to ``(B, C, s*h, s*w)``. The learned model's output is not clamped in training mode and is
clamped to [0, 1] in eval mode; the baselines always clamp.

``MODELS`` is a plain dict ``name -> builder(ModelConfig) -> nn.Module``; add an entry to
register a model. Presets live in ``src/mfsr/presets/model/*.yaml``
(:func:`load_model_config`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from mfsr.config import from_file_and_overrides, read_yaml, resolve_preset
from mfsr.models.baselines import Bicubic, ClassicalFusion
from mfsr.models.unet_geu import FUSIONS, UNetGEU

SCALES = (2, 4, 8)
MAX_FRAMES = 16


@dataclass(frozen=True)
class ModelConfig:
    """Which model to build and its size. Invalid values raise ValueError naming the field.

    ``name``: a key of :data:`MODELS`. ``n_frames``: frames per sequence N (1..16).
    ``scale``: 2, 4 or 8. ``in_channels``: channels per frame (3 = RGB). ``width``: base
    channels of the U-Net (level ``i`` has ``width * 2**i``). ``depth``: U-Net levels (1..6;
    LR sides must divide by ``2**(depth-1)``). ``n_geu``: GEU blocks at the bottleneck.
    ``fusion``: ``early`` (frames stacked along channels), ``shared`` (a weight-shared
    per-frame encoder, then a 1x1 conv), ``registered`` (registration, then aligned,
    agreement-weighted features and the classical estimate: :mod:`mfsr.models.fusion`) or
    ``flow`` (``registered`` with a learned residual flow refining each frame's alignment).
    ``residual``: add the bicubic-upsampled reference (``registered``/``flow``: the classical
    estimate). ``back_projection``: back-projection steps of that classical estimate (0..20).
    ``width``/``depth``/``n_geu``/``fusion``/``residual``/``back_projection`` only affect
    ``unet_geu``.
    """

    name: str = "unet_geu"
    n_frames: int = 7
    scale: int = 8
    in_channels: int = 3
    width: int = 64
    depth: int = 4
    n_geu: int = 3
    fusion: Literal["early", "shared", "registered", "flow"] = "early"
    residual: bool = True
    back_projection: int = 1

    def __post_init__(self) -> None:
        if self.name not in MODELS:
            raise ValueError(f"name must be one of {', '.join(MODELS)}; got {self.name!r}")
        for field, low, high in (
            ("n_frames", 1, MAX_FRAMES),
            ("in_channels", 1, 64),
            ("width", 1, 1024),
            ("depth", 1, 6),
            ("n_geu", 0, 64),
            ("back_projection", 0, 20),
        ):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{field} must be an integer in {low}..{high}, got {value!r}")
        if type(self.scale) is not int or self.scale not in SCALES:  # bool and float refused
            raise ValueError(f"scale must be one of 2, 4, 8, got {self.scale!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if not isinstance(self.residual, bool):
            raise ValueError(f"residual must be true or false, got {self.residual!r}")


def _bicubic(cfg: ModelConfig) -> nn.Module:
    return Bicubic(cfg.scale)


def _classical(cfg: ModelConfig) -> nn.Module:
    return ClassicalFusion(cfg.scale)


#: Model name -> builder. A plain dict: register a model by adding an entry.
MODELS: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "unet_geu": UNetGEU,
    "bicubic": _bicubic,
    "classical": _classical,
}


def build_model(cfg: ModelConfig) -> nn.Module:
    """A freshly initialised model for ``cfg`` (weights drawn from torch's global RNG)."""
    return MODELS[cfg.name](cfg)


def load_model_config(
    name_or_path: str | Path, overrides: Mapping[str, Any] | None = None
) -> ModelConfig:
    """A packaged preset (``paper``, ``quick``, ``tiny``, ``bicubic``, ``classical``) or a YAML
    file, with ``overrides`` (field -> value) applied on top; errors are one-line MfsrErrors
    naming the field and where its bad value came from: the file, or the overrides."""
    path = resolve_preset(str(name_or_path), "model")
    data = read_yaml(path)
    merged = {**data, **overrides} if overrides else None
    return from_file_and_overrides(ModelConfig, data, merged, path)


__all__ = [
    "MODELS",
    "Bicubic",
    "ClassicalFusion",
    "ModelConfig",
    "UNetGEU",
    "build_model",
    "load_model_config",
]
