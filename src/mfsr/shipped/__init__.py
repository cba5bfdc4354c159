"""Models shipped inside the package, so that ``mfsr enhance`` works the moment it is installed.

Each is an mfsr checkpoint (safetensors: loaded without running code) beside this file,
described by a model card in docs/models.md (training command, data, measured quality, known
limits, licence of the training data). The sha256 of each file is checked before it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mfsr.errors import MfsrError
from mfsr.weights import file_sha256

FOLDER = Path(__file__).parent


@dataclass(frozen=True)
class ShippedModel:
    """A model in the package: ``name``, its file in ``mfsr/shipped/`` and that file's sha256."""

    name: str
    file: str
    sha256: str
    summary: str


#: The shipped models by name; :data:`DEFAULT` is what ``mfsr enhance`` uses without --model.
SHIPPED = {
    m.name: m
    for m in (
        ShippedModel(
            "quick-identity-x4",
            "quick-identity-x4.safetensors",
            "edef119560a5d8de7e40c43a2c8ad2e18b180f95f6870e9e462c103c4bcd3177",
            "x4, 7 frames of 32 px -> 128 px; registered fusion; identity fine-tuned (LFW)",
        ),
    )
}
DEFAULT = "quick-identity-x4"


def shipped_path(name: str = DEFAULT) -> Path:
    """The checked file of shipped model ``name``. Raises :class:`MfsrError` for an unknown
    name, or a file that is missing or altered (a damaged install)."""
    if name not in SHIPPED:
        raise MfsrError(f"no shipped model {name!r}; shipped: {', '.join(SHIPPED)}")
    model = SHIPPED[name]
    path = FOLDER / model.file
    if not path.is_file():
        raise MfsrError(f"{path}: the shipped model is missing (a damaged install: reinstall mfsr)")
    if file_sha256(path) != model.sha256:
        raise MfsrError(f"{path}: the shipped model's sha256 differs (a damaged install)")
    return path
