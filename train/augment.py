"""From a raw sample to the network's input and targets (the released MobRecon pipeline).

1. Bounding box of the silhouette (or of the projected mesh when there is no mask), squared
   about its centre.
2. Crop side = bbox side x (scale +/- jitter); centre shifted by up to
   shift x side_bbox x (scale - 1) / 2 per axis; with probability p an in-plane rotation in
   +/- rotation_deg.  Together: one similarity ``A`` (original px -> crop px).
3. The crop is resampled through ``A``; the camera rotates with it (``Rz``) and the crop's
   intrinsics are ``K_crop = A K Rz^T`` (see :mod:`train.geometry`), so the rotated 3D labels
   project exactly onto the transformed 2D labels.
4. Colour jitter (brightness, contrast, saturation, hue) on the crop; RGB/255, then
   (x - 0.5) / 0.5.
5. Targets: joints and vertices rotated by ``Rz``, made root-relative (wrist, joint 0) and
   divided by 0.2 m; uv = crop pixels / crop size.

Two independent draws of steps 2-4 from one image give the two views of the consistency
losses: ``T12 = A2 A1^-1`` (crop 1 px -> crop 2 px) and ``R12 = Rz2 Rz1^T``.

Optional image-statistics and sensor effects (all off by default; docs/TRAINING.md
"Image statistics and sensor effects"), applied to each view's crop after the colour jitter,
in this order: amplitude-spectrum mixing with another sample's crop (Fourier amplitude mixed,
this image's phase kept: `amplitude_mix`), lens blur (Gaussian), sensor noise (Poisson shot
noise and Gaussian read noise), white-balance gains, JPEG re-compression.  They change the
image only (labels untouched) and draw from their own generator (`effects_rng`), so the crop
and colour draws - and every view with the effects off - stay as they were.

Every draw comes from a ``numpy.random.Generator`` the caller seeds per sample, so a sample's
augmentation does not depend on worker count, process rank or resumption.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from datagen.geometry.projection import project

from .geometry import apply_affine, bbox_from_mask, bbox_from_points, crop_affine, crop_intrinsics, rot_z, warp_crop

__all__ = ["AugmentParams", "ROOT_SCALE_M", "crop_box", "draw_view", "make_view", "colour_jitter", "normalise",
           "denormalise", "amplitude_mix", "sensor_effects", "eval_crop"]

ROOT_SCALE_M = 0.2  # targets are root-relative and divided by this (MobRecon convention)


@dataclass
class AugmentParams:
    scale: float = 1.3
    scale_jitter: float = 0.2
    rotation_deg: float = 90.0
    rotation_prob: float = 0.6
    shift: float = 1.0
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.05
    # image statistics and sensor effects (ours; 0 = off)
    amplitude_mix_prob: float = 0.0
    amplitude_mix_ratio: float = 0.5
    blur_prob: float = 0.0
    blur_sigma_px: float = 1.5
    noise_prob: float = 0.0
    noise_sigma: float = 6.0
    noise_photons: float = 0.0
    white_balance: float = 0.0
    jpeg_prob: float = 0.0
    jpeg_quality: tuple = (40, 95)

    @classmethod
    def from_config(cls, aug: dict) -> AugmentParams:
        """From the config's [augment] table; keys it lacks (a checkpoint's config from before
        they existed) take their defaults, which are off."""
        d = cls()
        return cls(**{k: (tuple(aug[k]) if isinstance(getattr(d, k), tuple) else aug[k]) if k in aug
                      else getattr(d, k) for k in cls.__dataclass_fields__})

    @property
    def effects(self) -> bool:
        """Whether any image-statistics / sensor effect is on."""
        return any(x > 0 for x in (self.amplitude_mix_prob, self.blur_prob, self.noise_prob, self.jpeg_prob)) or \
            self.white_balance > 0


def crop_box(sample: dict):
    """Square box (centre (2,), side) around the hand: the silhouette if any, else the projected mesh."""
    box = None
    if sample.get("mask") is not None:
        box = bbox_from_mask(sample["mask"])
    if box is None:
        box = bbox_from_points(project(sample["verts"], sample["K"]))
    x0, y0, x1, y1 = box
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2]), max(x1 - x0, y1 - y0, 1.0)


def draw_view(rng: np.random.Generator | None, p: AugmentParams, centre, side):
    """(centre, crop side, angle, jitter factors or None); rng None = evaluation (no randomness)."""
    if rng is None:
        return np.asarray(centre, np.float64), side * p.scale, 0.0, None
    s = p.scale + rng.uniform(-p.scale_jitter, p.scale_jitter)
    s = max(s, 1e-3)
    max_shift = p.shift * side * max(s - 1.0, 0.0) / 2.0
    c = np.asarray(centre, np.float64) + rng.uniform(-max_shift, max_shift, size=2)
    angle = np.radians(rng.uniform(-p.rotation_deg, p.rotation_deg)) if rng.random() < p.rotation_prob else 0.0
    jitter = (rng.uniform(1 - p.brightness, 1 + p.brightness), rng.uniform(1 - p.contrast, 1 + p.contrast),
              rng.uniform(1 - p.saturation, 1 + p.saturation), rng.uniform(-p.hue, p.hue), rng.permutation(4))
    return c, side * s, angle, jitter


def colour_jitter(img: np.ndarray, jitter) -> np.ndarray:
    """uint8 RGB -> float32 RGB in [0, 255] after brightness, contrast, saturation, hue (in random order)."""
    b, c, s, h, order = jitter
    x = img.astype(np.float32)
    for op in order:
        if op == 0:
            x = x * b
        elif op == 1:
            gray = (x @ np.array([0.299, 0.587, 0.114], np.float32)).mean()
            x = (x - gray) * c + gray
        elif op == 2:
            gray = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
            x = (x - gray) * s + gray
        elif op == 3 and h != 0.0:
            hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)  # H in degrees
            hsv[..., 0] = (hsv[..., 0] + 360.0 * h) % 360.0
            x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
        x = np.clip(x, 0, 255)
    return x


def amplitude_mix(img: np.ndarray, other: np.ndarray, ratio: float) -> np.ndarray:
    """Fourier amplitude of `img` mixed with `other`'s, `img`'s phase kept, per channel:
    F = ((1 - ratio) |F_img| + ratio |F_other|) exp(i arg F_img).  (H, W, C) arrays of one
    size; float64 result, not clipped (ratio 0 gives `img` back to rounding)."""
    a = np.fft.fft2(np.asarray(img, np.float64), axes=(0, 1))
    b = np.fft.fft2(np.asarray(other, np.float64), axes=(0, 1))
    amp = (1.0 - ratio) * np.abs(a) + ratio * np.abs(b)
    return np.real(np.fft.ifft2(amp * np.exp(1j * np.angle(a)), axes=(0, 1)))


def sensor_effects(img: np.ndarray, rng: np.random.Generator, p: AugmentParams,
                   partner: np.ndarray | None = None) -> np.ndarray:
    """The optional effects on one crop (float RGB in [0, 255], (H, W, 3)) -> float32 in [0, 255].

    Each effect draws whether it applies and its strength from `rng`, always in the same order
    and the same number of draws, whatever is on: amplitude mix with `partner` (another
    sample's crop, same size; ratio uniform in [0, amplitude_mix_ratio]), Gaussian blur (sigma
    uniform in [0.3, blur_sigma_px] px), noise (shot noise with noise_photons photons at white
    when > 0, then Gaussian of sigma uniform in [0, noise_sigma]), white-balance gains (per
    channel in 1 +/- white_balance, luminance kept), JPEG at a quality uniform in jpeg_quality.
    """
    x = np.asarray(img, np.float32)
    u = rng.random(12)  # fixed draw count: switching one effect on leaves the others' draws alone
    if partner is not None and u[0] < p.amplitude_mix_prob:
        x = np.clip(amplitude_mix(x, partner, u[1] * p.amplitude_mix_ratio), 0, 255).astype(np.float32)
    if u[2] < p.blur_prob:
        sigma = 0.3 + u[3] * max(p.blur_sigma_px - 0.3, 0.0)
        x = cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    noise_seed = int(u[5] * 2**31)
    if u[4] < p.noise_prob:
        nrng = np.random.default_rng(noise_seed)
        if p.noise_photons > 0:
            x = nrng.poisson(np.clip(x, 0, 255) / 255.0 * p.noise_photons).astype(np.float32) * (
                255.0 / p.noise_photons)
        x = x + nrng.normal(0.0, u[6] * p.noise_sigma, size=x.shape).astype(np.float32)
        x = np.clip(x, 0, 255)
    if p.white_balance > 0:
        gains = 1.0 + (2.0 * u[7:10] - 1.0) * p.white_balance
        gains = gains / float(gains @ np.array([0.2126, 0.7152, 0.0722]))
        x = np.clip(x * gains.astype(np.float32), 0, 255)
    if u[10] < p.jpeg_prob:
        q0, q1 = p.jpeg_quality
        quality = int(round(q0 + (q1 - q0) * u[11]))
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.clip(x + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            x = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32)
    return np.asarray(x, np.float32)


def eval_crop(sample: dict, p: AugmentParams, out: int) -> np.ndarray:
    """The deterministic (evaluation) crop of a sample's image: the partner of amplitude mixing."""
    centre, side = crop_box(sample)
    c, crop_side, angle, _ = draw_view(None, p, centre, side)
    return warp_crop(sample["image"], crop_affine(c, crop_side, angle, out), out)


def normalise(img: np.ndarray) -> np.ndarray:
    """HxWx3 RGB in [0, 255] -> 3xHxW float32 in [-1, 1]."""
    return ((np.asarray(img, np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1).copy()


def denormalise(x) -> np.ndarray:
    """3xHxW in [-1, 1] -> HxWx3 uint8."""
    x = np.asarray(x).transpose(1, 2, 0)
    return np.clip((x * 0.5 + 0.5) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def make_view(sample: dict, rng: np.random.Generator | None, p: AugmentParams, out: int,
              effects_rng: np.random.Generator | None = None, partner: np.ndarray | None = None) -> dict:
    """One (augmented) view of a raw sample as float32/numpy arrays; with `effects_rng` the
    optional image effects (`sensor_effects`, `partner` for amplitude mixing) follow the jitter."""
    centre, side = crop_box(sample)
    c, crop_side, angle, jitter = draw_view(rng, p, centre, side)
    A = crop_affine(c, crop_side, angle, out)
    Rz = rot_z(angle)
    K_crop = crop_intrinsics(A, sample["K"], Rz)
    img = warp_crop(sample["image"], A, out)
    img = colour_jitter(img, jitter) if jitter is not None else img
    if effects_rng is not None:
        img = sensor_effects(img, effects_rng, p, partner)
    joints = sample["joints"] @ Rz.T
    verts = sample["verts"] @ Rz.T
    root = joints[0].copy()
    uv_px = apply_affine(A, project(sample["joints"], sample["K"]))
    return {
        "img": normalise(img),
        "uv": (uv_px / out).astype(np.float32),
        "joints": ((joints - root) / ROOT_SCALE_M).astype(np.float32),
        "verts": ((verts - root) / ROOT_SCALE_M).astype(np.float32),
        "root": root.astype(np.float32),
        "K_crop": K_crop.astype(np.float32),
        "A": A.astype(np.float32),
        "Rz": Rz.astype(np.float32),
    }
