"""Skin appearance: a documented range of skin tones and per-item procedural variation.

Tone model (two chromophores, linear Rec.709 albedo per channel c):

    albedo_c = A0_c * exp(-(m * EM_c + h * EH_c)),    m = melanin ** MELANIN_GAMMA,  h = redness

- `melanin` in [0, 1]: 0 = very light (Fitzpatrick I, sRGB ~ (221, 175, 158)), 1 = very dark
  (Fitzpatrick VI, sRGB ~ (63, 41, 31)); the exponent spreads the tones roughly evenly in
  perceived lightness when `melanin` is drawn uniformly.  Eumelanin absorbs more towards blue
  (EM rises from R to B).
- `redness` in [0, 1]: blood (oxy-haemoglobin) absorbs green and blue, so more of it makes the
  skin ruddier; 0 = sallow/olive, 1 = ruddy.
- Palms are lighter than the back of the hand, markedly so for dark skin: the palmar side uses
  `PALM_MELANIN` x melanin and a little more redness.  The renderer blends the two colours
  with a per-vertex `palmar` weight computed once from the rest-pose normals.
- Subsurface scattering (Principled BSDF, random-walk skin): radius per channel
  SSS_RADIUS x `subsurface_scale_m`; red light travels furthest in skin.

Variation per item (so no two items share a texture; all drawn from the item's seed):
`blotch` (low-frequency melanin/redness mottling), `pores` (fine bump), `roughness_variation`,
`knuckles` (darker, redder skin over the dorsal finger joints - per-vertex weight from the rest
pose), `freckles` (small dark spots, mostly on light skin), `nail_tint` (nail-bed colour of
the fingernails, which are a glossier, paler region on the back of each distal phalanx,
found geometrically - see `nail_weights`), and `pattern_offset` (shifts every noise field, so
the patterns differ between items).

Only numpy: this module runs inside Blender's own Python too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from datagen.geometry.normals import vertex_normals

A0 = np.array([0.72, 0.50, 0.38])  # melanin-free, bloodless albedo
EM = np.array([2.67, 2.96, 3.19])  # melanin extinction (at m = 1)
EH = np.array([0.0, 0.32, 0.22])  # blood extinction (at h = 1)
MELANIN_GAMMA = 1.3
PALM_MELANIN = 0.6  # palms carry 60% of the dorsal melanin (before the gamma)
PALM_REDNESS = 0.15  # and a little more blood
SSS_RADIUS = (1.0, 0.45, 0.25)  # per channel, times subsurface_scale_m

# Ranges of the per-item variation (not in the config: they describe texture, not tone).
VARIATION_RANGES = {
    "blotch": (0.0, 0.2),  # relative melanin modulation amplitude
    "blotch_scale_per_m": (40.0, 140.0),  # noise frequency (1/m): 7..25 mm features
    "redness_variation": (0.0, 0.5),
    "pores": (0.0, 1.0),  # bump strength of the fine noise
    "pore_scale_per_m": (1500.0, 3500.0),  # 0.3..0.7 mm features
    "roughness_variation": (0.0, 0.15),
    "knuckles": (0.0, 0.6),
    "freckles": (0.0, 1.0),  # scaled down by melanin: freckles show on light skin
    "nail_tint": (0.0, 1.0),  # 0 = pale nail bed, 1 = pink
    "pattern_offset": (0.0, 1000.0),
}


@dataclass(frozen=True)
class SkinParams:
    melanin: float
    redness: float
    roughness: float
    subsurface_scale_m: float
    blotch: float
    blotch_scale_per_m: float
    redness_variation: float
    pores: float
    pore_scale_per_m: float
    roughness_variation: float
    knuckles: float
    freckles: float
    nail_tint: float
    pattern_offset: float

    def record(self) -> dict:
        d = {k: float(v) for k, v in asdict(self).items()}
        dorsal, palmar = self.colours()
        d["albedo_dorsal_linear"] = [float(x) for x in dorsal]
        d["albedo_palmar_linear"] = [float(x) for x in palmar]
        d["subsurface_radius_m"] = [float(x) for x in self.subsurface_radius()]
        d["nail_albedo_linear"] = [float(x) for x in self.nail_colour()]
        d["model"] = "datagen.skin two-chromophore v1"
        return d

    def colours(self) -> tuple[np.ndarray, np.ndarray]:
        """(dorsal, palmar) linear Rec.709 albedo."""
        return (tone(self.melanin, self.redness),
                tone(self.melanin * PALM_MELANIN, min(1.0, self.redness + PALM_REDNESS)))

    def subsurface_radius(self) -> np.ndarray:
        return np.asarray(SSS_RADIUS) * self.subsurface_scale_m

    def nail_colour(self) -> np.ndarray:
        """Linear albedo of the nail plate: the nail bed's pink (more with `nail_tint`) seen
        through a pale, slightly translucent plate; darker skin has a little darker nail bed."""
        bed = tone(self.melanin * 0.3, min(1.0, self.redness * 0.5 + 0.4 + 0.6 * self.nail_tint))
        return 0.55 * bed + 0.45 * np.array([0.80, 0.72, 0.68])

    @property
    def freckle_amount(self) -> float:
        return self.freckles * (1.0 - self.melanin) ** 2


def tone(melanin: float, redness: float) -> np.ndarray:
    """Linear albedo (3,) of skin with the given melanin and redness in [0, 1]."""
    m = float(np.clip(melanin, 0.0, 1.0)) ** MELANIN_GAMMA
    h = float(np.clip(redness, 0.0, 1.0))
    return A0 * np.exp(-(m * EM + h * EH))


def linear_to_srgb8(rgb) -> np.ndarray:
    x = np.clip(np.asarray(rgb, dtype=np.float64), 0.0, 1.0)
    s = np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)
    return np.round(s * 255).astype(np.uint8)


def draw_skin(skin_cfg, rng: np.random.Generator) -> SkinParams:
    """Draw one item's skin from the config ranges ([skin]) and the variation ranges.

    The draw order is fixed (the tone first, then the variation in VARIATION_RANGES order), so
    an item's skin depends only on its seed.
    """
    def u(lo_hi):
        lo, hi = lo_hi
        return float(lo + (hi - lo) * rng.random())

    tone_part = dict(melanin=u(skin_cfg.melanin), redness=u(skin_cfg.redness),
                     roughness=u(skin_cfg.roughness), subsurface_scale_m=u(skin_cfg.subsurface_scale_m))
    variation = {k: u(r) for k, r in VARIATION_RANGES.items()}
    return SkinParams(**tone_part, **variation)


def _smoothstep(x, lo, hi):
    t = np.clip((np.asarray(x) - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def vertex_weights(rest_vertices: np.ndarray, faces: np.ndarray, finger_joints: np.ndarray) -> dict[str, np.ndarray]:
    """Per-vertex weights in [0, 1] the skin shader reads, from the rest pose (hand frame).

    - `palmar`: 1 on the palm side (normal towards +z), 0 on the back, smooth in between.
    - `knuckles`: 1 over the dorsal side of the finger joints (`finger_joints`, (J, 3): MCP,
      PIP, DIP and thumb MCP/IP centres), falling off over ~6 mm.
    They are computed once and move with the skin in every pose.
    """
    n = vertex_normals(rest_vertices, faces)
    palmar = _smoothstep(n[:, 2], -0.25, 0.35)
    d = np.linalg.norm(rest_vertices[:, None, :] - finger_joints[None, :, :], axis=2)
    near = np.exp(-((d.min(axis=1) / 0.009) ** 2))
    knuckles = near * _smoothstep(-n[:, 2], 0.1, 0.6)
    top = np.percentile(knuckles, 99.5)
    knuckles = np.clip(knuckles / top, 0.0, 1.0) if top > 0 else knuckles
    return {"palmar": palmar.astype(np.float32), "knuckles": knuckles.astype(np.float32)}


def nail_weights(rest_vertices: np.ndarray, part: np.ndarray, distal_joints: np.ndarray,
                 tips: np.ndarray) -> np.ndarray:
    """Per-vertex fingernail weight in [0, 1] from the rest pose.

    For finger f (part label f + 1), the distal phalanx runs from its distal joint centre
    (DIP, thumb IP) to the fingertip keypoint.  Its dorsal direction is the short axis of the
    phalanx's cross-section (a nail makes it wider than deep), signed towards the back of the
    hand (-z) - for the thumb, which is pronated, towards its radial-dorsal side (+x, -z).  A
    vertex is on the nail when it lies between 40% and ~100% of the phalanx's length and
    within ~50 degrees of the dorsal direction around the axis.
    """
    w = np.zeros(len(rest_vertices))
    for f in range(5):
        sel = np.nonzero(part == f + 1)[0]
        dip, tip = distal_joints[f], tips[f]
        a = tip - dip
        length = np.linalg.norm(a)
        ax = a / length
        x = rest_vertices[sel] - dip
        s = x @ ax / length
        r = x - np.outer(x @ ax, ax)
        ring = (s > 0.3) & (s < 0.7)
        cov = np.cov(r[ring].T)
        minor = np.linalg.eigh(cov)[1][:, 1]  # [:, 0] is the axis itself (r is orthogonal to it)
        ref = np.array([1.0, 0.0, -1.0]) if f == 0 else np.array([0.0, 0.0, -1.0])
        dorsal = minor if minor @ ref > 0 else -minor
        cos = (r @ dorsal) / (np.linalg.norm(r, axis=1) + 1e-12)
        along = _smoothstep(s, 0.35, 0.5) * (1.0 - _smoothstep(s, 0.98, 1.06))
        w[sel] = along * _smoothstep(cos, 0.5, 0.72)
    return w.astype(np.float32)
