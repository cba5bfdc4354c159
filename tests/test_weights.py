"""Pretrained trunk files: cache location, safe loading, sha256/official flags, fetch offline.

No test touches the network: ``torch.hub.download_url_to_file`` and ``urlopen`` are replaced by
functions that fail. Weight files are made here: torchvision models built with ``weights=None``
(random values, the real keys and shapes), saved with ``torch.save`` under the exact cache name.
"""

from __future__ import annotations

import hashlib
import pickle
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from typer.testing import CliRunner

from mfsr import weights
from mfsr.cli.weights import app
from mfsr.errors import MfsrError

pytestmark = pytest.mark.usefixtures("no_torch_hub_network")


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty TORCH_HOME; torch.hub.get_dir() follows it (unless set_dir was called)."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # undo any torch.hub.set_dir()
    assert Path(torch.hub.get_dir()) == home / "hub"
    return home


def fake_state(builder: str) -> dict[str, torch.Tensor]:
    """torchvision ``builder(weights=None)`` state dict: random values, real keys and shapes.

    The classifier tensors (unused by the losses) are stored as stride-0 views of one zero, so
    the file keeps every key and shape but is ~10 MB instead of 244 MB for AlexNet.
    """
    model = getattr(torchvision.models, builder)(weights=None)
    return {
        k: v if k.startswith("features.") else torch.zeros((), dtype=v.dtype).expand(v.shape)
        for k, v in model.state_dict().items()
    }


@pytest.fixture(scope="module")
def alexnet_state() -> dict[str, torch.Tensor]:
    return fake_state("alexnet")


@pytest.fixture
def alexnet_file(torch_home, alexnet_state) -> Path:
    path = weights.cache_path("alexnet")
    path.parent.mkdir(parents=True)
    torch.save(alexnet_state, path)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cache_path_is_torchvision_file_name_under_torch_home(torch_home):
    checkpoints = torch_home / "hub" / "checkpoints"
    assert weights.cache_dir() == checkpoints
    assert weights.cache_path("alexnet") == checkpoints / "alexnet-owt-7be5be79.pth"
    assert weights.cache_path("vgg19") == checkpoints / "vgg19-dcbb9e9d.pth"
    assert weights.cache_path("vgg16") == checkpoints / "vgg16-397923af.pth"
    assert weights.official_prefix("alexnet") == "7be5be79"
    url = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url
    assert weights.weights_url("alexnet") == url


def test_unknown_trunk_suggests_a_name(torch_home):
    with pytest.raises(MfsrError, match="did you mean 'alexnet'"):
        weights.cache_path("alexnt")


def test_loads_the_cached_file_and_records_its_sha256(alexnet_file, alexnet_state):
    state, info = weights.load_trunk_state("alexnet")
    assert info.sha256 == sha256(alexnet_file)
    assert info.path == str(alexnet_file)
    assert info.official is False and info.random is False
    assert "official prefix 7be5be79" in info.warning
    assert set(state) == set(alexnet_state)
    for key in ("features.0.weight", "features.3.bias", "features.10.weight"):
        assert torch.equal(state[key], alexnet_state[key])
    assert info.to_dict()["sha256"] == info.sha256


def test_official_flag_follows_the_hash_prefix(alexnet_file, monkeypatch):
    monkeypatch.setattr(weights, "official_prefix", lambda name: sha256(alexnet_file)[:8])
    _, info = weights.load_trunk_state("alexnet")
    assert info.official is True and info.warning is None


def test_missing_file_is_one_line_naming_file_folder_and_command(torch_home):
    with pytest.raises(MfsrError) as caught:
        weights.load_trunk_state("vgg19")
    message = str(caught.value)
    assert "\n" not in message
    assert "vgg19-dcbb9e9d.pth" in message
    assert str(torch_home / "hub" / "checkpoints") in message
    assert "mfsr weights fetch vgg19" in message
    assert "--random-trunk" in message


def test_missing_file_with_allow_random_is_flagged(torch_home):
    with pytest.warns(weights.RandomTrunkWarning, match="RANDOM trunk"):
        state, info = weights.load_trunk_state("alexnet", allow_random=True)
    assert state is None
    assert info.random is True and info.official is False and info.sha256 is None
    assert "mfsr weights fetch alexnet" in info.warning


class _Payload:
    """Unpickling this calls open(marker, 'w'): code execution on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_file_that_runs_code_on_unpickling_is_refused(torch_home, tmp_path, writer):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))  # the payload is live with plain pickle
    assert probe.exists()

    marker = tmp_path / "marker"
    path = weights.cache_path("alexnet")
    path.parent.mkdir(parents=True)
    payload = {"features.0.weight": _Payload(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(MfsrError, match="weights_only=True") as caught:
        weights.load_trunk_state("alexnet")
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not marker.exists()


def test_truncated_file_is_refused(alexnet_file):
    data = alexnet_file.read_bytes()
    alexnet_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(MfsrError, match="cannot be loaded") as caught:
        weights.load_trunk_state("alexnet")
    assert str(alexnet_file) in str(caught.value)


def test_wrong_architecture_is_refused(torch_home, alexnet_state):
    path = weights.cache_path("vgg16")
    path.parent.mkdir(parents=True)
    torch.save(alexnet_state, path)  # AlexNet weights under the VGG16 name
    with pytest.raises(MfsrError, match="not a torchvision vgg16 weight file") as caught:
        weights.load_trunk_state("vgg16")
    assert str(path) in str(caught.value)

    wrong_shape = dict(alexnet_state, **{"features.0.weight": torch.zeros(64, 3, 3, 3)})
    torch.save(wrong_shape, weights.cache_path("alexnet"))
    with pytest.raises(MfsrError, match=r"features\.0\.weight \(64, 3, 3, 3\)"):
        weights.load_trunk_state("alexnet")


def test_fetch_offline_says_url_target_and_manual_placement(torch_home, monkeypatch):
    def offline(url, dst, hash_prefix=None, progress=True):
        Path(dst).write_bytes(b"partial")  # a broken download must not stay behind
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    target = weights.cache_path("alexnet")
    with pytest.raises(MfsrError) as caught:
        weights.fetch(["alexnet"], progress=False)
    message = str(caught.value)
    assert "\n" not in message
    assert weights.weights_url("alexnet") in message
    assert str(target) in message
    assert "copy the file" in message and "7be5be79" in message
    assert list(target.parent.iterdir()) == []


def test_fetch_verifies_hash_and_moves_into_place(torch_home, monkeypatch, alexnet_state):
    calls = []

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix))
        torch.save(alexnet_state, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    (info,) = weights.fetch(["alexnet"], progress=False)
    target = weights.cache_path("alexnet")
    assert calls == [(weights.weights_url("alexnet"), "7be5be79")]
    assert list(target.parent.iterdir()) == [target]
    assert info.sha256 == sha256(target) and info.official is False

    def bad_hash(url, dst, hash_prefix=None, progress=True):
        raise RuntimeError('invalid hash value (expected "7be5be79", got "0000")')

    monkeypatch.setattr(torch.hub, "download_url_to_file", bad_hash)
    with pytest.raises(MfsrError, match="sha256 check"):
        weights.fetch(["alexnet"], progress=False)
    assert list(target.parent.iterdir()) == [target]


def test_fetch_rejects_unknown_names_before_downloading(torch_home):
    with pytest.raises(MfsrError, match="did you mean 'vgg19'"):
        weights.fetch(["alexnet", "vgg91"])


def test_cli_status_and_fetch(alexnet_file, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    runner = CliRunner()
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert sha256(alexnet_file) in result.output
    assert "NO" in result.output  # not the official file
    assert "mfsr weights fetch vgg19 vgg16" in result.output
    monkeypatch.setenv("COLUMNS", "80")  # a narrow terminal, or a pipe: names are not cut
    narrow = runner.invoke(app, ["status"]).output
    assert "…" not in narrow
    assert "copy vgg19-dcbb9e9d.pth, vgg16-397923af.pth into " in narrow

    def offline(url, dst, hash_prefix=None, progress=True):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    result = runner.invoke(app, ["fetch", "vgg16", "--no-progress"])
    assert isinstance(result.exception, MfsrError)
    assert "vgg16-397923af.pth" in str(result.exception)
