"""Perceptual losses on frozen ImageNet trunks: VGG19 feature reconstruction and LPIPS.

Both take ``pred`` and ``target`` float tensors ``(B, 3, H, W)`` in [0, 1] and get their trunk
from :mod:`mfsr.weights` (torchvision's cache, loaded with ``weights_only=True``), so nothing
here touches the network. The pretrained network is frozen (``requires_grad=False``), moved to
``device`` once, and stays in ``eval()`` mode even when the loss module is put in train mode.
``target`` is treated as a constant: no gradient flows to it.
"""

from __future__ import annotations

import difflib
import warnings

import torch
from torch import Tensor, nn

from mfsr.errors import MfsrError
from mfsr.losses.pixel import Reduction, check_pair, check_reduction, reduce_loss
from mfsr.weights import TrunkInfo, load_trunk_state

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _vgg19_features_meta() -> nn.Sequential:
    """torchvision's VGG19 ``features`` on the meta device (architecture only, no memory)."""
    import torchvision  # lazy: seconds to import, only for the VGG19 loss

    with torch.device("meta"):
        return torchvision.models.vgg19(weights=None).features


def layer_names(features: nn.Sequential) -> list[str]:
    """Names of the modules of a VGG ``features`` stack, in order: ``conv1_1``, ``relu1_1``,
    ..., ``pool1``, ``conv2_1``, ... (block number, then index of the conv in the block)."""
    names, block, index = [], 1, 0
    for module in features:
        if isinstance(module, nn.Conv2d):
            index += 1
            names.append(f"conv{block}_{index}")
        elif isinstance(module, nn.ReLU):
            names.append(f"relu{block}_{index}")
        elif isinstance(module, nn.MaxPool2d):
            names.append(f"pool{block}")
            block, index = block + 1, 0
        else:  # pragma: no cover - VGG has only the three kinds
            names.append(f"{type(module).__name__.lower()}{block}_{index}")
    return names


def vgg19_layer_names() -> list[str]:
    """All layer names accepted by :class:`FeatureLoss` (``conv1_1`` ... ``pool5``)."""
    return layer_names(_vgg19_features_meta())


class FrozenNetLoss(nn.Module):
    """Base: ``self.net`` is a frozen pretrained network that always stays in eval mode."""

    net: nn.Module
    _trunk_info: TrunkInfo

    def _freeze(self, device: str | torch.device) -> None:
        self.net.requires_grad_(False)
        self.to(device)
        self.train(self.training)

    def train(self, mode: bool = True) -> FrozenNetLoss:
        """Set train/eval mode of the module; the frozen network stays in eval mode."""
        super().train(mode)
        self.net.eval()
        return self

    def trunk_info(self) -> list[TrunkInfo]:
        """Which trunk file this loss uses (sha256, official, random), for run records."""
        return [self._trunk_info]


class FeatureLoss(FrozenNetLoss):
    """VGG19 feature reconstruction loss (Johnson et al. 2016; the paper's eq. 3).

    ``loss = mean((phi_j(pred) - phi_j(target))^2)`` where ``phi_j`` is torchvision's VGG19 up to
    layer ``layer`` (inclusive) applied to ImageNet mean/std normalised inputs; the mean over
    ``C_j H_j W_j`` is the paper's ``1/(C_j H_j W_j) ||.||^2``, and 'mean' also averages the batch.
    The network is truncated after ``layer``: later layers are never built nor run.

    Default layer ``relu2_2``: the paper names only "layer j" of VGG19 and cites Johnson et al.,
    whose super-resolution experiments (x4 and x8, feature loss alone, as in the paper) used
    relu2_2 of VGG16; relu2_2 of VGG19 is the same layer of the same block structure. Shallow
    features keep spatial detail, whereas deep ones (relu5_4, SRGAN's "VGG54") favour texture
    over geometry, and relu2_2 costs about a third of relu5_4 (256^2 on CPU, fwd+bwd: ~1.6 s vs
    ~4.5 s). ``relu3_4`` or ``relu5_4`` can be chosen for the study.

    Args:
        layer: a name from :func:`vgg19_layer_names`, e.g. ``relu2_2``, ``relu3_4``, ``relu5_4``.
        loss_weight: factor applied to the result.
        reduction: 'mean' | 'sum' | 'none' ('none' returns ``(B, C_j, H_j, W_j)`` squared errors).
        device: where the trunk lives (inputs must be there too).
        random_trunk: if the VGG19 file is missing, use a random trunk (flagged in
            :meth:`trunk_info`) instead of raising MfsrError.
    """

    def __init__(
        self,
        layer: str = "relu2_2",
        loss_weight: float = 1.0,
        reduction: Reduction = "mean",
        device: str | torch.device = "cpu",
        random_trunk: bool = False,
    ) -> None:
        super().__init__()
        full = _vgg19_features_meta()
        names = layer_names(full)
        if layer not in names:
            close = difflib.get_close_matches(str(layer), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise MfsrError(
                f"feature loss: unknown VGG19 layer {layer!r}{hint}; e.g. relu2_2, relu3_4, relu5_4"
            )
        self.layer = layer
        self.loss_weight = float(loss_weight)
        self.reduction = check_reduction(reduction)
        last = names.index(layer)
        state, self._trunk_info = load_trunk_state("vgg19", allow_random=random_trunk)
        # Slicing keeps torchvision's indices as keys ("7.weight" <- "features.7.weight").
        self.net = full[: last + 1].to_empty(device="cpu")
        if state is None:
            for module in self.net.modules():  # torchvision's VGG initialisation for convs
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(module.bias)
        else:
            wanted = {f"features.{k}": k for k in self.net.state_dict()}
            self.net.load_state_dict({wanted[k]: v for k, v in state.items() if k in wanted})
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)
        self._freeze(device)

    def features(self, x: Tensor) -> Tensor:
        """``x``: ``(B, 3, H, W)`` in [0, 1] -> activations of ``self.layer``."""
        return self.net((x - self.mean) / self.std)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Scalar feature reconstruction loss ('mean'/'sum'); gradients flow to ``pred`` only."""
        check_pair(pred, target)
        with torch.no_grad():
            target_features = self.features(target)
        diff = (self.features(pred) - target_features) ** 2
        return self.loss_weight * reduce_loss(diff, self.reduction)

    def extra_repr(self) -> str:
        return f"layer={self.layer!r}, loss_weight={self.loss_weight}, reduction={self.reduction!r}"


LPIPS_TRUNKS = {"alex": "alexnet", "vgg": "vgg16"}


def _load_lpips_trunk(net: nn.Module, state: dict[str, Tensor]) -> None:
    """Copy a torchvision state dict (``features.{i}.*``) into lpips' sliced trunk
    (``slice{k}.{i}.*``: lpips keeps torchvision's layer indices inside each slice)."""
    mapped = {}
    for slice_name, block in net.named_children():
        for index, layer in block.named_children():
            for param, _ in layer.named_parameters(recurse=False):
                mapped[f"{slice_name}.{index}.{param}"] = state[f"features.{index}.{param}"]
    net.load_state_dict(mapped, strict=True)


class LPIPSLoss(FrozenNetLoss):
    """LPIPS (Zhang et al. 2018) through the reference ``lpips`` package (the paper's eq. 4).

    Inputs in [0, 1] are mapped to [-1, 1] as LPIPS expects. The linear calibration layers come
    from the ``lpips`` wheel; the trunk (AlexNet for ``net='alex'``, VGG16 for ``net='vgg'``) is
    loaded by :func:`mfsr.weights.load_trunk_state` and copied in. ``lpips.LPIPS`` itself is
    always built with ``pnet_rand=True``, so it never asks torchvision (and the network) for
    weights, nor unpickles the cached file with ``weights_only=False`` as torch.hub would.

    Args:
        net: 'alex' (default, as in the paper) or 'vgg'.
        loss_weight: factor applied to the result.
        reduction: 'mean' | 'sum' over the batch, or 'none' (``(B, 1, 1, 1)`` distances).
        device: where the model lives.
        random_trunk: if the trunk file is missing, keep lpips' random trunk (flagged in
            :meth:`trunk_info`) instead of raising MfsrError.

    For ``net='alex'`` images must be at least 31 px on each side.
    """

    def __init__(
        self,
        net: str = "alex",
        loss_weight: float = 1.0,
        reduction: Reduction = "mean",
        device: str | torch.device = "cpu",
        random_trunk: bool = False,
    ) -> None:
        super().__init__()
        if net not in LPIPS_TRUNKS:
            raise MfsrError(f"lpips loss: net must be 'alex' or 'vgg', got {net!r}")
        self.net_name = net
        self.loss_weight = float(loss_weight)
        self.reduction = check_reduction(reduction)
        state, self._trunk_info = load_trunk_state(LPIPS_TRUNKS[net], allow_random=random_trunk)
        import lpips  # lazy: imports torchvision (seconds), only for LPIPS

        with warnings.catch_warnings():  # lpips still passes torchvision's old `pretrained=`
            warnings.filterwarnings("ignore", message=r".*(pretrained|weight enum).*")
            model = lpips.LPIPS(net=net, version="0.1", pnet_rand=True, verbose=False)
        if state is not None:
            _load_lpips_trunk(model.net, state)
        self.net = model
        self._freeze(device)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """LPIPS distance between ``pred`` and ``target`` (``(B, 3, H, W)`` in [0, 1])."""
        check_pair(pred, target)
        distance = self.net(pred * 2 - 1, target * 2 - 1)
        return self.loss_weight * reduce_loss(distance, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"net={self.net_name!r}, loss_weight={self.loss_weight}, reduction={self.reduction!r}"
        )
