"""Checkpoints: atomic writes, corruption and truncation detected, pickles never executed."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from mfsr.config import to_dict
from mfsr.errors import MfsrError
from mfsr.models import ModelConfig, build_model
from mfsr.train import checkpoint as ckpt

CFG = ModelConfig(name="unet_geu", n_frames=3, scale=2, width=4, depth=2, n_geu=1)


def write_model(path, cfg=CFG, seed=0):
    torch.manual_seed(seed)
    model = build_model(cfg)
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    ckpt.save_checkpoint(path, tensors, {"model_config": to_dict(cfg)})
    return model


def test_roundtrip_and_load_model(tmp_path):
    model = write_model(tmp_path / "a.safetensors")
    loaded, cfg, meta = ckpt.load_model(tmp_path / "a.safetensors")
    assert cfg == CFG and meta["format"] == "mfsr-checkpoint" and not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.safetensors"
    write_model(path, seed=0)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. Ctrl-C (or a kill) between writing and renaming

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_model(path, seed=1)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]


def test_truncated_and_bitflipped_files_are_detected(tmp_path):
    path = tmp_path / "a.safetensors"
    write_model(path)
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(MfsrError, match="truncated or corrupt"):
        ckpt.read_checkpoint(tmp_path / "cut.safetensors")
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF  # inside the last tensor's bytes
    (tmp_path / "flip.safetensors").write_bytes(bytes(flipped))
    with pytest.raises(MfsrError, match="checksum mismatch"):
        ckpt.read_checkpoint(tmp_path / "flip.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(MfsrError, match="truncated or corrupt"):
        ckpt.read_checkpoint(tmp_path / "empty.safetensors")


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_crafted_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Payload(marker)))
    torch.save({"model": Payload(marker)}, tmp_path / "evil.pt")
    for candidate in (path, tmp_path / "evil.pt"):
        with pytest.raises(MfsrError):
            ckpt.load_model(candidate)
    assert not marker.exists()


def test_architecture_mismatch_and_foreign_files(tmp_path):
    path = tmp_path / "a.safetensors"
    write_model(path)
    tensors, meta = ckpt.read_checkpoint(path)
    meta["model_config"]["width"] = 8
    ckpt.save_checkpoint(tmp_path / "b.safetensors", tensors, meta)
    with pytest.raises(MfsrError, match="weights do not match the model config"):
        ckpt.load_model(tmp_path / "b.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(MfsrError, match="without mfsr metadata"):
        ckpt.read_checkpoint(tmp_path / "plain.safetensors")
    with pytest.raises(MfsrError, match="checkpoint not found"):
        ckpt.read_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(MfsrError, match="run folder without checkpoints"):
        ckpt.load_model(tmp_path)
    os.makedirs(tmp_path / "run" / "checkpoints")
    write_model(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert ckpt.resolve_checkpoint(tmp_path / "run").name == "last.safetensors"
