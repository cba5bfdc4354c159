"""mfsr train's data and state pieces: the run's one sample stream and loader, validation
batches and pass, the optimizer (the loop itself: test_train.py)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from helpers import overrides
from mfsr.train.checkpoint import read_checkpoint, save_checkpoint
from mfsr.train.config import load_train_config
from mfsr.train.loop import train


@pytest.fixture(scope="module")
def tiny_data(tiny_dataset) -> Path:
    return tiny_dataset(32, (12, 4, 0), ("val",))


def test_validation_batches_are_read_once_and_kept_exactly(tiny_data, monkeypatch):
    """The first pass reads the val samples from disk and keeps their 8-bit values; later
    passes give exactly the same float tensors without reading anything. Over the memory
    budget, or after a pass that stopped early, nothing is kept."""
    import mfsr.train.data as tdata
    from mfsr.train.data import ValBatches, val_dataset

    cfg = load_train_config("smoke", overrides(tiny_data, Path("unused"), "data.val_limit=3"))
    batches = ValBatches(val_dataset(cfg), 2, torch.device("cpu"))
    first = list(batches)
    assert [f.shape[0] for f, _ in first] == [2, 1] and batches.kept is not None
    batches.val_set = None  # nothing left to read from
    again = list(batches)
    for (f1, h1), (f2, h2) in zip(first, again, strict=True):
        assert torch.equal(f1, f2) and torch.equal(h1, h2)

    partial = ValBatches(val_dataset(cfg), 2, torch.device("cpu"))
    next(iter(partial))
    assert partial.kept is None
    monkeypatch.setattr(tdata, "VAL_CACHE_BYTES", 100)
    big = ValBatches(val_dataset(cfg), 2, torch.device("cpu"))
    assert len(list(big)) == 2 and big.kept is None


class Indices(torch.utils.data.Dataset):
    """A base dataset whose sample is its own index."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def test_one_run_stream_gives_each_epochs_samples_and_resumes_mid_epoch():
    """The run's stream is the epochs' streams one after the other (seeded permutations per
    epoch, K processes slicing each global batch); a stream started at (epoch, step), as on
    resume, is exactly the tail of the whole run's."""
    from mfsr.train.data import TrainStream, epoch_order

    cfg = load_train_config("smoke", ["epochs=3", "steps_per_epoch=5", "batch_size=2", "seed=7"])
    base = Indices(7)
    whole = TrainStream(base, cfg, rank=0, world=1)
    assert len(whole) == 3 * 5 * 2
    expected = [int(i) for e in range(3) for i in epoch_order(7, 10, 7, e)]
    assert [whole[i] for i in range(len(whole))] == expected
    tail = TrainStream(base, cfg, rank=0, world=1, first_epoch=1, first_step=3)
    assert [tail[i] for i in range(len(tail))] == expected[16:]
    with pytest.raises(IndexError):
        tail[len(tail)]

    half = replace(cfg, batch_size=1)  # two processes of batch 1 = one of batch 2
    ranks = [TrainStream(base, half, rank=r, world=2) for r in (0, 1)]
    interleaved = [ranks[i % 2][i // 2] for i in range(30)]
    assert interleaved == expected
    assert TrainStream(base, cfg, 0, 1, first_epoch=3).__len__() == 0


def test_loader_workers_are_forked_once_per_run(tiny_data, tmp_path, monkeypatch):
    """Three epochs with one loader worker: every sample comes from the same worker process
    (a loader per epoch forked a new one each epoch, and waited for it)."""
    from mfsr.data.dataset import SyntheticSequenceDataset

    original, pids = SyntheticSequenceDataset.sample, tmp_path / "pids"
    pids.mkdir()

    def sample(self, index, key):  # runs in the forked worker: leaves its pid behind
        (pids / str(os.getpid())).touch()
        return original(self, index, key)

    monkeypatch.setattr(SyntheticSequenceDataset, "sample", sample)
    cfg = load_train_config("smoke", overrides(tiny_data, tmp_path, "data.workers=1"))
    summary = train(cfg)
    assert summary["steps"] == 12
    workers = {p.name for p in pids.iterdir()}
    assert len(workers) == 1 and workers != {str(os.getpid())}


def test_validation_batch_and_a_pass_with_one_sync(tiny_data):
    """The validation batch: data.val_batch_size, else 32 on CUDA and the training batch on the
    CPU. The pass gives the same values whatever the batch (eval mode: faces independent)."""
    from mfsr.losses import build_loss
    from mfsr.models import build_model
    from mfsr.train.data import ValBatches, val_dataset
    from mfsr.train.loop import validate

    cfg = load_train_config("smoke", overrides(tiny_data, Path("unused"), "samples=0"))
    assert (cfg.val_batch(cuda=False), cfg.val_batch(cuda=True)) == (2, 32)
    fixed = replace(cfg, data=replace(cfg.data, val_batch_size=3))
    assert (fixed.val_batch(cuda=False), fixed.val_batch(cuda=True)) == (3, 3)
    torch.manual_seed(0)
    model, loss_fn = build_model(cfg.model), build_loss("charbonnier")
    values = [
        validate(model, loss_fn, ValBatches(val_dataset(cfg), b, torch.device("cpu")), cfg, None, 0)
        for b in (1, 3)
    ]
    for key in ("loss", "psnr", "ssim"):
        assert values[0][key] == pytest.approx(values[1][key], rel=1e-6)


def test_adam_state_of_a_fused_run_resumes_with_its_own_implementation(tmp_path):
    """On CUDA the loop's Adam is fused; its checkpoint state, unpacked into the optimizer a
    CPU run builds (not fused), keeps the fused implementation and continues exactly."""
    from mfsr.train.loop import build_optimizer
    from mfsr.train.state import pack_optimizer, unpack_optimizer

    cfg = load_train_config("smoke", [])
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    assert build_optimizer(cfg, model).param_groups[0]["fused"] is None  # CPU: not fused
    fused = torch.optim.Adam(model.parameters(), lr=0.1, fused=True)  # as on CUDA

    def step(optimizer) -> None:
        model(torch.ones(2, 4)).square().sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(fused)
    tensors, doc = pack_optimizer(fused)
    save_checkpoint(tmp_path / "c.safetensors", tensors, doc)
    tensors, doc = read_checkpoint(tmp_path / "c.safetensors")
    twin = torch.nn.Linear(4, 3)
    twin.load_state_dict(model.state_dict())
    resumed = build_optimizer(cfg, twin)
    unpack_optimizer(resumed, tensors, doc)
    assert resumed.param_groups[0]["fused"] is True
    step(fused)
    model, kept = twin, model
    step(resumed)
    for a, b in zip(kept.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
