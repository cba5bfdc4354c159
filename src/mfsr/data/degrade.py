"""The degradation model: one clean face image -> N low-quality frames + the HR target.

All spatial parameters are in **LR pixels** so one preset works at x2, x4 and x8; they are
multiplied by the scale factor to act on the HR canvas. Maths (see ``docs/data.md``):

For frame ``k`` of ``N`` (reference ``r = N // 2``):

1. *Motion*: a similarity transform of the scene about the crop centre, ``x_k = z_k R(θ_k)
   (x - c) f + o + s·t_k`` with zoom ``z_k ~ U[1-Z, 1+Z]``, angle ``θ_k ~ U[-Θ, Θ]``, shift
   ``t_k ~ U[-T, T]^2`` (LR px); the reference frame has ``z=1, θ=0, t=0``. ``f`` maps the
   source crop of side ``L`` to the HR size ``S`` (``f = S/L``). Resampled bicubically.
2. *Optical blur*: PSF = Gaussian of std ``σ·s`` HR px (``σ`` drawn once per sequence)
   convolved with a straight motion-blur line of length ``ℓ_k·s`` at angle ``φ_k`` (per frame).
3. *Sampling*: box average over ``s x s`` HR pixels (an ideal sensor integrating its area).
4. *Sensor noise*: ``y = Poisson(P·x)/P + N(0, (g/255)^2)`` on ``x`` in [0, 1], with photon
   count ``P`` at white and Gaussian std ``g`` (0-255 units) drawn once per sequence; then
   clipped and rounded to 8 bits.
5. *Compression*: baseline JPEG at quality ``q`` (drawn once per sequence), 4:2:0 chroma.

The HR target is the reference frame after step 1 (no blur, noise or compression).
Randomness comes only from the ``numpy.random.Generator`` passed in, so equal seeds give
byte-identical frames.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from mfsr.config import load_dataclass, resolve_preset, to_dict
from mfsr.errors import MfsrError

Range = tuple[float, float]
BORDERS = {"mirror": cv2.BORDER_REFLECT_101, "black": cv2.BORDER_CONSTANT}


@dataclass(frozen=True)
class MotionConfig:
    max_shift: float = 1.0  # LR px, per axis
    max_rotation: float = 2.0  # degrees
    max_zoom: float = 0.02  # relative


@dataclass(frozen=True)
class BlurConfig:
    sigma: Range = (0.3, 0.6)  # Gaussian PSF std, LR px (per sequence)
    motion_length: Range = (0.0, 0.5)  # motion-blur line length, LR px (per frame)


@dataclass(frozen=True)
class NoiseConfig:
    gaussian_sigma: Range = (0.0, 3.0)  # 0-255 units (per sequence)
    poisson_peak: Range | None = (500.0, 5000.0)  # photons at white (per sequence); null: off


@dataclass(frozen=True)
class JpegConfig:
    quality: tuple[int, int] | None = (60, 95)  # inclusive range; null: no compression


@dataclass(frozen=True)
class DegradationConfig:
    """Parameter ranges of the degradation model; each range is sampled uniformly."""

    name: str = "custom"
    motion: MotionConfig = field(default_factory=MotionConfig)
    blur: BlurConfig = field(default_factory=BlurConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    jpeg: JpegConfig = field(default_factory=JpegConfig)

    def __post_init__(self) -> None:
        checks = [
            ("motion.max_shift", self.motion.max_shift),
            ("motion.max_rotation", self.motion.max_rotation),
            ("motion.max_zoom", self.motion.max_zoom),
            *(("blur.sigma", v) for v in self.blur.sigma),
            *(("blur.motion_length", v) for v in self.blur.motion_length),
            *(("noise.gaussian_sigma", v) for v in self.noise.gaussian_sigma),
            *(("noise.poisson_peak", v) for v in self.noise.poisson_peak or ()),
        ]
        for name, value in checks:
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        ranges = {
            "blur.sigma": self.blur.sigma,
            "blur.motion_length": self.blur.motion_length,
            "noise.gaussian_sigma": self.noise.gaussian_sigma,
        }
        if self.noise.poisson_peak is not None:
            ranges["noise.poisson_peak"] = self.noise.poisson_peak
            if min(self.noise.poisson_peak) <= 0:
                raise ValueError("noise.poisson_peak must be > 0 (or null to disable)")
        if self.jpeg.quality is not None:
            ranges["jpeg.quality"] = self.jpeg.quality
            if not 1 <= min(self.jpeg.quality) <= max(self.jpeg.quality) <= 100:
                raise ValueError("jpeg.quality must lie in 1..100 (or null to disable)")
        for name, (low, high) in ranges.items():
            if low > high:
                raise ValueError(f"{name}: range [{low}, {high}] has low > high")
        if self.motion.max_zoom >= 0.5:
            raise ValueError("motion.max_zoom must be < 0.5")


def load_degradation(name_or_path: str) -> DegradationConfig:
    """Load a degradation preset by name (``default``, ``mild``, ``clean``, ``severe``) or path."""
    path = resolve_preset(name_or_path, "degradation")
    cfg = load_dataclass(DegradationConfig, path)
    if cfg.name == "custom" and path.parent.name == "degradation":
        cfg = DegradationConfig(**{**cfg.__dict__, "name": path.stem})
    return cfg


@dataclass(frozen=True)
class FrameParams:
    """What was drawn for one frame (LR px, degrees)."""

    shift: tuple[float, float]  # (dx, dy), LR px; content moves by this much
    rotation: float  # degrees, counter-clockwise on screen
    zoom: float
    motion_length: float  # LR px
    motion_angle: float  # degrees


@dataclass(frozen=True)
class SequenceParams:
    """Everything drawn for one sequence; ``to_dict`` goes into the sample's meta.json."""

    reference_index: int
    blur_sigma: float  # LR px
    gaussian_sigma: float  # 0-255
    poisson_peak: float | None
    jpeg_quality: int | None
    frames: list[FrameParams]

    def to_dict(self) -> dict:
        return to_dict(self)


def _uniform(rng: np.random.Generator, bounds: Range) -> float:
    low, high = bounds
    return float(low) if low == high else float(rng.uniform(low, high))


def sample_params(
    cfg: DegradationConfig, n_frames: int, rng: np.random.Generator, motion: bool = True
) -> SequenceParams:
    """Draw the parameters of one sequence. ``motion=False`` keeps every frame unmoved
    (for real video, whose frames already carry real motion)."""
    if n_frames < 1:
        raise MfsrError(f"frame count must be >= 1, got {n_frames}")
    ref = n_frames // 2
    # One child stream per component: the same seed gives the same motion whatever the blur,
    # noise or JPEG settings (and vice versa), so ablations compare like with like.
    motion_rng, blur_rng, noise_rng, jpeg_rng = rng.spawn(4)
    blur_sigma = _uniform(blur_rng, cfg.blur.sigma)
    gaussian_sigma = _uniform(noise_rng, cfg.noise.gaussian_sigma)
    peak = None
    if cfg.noise.poisson_peak is not None:
        peak = _uniform(noise_rng, cfg.noise.poisson_peak)
    quality = None
    if cfg.jpeg.quality is not None:
        quality = int(jpeg_rng.integers(cfg.jpeg.quality[0], cfg.jpeg.quality[1] + 1))
    frames = []
    m = cfg.motion
    for k in range(n_frames):
        shift, rotation, zoom = (0.0, 0.0), 0.0, 1.0
        if motion and k != ref:
            dx, dy = motion_rng.uniform(-m.max_shift, m.max_shift, size=2)
            shift = (float(dx), float(dy))
            rotation = float(motion_rng.uniform(-m.max_rotation, m.max_rotation))
            zoom = float(motion_rng.uniform(1 - m.max_zoom, 1 + m.max_zoom))
        length = _uniform(blur_rng, cfg.blur.motion_length)
        angle = float(blur_rng.uniform(0.0, 180.0))
        frames.append(FrameParams(shift, rotation, zoom, length, angle))
    return SequenceParams(ref, blur_sigma, gaussian_sigma, peak, quality, frames)


@dataclass(frozen=True)
class Crop:
    """A square region of a source image: centre (x, y) in pixel-centre coordinates and side."""

    cx: float
    cy: float
    side: float

    @staticmethod
    def centred(width: int, height: int, side: float | None = None) -> Crop:
        """The centred square of ``side`` px (default: the largest that fits)."""
        side = float(min(width, height) if side is None else side)
        return Crop((width - 1) / 2.0, (height - 1) / 2.0, side)


def shrink_source(source: np.ndarray, crop: Crop, hr_size: int) -> tuple[np.ndarray, Crop]:
    """``source`` shrunk with area averaging when ``crop`` must shrink below 0.8x to fill
    ``hr_size`` (so the bicubic warp does not alias), and the crop in the shrunk image's px;
    otherwise both unchanged. Idempotent: views of one photo share one shrink."""
    f = hr_size / crop.side
    if f >= 0.8:
        return source, crop
    h, w = source.shape[:2]
    new_w, new_h = max(1, round(w * f)), max(1, round(h * f))
    small = cv2.resize(source, (new_w, new_h), interpolation=cv2.INTER_AREA)
    fx, fy = new_w / w, new_h / h
    cx, cy = (crop.cx + 0.5) * fx - 0.5, (crop.cy + 0.5) * fy - 0.5
    return small, Crop(cx, cy, crop.side * fx)


def render_view(
    source: np.ndarray,
    crop: Crop,
    hr_size: int,
    scale: int,
    frame: FrameParams | None = None,
    border: str = "mirror",
) -> np.ndarray:
    """Warp ``source`` (uint8 HxWx3) so ``crop`` fills an ``hr_size`` square, moved by ``frame``.

    Shifts in ``frame`` are LR px and are multiplied by ``scale``. Parts outside the source are
    mirrored (``border="mirror"``) or black (``"black"``, as in LFW's own out-of-image areas).
    """
    if border not in BORDERS:
        raise MfsrError(f"border must be one of {', '.join(BORDERS)}, got {border!r}")
    source, crop = shrink_source(source, crop, hr_size)
    return cv2.warpAffine(
        source,
        view_matrix(crop, hr_size, scale, frame),
        (hr_size, hr_size),
        flags=cv2.INTER_CUBIC,
        borderMode=BORDERS[border],
    )


def view_matrix(crop: Crop, hr_size: int, scale: int, frame: FrameParams | None) -> np.ndarray:
    """The 2x3 float64 affine map from source px to HR-canvas px of one view (``warpAffine``'s
    matrix; pixel centres at integers). ``crop`` is in the (already shrunk) source's px."""
    f = hr_size / crop.side
    cx, cy = crop.cx, crop.cy
    zoom, theta, (dx, dy) = (1.0, 0.0, (0.0, 0.0))
    if frame is not None:
        zoom, theta, (dx, dy) = frame.zoom, math.radians(frame.rotation), frame.shift
    # Counter-clockwise on screen (y axis points down) is a negative angle in array coordinates.
    cos, sin = math.cos(-theta) * zoom * f, math.sin(-theta) * zoom * f
    centre = (hr_size - 1) / 2.0
    return np.array(
        [
            [cos, -sin, centre + dx * scale - (cos * cx - sin * cy)],
            [sin, cos, centre + dy * scale - (sin * cx + cos * cy)],
        ],
        dtype=np.float64,
    )


def psf_kernel(sigma: float, length: float = 0.0, angle: float = 0.0) -> np.ndarray | None:
    """The blur kernel in HR px: Gaussian (std ``sigma``) along a line of ``length`` at
    ``angle`` degrees. Returns ``None`` for no blur. Sums to 1."""
    if sigma <= 0 and length <= 0:
        return None
    radius = int(math.ceil(3.0 * sigma + length / 2.0)) + 1
    grid = np.arange(-radius, radius + 1, dtype=np.float64)
    xx, yy = np.meshgrid(grid, grid)
    n_points = max(1, int(math.ceil(length * 4)))
    offsets = ((np.arange(n_points) + 0.5) / n_points - 0.5) * length  # segment midpoints
    a = math.radians(angle)
    kernel = np.zeros_like(xx)
    for t in offsets:
        px, py = t * math.cos(a), -t * math.sin(a)
        if sigma >= 0.25:
            kernel += np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2.0 * sigma**2))
        else:  # too narrow to sample a Gaussian: splat the point bilinearly
            ix, iy = math.floor(px), math.floor(py)
            wx, wy = px - ix, py - iy
            for oy, wgt_y in ((0, 1 - wy), (1, wy)):
                for ox, wgt_x in ((0, 1 - wx), (1, wx)):
                    kernel[iy + oy + radius, ix + ox + radius] += wgt_x * wgt_y
    return (kernel / kernel.sum()).astype(np.float32)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Compress ``uint8 (h, w, 3)`` with baseline JPEG at ``quality`` and decode it again."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), dtype=np.uint8)


def degrade_view(
    view: np.ndarray,
    scale: int,
    params: SequenceParams,
    frame: FrameParams,
    rng: np.random.Generator,
) -> np.ndarray:
    """Steps 2-5 on one HR-size view (uint8 SxSx3) -> LR frame uint8 (S/s x S/s x 3)."""
    size = view.shape[0]
    if view.shape[0] % scale or view.shape[1] % scale:
        raise MfsrError(f"HR size {view.shape[1]}x{size} is not divisible by the scale {scale}")
    x = view.astype(np.float32) / 255.0
    sigma_hr = params.blur_sigma * scale
    length_hr = frame.motion_length * scale
    # Gaussian and motion line are applied one after the other (convolution is associative):
    # the separable Gaussian plus a small line kernel is ~10x faster than their joint kernel.
    if 0 < sigma_hr < 0.8:
        # OpenCV's sampled Gaussian is too narrow below ~0.8 px (variance 0.08 instead of 0.16
        # at 0.4 px); the 3-tap kernel [a, 1-2a, a] with a = sigma^2/2 has exactly sigma^2.
        a = sigma_hr**2 / 2.0
        taps = np.array([a, 1.0 - 2.0 * a, a], dtype=np.float32)
        x = cv2.sepFilter2D(x, -1, taps, taps, borderType=cv2.BORDER_REFLECT_101)
    elif sigma_hr > 0:
        x = cv2.GaussianBlur(x, (0, 0), sigma_hr, borderType=cv2.BORDER_REFLECT_101)
    line = psf_kernel(0.0, length_hr, frame.motion_angle)
    if line is not None and line.shape[0] > 1:
        x = cv2.filter2D(x, -1, line, borderType=cv2.BORDER_REFLECT_101)
    lr_w, lr_h = view.shape[1] // scale, view.shape[0] // scale
    if scale > 1:
        x = cv2.resize(x, (lr_w, lr_h), interpolation=cv2.INTER_AREA)
    y = x.astype(np.float64)
    if params.poisson_peak is not None:
        y = rng.poisson(np.clip(y, 0.0, None) * params.poisson_peak) / params.poisson_peak
    if params.gaussian_sigma > 0:
        y = y + rng.normal(0.0, params.gaussian_sigma / 255.0, size=y.shape)
    lr = np.clip(np.round(y * 255.0), 0, 255).astype(np.uint8)
    if params.jpeg_quality is not None:
        lr = jpeg_roundtrip(lr, params.jpeg_quality)
    return lr


def degrade_views(
    views: list[np.ndarray], scale: int, params: SequenceParams, rng: np.random.Generator
) -> list[np.ndarray]:
    """Degrade N HR-size views (already moved) into N LR frames."""
    return [degrade_view(v, scale, params, f, rng) for v, f in zip(views, params.frames)]


def synthesize_sequence(
    source: np.ndarray,
    crop: Crop,
    hr_size: int,
    scale: int,
    n_frames: int,
    cfg: DegradationConfig,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], np.ndarray, SequenceParams]:
    """One photo -> (N LR frames, HR target, drawn parameters). See the module docstring."""
    if hr_size % scale:
        raise MfsrError(f"HR size {hr_size} is not divisible by the scale {scale}")
    params = sample_params(cfg, n_frames, rng)
    source, crop = shrink_source(source, crop, hr_size)  # once, not once per view
    views = [render_view(source, crop, hr_size, scale, f) for f in params.frames]
    hr = views[params.reference_index]
    return degrade_views(views, scale, params, rng), hr, params
