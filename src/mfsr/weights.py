"""Pretrained ImageNet trunks for the perceptual losses, through torchvision's weights API.

Known trunks (``TRUNKS``): ``vgg19`` (feature reconstruction loss), ``alexnet`` (LPIPS, the
default ``net='alex'``) and ``vgg16`` (LPIPS ``net='vgg'``). Files live where torchvision keeps
them, ``torch.hub.get_dir()/checkpoints`` (i.e. ``$TORCH_HOME/hub/checkpoints``), under the name
taken from the weights' URL (``alexnet-owt-7be5be79.pth``); the hex part of that name is the
prefix of the official file's sha256.

Loading never unpickles code: files are read with ``torch.load(..., weights_only=True)``, then
checked key by key and shape by shape against the torchvision architecture. Every load returns a
:class:`TrunkInfo` (file, sha256, official or not, random or not) that runs store with their
results. Nothing here touches the network except :func:`fetch` (``mfsr weights fetch``).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import http.client
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from mfsr.errors import MfsrError

# Same pattern as torch.hub.HASH_REGEX: "alexnet-owt-7be5be79.pth" -> "7be5be79".
_HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class TrunkSpec:
    """A known trunk: torchvision weights enum, model builder, and which loss uses it."""

    weights: str
    builder: str
    used_by: str


TRUNKS: dict[str, TrunkSpec] = {
    "vgg19": TrunkSpec("VGG19_Weights.IMAGENET1K_V1", "vgg19", "feature loss"),
    "alexnet": TrunkSpec("AlexNet_Weights.IMAGENET1K_V1", "alexnet", "lpips loss (net='alex')"),
    "vgg16": TrunkSpec("VGG16_Weights.IMAGENET1K_V1", "vgg16", "lpips loss (net='vgg')"),
}


class RandomTrunkWarning(UserWarning):
    """A perceptual loss runs on a randomly initialised trunk (pretrained file missing)."""


@dataclasses.dataclass(frozen=True)
class TrunkInfo:
    """What a run used as a trunk; stored with every run's results.

    ``sha256`` is None when no file was used (``random=True``). ``official`` is True only when
    the file's sha256 starts with the hash prefix in torchvision's file name. ``warning`` is a
    one-line note for random or non-official trunks (None otherwise).
    """

    name: str
    path: str
    sha256: str | None
    official: bool
    random: bool
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON friendly)."""
        return dataclasses.asdict(self)


def _spec(name: str) -> TrunkSpec:
    if name in TRUNKS:
        return TRUNKS[name]
    close = difflib.get_close_matches(str(name), list(TRUNKS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise MfsrError(f"unknown pretrained trunk {name!r}{hint}; known: {', '.join(TRUNKS)}")


def weights_url(name: str) -> str:
    """Download URL of trunk ``name`` from torchvision's weights enum."""
    from torchvision.models import get_weight  # lazy: seconds to import

    return get_weight(_spec(name).weights).url


def cache_dir() -> Path:
    """torchvision's weight cache: ``torch.hub.get_dir()/checkpoints`` (follows TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cache_path(name: str) -> Path:
    """Where trunk ``name`` is cached (file name taken from the weights' URL)."""
    return cache_dir() / os.path.basename(urlparse(weights_url(name)).path)


def official_prefix(name: str) -> str:
    """The official sha256 prefix embedded in torchvision's file name (e.g. ``7be5be79``)."""
    match = _HASH_IN_NAME.search(cache_path(name).name)
    if match is None:  # pragma: no cover - every torchvision URL carries one
        raise MfsrError(f"no hash prefix in the file name {cache_path(name).name!r}")
    return match.group(1)


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file (memoised per path, size and modification time)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


def _file_info(name: str, path: Path) -> TrunkInfo:
    sha = file_sha256(path)
    prefix = official_prefix(name)
    official = sha.startswith(prefix)
    note = None
    if not official:
        note = (
            f"{path}: sha256 {sha[:16]}... does not start with the official prefix {prefix}; "
            "these are not torchvision's ImageNet weights"
        )
    return TrunkInfo(name, str(path), sha, official, False, note)


def inspect_file(name: str) -> TrunkInfo | None:
    """TrunkInfo of the cached file of ``name`` (hashing only, no loading); None if missing."""
    path = cache_path(name)
    return _file_info(name, path) if path.is_file() else None


def _missing_message(name: str, path: Path) -> str:
    return (
        f"pretrained {name} weights not found: {path.name} is missing from the torch hub cache "
        f"{path.parent}; run `mfsr weights fetch {name}` (needs network) or copy the file there, "
        "or pass --random-trunk to runs that accept a random, flagged trunk"
    )


def _expected_shapes(name: str) -> dict[str, torch.Size]:
    """Key -> shape of the torchvision architecture (built on the meta device: no memory)."""
    import torchvision  # lazy: seconds to import

    with torch.device("meta"):
        model = getattr(torchvision.models, _spec(name).builder)(weights=None)
    return {k: v.shape for k, v in model.state_dict().items()}


def _check_state(name: str, path: Path, state: Any) -> dict[str, torch.Tensor]:
    builder = _spec(name).builder
    advice = f"delete it and run `mfsr weights fetch {name}`"
    if not isinstance(state, Mapping):
        raise MfsrError(
            f"{path}: not a torchvision {builder} weight file (holds "
            f"{type(state).__name__}, not a state dict); {advice}"
        )
    expected = _expected_shapes(name)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = []
    for k, shape in expected.items():
        if k not in state:
            continue
        value = state[k]
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            wrong.append(f"{k} is {type(value).__name__}/{getattr(value, 'dtype', '?')}")
        elif value.shape != shape:
            wrong.append(f"{k} {tuple(value.shape)} != {tuple(shape)}")
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong", wrong)):
        if items:
            more = f" and {len(items) - 2} more" if len(items) > 2 else ""
            problems.append(f"{len(items)} {label} ({', '.join(map(str, items[:2]))}{more})")
    if problems:
        raise MfsrError(
            f"{path}: not a torchvision {builder} weight file: {'; '.join(problems)}; {advice}"
        )
    return dict(state)


def _reason(exc: BaseException) -> str:
    """First informative line of an exception (torch.load's refusals are long and coloured)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = "weights-only unpickler: " + text.split(marker, 1)[1].lstrip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = re.split(r"\.\s", lines[0])[0] if lines else ""  # first sentence
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def _safe_load(name: str, path: Path) -> Any:
    try:
        with warnings.catch_warnings():  # noise about pickle protocols of refused files
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, refused pickle, garbage: all the same to the user
        raise MfsrError(
            f"{path}: cannot be loaded as {name} weights with torch.load(weights_only=True) "
            f"({_reason(exc)}); the file is corrupt, truncated or holds pickled objects other than "
            f"tensors; delete it and run `mfsr weights fetch {name}`"
        ) from None


def load_trunk_state(
    name: str, allow_random: bool = False
) -> tuple[dict[str, torch.Tensor] | None, TrunkInfo]:
    """Load the cached torchvision state dict of trunk ``name`` safely and describe it.

    Returns ``(state_dict, info)``: float CPU tensors keyed as in the torchvision model (e.g.
    ``features.0.weight``), checked against its keys and shapes. When the file is missing and
    ``allow_random`` is True, returns ``(None, info)`` with ``info.random=True`` and a warning
    (also issued as :class:`RandomTrunkWarning`); the caller then keeps a random trunk.

    Raises:
        MfsrError: one line naming the file: missing (without ``allow_random``), unreadable,
            refused by ``weights_only``, or with keys/shapes of another architecture.
    """
    _spec(name)
    path = cache_path(name)
    if not path.is_file():
        if not allow_random:
            raise MfsrError(_missing_message(name, path))
        text = (
            f"{name}: no pretrained weights at {path}; using a RANDOM trunk (--random-trunk): "
            f"perceptual losses are not comparable with ImageNet-trunk results; run "
            f"`mfsr weights fetch {name}` to get them"
        )
        warnings.warn(text, RandomTrunkWarning, stacklevel=2)
        return None, TrunkInfo(name, str(path), None, False, True, text)
    state = _check_state(name, path, _safe_load(name, path))
    return state, _file_info(name, path)


def _offline_message(name: str, url: str, dst: Path, exc: BaseException) -> str:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"cannot download {name} weights from {url} ({type(exc).__name__}: {reason}); "
        f"without network, download that URL on another machine and copy the file to {dst} "
        f"(its sha256 must start with {official_prefix(name)}), then check `mfsr weights status`"
    )


def fetch(names: Iterable[str] | None = None, progress: bool = True) -> list[TrunkInfo]:
    """Download trunks (default: all) into torchvision's cache; returns their TrunkInfo.

    A file already cached with the official sha256 prefix is kept. Downloads go to a temporary
    file beside the target, are checked against the official hash prefix by
    ``torch.hub.download_url_to_file`` and then renamed into place, so a failed download never
    leaves a partial file under the cached name.

    Raises:
        MfsrError: unknown name; no network (names the URL, the target path and how to place
            the file by hand); checksum mismatch; cache folder not writable.
    """
    wanted = list(names) if names else list(TRUNKS)
    for name in wanted:
        _spec(name)
    infos = []
    for name in dict.fromkeys(wanted):
        dst = cache_path(name)
        if dst.is_file():
            info = _file_info(name, dst)
            if info.official:
                infos.append(info)
                continue
        url = weights_url(name)
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MfsrError(
                f"{dst.parent}: cannot create the weight cache folder ({exc})"
            ) from None
        tmp = dst.with_name(f"{dst.name}.{os.getpid()}.download")
        try:
            torch.hub.download_url_to_file(
                url, str(tmp), hash_prefix=official_prefix(name), progress=progress
            )
            os.replace(tmp, dst)
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            raise MfsrError(_offline_message(name, url, dst, exc)) from None
        except RuntimeError as exc:  # torch.hub's "invalid hash value"
            raise MfsrError(
                f"{url}: downloaded file failed the sha256 check ({exc}); nothing was written "
                f"to {dst}; try again"
            ) from None
        finally:
            tmp.unlink(missing_ok=True)
        infos.append(_file_info(name, dst))
    return infos
