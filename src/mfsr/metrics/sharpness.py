"""CPBD sharpness (Narvekar & Karam 2011) and the sharpness difference, vectorised NumPy.

CPBD, the *cumulative probability of blur detection*, is a no-reference sharpness score in
[0, 1] (higher = sharper). mfsr's implementation is written from the paper's description:

1. The grey image is cut into 64 x 64 blocks (only whole blocks, from the top-left corner).
   A block is an *edge block* when more than 0.2 % of its pixels (T = 0.002, i.e. at least 9 of
   4096) are Canny edges.
2. Edge pixels for width measurement come from a Sobel detector of vertical edges (horizontal
   gradient), thresholded and thinned (below). At each such pixel whose gradient direction is
   within 22.5 degrees of horizontal, the edge width ``w`` is measured along the row as in
   Marziliano et al. (2004): the run of monotonic intensity to the left plus the run to the
   right (each counted from the neighbouring pixel, capped at 100 steps, plus one).
3. Each edge block gets a just-noticeable blur width ``w_JNB`` from its contrast
   ``C = max - min`` (grey levels): 5 px if C <= 50, else 3 px.
4. Each edge pixel gets a probability of blur detection ``P = 1 - exp(-(w / w_JNB) ** 3.6)``;
   the probabilities, binned to 1 %, form a histogram, and CPBD is its cumulative probability
   at ``P_JNB = 63 %``: the fraction of edge pixels whose blur is below the just-noticeable level.
   Binning makes this exactly "``w <= w_JNB``" for integer widths.

Conventions of the detectors (chosen so that mfsr agrees with the widely used Python reference
implementation, the ``cpbd`` package, which ports the authors' MATLAB code):

* Canny: Gaussian smoothing with sigma 1 (kernel radius 4), zero padding renormalised by the
  kernel mass inside the image, Sobel gradients (mirrored borders), bilinear non-maximum
  suppression excluding the 1-pixel image border, hysteresis thresholds 0.1 / 0.2 on the
  gradient magnitude of the 0-255 image (i.e. almost any non-flat pixel), 8-connectivity.
* Sobel edges: the horizontal derivative with the normalised kernel ``[1, 2, 1]^T [1, 0, -1] / 8``
  (mirrored borders); a pixel is kept where its *squared* response exceeds twice the root mean
  square of the response over the image (the reference's threshold; MATLAB's ``edge`` compares
  the squared response with 4 x its mean instead), then thinned: kept if strictly above both
  horizontal or both vertical neighbours.
* Direction: ``atan2(gy, gx)`` of central differences, quantised to multiples of 45 degrees
  (round half to even); widths are measured at 0 and +-180 degrees only. A pixel whose central
  horizontal difference is exactly 0 counts as 0 degrees; if no pixel of the image has a non-zero
  angle, no width is measured (both as in the reference).
* Images without any whole 64 x 64 block have no defined CPBD: ``nan``. Images with blocks but
  no edge pixel in an edge block score 0 (as the reference).

Colour images are converted to 8-bit grey first with ITU-R BT.601 weights and rounding, exactly
as Pillow's ``convert("L")`` (:func:`rgb_to_gray`).

Timings: docs/benchmarks.md, "Component timings".
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: Block side in pixels.
BLOCK = 64
#: Fraction of Canny edge pixels above which a block is an edge block.
EDGE_BLOCK_FRACTION = 0.002
#: Exponent of the probability-of-blur-detection psychometric function.
BETA = 3.6
#: Probability of blur detection at the just-noticeable blur (63 %).
P_JNB = 0.63
#: Contrast (grey levels) up to which the just-noticeable width is :data:`JNB_LOW_CONTRAST`.
JNB_CONTRAST_LIMIT = 50
JNB_LOW_CONTRAST = 5.0
JNB_HIGH_CONTRAST = 3.0
#: Longest monotonic run (pixels) followed on each side of an edge.
MAX_RUN = 100
#: Canny settings (sigma in pixels, thresholds on the gradient magnitude of a 0-255 image).
CANNY_SIGMA = 1.0
CANNY_LOW = 0.1
CANNY_HIGH = 0.2


def rgb_to_gray(image: np.ndarray) -> np.ndarray:
    """``uint8 (H, W, 3)`` RGB -> ``uint8 (H, W)`` luma, BT.601 weights with rounding.

    Bit-exact with Pillow's ``Image.convert("L")``:
    ``(19595 R + 38470 G + 7471 B + 32768) >> 16``.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"rgb_to_gray expects uint8 (H, W, 3), got {image.dtype} {image.shape}")
    rgb = image.astype(np.uint32)
    luma = rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 32768
    return (luma >> 16).astype(np.uint8)


def _as_gray(image: np.ndarray) -> np.ndarray:
    """Grey float64 image from ``(H, W)`` (any real dtype, 0-255) or ``uint8 (H, W, 3)``."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = rgb_to_gray(image)
    if image.ndim != 2:
        raise ValueError(f"cpbd expects a (H, W) grey or (H, W, 3) RGB image, got {image.shape}")
    return image.astype(np.float64)


def canny_edges(gray: np.ndarray) -> np.ndarray:
    """Canny edge map (bool ``(H, W)``) of a grey float image in 0-255 (settings above)."""
    kwargs = {"sigma": CANNY_SIGMA, "mode": "constant", "cval": 0.0, "truncate": 4.0}
    mass = ndi.gaussian_filter(np.ones_like(gray), **kwargs) + np.finfo(np.float64).eps
    smooth = ndi.gaussian_filter(gray, **kwargs) / mass
    gi = ndi.sobel(smooth, axis=0)  # d/d row
    gj = ndi.sobel(smooth, axis=1)  # d/d column
    mag = np.hypot(gi, gj)
    keep = _non_maximum_suppression(gi, gj, mag) & (mag >= CANNY_LOW)
    return _hysteresis(keep, keep & (mag >= CANNY_HIGH))


def _non_maximum_suppression(gi: np.ndarray, gj: np.ndarray, mag: np.ndarray) -> np.ndarray:
    """Pixels whose magnitude is >= both magnitudes bilinearly interpolated one step along and
    against the gradient; the 1-pixel border is never kept."""
    h, w = mag.shape
    out = np.zeros((h, w), dtype=bool)
    if h < 3 or w < 3:
        return out
    i, j, m = gi[1:-1, 1:-1], gj[1:-1, 1:-1], mag[1:-1, 1:-1]
    ai, aj = np.abs(i), np.abs(j)

    def at(dr: int, dc: int) -> np.ndarray:  # magnitude of the neighbour (row + dr, col + dc)
        return mag[1 + dr : h - 1 + dr, 1 + dc : w - 1 + dc]

    same = ((i >= 0) & (j >= 0)) | ((i <= 0) & (j <= 0))  # gradient in quadrants I / III
    cross = ((i <= 0) & (j >= 0)) | ((i >= 0) & (j <= 0))
    steep, flat = ai >= aj, ai <= aj
    # (which pixels, the two neighbours ahead, the two behind): an axis neighbour and a diagonal
    # one, as (row step, column step), mixed by the ratio of the smaller to the larger gradient
    # component; the first matching case wins.
    cases = [
        (same & steep, ((1, 0), (1, 1)), ((-1, 0), (-1, -1))),
        (same & flat, ((0, 1), (1, 1)), ((0, -1), (-1, -1))),
        (cross & flat, ((0, 1), (-1, 1)), ((0, -1), (1, -1))),
        (cross & steep, ((-1, 0), (-1, 1)), ((1, 0), (1, -1))),
    ]
    taken = m <= 0  # zero gradient: never an edge
    inner = out[1:-1, 1:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_steep = np.where(ai > 0, aj / ai, 0.0)  # |gradient| mostly along the rows
        ratio_flat = np.where(aj > 0, ai / aj, 0.0)  # mostly along the columns
    for mask, fwd, bwd in cases:
        mask = mask & ~taken
        taken |= mask
        weight = ratio_steep if fwd[0][1] == 0 else ratio_flat
        ahead = at(*fwd[0]) * (1 - weight) + at(*fwd[1]) * weight
        behind = at(*bwd[0]) * (1 - weight) + at(*bwd[1]) * weight
        inner |= mask & (ahead <= m) & (behind <= m)
    return out


def _hysteresis(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Keep the 8-connected components of ``low`` that contain a ``high`` pixel."""
    labels, count = ndi.label(low, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return low
    good = np.zeros(count + 1, dtype=bool)
    good[labels[high]] = True
    good[0] = False
    return good[labels]


def sobel_edges(gray: np.ndarray) -> np.ndarray:
    """Thinned vertical-edge map (bool ``(H, W)``) of a grey float image (see module notes)."""
    p = np.pad(gray, 1, mode="symmetric")
    column = p[:-2] + 2 * p[1:-1] + p[2:]  # [1, 2, 1] down the rows
    strength = ((column[:, 2:] - column[:, :-2]) / 8.0) ** 2
    strength[strength <= 2 * np.sqrt(np.mean(strength))] = 0
    z = np.pad(strength, 1, mode="constant")
    core = z[1:-1, 1:-1]
    horizontal = (core > z[1:-1, :-2]) & (core > z[1:-1, 2:])
    vertical = (core > z[:-2, 1:-1]) & (core > z[2:, 1:-1])
    return horizontal | vertical


def _runs(positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a bool ``(H, L)`` array: length of the run of True ending at each index (going left)
    and starting at each index (going right); 0 where the value is False."""
    length = positive.shape[1]
    index = np.arange(length)
    last_false = np.maximum.accumulate(np.where(positive, -1, index), axis=1)
    next_false = np.minimum.accumulate(np.where(positive, length, index)[:, ::-1], axis=1)
    return index - last_false, next_false[:, ::-1] - index


def edge_widths(gray: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Marziliano edge widths (float ``(H, W)``, 0 where no width is measured).

    At an edge pixel (not on the image border) whose quantised gradient angle is 0 degrees
    (intensity rising to the right) the width is ``1 + left + 1 + right`` where ``left`` counts
    strictly falling steps going left from the left neighbour and ``right`` strictly rising steps
    going right from the right neighbour (each at most :data:`MAX_RUN`), i.e. the extent of the
    monotonic ramp around the edge; at +-180 degrees (falling to the right) the same with
    rising and falling swapped.
    """
    h, w = gray.shape
    widths = np.zeros((h, w))
    if h < 3 or w < 3:
        return widths
    gy, gx = np.gradient(gray)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.where(gx != 0, np.degrees(np.arctan2(gy, gx)), 0.0)
    if not np.any(angle):
        return widths
    quantised = 45 * np.round(angle / 45)
    diff = gray[:, 1:] - gray[:, :-1]  # diff[r, c] = I[r, c + 1] - I[r, c]
    rise_end, rise_start = _runs(diff > 0)
    fall_end, fall_start = _runs(diff < 0)
    rows, cols = np.nonzero(edges[1:-1, 1:-1])
    rows, cols = rows + 1, cols + 1
    q = quantised[rows, cols]
    left_at = cols - 2  # the step (c-2 -> c-1) is the first one looked at going left
    right_at = cols + 1  # the step (c+1 -> c+2) is the first one going right
    for selected, left_runs, right_runs in (
        (q == 0, rise_end, rise_start),
        (np.abs(q) == 180, fall_end, fall_start),
    ):
        r, la, ra = rows[selected], left_at[selected], right_at[selected]
        left = np.where(la >= 0, left_runs[r, np.maximum(la, 0)], 0)
        right = np.where(ra <= w - 2, right_runs[r, np.minimum(ra, w - 2)], 0)
        widths[r, cols[selected]] = np.minimum(left, MAX_RUN) + np.minimum(right, MAX_RUN) + 2
    return widths


def _blocks(array: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """``(H, W)`` -> ``(ny, nx, BLOCK * BLOCK)`` whole blocks from the top-left corner."""
    cut = array[: ny * BLOCK, : nx * BLOCK]
    return cut.reshape(ny, BLOCK, nx, BLOCK).swapaxes(1, 2).reshape(ny, nx, BLOCK * BLOCK)


def cpbd(image: np.ndarray) -> float:
    """CPBD sharpness of one image, in [0, 1] (higher = sharper); ``nan`` below 64 x 64.

    Args:
        image: grey ``(H, W)`` in 0-255 (any real dtype) or ``uint8 (H, W, 3)`` RGB (converted
            with :func:`rgb_to_gray`).
    """
    gray = _as_gray(image)
    ny, nx = gray.shape[0] // BLOCK, gray.shape[1] // BLOCK
    if ny == 0 or nx == 0:
        return float("nan")
    canny = _blocks(canny_edges(gray), ny, nx)
    edge_block = np.count_nonzero(canny, axis=2) > BLOCK * BLOCK * EDGE_BLOCK_FRACTION
    if not edge_block.any():
        return 0.0
    widths = _blocks(edge_widths(gray, sobel_edges(gray)), ny, nx)[edge_block]  # (K, 4096)
    pixels = _blocks(gray, ny, nx)[edge_block]
    contrast = np.floor(pixels.max(axis=1) - pixels.min(axis=1))
    jnb = np.where(contrast <= JNB_CONTRAST_LIMIT, JNB_LOW_CONTRAST, JNB_HIGH_CONTRAST)
    measured = widths > 0
    total = int(np.count_nonzero(measured))
    if total == 0:
        return 0.0
    ratio = (widths / jnb[:, None])[measured]
    p_blur = 1.0 - np.exp(-(ratio**BETA))
    below = np.rint(p_blur * 100) <= round(P_JNB * 100)
    return float(np.count_nonzero(below) / total)


def cpbd_batch(images: np.ndarray) -> np.ndarray:
    """CPBD of each image of a batch: ``uint8 (B, H, W, 3)`` or grey ``(B, H, W)`` -> ``(B,)``."""
    return np.array([cpbd(image) for image in images], dtype=np.float64)


def sharpness_difference(preds: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``CPBD(target) - CPBD(preds)`` per image, ``(B,)``, in [-1, 1].

    Positive: the output is blurrier than the truth; negative: sharper than the truth
    (artificial detail); near 0: as sharp. Inputs as in :func:`cpbd_batch`.
    """
    return cpbd_batch(target) - cpbd_batch(preds)
