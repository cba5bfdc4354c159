"""The degradation model does what its parameters say.

Each test measures a property of the output (a shift, a rotation, a blur width, a noise level,
the JPEG step, determinism, config checking) and compares it with the requested value under a
tolerance stated next to the assertion, with where it comes from. Clean measurements use images
the test draws (dots, bars, flat grey); texture-dependent ones use real LFW faces.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy import ndimage

from degrade_helpers import FACES, box, face, frame, gray, seq
from mfsr.data.degrade import (
    Crop,
    FrameParams,
    SequenceParams,
    degrade_view,
    load_degradation,
    psf_kernel,
    render_view,
    sample_params,
    synthesize_sequence,
)

# --------------------------------------------------------------------------------------------
# Motion: shift
# --------------------------------------------------------------------------------------------


def register_lr_to_hr(lr: np.ndarray, hr: np.ndarray, s: int, border: int = 2) -> np.ndarray:
    """Shift ``t`` (LR px, content moves by +t) that best explains ``lr`` as the box-sampled ``hr``
    moved by ``t*s`` HR px: Gauss-Newton on ``|lr - box(shift(hr, t*s))|^2``.

    Resampling uses scipy's cubic spline, independent of the OpenCV bicubic warp under test.
    Registering two LR frames directly is too coarse here: cv2.phaseCorrelate and ECC between
    LR frames were off by up to 0.2-0.4 LR px (median 0.06-0.2) on 40 LFW faces at LR 32-64. So
    the frame is registered against the forward model: HR reference -> move -> s x s box average.
    The reference LR frame itself is checked to be that box average.
    """
    t = np.zeros(2)
    inner = (slice(border, -border),) * 2
    for _ in range(10):
        moved = ndimage.shift(hr, (t[1] * s, t[0] * s), order=3, mode="mirror")
        gy, gx = np.gradient(moved)
        residual = (lr - box(moved, s))[inner].ravel()
        jac = np.stack([-s * box(gx, s)[inner].ravel(), -s * box(gy, s)[inner].ravel()], axis=1)
        step = np.linalg.lstsq(jac, residual, rcond=None)[0]
        t += step
        if np.abs(step).max() < 1e-4:
            break
    return t


@pytest.mark.parametrize("scale,hr_size", [(4, 128), (8, 256)])
@pytest.mark.parametrize("name", FACES)
def test_lr_frames_are_shifted_by_drawn_shift(lfw_root, name, scale, hr_size):
    image = face(lfw_root, name)
    cfg = load_degradation("clean")  # translation + box sampling only
    assert cfg.motion.max_rotation == 0 and cfg.motion.max_zoom == 0 and cfg.jpeg.quality is None
    frames, hr, params = synthesize_sequence(
        image, Crop.centred(250, 250), hr_size, scale, 7, cfg, np.random.default_rng(11)
    )
    ref_lr = gray(frames[params.reference_index])
    # Clean preset: the reference LR frame is the box average of the HR target, up to rounding.
    assert np.abs(ref_lr - box(gray(hr), scale)).max() <= 1.0
    shifts = np.array([f.shift for f in params.frames])
    assert np.abs(shifts).max() > 0.5  # the seed draws shifts worth measuring
    for k, fp in enumerate(params.frames):
        measured = register_lr_to_hr(gray(frames[k]), gray(hr), scale)
        # Tolerance 0.03 LR px: the measurement's own error (cubic spline vs OpenCV bicubic,
        # 8-bit rounding) was <= 0.013 LR px over 40 LFW faces at these geometries. A shift
        # applied in LR instead of HR px (x1/s), or with the wrong sign, misses by > 0.25.
        np.testing.assert_allclose(measured, fp.shift, atol=0.03, err_msg=f"frame {k}")


def blob_image(size: int, points: np.ndarray, sigma: float = 2.5) -> np.ndarray:
    """Smooth Gaussian dots (peak 255) on black, at ``points`` (x, y) in pixel-centre coords."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.zeros((size, size))
    for x, y in points:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    img = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return np.repeat(img[:, :, None], 3, axis=2)


def centroids(view: np.ndarray, guesses: np.ndarray, radius: int = 12) -> np.ndarray:
    """Intensity centroid of the dot near each guessed (x, y) position."""
    g = gray(view)
    out = []
    for x, y in guesses:
        x0, y0 = round(x), round(y)
        win = g[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
        yy, xx = np.mgrid[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
        out.append(((win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()))
    return np.array(out)


SRC = 200  # dot-image source side; the crop is all of it
DOTS = np.array(
    [(99.5, 99.5)]
    + [(99.5 + 55 * math.cos(a), 99.5 + 55 * math.sin(a)) for a in np.arange(8) * math.pi / 4]
)


def expected_positions(
    points: np.ndarray, f: float, hr_size: int, scale: int, fp: FrameParams
) -> np.ndarray:
    """Where the documented similarity sends source points: z R(θ) (x - c) f + o + s t, with
    R(θ) counter-clockwise on screen, i.e. in array coordinates (y down)
    [[cos θ, sin θ], [-sin θ, cos θ]]."""
    th = math.radians(fp.rotation)
    rot = np.array([[math.cos(th), math.sin(th)], [-math.sin(th), math.cos(th)]])
    c = (SRC - 1) / 2.0
    o = (hr_size - 1) / 2.0
    return (fp.zoom * f * (points - c)) @ rot.T + o + scale * np.array(fp.shift)


@pytest.mark.parametrize("scale", [4, 8])
def test_hr_view_moves_content_by_shift_times_scale(scale):
    hr_size = 256
    src = blob_image(SRC, DOTS)
    crop = Crop.centred(SRC, SRC)
    f = hr_size / SRC
    ref = render_view(src, crop, hr_size, scale)
    ref_pos = centroids(ref, expected_positions(DOTS, f, hr_size, scale, frame()))
    for shift in [(0.375, -0.8), (-1.0, 0.25), (2.0, 1.5)]:
        fp = frame(shift)
        guess = ref_pos + np.array(shift) * scale
        moved = centroids(render_view(src, crop, hr_size, scale, fp), guess)
        # Tolerance 0.05 HR px: centroids of smooth dots (std 3.2 HR px) after a bicubic warp
        # and 8-bit rounding were within 0.025 px; a shift not multiplied by the scale misses
        # by >= 0.75 * scale * |shift|.
        np.testing.assert_allclose(
            moved - ref_pos, np.broadcast_to(np.array(shift) * scale, moved.shape), atol=0.05
        )
    # The unmoved view puts the crop centre on the canvas centre and scales by f.
    np.testing.assert_allclose(
        ref_pos, expected_positions(DOTS, f, hr_size, scale, frame()), atol=0.05
    )


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Least-squares dst = a * src + b in complex form (x + iy, y down). Returns the rotation
    counter-clockwise on screen (degrees), the scale and the translation (x, y)."""
    zs, zd = src[:, 0] + 1j * src[:, 1], dst[:, 0] + 1j * dst[:, 1]
    design = np.stack([zs, np.ones_like(zs)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, zd, rcond=None)
    # With y pointing down, a positive complex angle turns clockwise on screen.
    return -math.degrees(np.angle(a)), abs(a), np.array([b.real, b.imag])


@pytest.mark.parametrize(
    "rotation,zoom,shift,source_side",
    [(6.0, 1.04, (0.5, 0.25), SRC), (-3.0, 0.97, (0.0, 0.0), SRC), (4.0, 1.02, (-0.5, 0.5), 800)],
)
def test_rotation_and_zoom_of_view_match_parameters(rotation, zoom, shift, source_side):
    """Dots tracked through render_view give back θ (counter-clockwise on screen) and z.
    source_side 800 -> 256 exercises the shrink-first path (f < 0.8)."""
    hr_size, scale = 256, 4
    k = source_side / SRC
    src = blob_image(source_side, (DOTS + 0.5) * k - 0.5, sigma=2.5 * k)
    crop = Crop.centred(source_side, source_side)
    fp = frame(shift, rotation, zoom)
    view = render_view(src, crop, hr_size, scale, fp)
    ref = render_view(src, crop, hr_size, scale)
    f = hr_size / SRC
    ref_pos = centroids(ref, expected_positions(DOTS, f, hr_size, scale, frame()))
    pos = centroids(view, expected_positions(DOTS, f, hr_size, scale, fp))
    theta, z, _ = fit_similarity(ref_pos, pos)
    # Tolerances: 0.05 deg and 0.001 in zoom. Dot centroids are good to ~0.02 HR px (0.05 px
    # after the area shrink) at a radius of ~70 HR px, i.e. ~0.02 deg and ~3e-4 relative.
    assert theta == pytest.approx(rotation, abs=0.05)
    assert z == pytest.approx(zoom, abs=1e-3)
    # Direction: a dot right of the centre goes up on screen (smaller y) for θ > 0.
    right = int(np.argmax(ref_pos[:, 0]))
    assert np.sign(ref_pos[right, 1] - pos[right, 1]) == np.sign(rotation)
    # Full mapping, translation included (about the crop centre, then + s t).
    np.testing.assert_allclose(pos, expected_positions(DOTS, f, hr_size, scale, fp), atol=0.1)


def test_rotation_direction_on_real_face(lfw_root):
    """Warping a rotated/zoomed face view back with the documented (counter-clockwise) transform
    recovers the reference view; the mirror-image convention does not."""
    image = face(lfw_root)
    hr_size, scale = 256, 4
    crop = Crop.centred(250, 250)
    ref = gray(render_view(image, crop, hr_size, scale))
    fp = frame((0.5, -0.25), 3.0, 1.03)
    view = render_view(image, crop, hr_size, scale, fp).astype(np.float32)
    o = (hr_size - 1) / 2.0

    def warp_back(theta_deg: float) -> np.ndarray:
        th = math.radians(theta_deg)
        a = fp.zoom * np.array([[math.cos(th), math.sin(th)], [-math.sin(th), math.cos(th)]])
        t = np.array([o, o]) + scale * np.array(fp.shift) - a @ np.array([o, o])
        m = np.hstack([a, t[:, None]])  # reference coords -> moved-view coords
        back = cv2.warpAffine(
            view,
            m,
            (hr_size, hr_size),
            flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT_101,
        )
        return gray(back)

    inner = (slice(24, -24),) * 2
    rmse_right = float(np.sqrt(((warp_back(3.0) - ref)[inner] ** 2).mean()))
    rmse_wrong = float(np.sqrt(((warp_back(-3.0) - ref)[inner] ** 2).mean()))
    # Two bicubic resamplings of a 250 px photo at ~1x cost ~1-2 grey levels RMS; rotating the
    # wrong way leaves a 6 deg misalignment (several px at the face edges). Measured: 0.6 vs 27.
    assert rmse_right < 3.0
    assert rmse_wrong > 3 * rmse_right


def test_sampled_motion_stays_in_ranges():
    cfg = load_degradation("severe")
    params = sample_params(cfg, 7, np.random.default_rng(5))
    ref = params.frames[params.reference_index]
    assert params.reference_index == 3
    assert ref.shift == (0.0, 0.0) and ref.rotation == 0.0 and ref.zoom == 1.0
    m = cfg.motion
    for fp in params.frames:
        assert max(abs(fp.shift[0]), abs(fp.shift[1])) <= m.max_shift
        assert abs(fp.rotation) <= m.max_rotation and abs(fp.zoom - 1) <= m.max_zoom
        assert cfg.blur.motion_length[0] <= fp.motion_length <= cfg.blur.motion_length[1]
        assert 0 <= fp.motion_angle < 180
    assert cfg.blur.sigma[0] <= params.blur_sigma <= cfg.blur.sigma[1]
    assert cfg.jpeg.quality[0] <= params.jpeg_quality <= cfg.jpeg.quality[1]
    others = [fp for fp in params.frames if fp is not ref]
    assert len({fp.shift for fp in others}) == 6  # every moved frame has its own motion


# --------------------------------------------------------------------------------------------
# Blur
# --------------------------------------------------------------------------------------------


def bar_profiles(scale: int, params: SequenceParams, fp: FrameParams, sep_lr: int = 12):
    """Vertical white bars, ``scale`` HR px (1 LR px) wide, two at each of the ``scale`` HR
    phases, degraded; returns (mean, variance) of each bar's LR row profile (LR px) and the
    bar centres (LR px)."""
    phases = [p for p in range(scale) for _ in range(2)]
    width = sep_lr * scale * (len(phases) + 1)
    img = np.zeros((2 * scale, width, 3), np.uint8)
    centres = []
    for i, p in enumerate(phases):
        x0 = (i + 1) * sep_lr * scale + p
        img[:, x0 : x0 + scale] = 255
        centres.append((x0 + (scale - 1) / 2 + 0.5) / scale - 0.5)
    lr = degrade_view(img, scale, params, fp, np.random.default_rng(0))
    profile = gray(lr)[0]
    stats = []
    for c in centres:
        x = np.arange(round(c) - sep_lr // 2, round(c) + sep_lr // 2 + 1)
        w = profile[x]
        mean = (w * x).sum() / w.sum()
        stats.append((mean, (w * (x - mean) ** 2).sum() / w.sum()))
    return np.array(stats), np.array(centres)


@pytest.mark.parametrize(
    "scale,sigma",
    [(4, 0.3), (4, 0.6), (4, 1.0), (8, 0.3), (8, 0.6), (8, 1.0), (2, 0.6), (2, 0.2), (2, 0.3)],
)
def test_gaussian_blur_width_in_lr(scale, sigma):
    """LR response variance = (σ_hr² + bar (s²-1)/12 + box (s²-1)/12) / s² LR px², σ_hr = σ s.

    The s x s box average adds (s²-1)/12 HR px² averaged over the sub-pixel phase (Sheppard's
    correction for grouping s HR samples); the bar of s HR px adds the same again.
    """
    stats, centres = bar_profiles(scale, seq(blur=sigma), frame())
    expected = ((sigma * scale) ** 2 + 2 * (scale**2 - 1) / 12) / scale**2
    # Relative tolerance 3%: 8-bit rounding zeroes the faint tails of the LR profile, which
    # biases the variance low (measured -0.3% to -2.2%, worst at x2); OpenCV's sampled Gaussian
    # is within 0.1% of σ_hr² for σ_hr >= 1.2 HR px; the phase ripple of Sheppard's term is
    # < 0.1% here. Forgetting the scale on σ (x1/s² on the blur term) or a bilinear/bicubic
    # instead of a box downsampler moves it by far more.
    assert stats[:, 1].mean() == pytest.approx(expected, rel=0.03)
    # Centred: blur and sampling do not move content (0.02 LR px: rounding of the profile).
    np.testing.assert_allclose(stats[:, 0], centres, atol=0.02)


@pytest.mark.parametrize("scale", [4, 8])
def test_motion_blur_in_degrade_view_widens_along_its_angle_only(scale):
    """A horizontal (0 deg) motion line of ℓ LR px adds ℓ²/12 LR px² across vertical bars; a
    vertical (90 deg) one adds nothing across them."""
    sigma, length = 0.5, 1.0
    base, _ = bar_profiles(scale, seq(blur=sigma), frame())
    horiz, _ = bar_profiles(scale, seq(blur=sigma), frame(length=length, angle=0.0))
    vert, _ = bar_profiles(scale, seq(blur=sigma), frame(length=length, angle=90.0))
    added = horiz[:, 1].mean() - base[:, 1].mean()
    # Tolerance 0.01 LR px² (12% of ℓ²/12 = 0.083): the line kernel's own discretisation adds
    # up to 1/4 HR px² (bilinear splatting, <= 0.016 LR px² at x4) and rounding ~0.005.
    assert added == pytest.approx(length**2 / 12, abs=0.01 + 0.25 / scale**2)
    assert abs(vert[:, 1].mean() - base[:, 1].mean()) < 0.005


def kernel_moments(kernel: np.ndarray, angle: float) -> tuple[float, float, float, float]:
    """Centroid (x, y) and variance along / across the direction ``angle`` (degrees,
    counter-clockwise on screen, so (cos φ, -sin φ) in array coordinates)."""
    k = kernel.astype(np.float64) / kernel.sum()
    r = k.shape[0] // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    mx, my = (k * xx).sum(), (k * yy).sum()
    a = math.radians(angle)
    ux, uy = math.cos(a), -math.sin(a)
    along = (xx - mx) * ux + (yy - my) * uy
    across = -(xx - mx) * uy + (yy - my) * ux
    return mx, my, (k * along**2).sum(), (k * across**2).sum()


@pytest.mark.parametrize("sigma", [0.8, 1.2, 2.4, 4.8])
def test_psf_kernel_gaussian_second_moment(sigma):
    kernel = psf_kernel(sigma, 0.0, 0.0)
    assert kernel.dtype == np.float32 and kernel.sum() == pytest.approx(1.0, abs=1e-5)
    mx, my, vx, vy = kernel_moments(kernel, 0.0)
    assert abs(mx) < 1e-6 and abs(my) < 1e-6
    # Relative tolerance 1%: the kernel support is ±(ceil(3σ)+1) px, which drops <= 0.8% of
    # a Gaussian's variance, and a sampled Gaussian's variance is exact to < 0.1% for σ >= 0.8.
    assert vx == pytest.approx(sigma**2, rel=0.01)
    assert vy == pytest.approx(sigma**2, rel=0.01)


def test_psf_kernel_none_when_no_blur():
    assert psf_kernel(0.0, 0.0, 30.0) is None


@pytest.mark.parametrize("length", [0.2, 1.0, 4.0, 12.0])
@pytest.mark.parametrize("angle", [0.0, 30.0, 90.0, 135.0])
def test_psf_kernel_motion_line_moments(length, angle):
    """A line of length L at angle φ: variance L²/12 along φ, ~0 across, centred."""
    kernel = psf_kernel(0.0, length, angle)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
    mx, my, along, across = kernel_moments(kernel, angle)
    # Centred to float precision: an off-centre kernel would shift every frame.
    assert abs(mx) < 1e-5 and abs(my) < 1e-5
    # Tolerance 1/4 HR px² on each: the points of the line are splatted bilinearly, which adds
    # w(1-w) <= 1/4 px² per axis for a point at sub-pixel offset w (0 on grid-aligned axes).
    assert along == pytest.approx(length**2 / 12, abs=0.25)
    assert across <= 0.25
