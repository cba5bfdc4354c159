"""dlib's face-recognition ResNet in PyTorch (mfsr.face_resnet) and the identity loss.

The port is checked against dlib itself on real LFW faces; the loss on real faces too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mfsr.errors import MfsrError
from mfsr.face_resnet import OFFICIAL_SHA256, load_face_resnet, read_dlib_resnet
from mfsr.faces import get_recognizer, get_shape_predictor, model_path
from mfsr.losses import build_loss
from mfsr.losses.identity import LFW_CHIP, IdentityLoss, face_chips


@pytest.fixture(scope="module")
def net():
    return load_face_resnet()


@pytest.fixture(scope="module")
def lfw_photos(lfw_root) -> list[tuple[str, np.ndarray]]:
    """(identity, 250 x 250 RGB photo) with a face dlib finds in the 128 px HR crop too:
    4 photos each of 3 people, then 1 each of 6 others."""
    from mfsr.faces import detect_faces

    def usable(path: Path) -> np.ndarray | None:
        photo = np.asarray(Image.open(path).convert("RGB"))
        return photo if detect_faces(_hr(photo), upsample=1, min_score=0.3) else None

    multi, single = [], []
    for person in sorted(p for p in lfw_root.iterdir() if p.is_dir()):
        photos = [
            photo for path in sorted(person.iterdir())[:6] if (photo := usable(path)) is not None
        ]
        if len(photos) >= 4 and len(multi) < 3:
            multi.append([(person.name, photo) for photo in photos[:4]])
        elif len(photos) == 1 and len(single) < 6:
            single.append([(person.name, photos[0])])
        if len(multi) == 3 and len(single) == 6:
            return [item for group in multi + single for item in group]
    pytest.fail("not enough LFW photos with detectable faces")


def _hr(photo: np.ndarray, size: int = 128) -> np.ndarray:
    """The whole photo shrunk to ``size`` px, as `mfsr data build` frames an LFW HR crop."""
    return np.asarray(Image.fromarray(photo).resize((size, size), Image.BOX))


def _tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def test_port_matches_dlib_descriptors(net, lfw_photos):
    import dlib

    model, info = net
    assert info.official and info.sha256 == OFFICIAL_SHA256
    detector, shapes, recognizer = (
        dlib.get_frontal_face_detector(),
        get_shape_predictor(),
        get_recognizer(),
    )
    chips = []
    for _, photo in lfw_photos:
        boxes = detector(photo, 1)
        assert boxes
        chips.append(dlib.get_face_chip(photo, shapes(photo, boxes[0]), size=150, padding=0.25))
    expected = np.array([recognizer.compute_face_descriptor(chip) for chip in chips])
    with torch.no_grad():
        ours = model(_tensor(chips)).numpy()
    assert np.abs(ours - expected).max() < 1e-4
    # and the descriptors separate people as dlib's do
    assert np.linalg.norm(ours[0] - ours[1]) < 0.6 < np.linalg.norm(ours[0] - ours[-1])


def test_fixed_chip_agrees_with_landmark_alignment(net, lfw_photos):
    """The loss's fixed chip stands in for dlib's per-face alignment on LFW-framed crops."""
    from mfsr.faces import central_face, detect_faces, face_descriptor

    model, _ = net
    names, images, aligned = [], [], []
    for name, photo in lfw_photos:
        hr = _hr(photo)
        face = central_face(detect_faces(hr, upsample=1), 128, 128)
        assert face is not None
        names.append(name)
        images.append(hr)
        aligned.append(face_descriptor(hr, face))
    with torch.no_grad():
        fixed = model(face_chips(_tensor(images), LFW_CHIP)).numpy()
    aligned = np.array(aligned)
    assert np.median(np.linalg.norm(fixed - aligned, axis=1)) < 0.25
    upper = np.triu_indices(len(names), 1)
    d_fixed = np.linalg.norm(fixed[:, None] - fixed[None], axis=2)[upper]
    d_aligned = np.linalg.norm(aligned[:, None] - aligned[None], axis=2)[upper]
    assert np.corrcoef(d_fixed, d_aligned)[0, 1] > 0.85
    same = (np.array(names)[:, None] == np.array(names)[None])[upper]
    assert d_fixed[same].mean() + 0.2 < d_fixed[~same].mean()


def test_face_chips_geometry():
    # a 100 px image whose chip (centre 0.5, 0.5, side 0.4 = px 30..70) is red, the rest blue
    image = torch.zeros(1, 3, 100, 100)
    image[:, 2] = 1
    image[:, :, 30:70, 30:70] = torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1)
    chip = face_chips(image, (0.5, 0.5, 0.4))
    assert chip.shape == (1, 3, 150, 150)
    assert torch.allclose(chip[0, :, 2:-2, 2:-2], torch.tensor([1.0, 0, 0]).view(3, 1, 1))
    # a 1000 px image: shrunk with antialiasing first, same result
    big = torch.nn.functional.interpolate(image, size=1000, mode="nearest")
    assert torch.allclose(
        face_chips(big, (0.5, 0.5, 0.4))[0, :, 4:-4, 4:-4], chip[0, :, 4:-4, 4:-4], atol=1e-3
    )


def test_identity_loss_on_real_faces(lfw_photos):
    loss = IdentityLoss()
    hr = _tensor([_hr(photo) for _, photo in lfw_photos[:4]])  # one person, 4 photos
    other = _tensor([_hr(photo) for _, photo in lfw_photos[-4:]])  # 4 other people
    blurred = torch.nn.functional.avg_pool2d(hr, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    same = loss(hr, hr)
    assert float(same) < 1e-3
    d_blur = loss(blurred, hr)
    d_other = loss(other, hr)
    assert 0.05 < float(d_blur) < float(d_other)
    assert float(d_other) > 0.6  # different people
    assert loss.__class__(reduction="none")(other, hr).shape == (4,)
    # gradients reach the prediction only, and are finite even at zero distance
    pred = hr.clone().requires_grad_()
    target = blurred.clone().requires_grad_()
    loss(pred, target).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0 and target.grad is None
    exact = hr.clone().requires_grad_()
    loss(exact, hr).backward()
    assert torch.isfinite(exact.grad).all()
    assert not any(p.requires_grad for p in loss.parameters())


def test_identity_in_loss_spec_records_real_trunk():
    loss = build_loss("charbonnier + 0.1 * identity", identity={"chip": [0.5, 0.54, 0.45]})
    (info,) = loss.trunk_info()
    assert info.name == "dlib_face_resnet_v1" and info.official and not info.random
    assert info.sha256 == OFFICIAL_SHA256 and info.warning is None
    loss.train()
    assert not loss.terms["identity"].net.training


def test_identity_feature_term(lfw_photos):
    hr = _tensor([_hr(photo) for _, photo in lfw_photos[:4]])
    blurred = torch.nn.functional.avg_pool2d(hr, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    plain = IdentityLoss(reduction="none")
    with_features = IdentityLoss(feature_weight=0.5, feature_blocks=3, reduction="none")
    chips_blurred, chips_hr = face_chips(blurred), face_chips(hr)
    desc, feat = with_features.net.descriptor_and_features(chips_blurred, 3)
    desc_hr, feat_hr = with_features.net.descriptor_and_features(chips_hr, 3)
    assert feat.shape == (4, 32, 35, 35) and torch.allclose(desc, plain.net(chips_blurred))
    expected = (desc - desc_hr).norm(dim=1) + 0.5 * (feat - feat_hr).pow(2).mean((1, 2, 3))
    assert torch.allclose(with_features(blurred, hr), expected, atol=1e-5)
    assert torch.allclose(plain(blurred, hr), (desc - desc_hr).norm(dim=1), atol=1e-5)
    assert float(with_features(hr, hr).max()) < 1e-3
    for bad in ({"feature_weight": -1}, {"feature_blocks": 15}, {"feature_blocks": True}):
        with pytest.raises(MfsrError, match="identity loss: feature_"):
            build_loss("identity", identity=bad)


@pytest.mark.parametrize("chip", [[0.5, 0.5], "abc", [0.5, 0.5, 0], [2, 0.5, 0.4], [0.5, "x", 1]])
def test_identity_bad_chip_is_one_line_error(chip):
    with pytest.raises(MfsrError, match="identity loss: chip"):
        build_loss("identity", identity={"chip": chip})


def test_bad_model_files_are_named(tmp_path: Path):
    original = model_path("dlib_face_recognition_resnet_model_v1").read_bytes()
    cases = {
        "garbage.dat": b"\x00\x01not a dlib file" * 100,
        "truncated.dat": original[: len(original) // 2],
        "other.dat": model_path("shape_predictor_5_face_landmarks").read_bytes(),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(MfsrError, match=str(path).replace(".", r"\.")):
            read_dlib_resnet(path)
    with pytest.raises(MfsrError, match="cannot read"):
        read_dlib_resnet(tmp_path / "missing.dat")
    # one layer record renamed: the structure no longer matches the network that would be built
    renamed = original.replace(b"\x01\x05relu_", b"\x01\x05relux", 1)
    (tmp_path / "renamed.dat").write_bytes(renamed)
    with pytest.raises(MfsrError, match="layer sequence differs"):
        read_dlib_resnet(tmp_path / "renamed.dat")
    # a file with the same layout but other values is loaded and flagged as not official
    changed = bytearray(original)
    changed[1000] ^= 0x01  # inside the first convolution's weights
    (tmp_path / "changed.dat").write_bytes(bytes(changed))
    _, info = load_face_resnet(tmp_path / "changed.dat")
    assert not info.official
