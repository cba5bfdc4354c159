"""Packing the full training state into checkpoint tensors + JSON, and back.

Tensors: ``model/*`` (the bare model, not the DDP/compile wrapper), ``optim/<i>/<key>``
(per-parameter optimizer state), ``rng/torch``, ``rng/cuda/<d>``. JSON: counters, optimizer
hyper-parameters, Python and NumPy RNG states, the GradScaler state, the best validation PSNR.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfsr.config import to_dict
from mfsr.train.checkpoint import save_checkpoint, split_prefix


def pack_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim/{index}/{key}"] = value
            else:
                scalars[f"{index}/{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unpack_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in split_prefix(tensors, "optim").items():
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    for key, value in meta["scalars"].items():
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def pack_rng() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    doc = {
        "python": [version, list(internal), gauss],
        "numpy": {
            **np_state,
            "state": {
                "key": np_state["state"]["key"].tolist(),
                "pos": int(np_state["state"]["pos"]),
            },
        },
    }
    return tensors, doc


def unpack_rng(tensors: dict[str, torch.Tensor], doc: dict) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    cuda = split_prefix(tensors, "rng/cuda")
    if cuda and torch.cuda.is_available():
        states = [cuda[str(i)] for i in range(len(cuda))][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)
    version, internal, gauss = doc["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(doc["numpy"])


def pack_training_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    counters: dict[str, Any],
) -> tuple[dict[str, torch.Tensor], dict]:
    """All tensors and JSON needed to continue a run exactly where it stands."""
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    optim_tensors, optim_doc = pack_optimizer(optimizer)
    rng_tensors, rng_doc = pack_rng()
    tensors.update(optim_tensors)
    tensors.update(rng_tensors)
    doc = {
        "counters": counters,
        "optimizer": optim_doc,
        "rng": rng_doc,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
    }
    return tensors, doc


def restore_training_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    tensors: dict[str, torch.Tensor],
    doc: dict,
) -> dict[str, Any]:
    """Load what :func:`pack_training_state` wrote; returns the counters."""
    model.load_state_dict(split_prefix(tensors, "model"), strict=True)
    unpack_optimizer(optimizer, tensors, doc["optimizer"])
    unpack_rng(tensors, doc["rng"])
    if scaler is not None and doc.get("scaler"):
        scaler.load_state_dict(doc["scaler"])
    return doc["counters"]


class Checkpointer:
    """Writes a run's checkpoints: ``last`` with the whole training state (to resume), ``best``
    with the model only; both carry the model and training configs and the trunks used."""

    def __init__(self, run_dir: Path, cfg: Any, trunks: list[dict], model, optimizer, scaler):
        self.folder = run_dir / "checkpoints"
        self.cfg, self.trunks = cfg, trunks
        self.model, self.optimizer, self.scaler = model, optimizer, scaler

    def save(self, name: str, counters: dict[str, Any], full: bool) -> None:
        """Write ``<name>.safetensors`` (atomically) with ``counters``."""
        meta_doc = {
            "model_config": to_dict(self.cfg.model),
            "train_config": to_dict(self.cfg),
            "trunks": self.trunks,
            "random_trunk": self.cfg.random_trunk,
        }
        if full:
            tensors, doc = pack_training_state(
                self.model, self.optimizer, self.scaler, dict(counters)
            )
            meta_doc.update(doc)
        else:
            tensors = {f"model/{k}": v for k, v in self.model.state_dict().items()}
            meta_doc["counters"] = dict(counters)
        save_checkpoint(self.folder / f"{name}.safetensors", tensors, meta_doc)
