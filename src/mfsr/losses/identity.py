"""Identity loss: dlib descriptor distance between the prediction and the target.

``loss = || f(chip(pred)) - f(chip(target)) ||_2`` per image, where ``f`` is dlib's pretrained
face-recognition ResNet (:mod:`mfsr.face_resnet`, 128-d descriptors; < 0.6 = same person for
dlib) and ``chip`` cuts the face out of the image as a 150 x 150 chip. This is an
identity-preserving loss in the sense of the face-SR literature: it rewards outputs that a face
recognizer takes for the same person as the target, which pixel losses do not.

**Caveat for evaluation.** mfsr's identity measures (FFR identity, descriptor distance in
``mfsr enhance``'s comparison) use the same dlib network. A model trained with this loss is
optimised for the measuring instrument itself, so its gains there are partly by construction;
judge it also by the pixel metrics, FFR "no face" and by eye.

The chip is a fixed square of the image (not per-image landmark alignment, which would need
dlib's non-differentiable landmark detector in the training loop): mfsr's samples are framed
like LFW (face box 1/2.4 of the crop side, centred 0.13 box sizes above the crop centre; see
docs/data.md), and :data:`LFW_CHIP` is where dlib's own 5-landmark chip falls in such crops.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from mfsr.errors import MfsrError
from mfsr.face_resnet import CHIP_SIZE, load_face_resnet
from mfsr.losses.perceptual import FrozenNetLoss
from mfsr.losses.pixel import Reduction, check_pair, check_reduction, reduce_loss
from mfsr.weights import TrunkInfo

#: dlib's face chip (150 px, padding 0.25) in an LFW-framed crop, as fractions of the crop
#: side: centre x, centre y, side (measured on LFW validation crops: docs/losses.md).
LFW_CHIP = (0.505, 0.538, 0.456)
#: Residual blocks of dlib's ResNet (``feature_blocks`` can stop after 0-14 of them).
N_BLOCKS = 14


def check_chip(chip: object) -> tuple[float, float, float]:
    """Return ``chip`` as ``(cx, cy, side)`` floats, or raise MfsrError naming the field."""
    if isinstance(chip, (str, bytes)) or not hasattr(chip, "__len__") or len(chip) != 3:
        raise MfsrError(f"identity loss: chip must be [centre_x, centre_y, side], got {chip!r}")
    try:
        values = tuple(float(v) for v in chip)
    except (TypeError, ValueError):
        raise MfsrError(f"identity loss: chip values must be numbers, got {chip!r}") from None
    cx, cy, side = values
    if (
        not all(math.isfinite(v) for v in values)
        or not (0 < side <= 2)
        or not (0 <= cx <= 1 and 0 <= cy <= 1)
    ):
        raise MfsrError(
            f"identity loss: chip {list(chip)!r} must have its centre inside the image "
            "(fractions 0-1) and a side in (0, 2] image sides"
        )
    return values  # type: ignore[return-value]


def face_chips(images: Tensor, chip: tuple[float, float, float] = LFW_CHIP) -> Tensor:
    """Cut the square ``chip`` (centre x, centre y, side; fractions of the image side; for a
    non-square image, of its width and height) out of ``images`` ``(B, 3, H, W)`` and resample it
    to ``(B, 3, 150, 150)`` (bilinear; differentiable; zeros outside the image). Images whose
    chip is larger than 150 px are first shrunk with antialiasing, so no aliasing is
    introduced."""
    cx, cy, side = chip
    b, c, h, w = images.shape
    if side * max(h, w) > CHIP_SIZE:
        factor = CHIP_SIZE / (side * max(h, w))
        size = (max(1, round(h * factor)), max(1, round(w * factor)))
        images = F.interpolate(images, size=size, mode="bilinear", antialias=True)
    theta = images.new_tensor([[side, 0.0, 2 * cx - 1], [0.0, side, 2 * cy - 1]])
    grid = F.affine_grid(theta.expand(b, 2, 3), [b, c, CHIP_SIZE, CHIP_SIZE], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class IdentityLoss(FrozenNetLoss):
    """dlib descriptor distance (Euclidean, unit-free; dlib's same-person threshold 0.6).

    With ``feature_weight > 0`` each sample's term also gets ``feature_weight`` times the mean
    squared difference of the network's activations after its first ``feature_blocks`` residual
    blocks (``(32, 35, 35)`` for 0-3): a face-specific perceptual term on real pretrained
    weights, which keeps the local edge structure the identity term alone distorts (measured in
    docs/losses.md).

    Args:
        chip: where the face chip lies in the images (default :data:`LFW_CHIP`).
        feature_weight: weight of the feature term (0: descriptor distance only).
        feature_blocks: how many residual blocks (0-14) the feature term looks through.
        loss_weight: factor applied to the result.
        reduction: 'mean' | 'sum' over the batch, or 'none' (``(B,)`` distances).
        device: where the network lives (inputs must be there too).

    ``pred`` and ``target``: ``(B, 3, H, W)`` RGB in [0, 1]; ``target`` is a constant (no
    gradient). The network is frozen and always in eval mode (about 0.5 GFLOP per image
    forward; timings: docs/benchmarks.md, "Component timings").
    """

    def __init__(
        self,
        chip: tuple[float, float, float] | list[float] = LFW_CHIP,
        feature_weight: float = 0.0,
        feature_blocks: int = 3,
        loss_weight: float = 1.0,
        reduction: Reduction = "mean",
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.chip = check_chip(chip)
        if not (isinstance(feature_weight, (int, float)) and 0 <= feature_weight < math.inf):
            raise MfsrError(f"identity loss: feature_weight must be >= 0, got {feature_weight!r}")
        if isinstance(feature_blocks, bool) or feature_blocks not in range(N_BLOCKS + 1):
            raise MfsrError(
                f"identity loss: feature_blocks must be 0-{N_BLOCKS}, got {feature_blocks!r}"
            )
        self.feature_weight = float(feature_weight)
        self.feature_blocks = int(feature_blocks)
        self.loss_weight = float(loss_weight)
        self.reduction = check_reduction(reduction)
        self.net, info = load_face_resnet()
        warning = None if info.official else f"{info.path} is not the official dlib model file"
        self._trunk_info = TrunkInfo(
            "dlib_face_resnet_v1", info.path, info.sha256, info.official, False, warning
        )
        self._freeze(device)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        check_pair(pred, target)
        k = self.feature_blocks
        with torch.no_grad():
            target_desc, target_feat = self.net.descriptor_and_features(
                face_chips(target.float(), self.chip), k
            )
        desc, feat = self.net.descriptor_and_features(face_chips(pred.float(), self.chip), k)
        diff = desc - target_desc
        distance = torch.sqrt(diff.pow(2).sum(dim=1) + 1e-12)  # finite gradient at zero
        if self.feature_weight > 0:
            distance = distance + self.feature_weight * (feat - target_feat).pow(2).mean((1, 2, 3))
        return self.loss_weight * reduce_loss(distance, self.reduction)

    def extra_repr(self) -> str:
        return f"chip={self.chip}, loss_weight={self.loss_weight}, reduction={self.reduction!r}"
