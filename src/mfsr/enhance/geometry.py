"""Pure geometry of ``mfsr enhance``: face-size check, window selection, frame padding.

No image I/O and no torch here. Units: *clip px* are pixels of the decoded (and, with
``--downscale``, shrunk) video frame; *LR px* are pixels of the model's input crop.

**Face size.** The crop around a face box of ``F`` clip px has side ``C = enlarge * F`` (LFW's
framing, :data:`mfsr.data.track.DEFAULT_ENLARGE`) and is rendered at ``L`` = the LR size, so the
model sees ``r = C / L`` clip px per LR px, a face of ``L / enlarge`` LR px, and outputs a face
of ``scale * L / enlarge`` px. Rules (:func:`check_face_size`):

* ``r < MIN_RATIO`` (0.75): **too small**, an error. The crop would be *enlarged* by more than
  4/3 before the model, which then sees interpolated pixels, unlike anything in training; a
  smaller ``--lr-size`` (about ``C``) keeps the clip's own pixels.
* ``r > scale``: **too large**, an error. The enhanced face would have fewer pixels than the face
  in the clip: the model would throw away detail the clip already has.
* ``r > WARN_RATIO`` (2.0, and ``<= scale``): a warning. The crop is shrunk ``r`` times before
  the model (clip detail is lost); ``--lr-size`` about ``C`` would keep it, at ``r^2`` times the
  compute and with the face framed larger than in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mfsr.errors import BadArgument, MfsrError

#: Below this many clip px per LR px the face is too small (the crop would be upsampled > 4/3).
MIN_RATIO = 0.75
#: Above this many clip px per LR px (and up to the scale) a warning says detail is discarded.
WARN_RATIO = 2.0
#: Face width (clip px) suggested for simulating low-resolution footage with ``--downscale``:
#: about the smallest face dlib's HOG detector finds reliably (upsampling twice).
SIMULATED_FACE_PX = 32.0
#: Smallest LR side accepted (px).
MIN_LR_SIZE = 8


def round_multiple(value: float, multiple: int, mode: str = "nearest") -> int:
    """``value`` rounded to a multiple of ``multiple`` (``nearest``, ``up`` or ``down``), at
    least ``max(multiple, MIN_LR_SIZE)`` rounded up to a multiple."""
    q = value / multiple
    k = math.ceil(q) if mode == "up" else math.floor(q) if mode == "down" else round(q)
    low = math.ceil(MIN_LR_SIZE / multiple)
    return max(k, low) * multiple


def check_lr_size(lr_size: int, multiple: int) -> None:
    """Raise :class:`MfsrError` unless ``lr_size`` >= MIN_LR_SIZE and divisible by
    ``multiple`` (the U-Net needs LR sides divisible by ``2**(depth-1)``)."""
    if lr_size < MIN_LR_SIZE:
        raise BadArgument(f"`lr_size` must be at least {MIN_LR_SIZE} px, got {lr_size}")
    if lr_size % multiple:
        down = round_multiple(lr_size, multiple, "down")
        up = round_multiple(lr_size, multiple, "up")
        raise BadArgument(
            f"`lr_size` {lr_size} is not a multiple of {multiple} (the model's U-Net halves the "
            f"LR side {int(math.log2(multiple))} times); use {down} or {up}"
        )


@dataclass(frozen=True)
class SizeCheck:
    """Result of :func:`check_face_size`. ``face_px``: face box width in clip px;
    ``crop_px``: crop side in clip px; ``ratio``: clip px per LR px; ``lr_face_px`` /
    ``hr_face_px``: face width in the model input / output; ``verdict``: ``ok``, ``shrunk``
    (warning), ``too-small`` or ``too-large`` (errors); ``message``: the warning or error text;
    ``native_lr_size``: LR size (a valid multiple) that keeps the clip's resolution."""

    face_px: float
    crop_px: float
    lr_size: int
    scale: int
    ratio: float
    lr_face_px: float
    hr_face_px: float
    verdict: str
    message: str | None
    native_lr_size: int

    def to_dict(self) -> dict:
        return {
            "face_px": round(self.face_px, 2),
            "crop_px": round(self.crop_px, 2),
            "clip_px_per_lr_px": round(self.ratio, 3),
            "lr_face_px": round(self.lr_face_px, 2),
            "hr_face_px": round(self.hr_face_px, 2),
            "verdict": self.verdict,
            "native_lr_size": self.native_lr_size,
            "thresholds": {"min_ratio": MIN_RATIO, "warn_ratio": WARN_RATIO, "max_ratio": "scale"},
        }


def check_face_size(
    face_px: float, enlarge: float, lr_size: int, scale: int, multiple: int, downscale: float = 1.0
) -> SizeCheck:
    """Judge a face of ``face_px`` clip px for a model with ``lr_size`` LR px at ``scale``
    (``multiple``: the model's LR-side divisor; ``downscale``: the shrink already applied to
    the frames, so that a suggested ``--downscale`` is relative to the original); rules in the
    module docstring. Never raises: the caller raises :class:`MfsrError` with ``message`` for
    the two error verdicts."""
    crop = enlarge * face_px
    ratio = crop / lr_size
    lr_face, hr_face = lr_size / enlarge, scale * lr_size / enlarge
    native = round_multiple(crop, multiple)
    simulate = downscale * SIMULATED_FACE_PX / face_px
    head = (
        f"the face is {face_px:.0f} px wide in the clip; an LR crop of {lr_size} px frames it "
        f"at {lr_face:.1f} px"
    )
    verdict, message = "ok", None
    if ratio < MIN_RATIO:
        verdict = "too-small"
        message = (
            f"face too small for LR size {lr_size}: {head}, so the clip would be enlarged "
            f"{1 / ratio:.2f}x before the model (limit {1 / MIN_RATIO:.2f}x). Use --lr-size "
            f"{round_multiple(crop, multiple, 'down')} (the clip's own resolution; output "
            f"{scale * round_multiple(crop, multiple, 'down')} px at x{scale}) or footage "
            f"with a face of at least {MIN_RATIO * lr_face:.0f} px"
        )
    elif ratio > scale:
        verdict = "too-large"
        need = round_multiple(crop / scale, multiple, "up")
        bigger = [s for s in (2, 4, 8) if s > scale and ratio <= s]
        alt = f"; or a x{bigger[0]} model" if bigger else ""
        # offered only where a face of that size is neither too large nor too small itself
        fits = MIN_RATIO <= enlarge * SIMULATED_FACE_PX / lr_size <= scale
        test = (
            f"; to test on this clip, simulate low-resolution footage with --downscale "
            f"{simulate:.3f} (face about {SIMULATED_FACE_PX:.0f} px)"
        )
        message = (
            f"face too large for x{scale} at LR size {lr_size}: {head} and the enhanced face "
            f"would be {hr_face:.0f} px, smaller than in the clip, so the model would discard "
            f"detail the clip already has (this clip is already high-resolution for this "
            f"model). Use --lr-size {need} or more (output face >= the clip's; {native} keeps "
            f"the clip's resolution){alt}{test if fits else ''}"
        )
    elif ratio > WARN_RATIO:
        verdict = "shrunk"
        message = (
            f"{head}: the crop is shrunk {ratio:.1f}x before the model and clip detail is lost; "
            f"--lr-size {native} would keep the clip's resolution (about {ratio**2:.0f}x the "
            f"compute, face framed larger than in training)"
        )
    return SizeCheck(
        face_px, crop, lr_size, scale, ratio, lr_face, hr_face, verdict, message, native
    )


def all_windows(segments: list[tuple[int, int]], n_frames: int) -> list[range]:
    """Every window of ``n_frames`` consecutive frames inside one segment (stride 1)."""
    return [range(s, s + n_frames) for a, b in segments for s in range(a, b - n_frames + 1)]


def check_selection(every: int | None, at: list[float] | None, every_frame: bool) -> None:
    """Raise :class:`BadArgument` for conflicting window modes or a bad ``every`` (callers
    check before the slow tracking; :func:`select_windows` checks again)."""
    if sum([every is not None, bool(at), every_frame]) > 1:
        raise BadArgument("give at most one of `every`, `at` and `every_frame`")
    if every is not None and every < 1:
        raise BadArgument(f"`every` must be >= 1, got {every}")


def select_windows(
    segments: list[tuple[int, int]],
    n_frames: int,
    n_decoded: int,
    fps: float | None,
    *,
    every: int | None = None,
    at: list[float] | None = None,
    every_frame: bool = False,
) -> tuple[list[range], list[str]]:
    """Windows to enhance and warnings. ``segments``: ``[start, end)`` tracked frame ranges.

    Modes (at most one): default non-overlapping windows (``every = n_frames``); ``every`` K: a
    window starting every K frames of each segment; ``every_frame``: all windows (stride 1);
    ``at``: for each time (seconds) the window whose reference frame (``start + n // 2``) is
    nearest frame ``round(t * fps)`` (a warning if not exactly there). Raises
    :class:`MfsrError` for conflicting modes, a bad ``every``, a time outside the clip or
    unknown fps. Returns windows sorted by start, without duplicates.
    """
    check_selection(every, at, every_frame)
    warnings: list[str] = []
    if not at:
        stride = 1 if every_frame else (every or n_frames)
        return [
            range(s, s + n_frames) for a, b in segments for s in range(a, b - n_frames + 1, stride)
        ], warnings
    if fps is None:
        raise BadArgument("`at` needs the clip's frame rate, which the file does not state")
    candidates = all_windows(segments, n_frames)
    ref = n_frames // 2
    chosen: dict[int, range] = {}
    for t in at:
        if not math.isfinite(t):
            raise BadArgument(f"`at` must be a time in seconds, got {t}")
        frame = round(t * fps)
        if t < 0 or frame >= n_decoded:
            raise BadArgument(
                f"`at` {t:g} s is outside the clip (0 to {n_decoded / fps:.2f} s, "
                f"{n_decoded} frames at {fps:g} fps)"
            )
        if not candidates:
            break
        best = min(candidates, key=lambda w: (abs(w[ref] - frame), w[0]))
        if best[ref] != frame:
            warnings.append(
                f"--at {t:g} s (frame {frame}): no {n_frames} consecutive tracked frames are "
                f"centred there; using the nearest window, centred at frame {best[ref]} "
                f"({best[ref] / fps:.2f} s)"
            )
        chosen[best[0]] = best
    return [chosen[k] for k in sorted(chosen)], warnings


def frame_plan(given: int, n_frames: int) -> tuple[list[int], int, str | None]:
    """Which of ``given`` frames (indices) fill an ``n_frames`` window, the index of the
    reference among the given frames, and a warning (None if ``given == n_frames``).

    Fewer frames: the reference is given frame ``given // 2``, placed at window position
    ``n_frames // 2``, and the ends are padded by repeating the first / last given frame
    (the nearest one), so the window stays centred on the reference. More frames: the ``n_frames``
    frames centred on given frame ``given // 2`` are used.
    """
    if given < 1:
        raise MfsrError("no frames given")
    ref, half = given // 2, n_frames // 2
    if given == n_frames:
        return list(range(given)), ref, None
    if given < n_frames:
        plan = [min(max(ref + j - half, 0), given - 1) for j in range(n_frames)]
        order = " ".join(str(i + 1) for i in plan)
        what = "frame" if given == 1 else "frames"
        return (
            plan,
            ref,
            f"{given} {what} given but the model takes {n_frames}: padded by repeating the "
            f"nearest frames symmetrically around the reference (frame {ref + 1}); frames used, "
            f"in order: {order}",
        )
    start = ref - half
    plan = list(range(start, start + n_frames))
    return (
        plan,
        ref,
        f"{given} frames given but the model takes {n_frames}: using the {n_frames} centred on "
        f"frame {ref + 1} (frames {start + 1}-{start + n_frames}); the others are ignored",
    )
