"""LPIPS as a metric (Zhang et al. 2018), with the loss's weights policy.

The same network as :class:`mfsr.losses.perceptual.LPIPSLoss` (the reference ``lpips`` package's
linear layers, the ImageNet trunk from torchvision's cache via :func:`mfsr.weights.
load_trunk_state`, never downloaded implicitly): a missing trunk is the loss's one-line
:class:`~mfsr.errors.MfsrError`, unless ``random_trunk=True``, in which case the values are
computed with a random trunk (drawn with a fixed seed, so reproducible), flagged in
:meth:`LPIPSMetric.trunk_info`, and not comparable with published LPIPS values.

Inputs are quantised to 8 bits first like every mfsr metric
(:func:`mfsr.metrics.pixel.to_uint8_images`); lower is more similar (0 for identical images).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mfsr.losses.perceptual import LPIPSLoss
from mfsr.metrics.pixel import to_uint8_images

#: Seed of a random trunk (``random_trunk=True`` without the file), so that such values are at
#: least reproducible from run to run (the caller's global torch RNG is left untouched).
RANDOM_TRUNK_SEED = 0

_CACHE: dict[tuple[str, bool, str], LPIPSMetric] = {}


class LPIPSMetric:
    """Per-image LPIPS distances; build once, call on batches.

    Args:
        net: ``'alex'`` (default, as in the paper) or ``'vgg'``.
        device: where the network runs.
        random_trunk: accept a random trunk when the pretrained file is missing (flagged).
    """

    def __init__(
        self, net: str = "alex", device: str | torch.device = "cpu", random_trunk: bool = False
    ) -> None:
        self.net = net
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):  # a random trunk is the same in every run
            torch.manual_seed(RANDOM_TRUNK_SEED)
            self.loss = LPIPSLoss(
                net=net, reduction="none", device=device, random_trunk=random_trunk
            )
        self.loss.eval()

    def trunk_info(self) -> dict[str, Any]:
        """Which trunk file was used (sha256, official, random flag), for result files."""
        (info,) = self.loss.trunk_info()
        seed = RANDOM_TRUNK_SEED if info.random else None
        return {"net": self.net, **info.to_dict(), "random_seed": seed}

    @property
    def random(self) -> bool:
        return bool(self.loss.trunk_info()[0].random)

    def __call__(self, preds: Any, target: Any) -> np.ndarray:
        """LPIPS of each pair: ``(B, 3, H, W)`` tensors or ``uint8 (B, H, W, 3)`` arrays ->
        float64 ``(B,)`` (alex needs sides >= 31 px)."""
        p = self._tensor(preds)
        t = self._tensor(target)
        if p.shape != t.shape:
            raise ValueError(f"preds {tuple(p.shape)} and target {tuple(t.shape)} differ in shape")
        with torch.inference_mode():
            distance = self.loss(p, t)
        return distance.reshape(-1).double().cpu().numpy()

    def _tensor(self, images: Any) -> torch.Tensor:
        u8 = torch.from_numpy(to_uint8_images(images)).permute(0, 3, 1, 2)
        return u8.to(self.device, torch.float32) / 255.0


def lpips(
    preds: Any,
    target: Any,
    net: str = "alex",
    random_trunk: bool = False,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Functional form of :class:`LPIPSMetric` (the network is built once per process and
    setting, then reused). Returns float64 ``(B,)``."""
    key = (net, bool(random_trunk), str(torch.device(device)))
    if key not in _CACHE:
        _CACHE[key] = LPIPSMetric(net, device, random_trunk)
    return _CACHE[key](preds, target)
