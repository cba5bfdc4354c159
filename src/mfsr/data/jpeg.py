"""Baseline JPEG round trip of a whole batch in torch, in libjpeg's integer arithmetic.

What the CPU path's Pillow (libjpeg-turbo) does to an RGB image saved at ``quality`` and read
back, step for step in the same fixed-point arithmetic: JFIF RGB -> YCbCr (16-bit fixed point),
4:2:0 chroma (2x2 means with libjpeg's alternating 1/2 bias), level shift, the "islow" integer
DCT (Loeffler-Ligtenberg-Moschytz, 13-bit constants), quantisation with the IJG tables of JPEG
Annex K scaled by ``quality`` (baseline: entries clamped to 1..255), dequantisation, the islow
inverse DCT, "fancy" (triangular) chroma upsampling and YCbCr -> RGB. Edges are handled as
libjpeg does: the image is extended to whole blocks by repeating its last row and column (for
chroma, in libjpeg's order: columns before the 2x2 means, rows after).
``tests/test_jpeg.py`` checks it against Pillow on real faces; entropy coding is lossless and
left out.

Hand-written rather than torchvision's ``encode_jpeg``/``decode_jpeg`` because those take one
image per call and return data-sized byte strings (on CUDA the encoder leaves them in GPU
memory, the decoder reads them only from host memory), so every sequence would cost a trip
through the host and a synchronisation; and nvjpeg is not libjpeg. Here a batch of images, each
at its own quality, is about a hundred small tensor operations with no host synchronisation.
Every value is an integer, held in int64 or, where a matrix product does the work (colour
conversion, each 1-D DCT pass), in float64 below 2**40, where sums and products are exact in
any order: the bits are the same on the CPU and on a GPU.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

__all__ = ["jpeg_roundtrip", "quant_tables"]

# JPEG Annex K, tables K.1 (luminance) and K.2 (chrominance), natural (row-major) order.
_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMA = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8 for _ in range(4)),
)

# the islow DCT's constants: round(c * 2**13)
_CONST_BITS, _PASS1_BITS = 13, 2
_F0298, _F0390, _F0541, _F0765 = 2446, 3196, 4433, 6270
_F0899, _F1175, _F1501, _F1847 = 7373, 9633, 12299, 15137
_F1961, _F2053, _F2562, _F3072 = 16069, 16819, 20995, 25172


def quant_tables(quality: torch.Tensor) -> torch.Tensor:
    """IJG quantisation tables for integer ``quality`` ``(B,)`` in 1..100: int64 ``(B, 2, 8, 8)``
    (luminance, chrominance), as libjpeg's ``jpeg_set_quality(q, force_baseline=TRUE)``."""
    q = quality.to(torch.int64).clamp(1, 100)
    scale = torch.where(q < 50, 5000 // q, 200 - 2 * q).view(-1, 1, 1, 1)
    return ((_constants(quality.device)["tables"] * scale + 50) // 100).clamp(1, 255)


def _fdct_1d(d: list, last: bool) -> list[tuple]:
    """One pass of the islow forward DCT over 8 samples (rows first, then columns), as
    (linear form, right shift with rounding) per output."""
    shift = _CONST_BITS + _PASS1_BITS if last else _CONST_BITS - _PASS1_BITS
    t0, t7 = d[0] + d[7], d[0] - d[7]
    t1, t6 = d[1] + d[6], d[1] - d[6]
    t2, t5 = d[2] + d[5], d[2] - d[5]
    t3, t4 = d[3] + d[4], d[3] - d[4]
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    out: list = [None] * 8
    if last:
        out[0], out[4] = (t10 + t11, _PASS1_BITS), (t10 - t11, _PASS1_BITS)
    else:  # exact: a left shift, no rounding
        out[0], out[4] = ((t10 + t11) << _PASS1_BITS, 0), ((t10 - t11) << _PASS1_BITS, 0)
    z1 = (t12 + t13) * _F0541
    out[2] = (z1 + t13 * _F0765, shift)
    out[6] = (z1 - t12 * _F1847, shift)
    z1, z2, z3, z4 = t4 + t7, t5 + t6, t4 + t6, t5 + t7
    z5 = (z3 + z4) * _F1175
    z1, z2 = z1 * -_F0899, z2 * -_F2562
    z3, z4 = z3 * -_F1961 + z5, z4 * -_F0390 + z5
    out[7] = (t4 * _F0298 + z1 + z3, shift)
    out[5] = (t5 * _F2053 + z2 + z4, shift)
    out[3] = (t6 * _F3072 + z2 + z3, shift)
    out[1] = (t7 * _F1501 + z1 + z4, shift)
    return out


def _idct_1d(c: list, last: bool) -> list[tuple]:
    """One pass of the islow inverse DCT over 8 coefficients (columns first, then rows), as
    (linear form, right shift with rounding) per output."""
    shift = _CONST_BITS + _PASS1_BITS + 3 if last else _CONST_BITS - _PASS1_BITS
    z1 = (c[2] + c[6]) * _F0541
    t2, t3 = z1 - c[6] * _F1847, z1 + c[2] * _F0765
    t0, t1 = (c[0] + c[4]) << _CONST_BITS, (c[0] - c[4]) << _CONST_BITS
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    o0, o1, o2, o3 = c[7], c[5], c[3], c[1]
    z1, z2, z3, z4 = o0 + o3, o1 + o2, o0 + o2, o1 + o3
    z5 = (z3 + z4) * _F1175
    z1, z2 = z1 * -_F0899, z2 * -_F2562
    z3, z4 = z3 * -_F1961 + z5, z4 * -_F0390 + z5
    o0 = o0 * _F0298 + z1 + z3
    o1 = o1 * _F2053 + z2 + z4
    o2 = o2 * _F3072 + z2 + z3
    o3 = o3 * _F1501 + z1 + z4
    forms = [t10 + o3, t11 + o2, t12 + o1, t13 + o0, t13 - o0, t12 - o1, t11 - o2, t10 - o3]
    return [(f, shift) for f in forms]


def _pass_matrix(one_d, last: bool) -> tuple[np.ndarray, int]:
    """A 1-D pass as one integer matrix and one shift. Each output of libjpeg's pass is an
    integer linear form of its 8 inputs, rounded by a right shift only at the end, so the pass
    is exactly ``(M @ x + 2**(s-1)) >> s``; outputs with a smaller shift ``r`` get rows scaled
    by ``2**(s-r)``, which rounds identically."""
    forms = one_d(list(np.eye(8, dtype=np.int64)), last)
    shift = max(r for _, r in forms)
    return np.stack([form << (shift - r) for form, r in forms]), shift


@functools.cache
def _constants(device: torch.device) -> dict:
    """The tables and pass matrices on ``device``, made once (no host copy per call)."""
    out: dict = {"tables": torch.tensor((_LUMA, _CHROMA), dtype=torch.int64, device=device)}
    # JFIF colour conversion in libjpeg's 16-bit fixed point: (weights . x + add) >> 16
    half, offset = 1 << 15, 128 << 16
    to_ycc = ((19595, 38470, 7471), (-11059, -21709, 32768), (32768, -27439, -5329))
    ycc_add = (half, offset + half - 1, offset + half - 1)
    to_rgb = ((0, 91881), (-22554, -46802), (116130, 0))  # (Cb, Cr) -> (R, G, B) - Y
    for name, value in (("to_ycc", to_ycc), ("ycc_add", ycc_add), ("to_rgb", to_rgb)):
        out[name] = torch.tensor(value, dtype=torch.float64, device=device)
    out["rgb_add"] = torch.full((3,), float(half), dtype=torch.float64, device=device)
    for name, one_d, last in (
        ("fdct_rows", _fdct_1d, False),
        ("fdct_cols", _fdct_1d, True),
        ("idct_cols", _idct_1d, False),
        ("idct_rows", _idct_1d, True),
    ):
        matrix, shift = _pass_matrix(one_d, last)
        out[name] = (torch.from_numpy(matrix).to(device, torch.float64), shift)
    return out


def _pass(x: torch.Tensor, pass_: tuple[torch.Tensor, int], columns: bool) -> torch.Tensor:
    """One 1-D pass over the rows (or columns) of float64 ``(..., 8, 8)`` blocks. Every value
    is an integer below 2**40, so float64 matrix products and the rounding shift are exact
    (and run on any device, where integer matrix products may not)."""
    matrix, shift = pass_
    y = matrix @ x if columns else x @ matrix.T
    return torch.floor((y + 2.0 ** (shift - 1)) * 2.0**-shift)


def _fixed16(x: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """``(x + add) >> 16`` of float64 integers ``(B, 3, H, W)`` (exact: all below 2**26)."""
    return torch.floor((x + add.view(1, 3, 1, 1)) * 2.0**-16)


def _blocks(plane: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` with H, W multiples of 8 -> ``(B, H/8 * W/8, 8, 8)``, blocks row by row."""
    b, h, w = plane.shape
    return plane.reshape(b, h // 8, 8, w // 8, 8).transpose(2, 3).reshape(b, -1, 8, 8)


def _unblocks(blocks: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b = blocks.shape[0] * blocks.shape[1] // (h // 8 * (w // 8))
    return blocks.reshape(b, h // 8, w // 8, 8, 8).transpose(2, 3).reshape(b, h, w)


def _code_blocks(blocks: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Level shift, islow DCT, quantise, dequantise, islow IDCT of int64 ``(..., 8, 8)`` sample
    blocks with a table ``(..., 8, 8)`` each; int64 samples 0..255 out."""
    c = _constants(blocks.device)
    x = blocks.to(torch.float64) - 128.0
    x = _pass(_pass(x, c["fdct_rows"], columns=False), c["fdct_cols"], columns=True)
    # x is the DCT scaled by 8: round half away from zero of x / (8 q), as libjpeg's quantiser
    q = table.to(torch.float64)
    coef = torch.sign(x) * torch.floor((x.abs() + 4.0 * q) / (8.0 * q))
    x = coef * q
    x = _pass(_pass(x, c["idct_cols"], columns=True), c["idct_rows"], columns=False)
    return (x + 128.0).clamp(0.0, 255.0).to(torch.int64)


def _up(n: int, k: int) -> int:
    return -(-n // k) * k


def _extend(plane: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``(B, h0, w0)`` -> ``(B, h, w)`` by repeating the last row and column (h >= h0, w >= w0)."""
    rows = torch.arange(h, device=plane.device).clamp(max=plane.shape[1] - 1)
    cols = torch.arange(w, device=plane.device).clamp(max=plane.shape[2] - 1)
    return plane[:, rows][:, :, cols]


def _downsample(plane: torch.Tensor) -> torch.Tensor:
    """2x2 means of int64 ``(B, H, W)`` (even sizes), bias 1, 2, 1, 2, ... along each row."""
    b, h, w = plane.shape
    sums = plane.reshape(b, h // 2, 2, w // 2, 2).sum(dim=(2, 4))
    bias = torch.ones(w // 2, dtype=plane.dtype, device=plane.device)
    bias[1::2] = 2
    return (sums + bias) >> 2


def _upsample(plane: torch.Tensor) -> torch.Tensor:
    """libjpeg's "fancy" 2x2 upsampling of int64 ``(B, h, w)``: each output sample weighs its
    nearest input 9/16, the two next ones 3/16 and the diagonal one 1/16, edges repeated,
    with libjpeg's alternating rounding; plain repetition when ``w <= 2``, as libjpeg does."""
    b, h, w = plane.shape
    if w <= 2:
        return plane.repeat_interleave(2, 1).repeat_interleave(2, 2)
    above = torch.cat([plane[:, :1], plane[:, :-1]], dim=1)
    below = torch.cat([plane[:, 1:], plane[:, -1:]], dim=1)
    rows = torch.stack([3 * plane + above, 3 * plane + below], dim=2).reshape(b, 2 * h, w)
    left = torch.cat([rows[..., :1], rows[..., :-1]], dim=-1)
    right = torch.cat([rows[..., 1:], rows[..., -1:]], dim=-1)
    even, odd = (3 * rows + left + 8) >> 4, (3 * rows + right + 7) >> 4
    even[..., 0] = (4 * rows[..., 0] + 8) >> 4
    odd[..., -1] = (4 * rows[..., -1] + 7) >> 4
    return torch.stack([even, odd], dim=-1).reshape(b, 2 * h, 2 * w)


def jpeg_roundtrip(images: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Baseline 4:2:0 JPEG, coded and decoded, of uint8 RGB ``(B, 3, H, W)``, image ``i`` at
    ``quality[i]`` (ints ``(B,)``, 1..100; 0 or less leaves that image unchanged). Returns uint8
    ``(B, 3, H, W)`` on the images' device; no host synchronisation."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 (B, 3, H, W) images, got {images.dtype} {images.shape}")
    quality = quality.to(images.device)
    b, _, h, w = images.shape
    c = _constants(images.device)
    ycc = _fixed16(
        torch.einsum("ij,bjhw->bihw", c["to_ycc"], images.to(torch.float64)), c["ycc_add"]
    )
    y, cb, cr = ycc.to(torch.int64).unbind(1)

    # all blocks of an image (Y, then Cb, then Cr) are coded in one batch with their tables
    yh, yw = _up(h, 8), _up(w, 8)
    luma = _blocks(_extend(y, yh, yw))  # (B, nY, 8, 8)
    # chroma as libjpeg pads it: columns repeated to whole 16-px units before the 2x2 means,
    # rows only to an even count; the means' last row is then repeated to whole blocks
    ch, cw = (h + 1) // 2, (w + 1) // 2
    half = _downsample(_extend(torch.stack([cb, cr], 1).flatten(0, 1), 2 * ch, _up(w, 16)))
    half = _extend(half, _up(ch, 8), half.shape[-1])
    chroma = _blocks(half).reshape(b, -1, 8, 8)  # (B, 2 nC, 8, 8): Cb's blocks, then Cr's
    tables = quant_tables(quality)
    n_luma = luma.shape[1]
    table = torch.cat(
        [
            tables[:, :1].expand(-1, n_luma, -1, -1),
            tables[:, 1:].expand(-1, chroma.shape[1], -1, -1),
        ],
        dim=1,
    )
    coded = _code_blocks(torch.cat([luma, chroma], dim=1), table)
    y = _unblocks(coded[:, :n_luma], yh, yw)[:, :h, :w]
    half = _unblocks(coded[:, n_luma:], *half.shape[-2:])[:, :ch, :cw]
    cb, cr = (_upsample(half)[:, :h, :w] - 128).view(b, 2, h, w).unbind(1)
    delta = torch.einsum("ij,bjhw->bihw", c["to_rgb"], torch.stack([cb, cr], 1).to(torch.float64))
    out = (y.unsqueeze(1) + _fixed16(delta, c["rgb_add"])).clamp(0, 255).to(torch.uint8)
    keep = (quality <= 0).view(-1, 1, 1, 1)
    return torch.where(keep, images, out)
