"""Training data: make sure the dataset exists, then build the run's sample stream.

An *epoch* is ``steps_per_epoch`` global batches (the paper's 500 steps x batch 4), not a pass
over the photos. Its sample order is a concatenation of seeded permutations of the training
photos, ``default_rng([seed, epoch, k]).permutation(n)``, long enough for the epoch. Position
``p`` of the epoch stream is one sample; with synthetic training data its degradation is drawn
from ``(seed, epoch, p)``. Process ``r`` of ``W`` takes positions ``[s*B*W + r*B, s*B*W +
(r+1)*B)`` for step ``s``: K processes with batch B see exactly the samples one process with
batch K*B sees. Everything is a pure function of (seed, epoch, position): resuming needs no
sampler state.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mfsr.data.build import BuildOptions, build_dataset
from mfsr.data.dataset import SequenceDataset, SourceImage, SyntheticSequenceDataset, collate
from mfsr.data.degrade import load_degradation
from mfsr.data.device_synthesis import synthesize_batch
from mfsr.data.fetch import resolve_source
from mfsr.errors import MfsrError
from mfsr.locks import folder_lock
from mfsr.train.config import TrainConfig


def ensure_dataset(cfg: TrainConfig, progress=None) -> dict[str, Any]:
    """Return the dataset's ``dataset.json``, building the folder first if it is missing and
    ``data.build`` says how (the build is resumable and deterministic)."""
    root = Path(cfg.data.dataset)
    meta_path = root / "dataset.json"
    if not meta_path.exists():
        if cfg.data.build is None:
            raise MfsrError(
                f"{root}: no dataset here (dataset.json missing); build one with `mfsr data build "
                "--out ...` or add a data.build section to the config"
            )
        b = cfg.data.build
        opts = BuildOptions(
            source=resolve_source(b.source),
            out=root,
            degradation=load_degradation(b.degradation),
            scale=b.scale,
            n_frames=b.frames,
            hr_size=b.hr_size,
            seed=b.seed,
            crop=b.crop,
            face_size=b.face_size,
            counts=b.counts,
            limit=b.limit,
            write_splits=b.splits,
        )
        # another process (a second training) may be building it: wait, then use its build
        with folder_lock(root, "dataset", wait=True):
            if not meta_path.exists():
                build_dataset(opts, build_progress=progress)
    try:
        return json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MfsrError(f"{meta_path}: unreadable ({exc})") from None


def check_geometry(cfg: TrainConfig, dataset_meta: dict[str, Any]) -> None:
    """The model's frames and scale must match the dataset's."""
    for key, model_value in (("n_frames", cfg.model.n_frames), ("scale", cfg.model.scale)):
        if dataset_meta.get(key) != model_value:
            raise MfsrError(
                f"{cfg.data.dataset}: dataset has {key} = {dataset_meta.get(key)} but model.{key}"
                f" = {model_value}; use a matching dataset or --set model.{key}=..."
            )


def train_dataset(cfg: TrainConfig, dataset_meta: dict[str, Any]) -> Dataset:
    """The training samples: synthetic (fresh degradations) or the frozen train/ folder."""
    root = Path(cfg.data.dataset)
    if cfg.data.train == "frozen":
        return SequenceDataset(root / "train", n_frames=cfg.model.n_frames)

    splits = json.loads((root / "splits.json").read_text(encoding="utf-8"))
    source_root = Path(dataset_meta["source"])
    sources = [
        SourceImage(source_root / it["rel"], it["identity"], it["id"]) for it in splits["train"]
    ]
    if not sources:
        raise MfsrError(f"{root}/splits.json: the train split is empty")
    if not sources[0].path.is_file():
        raise MfsrError(
            f"{sources[0].path}: training photo not found (the dataset was built from "
            f"{source_root}; run from the same folder or rebuild the dataset)"
        )
    presets = cfg.data.degradation or dataset_meta["degradation"]["preset"]
    if isinstance(presets, str):
        presets = [presets]
    crop = dataset_meta.get("crop", {})
    return SyntheticSequenceDataset(
        sources,
        scale=cfg.model.scale,
        n_frames=cfg.model.n_frames,
        hr_size=dataset_meta["hr_size"],
        degradation=[load_degradation(p) for p in presets],
        seed=cfg.seed,
        face_crop=crop.get("face_size") if crop.get("mode") == "face" else None,
        plan=cfg.data.synthesis == "device",
    )


def val_dataset(cfg: TrainConfig) -> SequenceDataset:
    """The frozen validation samples (first ``val_limit``)."""
    ds = SequenceDataset(Path(cfg.data.dataset) / "val", n_frames=cfg.model.n_frames)
    if cfg.data.val_limit is not None:
        ds.samples = ds.samples[: cfg.data.val_limit]
    return ds


#: Validation samples are kept in memory (as 8-bit values) when they take at most this many
#: bytes: the paper's 837 val faces at 32 -> 256 with 7 frames take 183 MB.
VAL_CACHE_BYTES = 2 * 1024**3


class ValBatches:
    """The validation batches ``(frames, hr)``, float32 in [0, 1] on ``device``, in order.

    The first full pass reads them from disk (PNG decoding: about 2 s per epoch for 837
    faces at 256 px on one core, over 300 epochs ten minutes of a GPU run); it also keeps them
    as uint8, on ``device`` (GPU memory is plentiful and then validation copies nothing), if
    they fit :data:`VAL_CACHE_BYTES`. Later passes convert the kept bytes back: ``k / 255`` in
    float32, the value the dataset's reader gives, so validation results do not change.
    """

    def __init__(self, val_set: Dataset, batch_size: int, device: Any) -> None:
        self.val_set, self.batch_size, self.device = val_set, batch_size, device
        self.kept: list[tuple[Any, Any]] | None = None
        size = 0
        if len(val_set):
            first = val_set[0]
            size = len(val_set) * (first["frames"].numel() + first["hr"].numel())
        self.keep = 0 < size <= VAL_CACHE_BYTES
        self.scale = torch.tensor(255.0, device=device)  # a tensor: true division on CUDA too

    def __iter__(self) -> Any:
        if self.kept is not None:
            for frames, hr in self.kept:
                yield frames.float() / self.scale, hr.float() / self.scale
            return
        kept = [] if self.keep else None
        loader = torch.utils.data.DataLoader(
            self.val_set, batch_size=self.batch_size, shuffle=False, collate_fn=collate
        )
        for batch in loader:
            frames, hr = batch["frames"].to(self.device), batch["hr"].to(self.device)
            if kept is not None:
                kept.append(tuple((t * 255.0).round().to(torch.uint8) for t in (frames, hr)))
            yield frames, hr
        self.kept = kept


def epoch_order(n_items: int, total: int, seed: int, epoch: int) -> np.ndarray:
    """Source index at each of ``total`` positions of an epoch (seeded permutations)."""
    parts, have, k = [], 0, 0
    while have < total:
        parts.append(np.random.default_rng([seed, epoch, k]).permutation(n_items))
        have, k = have + n_items, k + 1
    return np.concatenate(parts)[:total]


class TrainStream(Dataset):
    """This process's training samples from step ``first_step`` of epoch ``first_epoch`` to the
    end of epoch ``end_epoch - 1`` (default: the run's last), in step order (see module
    docstring).

    One stream, and so one DataLoader, serves the whole run: its worker processes are forked
    once, not at every epoch (docs/benchmarks.md, "Epoch ends"), and they prepare the next
    epoch's first batches while the main process
    validates. Item ``i`` is a pure function of (seed, epoch, position), so the
    samples are exactly those of separate per-epoch streams.
    """

    def __init__(
        self,
        base: Dataset,
        cfg: TrainConfig,
        rank: int,
        world: int,
        first_epoch: int = 0,
        first_step: int = 0,
        end_epoch: int | None = None,
    ) -> None:
        self.base, self.seed, self.rank, self.world = base, cfg.seed, rank, world
        self.batch, self.steps = cfg.batch_size, cfg.steps_per_epoch
        self.first_epoch, self.skip = first_epoch, first_step * cfg.batch_size
        end = cfg.epochs if end_epoch is None else end_epoch
        self.length = max(0, (end - first_epoch) * self.steps * self.batch - self.skip)
        self._order: tuple[int, np.ndarray] | None = None  # the last epoch's order, per process

    def __len__(self) -> int:
        return self.length

    def locate(self, i: int) -> tuple[int, int]:
        """(epoch, position in the epoch's global stream) of item ``i``."""
        if not 0 <= i < self.length:
            raise IndexError(i)
        epoch, offset = divmod(i + self.skip, self.steps * self.batch)
        step, k = divmod(offset, self.batch)
        return self.first_epoch + epoch, step * self.batch * self.world + self.rank * self.batch + k

    def order(self, epoch: int) -> np.ndarray:
        """Source index at each position of ``epoch`` (all processes' positions)."""
        if self._order is None or self._order[0] != epoch:
            total = self.steps * self.batch * self.world
            self._order = (epoch, epoch_order(len(self.base), total, self.seed, epoch))
        return self._order[1]

    def __getitem__(self, i: int) -> dict[str, Any]:
        epoch, pos = self.locate(i)
        index = int(self.order(epoch)[pos])
        if isinstance(self.base, SyntheticSequenceDataset):
            return self.base.sample(index, (epoch, pos))
        return self.base[index]


def batch_tensors(
    batch: dict[str, Any], cfg: TrainConfig, hr_size: int, device: Any
) -> tuple[Any, Any]:
    """``(frames, hr)`` of a training batch on ``device``: moved there, or synthesised there
    from the batch's plans (``data.synthesis: device``)."""
    if "source" in batch:
        n = cfg.model.n_frames
        return synthesize_batch(batch, device, cfg.model.scale, hr_size, reference=n // 2)
    return batch["frames"].to(device, non_blocking=True), batch["hr"].to(device, non_blocking=True)


@contextlib.contextmanager
def opencv_threads(n: int) -> Iterator[None]:
    """OpenCV's thread count set to ``n`` for the block, restored after."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


class _ForkSafeLoader(DataLoader):
    """A DataLoader whose worker processes are forked with OpenCV's thread pool stopped.

    Loader workers synthesise one sample at a time with one OpenCV thread each (torch already
    gives them one), so K workers and the training step do not oversubscribe the cores. That
    cannot be set inside a worker: once this process has run a parallel OpenCV call, the
    forked child inherits a pool whose threads it does not have, and ``cv2.setNumThreads``
    there waits for them forever (measured: opencv-python 4.x, pthreads backend). So the pool
    is stopped (1 thread) while the workers are forked, which they inherit, and restored.
    """

    def __iter__(self) -> Any:
        if self.num_workers == 0:
            return super().__iter__()
        with opencv_threads(1):
            return super().__iter__()


def train_loader(stream: TrainStream, cfg: TrainConfig, pin_memory: bool = False) -> Any:
    """The training DataLoader over ``stream``: batches of ``cfg.batch_size`` in stream order,
    ``cfg.data.workers`` single-threaded worker processes, mfsr's ``collate``."""
    return _ForkSafeLoader(
        stream,
        batch_size=cfg.batch_size,
        shuffle=False,
        num_workers=cfg.data.workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        drop_last=False,
        timeout=cfg.data.loader_timeout_s if cfg.data.workers > 0 else 0,
    )


def loader_failure(exc: BaseException) -> str | None:
    """One line saying why a DataLoader stopped, for the failures of the loader itself (a worker
    killed or hung, an exception inside a worker, whose message is a whole traceback), or None
    for any other exception."""
    text = str(exc).strip()
    if "DataLoader worker" in text and ("killed by signal" in text or "exited" in text):
        return (
            f"{text.splitlines()[0].rstrip('. ')} (the system stops processes that run out of "
            "memory: fewer data.workers may help)"
        )
    if text.startswith("DataLoader timed out after"):
        return (
            f"{text.rstrip('. ')} without a batch (data.loader_timeout_s): a worker hangs or "
            "the data source stalls"
        )
    if "in DataLoader worker process" in text:  # the worker's exception, re-raised here
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return f"a loader worker failed: {lines[-1]}"
    return None


@contextlib.contextmanager
def loader_errors(where: Callable[[], str], hint: Callable[[], str]) -> Iterator[None]:
    """Turn the training loader's own failures (:func:`loader_failure`) raised in the block
    into one-line :class:`MfsrError`s ``"<where()>: <reason>; <hint()>"``; everything else
    passes through. The whole loop is the block, not only the fetching of batches: torch
    reports a killed worker from a SIGCHLD handler, which raises wherever the main process
    is (a step, validation), and the run's workers prepare batches during all of it."""
    try:
        yield
    except Exception as exc:
        reason = loader_failure(exc)
        if reason is None:
            raise
        raise MfsrError(f"{where()}: {reason}; {hint()}") from None
