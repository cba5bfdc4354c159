"""Losses: pixel formulas, VGG19 feature loss, LPIPS against the reference package, specs.

Small images (32-64 px) on CPU. Pretrained trunks are weight files made here (torchvision models
built with ``weights=None``, saved under the exact cache names in a temporary TORCH_HOME), so the
real loading path runs without ImageNet weights and without network.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from helpers import refuse_download
from mfsr import weights
from mfsr.errors import MfsrError
from mfsr.losses import (
    LOSSES,
    CharbonnierLoss,
    FeatureLoss,
    L1Loss,
    LPIPSLoss,
    MSELoss,
    build_loss,
    charbonnier,
    parse_spec,
)
from mfsr.losses.perceptual import vgg19_layer_names

random_trunk_ok = pytest.mark.filterwarnings("ignore::mfsr.weights.RandomTrunkWarning")


pytestmark = pytest.mark.usefixtures("no_torch_hub_network")


def _use_home(monkeypatch, home: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)


def fake_state(builder: str) -> dict[str, torch.Tensor]:
    """torchvision ``builder(weights=None)`` state: random values, real keys and shapes; the
    unused classifier is stored as stride-0 views so that the files stay small."""
    model = getattr(torchvision.models, builder)(weights=None)
    return {
        k: v if k.startswith("features.") else torch.zeros((), dtype=v.dtype).expand(v.shape)
        for k, v in model.state_dict().items()
    }


@pytest.fixture(scope="module")
def fake_home(tmp_path_factory) -> tuple[Path, dict[str, dict[str, torch.Tensor]]]:
    """A TORCH_HOME holding made-up alexnet and vgg19 files under torchvision's names."""
    home = tmp_path_factory.mktemp("torch-home")
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    states = {}
    for name in ("alexnet", "vgg19"):
        states[name] = fake_state(name)
        file_name = os.path.basename(weights.weights_url(name))
        torch.save(states[name], checkpoints / file_name)
    return home, states


@pytest.fixture
def with_weights(monkeypatch, fake_home):
    _use_home(monkeypatch, fake_home[0])
    return fake_home[1]


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    _use_home(monkeypatch, tmp_path / "empty-torch-home")


def images(size: int, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(batch, 3, size, size, generator=gen)
    pred = (target + 0.2 * torch.randn(batch, 3, size, size, generator=gen)).clamp(0, 1)
    return pred, target


# --- pixel losses -------------------------------------------------------------------------


def test_charbonnier_matches_hand_computed_values():
    pred = torch.tensor([0.0, 0.5, 1.0, 0.2, 0.9, 0.25], dtype=torch.float64).view(1, 3, 1, 2)
    target = torch.tensor([0.0, 0.2, 0.6, 0.2, 0.1, 1.0], dtype=torch.float64).view(1, 3, 1, 2)
    diffs = [0.0, 0.3, 0.4, 0.0, 0.8, -0.75]
    expected = [math.sqrt(d * d + 1e-3**2) for d in diffs]  # eps = 0.001 as in the seed
    assert expected[0] == pytest.approx(1e-3)
    elementwise = CharbonnierLoss(reduction="none")(pred, target)
    assert elementwise.flatten().tolist() == pytest.approx(expected, rel=1e-12)
    assert CharbonnierLoss()(pred, target).item() == pytest.approx(sum(expected) / 6, rel=1e-12)
    assert CharbonnierLoss(reduction="sum")(pred, target).item() == pytest.approx(sum(expected))


def test_charbonnier_tends_to_l1_as_eps_goes_to_zero():
    pred, target = images(16)
    l1_value = F.l1_loss(pred, target).item()
    gaps = []
    for eps in (1e-1, 1e-2, 1e-4, 1e-6):
        value = CharbonnierLoss(eps=eps)(pred, target).item()
        assert l1_value <= value <= l1_value + eps + 1e-7
        gaps.append(value - l1_value)
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 1e-5
    assert torch.equal(
        charbonnier(pred, target, 1e-3), CharbonnierLoss(reduction="none").elementwise(pred, target)
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_and_l1_match_torch(reduction):
    pred, target = images(16)
    assert torch.allclose(
        MSELoss(reduction=reduction)(pred, target), F.mse_loss(pred, target, reduction=reduction)
    )
    assert torch.allclose(
        L1Loss(reduction=reduction)(pred, target), F.l1_loss(pred, target, reduction=reduction)
    )


@pytest.mark.parametrize("cls", [MSELoss, L1Loss, CharbonnierLoss])
def test_loss_weight_scales_and_none_keeps_shape(cls):
    pred, target = images(8)
    base = cls()(pred, target)
    assert torch.allclose(cls(loss_weight=2.5)(pred, target), 2.5 * base)
    assert cls(reduction="none")(pred, target).shape == pred.shape


def test_bad_arguments_are_reported():
    with pytest.raises(MfsrError, match="reduction must be one of"):
        MSELoss(reduction="avg")
    with pytest.raises(MfsrError, match="positive"):
        CharbonnierLoss(eps=0)
    with pytest.raises(ValueError, match="same shape"):
        MSELoss()(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 4))


# --- VGG19 feature loss -----------------------------------------------------------------


@pytest.fixture(scope="module")
def feature_random():
    with pytest.MonkeyPatch.context() as mp, pytest.warns(weights.RandomTrunkWarning):
        mp.setenv("TORCH_HOME", "/nonexistent/mfsr-test-torch-home")
        mp.setattr(torch.hub, "_hub_dir", None)
        return FeatureLoss(random_trunk=True)


def test_feature_loss_default_layer_and_truncation(feature_random):
    assert feature_random.layer == "relu2_2"
    assert len(feature_random.net) == vgg19_layer_names().index("relu2_2") + 1 == 9
    assert isinstance(feature_random.net[-1], torch.nn.ReLU)
    (info,) = feature_random.trunk_info()
    assert info.random is True and info.name == "vgg19"


def test_feature_loss_zero_for_identical_positive_otherwise(feature_random):
    pred, target = images(32)
    assert feature_random(target, target.clone()).item() == 0.0
    assert feature_random(pred, target).item() > 0.0


def test_feature_loss_gradient_reaches_pred_not_the_frozen_trunk(feature_random):
    pred, target = images(32)
    pred.requires_grad_(True)
    feature_random.train()
    assert feature_random.training and not feature_random.net.training
    assert all(not m.training for m in feature_random.net.modules())
    feature_random(pred, target).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    for param in feature_random.net.parameters():
        assert param.requires_grad is False and param.grad is None


@random_trunk_ok
def test_feature_loss_layers(no_weights):
    deep = FeatureLoss(layer="relu5_4", random_trunk=True)
    assert len(deep.net) == 36
    pred, target = images(32, batch=1)
    assert (
        deep(
            pred,
            target,
        ).item()
        > 0
    )
    with pytest.raises(MfsrError, match="did you mean 'relu3_4'"):
        FeatureLoss(layer="relu3_44", random_trunk=True)


def test_feature_loss_uses_the_cached_vgg19_file(with_weights):
    state = with_weights["vgg19"]
    loss = FeatureLoss()
    (info,) = loss.trunk_info()
    path = weights.cache_path("vgg19")
    assert info.path == str(path) and info.random is False and info.official is False
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    for index in (0, 2, 5, 7):
        assert torch.equal(loss.net[index].weight, state[f"features.{index}.weight"])
        assert torch.equal(loss.net[index].bias, state[f"features.{index}.bias"])

    def relu2_2(x):  # independent reference: VGG19 up to relu2_2 with the saved weights
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        h = (x - mean) / std
        for index in (0, 2, 5, 7):
            h = F.relu(
                F.conv2d(
                    h, state[f"features.{index}.weight"], state[f"features.{index}.bias"], padding=1
                )
            )
            if index == 2:
                h = F.max_pool2d(h, 2)
        return h

    pred, target = images(32)
    expected = ((relu2_2(pred) - relu2_2(target)) ** 2).mean()
    assert torch.allclose(loss(pred, target), expected, rtol=1e-5)


# --- LPIPS -------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")
def test_lpips_loss_equals_the_reference_package(with_weights):
    import lpips

    ours = LPIPSLoss(net="alex", reduction="none")
    reference = lpips.LPIPS(net="alex", verbose=False)  # loads the same cached file itself
    assert torch.equal(reference.net.slice1[0].weight, ours.net.net.slice1[0].weight)
    pred, target = images(64, batch=3)
    with torch.no_grad():
        expected = reference(pred, target, normalize=True)
        got = ours(pred, target)
    assert got.shape == (3, 1, 1, 1)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert (got > 0).all()
    assert LPIPSLoss()(pred, target).item() == pytest.approx(expected.mean().item(), rel=1e-5)


def test_lpips_never_asks_torchvision_or_the_network(with_weights, monkeypatch, tmp_path):
    import torchvision.models._api as tv_api

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", refuse_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse_download)
    (info,) = LPIPSLoss().trunk_info()
    assert info.random is False and info.sha256 is not None

    _use_home(monkeypatch, tmp_path / "empty")
    with pytest.raises(MfsrError, match="mfsr weights fetch alexnet"):
        LPIPSLoss()
    with pytest.warns(weights.RandomTrunkWarning):
        (info,) = LPIPSLoss(random_trunk=True).trunk_info()
    assert info.random is True and info.sha256 is None
    with pytest.raises(MfsrError, match="'alex' or 'vgg'"):
        LPIPSLoss(net="squeeze", random_trunk=True)


def test_lpips_is_frozen_and_stays_in_eval_mode(with_weights):
    loss = LPIPSLoss().train()
    assert loss.training
    assert all(not m.training for m in loss.net.modules())  # dropout of the linear layers off
    pred, target = images(64)
    pred.requires_grad_(True)
    value = loss(pred, target)
    assert value.item() == loss(pred, target).item()  # deterministic in train mode
    value.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    for param in loss.net.parameters():
        assert param.requires_grad is False and param.grad is None


# --- specs and weighted sums --------------------------------------------------------------


def test_losses_registry():
    assert list(LOSSES) == ["mse", "l1", "charbonnier", "feature", "lpips", "identity"]


def test_parse_spec_forms():
    assert parse_spec("charbonnier + 0.1 * lpips") == [(1.0, "charbonnier"), (0.1, "lpips")]
    assert parse_spec("0.5*mse+feature") == [(0.5, "mse"), (1.0, "feature")]
    assert parse_spec(" MSE + 1e-2*L1 ") == [(1.0, "mse"), (0.01, "l1")]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("mse +", "expected a loss name"),
        ("+ mse", "expected a loss name"),
        ("lpip", "did you mean 'lpips'"),
        ("charbonier + mse", "did you mean 'charbonnier'"),
        ("2 mse", "expected '\\*'"),
        ("mse * 0.5", "weights go first"),
        ("mse lpips", "expected '\\+'"),
        ("-1 * mse", "unexpected '-'"),
        ("0 * mse", "positive"),
        ("1e999 * mse", "positive"),
        ("mse + MSE", "more than once"),
        ("__import__('os').system('true')", "unexpected '\\('"),
        ("mse; l1", "unexpected ';'"),
    ],
)
def test_bad_specs_raise(spec, message):
    with pytest.raises(MfsrError, match=message) as caught:
        build_loss(spec)
    assert "\n" not in str(caught.value)


def test_weighted_sum_equals_separate_losses(with_weights):
    pred, target = images(64)
    combined = build_loss("charbonnier + 0.1 * lpips")
    total = combined(pred, target)
    charb, lp = CharbonnierLoss()(pred, target), LPIPSLoss()(pred, target)
    assert torch.allclose(total, charb + 0.1 * lp, rtol=1e-5)
    assert set(combined.last_terms) == {"charbonnier", "lpips"}
    assert torch.allclose(combined.last_terms["lpips"], lp, rtol=1e-5)
    assert [info.name for info in combined.trunk_info()] == ["alexnet"]

    combined = build_loss("0.5*mse+feature", feature={"layer": "relu1_2"})
    total = combined(pred, target)
    expected = 0.5 * F.mse_loss(pred, target) + FeatureLoss(layer="relu1_2")(pred, target)
    assert torch.allclose(total, expected, rtol=1e-5)
    assert combined.terms["feature"].layer == "relu1_2"
    assert [info.name for info in combined.trunk_info()] == ["vgg19"]
    assert build_loss("l1").trunk_info() == []


def test_build_loss_options_and_missing_trunks(no_weights):
    with pytest.raises(MfsrError, match="mfsr weights fetch vgg19"):
        build_loss("mse + feature")
    with pytest.raises(MfsrError, match="has no such term"):
        build_loss("mse", lpips={"net": "vgg"})
    with pytest.raises(MfsrError, match="did you mean 'layer'"):
        build_loss("feature", random_trunk=True, feature={"layr": "relu3_4"})
    with pytest.raises(MfsrError, match="set weights in the spec"):
        build_loss("charbonnier", charbonnier={"loss_weight": 2.0})
    loss = build_loss("charbonnier", charbonnier={"eps": 1e-6})
    assert loss.terms["charbonnier"].eps == 1e-6
    with pytest.warns(weights.RandomTrunkWarning):
        loss = build_loss("mse + 0.01 * feature", random_trunk=True)
    assert [info.random for info in loss.trunk_info()] == [True]
