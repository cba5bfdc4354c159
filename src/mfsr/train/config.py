"""Training configuration: YAML presets (package data, ``mfsr/presets/train/``) or a YAML
file, plus ``--set key=value`` overrides.

Every field is checked strictly (unknown keys, wrong types, bad values are one-line errors
naming the file and field). The fully resolved config is written to the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from mfsr.config import (
    PRESET_DIR,
    from_file_and_overrides,
    merge,
    parse_overrides,
    read_yaml,
    resolve_preset,
)
from mfsr.errors import MfsrError
from mfsr.losses import parse_spec, spec_from_mapping
from mfsr.models import ModelConfig

#: Training presets (one YAML each, ``mfsr/presets/train/*.yaml``): package data.
TRAIN_PRESETS = PRESET_DIR / "train"


CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)
#: compile modes that replay the model as CUDA graphs (each step must mark its start)
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
#: validation batch on CUDA when ``data.val_batch_size`` is not set
VAL_BATCH_CUDA = 32


@dataclass(frozen=True)
class BuildSpec:
    """How to build the dataset folder when it does not exist yet (see ``mfsr data build``)."""

    source: str
    scale: int = 8
    frames: int = 7
    hr_size: int = 256
    seed: int = 0
    degradation: str = "default"
    crop: Literal["whole", "face"] = "whole"
    face_size: int = 128
    counts: tuple[int, int, int] | None = None
    limit: int | None = None
    splits: tuple[str, ...] = ("val", "test")


@dataclass(frozen=True)
class DataConfig:
    """Where samples come from. ``dataset`` is a folder made by ``mfsr data build``."""

    dataset: str
    build: BuildSpec | None = None
    train: Literal["synthetic", "frozen"] = "synthetic"  # fresh degradations, or train/ folder
    # synthetic: preset name/path, or a list (each sample draws one); None = the dataset's own
    degradation: str | list[str] | None = None
    val_limit: int | None = 64  # validate on the first K val samples (None: all)
    # samples per validation batch; None: VAL_BATCH_CUDA on CUDA (few large batches: small
    # ones leave the GPU waiting on kernel launches), the training batch on the CPU
    val_batch_size: int | None = None
    workers: int = 0  # DataLoader worker processes
    # synthetic training data: degrade in the loader workers (cpu) or batched on the training
    # device (device: workers only cut the photo; docs/data.md "Synthesis on the device")
    synthesis: Literal["cpu", "device"] = "cpu"
    # with workers: seconds without a batch before the run stops with an error instead of
    # waiting forever on a hung worker or a stalled disk (0: wait forever)
    loader_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.loader_timeout_s < 0:
            raise ValueError(f"loader_timeout_s must be >= 0, got {self.loader_timeout_s}")
        if self.val_batch_size is not None and self.val_batch_size < 1:
            raise ValueError(f"val_batch_size must be >= 1, got {self.val_batch_size}")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    grad_clip: float | None = None  # max global grad norm; None: no clipping


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run."""

    name: str
    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: str = "charbonnier"
    loss_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    random_trunk: bool = False
    # run folder (its best, else last checkpoint) or checkpoint file whose model weights start
    # this run (fine-tuning); the model config must match; optimizer and counters start fresh
    init_from: str | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    epochs: int = 300
    steps_per_epoch: int = 500
    batch_size: int = 4  # per process
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: Literal["none", "bf16", "fp16"] = "bf16"  # used on CUDA only
    channels_last: bool = True  # CUDA only
    compile: bool = False
    # torch.compile mode: "reduce-overhead" replays the compiled forward and backward as CUDA
    # graphs (fewer kernel launches for small batches; CUDA only, needs compile: true)
    compile_mode: CompileMode = "default"
    deterministic: bool = False  # CUDA: deterministic kernels (slower); CPU is always
    nan_policy: Literal["stop", "skip"] = "stop"
    checkpoint_every: int = 0  # steps; 0 = at the end of each epoch only
    log_every: int = 10  # steps between train-log rows
    samples: int = 4  # validation faces drawn into the sample image each epoch
    out_dir: str = "runs"

    def __post_init__(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:  # NumPy's generators take no negative seed
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.checkpoint_every < 0 or self.samples < 0:
            raise ValueError("checkpoint_every and samples must be >= 0")
        if self.optim.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.optim.lr}")
        if self.model.name != "unet_geu":
            raise ValueError(
                f"model.name: only trainable models can be trained, not {self.model.name!r}"
            )
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {', '.join(COMPILE_MODES)}")
        if self.compile_mode != "default" and not self.compile:
            raise ValueError(f"compile_mode {self.compile_mode!r} needs compile: true")
        if self.data.synthesis == "device" and self.data.train != "synthetic":
            raise ValueError("data.synthesis: device needs data.train: synthetic")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"name {self.name!r} must be a plain folder name")

        parse_spec(self.loss)  # a bad loss spec fails here, before any run folder is made

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def val_batch(self, cuda: bool) -> int:
        """Samples per validation batch: ``data.val_batch_size``, else :data:`VAL_BATCH_CUDA`
        on CUDA and the training batch on the CPU."""
        if self.data.val_batch_size is not None:
            return self.data.val_batch_size
        return VAL_BATCH_CUDA if cuda else self.batch_size


def read_training_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A training YAML with its ``extends: <preset or path>`` base merged underneath it."""
    data = read_yaml(path)
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise MfsrError(f"{path}: extends: expected a preset name or YAML path, got {base!r}")
    base_path = resolve_preset(base, "training", TRAIN_PRESETS)
    chain = (*chain, path.resolve())
    if base_path.resolve() in chain:
        raise MfsrError(f"{path}: extends: {base!r} leads back to a config already read (a loop)")
    return merge(read_training_yaml(base_path, chain), data)


def load_train_config(name_or_path: str, overrides: list[str] | None = None) -> TrainConfig:
    """Read a training YAML (and the preset it ``extends``), apply ``--set`` overrides, and
    check everything."""
    path = resolve_preset(name_or_path, "training", TRAIN_PRESETS)
    file_data = read_training_yaml(path)
    merged = merge(file_data, parse_overrides(overrides)) if overrides else None
    for data in (file_data, merged):
        if data is not None and isinstance(data.get("loss"), dict):  # {charbonnier: 1.0, ...}
            data["loss"] = spec_from_mapping(data["loss"], where=f"{path}: loss")
    return from_file_and_overrides(TrainConfig, file_data, merged, path)
