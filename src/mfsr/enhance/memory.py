"""Memory of ``mfsr enhance``: a batch that fits, decided before the slow work, and a retry.

A U-Net's memory grows with the output's pixels (docs/enhance.md has the ``paper`` model's
figures), so a large LR size (which ``mfsr enhance`` itself suggests to keep a large face's own
pixels) at the default batch can exceed the machine's memory. On Linux the kernel then kills
the process with no message. So:

* :func:`fit_batch` measures the model's peak memory for one window at two probe sizes,
  takes the larger of their bytes per pixel (erring high: ``benchmarks/enhance_memory.py``
  compares it with direct measurements), and lowers the batch to what fits in
  :data:`USABLE` of the memory available now, or stops with one line naming the LR size
  when not even one window fits. Measured, not computed from the architecture, so it holds
  for any model and for ``--flip-ensemble``; small LR sizes are not checked (their windows
  need little memory).
* :class:`BatchCalls` runs the batches and, when an allocation fails anyway (CUDA out of
  memory, or the CPU allocator refusing), halves the batch and tries again, down to one
  window.

Peak memory on the CPU is read from Linux's ``VmHWM`` (reset through ``/proc/self/clear_refs``);
elsewhere the CPU check is skipped and only the retry applies.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mfsr.enhance.geometry import round_multiple
from mfsr.enhance.model import Enhancer
from mfsr.errors import MfsrError

#: The share of the available memory a batch may take (the rest: the process's other arrays,
#: the allocator's slack, the error of the estimate).
USABLE = 0.7
#: Probe sizes: one window at this LR size and at twice it. LR sizes up to twice it are not
#: checked: their windows need little memory (docs/enhance.md).
PROBE_LR = 64

Warn = Callable[[str], None]


def _proc_bytes(path: str, key: str) -> int | None:
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    found = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


def available_bytes(device: torch.device) -> int | None:
    """Memory a batch can use now: free GPU memory plus what torch's cache holds unused, or
    the CPU's ``MemAvailable``; None where that cannot be read."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return _proc_bytes("/proc/meminfo", "MemAvailable")


def _release_free_heap() -> None:
    """Hand the C heap's free memory back to the system (glibc ``malloc_trim``), so that the
    resident size before a probe is what is in use: freed blocks kept by the allocator would
    otherwise be reused unseen and the probe would read too little."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def window_peak_bytes(enhancer: Enhancer, lr_size: int) -> int | None:
    """Peak memory (bytes) of one call of ``enhancer`` on one random window of ``lr_size`` px,
    above what the process held before it; None where it cannot be measured."""
    n, device = enhancer.n_frames, enhancer.device
    window = np.random.default_rng(0).integers(0, 256, (1, n, lr_size, lr_size, 3), np.uint8)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        enhancer(window)
        return torch.cuda.max_memory_allocated(device) - before
    _release_free_heap()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    except OSError:
        return None
    before = _proc_bytes("/proc/self/status", "VmRSS")
    enhancer(window)
    peak = _proc_bytes("/proc/self/status", "VmHWM")
    return None if before is None or peak is None else max(0, peak - before)


def probe_size(enhancer: Enhancer) -> int:
    """The smaller probe: :data:`PROBE_LR` rounded up to an LR size the model takes."""
    return round_multiple(PROBE_LR, enhancer.multiple, "up")


def memory_model(enhancer: Enhancer) -> float | None:
    """Bytes per LR pixel of one window of ``enhancer``: the larger of its measured peaks per
    pixel for one window at :data:`PROBE_LR` and twice that (each the least of two calls,
    after an unmeasured one that pays one-time costs); None where peaks cannot be measured.

    Through the origin on purpose: a fixed part, spread over a probe's few pixels, raises the
    rate, so the estimate errs high; a slope fitted between two noisy probes erred low.
    """
    small = probe_size(enhancer)
    window_peak_bytes(enhancer, small)
    rates = []
    for side in (small, 2 * small):  # the least of two: a transient allocation elsewhere adds
        tries = [window_peak_bytes(enhancer, side) for _ in range(2)]
        if None in tries:
            return None
        rates.append(min(tries) / side**2)
    return max(rates)


def fit_batch(enhancer: Enhancer, batch_size: int, warn: Warn | None = None) -> int:
    """The largest batch up to ``batch_size`` whose estimated memory fits :data:`USABLE` of
    the memory available now (``batch_size`` itself when it fits or nothing can be measured).
    Raises :class:`MfsrError` when one window does not fit."""
    lr, probe = enhancer.lr_size, probe_size(enhancer)
    if lr <= 2 * probe:
        return batch_size
    available = available_bytes(enhancer.device)
    per_px = memory_model(enhancer) if available is not None else None
    if available is None or per_px is None:
        return batch_size
    per_window = per_px * lr**2
    room = USABLE * available
    fits = int(room // max(per_window, 1.0))
    where = "GPU memory free" if enhancer.device.type == "cuda" else "memory available"
    need = (
        f"about {per_window / 1e9:.1f} GB per window at --lr-size {lr} ({enhancer.hr_size} px "
        f"output, measured at {probe} and {2 * probe} px), {available / 1e9:.1f} GB {where}"
    )
    if fits < 1:
        side = (room / per_px) ** 0.5  # memory grows with the side squared
        smaller = round_multiple(side, enhancer.multiple, "down")
        hint = f" ({smaller} would fit)" if smaller <= side else ""
        raise MfsrError(
            f"{enhancer.label}: not enough memory: {need}; use a smaller --lr-size{hint}"
        )
    if fits < batch_size:
        if warn is not None:
            warn(f"{need}: {fits} window(s) per model call instead of {batch_size}")
        return fits
    return batch_size


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


class BatchCalls:
    """Calls of ``enhancer`` on at most ``batch`` windows at a time. When an allocation fails
    anyway (CUDA out of memory, or the CPU allocator refusing), the batch is halved for this
    call and the later ones, down to one window, which raises :class:`MfsrError` if it still
    fails."""

    def __init__(self, enhancer: Enhancer, batch: int, warn: Warn | None = None) -> None:
        self.enhancer, self.batch, self.warn = enhancer, batch, warn

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """``uint8 (B, N, lr, lr, 3)`` windows -> ``uint8 (B, s*lr, s*lr, 3)`` faces."""
        faces, start = [], 0
        while start < len(windows):
            part = windows[start : start + self.batch]
            try:
                faces.append(self.enhancer(part))
            except Exception as exc:
                if not _out_of_memory(exc):
                    raise
                reason = str(exc).splitlines()[0]
            else:
                start += len(part)
                continue
            self._halve(len(part), reason)  # the failed call's tensors are released by now
        return np.concatenate(faces)

    def _halve(self, tried: int, reason: str) -> None:
        if self.enhancer.device.type == "cuda":
            torch.cuda.empty_cache()
        if tried == 1:
            raise MfsrError(
                f"{self.enhancer.label}: out of memory for one window at --lr-size "
                f"{self.enhancer.lr_size} ({reason}); use a smaller --lr-size"
            )
        self.batch = tried // 2
        if self.warn is not None:
            self.warn(f"out of memory for {tried} windows at once: {self.batch} per model call")
