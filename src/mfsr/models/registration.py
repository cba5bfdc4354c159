"""Sub-pixel registration and classical multi-frame fusion, batched over sequences.

One copy of the maths behind the ``classical`` baseline (:class:`mfsr.models.baselines.
ClassicalFusion`), ``mfsr enhance``'s window registration and the ``registered`` fusion of
U-Net+GEU (:mod:`mfsr.models.unet_geu`). Everything works on whole batches on the input's
device, without gradients through the registration and without host synchronisation.

Motion convention (the same as :mod:`mfsr.data.degrade`): frame ``k`` shows the scene moved by
``+t_k`` LR pixels relative to the reference ``N // 2``, ``t_k = (dx, dy)`` with ``x`` to the
right and ``y`` down. :func:`register` measures ``t_k``; :func:`shift_image` undoes it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

#: RGB -> luma weights (ITU-R BT.601), used to register colour frames on one channel.
_LUMA = (0.299, 0.587, 0.114)

#: Frames with a side below this (px) are not registered (assumed unmoved).
MIN_REGISTRATION_SIZE = 4


def gray(frames: torch.Tensor) -> torch.Tensor:
    """``(..., C, h, w)`` -> ``(..., h, w)``: luma for 3 channels, the channel mean otherwise."""
    if frames.shape[-3] == 3:  # python-float weights: a weight tensor would be a host->device copy
        return sum(wt * frames[..., i, :, :] for i, wt in enumerate(_LUMA))
    return frames.mean(dim=-3)


def _hann2d(h: int, w: int, device: torch.device) -> torch.Tensor:
    kw = {"periodic": False, "dtype": torch.float64, "device": device}
    return torch.outer(torch.hann_window(h, **kw), torch.hann_window(w, **kw))


def _dft_rows(n: int, coords: torch.Tensor) -> torch.Tensor:
    """``(M, m, n)`` complex: row ``j`` of item ``i`` evaluates an inverse DFT of length ``n`` at
    pixel position ``coords[i, j]`` (fractional allowed): ``exp(2πi u coords / n)``."""
    freqs = torch.fft.fftfreq(n, dtype=torch.float64, device=coords.device) * n
    phase = (2.0 * math.pi / n) * coords[..., None] * freqs
    return torch.polar(torch.ones_like(phase), phase)


def phase_correlate(
    moving: torch.Tensor, reference: torch.Tensor, upsample: int = 32, cutoff: float = 0.15
) -> torch.Tensor:
    """Sub-pixel translations ``(M, 2)`` of ``(dx, dy)`` px with ``moving(x) ≈ reference(x - d)``.

    ``moving``, ``reference``: ``(M, h, w)`` grayscale. Hann-windowed phase correlation whose
    normalised cross-power spectrum is weighted by a Gaussian of std ``cutoff`` cycles/px (the
    aliased high frequencies of a small LR face mislead plain phase correlation); the integer
    peak is refined to ``1/upsample`` px by evaluating the inverse DFT on a fine grid of +-1.5 px
    around it (matrix-multiply DFT, Guizar-Sicairos et al. 2008). Translation only.
    """
    m, h, w = reference.shape
    win = _hann2d(h, w, reference.device)
    mov, ref = moving.double(), reference.double()
    a = (mov - mov.mean(dim=(-2, -1), keepdim=True)) * win
    b = (ref - ref.mean(dim=(-2, -1), keepdim=True)) * win
    cross = torch.fft.fft2(a) * torch.fft.fft2(b).conj()
    fy = torch.fft.fftfreq(h, dtype=torch.float64, device=ref.device)[:, None]
    fx = torch.fft.fftfreq(w, dtype=torch.float64, device=ref.device)[None, :]
    cross = cross / (cross.abs() + 1e-12) * torch.exp(-(fx**2 + fy**2) / (2.0 * cutoff**2))
    peak = torch.fft.ifft2(cross).real.reshape(m, -1).argmax(dim=1)
    py, px = peak // w, peak % w
    py = torch.where(py > h // 2, py - h, py).double()
    px = torch.where(px > w // 2, px - w, px).double()
    span = torch.arange(-1.5 * upsample, 1.5 * upsample + 1, dtype=torch.float64, device=ref.device)
    offsets = span / upsample
    rows = _dft_rows(h, py[:, None] + offsets)  # (M, k, h)
    cols = _dft_rows(w, px[:, None] + offsets)  # (M, k, w)
    fine = (rows @ cross @ cols.transpose(1, 2)).real  # (M, k, k): correlation at (y, x)
    best = fine.reshape(m, -1).argmax(dim=1)
    iy, ix = best // fine.shape[2], best % fine.shape[2]
    return torch.stack([px + offsets[ix], py + offsets[iy]], dim=1)


def refine_translation(
    moving: torch.Tensor, reference: torch.Tensor, start: torch.Tensor, iters: int = 10
) -> torch.Tensor:
    """Refine translations ``start`` ``(M, 2)`` (convention of :func:`phase_correlate`) by
    Gauss-Newton least squares (Lucas-Kanade) on Hann-windowed ``(M, h, w)`` images: minimise
    ``sum win * (moving(x + d) - reference(x))^2`` over ``d``, resampling bicubically. An item
    stops when its step is below 1e-4 px or its image is flat."""
    win = _hann2d(*reference.shape[-2:], reference.device)
    mov, ref = moving.double()[:, None], reference.double()
    d = start.double().clone()
    active = torch.ones(d.shape[0], dtype=torch.bool, device=d.device)
    for _ in range(iters):
        warped = shift_image(mov, d)[:, 0]
        gy, gx = torch.gradient(warped, dim=(-2, -1))
        err = (warped - ref) * win
        gxx, gxy, gyy = ((g * win).sum(dim=(-2, -1)) for g in (gx * gx, gx * gy, gy * gy))
        ex, ey = (gx * err).sum(dim=(-2, -1)), (gy * err).sum(dim=(-2, -1))
        det = gxx * gyy - gxy * gxy
        solvable = active & (det > 1e-12)  # a flat image has nothing to refine
        safe = torch.where(solvable, det, torch.ones_like(det))
        step = -torch.stack([gyy * ex - gxy * ey, gxx * ey - gxy * ex], dim=1) / safe[:, None]
        d = torch.where(solvable[:, None], d + step, d)
        active = solvable & (step.abs().amax(dim=1) >= 1e-4)
    return d


def register(frames: torch.Tensor, refine: bool = True) -> torch.Tensor:
    """Shifts of every frame relative to the reference ``N // 2``, in LR pixels.

    ``frames``: ``(B, N, C, h, w)``. Returns float32 ``(B, N, 2)`` of ``(dx, dy)`` on the frames'
    device: frame ``k`` shows the scene moved by ``+shift[k]`` (the reference row is zero).
    :func:`phase_correlate`, then :func:`refine_translation` (``refine``; a refinement that ends
    more than 1 px from the phase-correlation result is discarded). Frames smaller than
    ``MIN_REGISTRATION_SIZE`` px are assumed unmoved. On clean 32x32 LFW faces the error is at
    most about 0.05 LR px (``tests/test_models.py``). No gradient flows through it.
    """
    b, n = frames.shape[:2]
    out = torch.zeros(b, n, 2, device=frames.device)
    if n == 1 or min(frames.shape[-2:]) < MIN_REGISTRATION_SIZE:
        return out
    with torch.no_grad():
        g = gray(frames.detach().double())  # (B, N, h, w)
        ref = n // 2  # slices, not a list index: that would be a host->device copy (a sync)
        moving = torch.cat([g[:, :ref], g[:, ref + 1 :]], dim=1).reshape(-1, *g.shape[-2:])
        reference = g[:, ref : ref + 1].expand(-1, n - 1, -1, -1).reshape_as(moving)
        d = coarse = phase_correlate(moving, reference)
        if refine:
            d = refine_translation(moving, reference, coarse)
            diverged = (d - coarse).abs().amax(dim=1) > 1.0  # keep the coarse one
            d = torch.where(diverged[:, None], coarse, d)
        d = d.float().reshape(b, n - 1, 2)
        out[:, :ref], out[:, ref + 1 :] = d[:, :ref], d[:, ref:]
    return out


def _cubic(t: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` weights of the taps at -1, 0, 1, 2 for a fractional position ``t`` in
    [0, 1): Keys' cubic convolution with a = -0.75, PyTorch's bicubic kernel."""
    a = -0.75

    def near(x: torch.Tensor) -> torch.Tensor:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: torch.Tensor) -> torch.Tensor:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], dim=-1)


def _resample_matrix(n_in: int, positions: torch.Tensor) -> torch.Tensor:
    """``(M, n_out, n_in)``: row ``X`` of item ``i`` interpolates bicubically at input position
    ``positions[i, X]`` (pixel-centre coordinates, fractional allowed), borders replicated
    (each tap's index clamped, as ``grid_sample``'s ``border`` padding does)."""
    x0 = torch.floor(positions)
    taps = torch.arange(-1, 3, device=positions.device)
    index = (x0.long()[..., None] + taps).clamp(0, n_in - 1)  # (M, n_out, 4)
    matrix = positions.new_zeros(*positions.shape, n_in)
    return matrix.scatter_add_(2, index, _cubic(positions - x0))


def _grid(n_in: int, n_out: int, offset: torch.Tensor) -> torch.Tensor:
    """``(M, n_out)`` input positions of the ``n_out`` output pixel centres (the
    ``align_corners=False`` map of ``F.interpolate``) moved by ``offset`` ``(M,)`` input px."""
    out = torch.arange(n_out, dtype=offset.dtype, device=offset.device)
    return ((out + 0.5) * (n_in / n_out) - 0.5)[None] + offset[:, None]


def shift_image(
    image: torch.Tensor, shift: torch.Tensor, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Resample ``(M, C, h, w)`` images translated by ``-shift[k]`` input pixels, optionally onto
    a finer ``size = (H, W)`` grid in the same pass (one bicubic interpolation, not two).

    ``shift``: ``(M, 2)`` of ``(dx, dy)`` in input px. Output pixel centre ``X`` reads the input
    at ``u(X) + shift`` with ``u`` the ``align_corners=False`` map (as ``F.interpolate``); borders
    are replicated. This undoes a ``+shift`` motion. Returns ``(M, C, H, W)``, not clamped.
    The same values as ``F.grid_sample(mode="bicubic", padding_mode="border")`` (to 1e-6), as
    two batched matrix products: bicubic interpolation is separable, and the products are
    faster than grid_sample's per-pixel taps (docs/benchmarks.md, "Component timings").
    """
    _, _, h, w = image.shape
    out_h, out_w = size if size is not None else (h, w)
    shift = shift.to(image.device, image.dtype)
    rows = _resample_matrix(h, _grid(h, out_h, shift[:, 1]))  # (M, H, h)
    cols = _resample_matrix(w, _grid(w, out_w, shift[:, 0]))  # (M, W, w)
    return rows[:, None] @ image @ cols[:, None].transpose(-1, -2)


def simulate_frames(hr: torch.Tensor, shifts: torch.Tensor, scale: int) -> torch.Tensor:
    """The LR frames the sensor model of :mod:`mfsr.data.degrade` makes from ``hr`` moved by
    ``+scale*shift``: ``(B, C, H, W)``, shifts ``(B, N, 2)`` LR px -> ``(B, N, C, H/s, W/s)``.

    Moving (bicubic) then box-averaging ``s x s`` blocks equals box-filtering first and then
    sampling bicubically at the blocks' corners (both are convolutions), so the HR image is
    filtered once per sequence and each frame costs an LR-sized resampling (two matrix
    products), not an HR-sized one. Borders are replicated before filtering (``2s`` px; equal
    to moving and pooling at full resolution to 1e-5 for shifts of up to 3 LR px, tested).
    """
    b, n = shifts.shape[:2]
    h, w = hr.shape[-2] // scale, hr.shape[-1] // scale
    pad = 2 * scale
    box = F.avg_pool2d(F.pad(hr, (pad,) * 4, mode="replicate"), scale, stride=1)  # (B,C,H',W')
    # LR pixel i averages HR pixels s*i .. s*i+s-1 of the moved image: box index s*i - s*d + pad
    d = (scale * shifts.to(hr.dtype)).reshape(b * n, 2)  # HR px
    lr = torch.arange(h, dtype=hr.dtype, device=hr.device) * scale + pad
    rows = _resample_matrix(box.shape[-2], lr[None] - d[:, 1:])  # (B*N, h, H')
    lc = torch.arange(w, dtype=hr.dtype, device=hr.device) * scale + pad
    cols = _resample_matrix(box.shape[-1], lc[None] - d[:, :1])  # (B*N, w, W')
    rows = rows.reshape(b, n, 1, h, -1)
    cols = cols.reshape(b, n, 1, w, -1).transpose(-1, -2)
    return rows @ box[:, None] @ cols  # (B, N, C, h, w)


def shift_and_add(
    frames: torch.Tensor,
    shifts: torch.Tensor,
    scale: int,
    back_projection: int = 10,
    reduce: str = "mean",
) -> torch.Tensor:
    """Classical multi-frame SR of a batch with known shifts; not clamped.

    ``frames``: ``(B, N, C, h, w)``; ``shifts``: ``(B, N, 2)`` LR px (content moved by
    ``+shift``). Every frame is resampled bicubically onto the HR grid moved back by its shift
    (one interpolation), the aligned stack is fused by the per-pixel ``mean`` (or ``median``),
    then ``back_projection`` steps of iterative back-projection (Irani & Peleg 1991) simulate
    each LR frame from the estimate with the sensor model (:func:`simulate_frames`) and add the
    upsampled, re-aligned mean residual. Returns ``(B, C, s*h, s*w)``.
    """
    b, n, c, h, w = frames.shape
    hr = (scale * h, scale * w)
    flat, d = frames.reshape(b * n, c, h, w), shifts.reshape(b * n, 2)
    aligned = shift_image(flat, d, hr).reshape(b, n, c, *hr)  # upsample + align in one pass
    fused = aligned.mean(1) if reduce == "mean" else aligned.median(1).values
    for _ in range(back_projection):
        residual = (frames - simulate_frames(fused, shifts, scale)).reshape(b * n, c, h, w)
        fused = fused + shift_image(residual, d, hr).reshape(b, n, c, *hr).mean(1)
    return fused


#: Replay :func:`graphed`'s functions from CUDA graphs (False: plain eager calls, e.g. to compare).
CUDA_GRAPHS = True
_GRAPHS: dict[tuple, tuple | None] = {}


def graphed(
    fn: Callable[..., tuple[torch.Tensor, ...]], x: torch.Tensor, *args: int
) -> tuple[torch.Tensor, ...]:
    """``fn(x, *args)``, on CUDA replayed from a CUDA graph captured once per function, shape,
    dtype, device, ``args`` and inference mode; elsewhere (CPU, ``torch.compile``, or
    ``CUDA_GRAPHS`` off) a plain call. Registration and shift-and-add are about 3,200 small
    operators whose launches, not their arithmetic, bound a GPU (docs/benchmarks.md); one replay
    launches them all. ``fn`` must return a tuple of tensors, take no gradient and not
    synchronise with the host. The outputs are copies (the graph's buffers are reused); each
    captured shape keeps its buffers for the life of the process. A capture that fails warns
    once and that case stays eager.
    """
    if not (x.is_cuda and CUDA_GRAPHS) or torch.compiler.is_compiling():
        return fn(x, *args)
    key = (fn, tuple(x.shape), x.dtype, x.device, args, torch.is_inference_mode_enabled())
    if key not in _GRAPHS:
        try:
            _GRAPHS[key] = _capture(fn, x, args)
        except RuntimeError as exc:  # e.g. an operator that cannot be captured: stay eager
            warnings.warn(f"{fn.__name__}: no CUDA graph ({exc}); running eagerly", stacklevel=2)
            _GRAPHS[key] = None
    if _GRAPHS[key] is None:
        return fn(x, *args)
    graph, static_in, static_out = _GRAPHS[key]
    static_in.copy_(x)
    graph.replay()
    return tuple(t.clone() for t in static_out)


def _capture(fn: Callable[..., tuple[torch.Tensor, ...]], x: torch.Tensor, args: tuple) -> tuple:
    with torch.cuda.device(x.device):
        static_in = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the capture: cuFFT plans, the allocator
            fn(static_in, *args)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: loader threads may call CUDA (pinning) while this thread captures
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_out = fn(static_in, *args)
    return graph, static_in, static_out
