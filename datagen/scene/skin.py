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
the patterns differ between items), and the crease parameters `creases`, `crease_width_m`,
`wrinkles` (drawn last; used when the config's `[skin] creases` is on - palm lines, finger
flexion creases and dorsal knuckle wrinkles from `crease_fields`; off by default because the
realism benchmark measured no gain: docs/REALISM.md "Skin and exposure").

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
    # Creases (drawn after the rest, so adding them left every earlier draw unchanged):
    "creases": (0.5, 1.0),  # intensity of palmar flexion creases and palm lines
    "crease_width_m": (0.0004, 0.0007),  # line half-width (1/e) in metres
    "wrinkles": (0.3, 0.8),  # intensity of the dorsal knuckle wrinkles
}
# Names of the per-vertex crease fields (crease_fields) the shader reads.
CREASE_FIELDS = ("crease_s", "crease_h", "crease_w", "wrinkle_w")
WRINKLE_PERIOD_M = 0.0016  # spacing of the dorsal knuckle wrinkles
CREASE_MELANIN = 0.35  # crease colour: palmar melanin + this, redness + CREASE_REDNESS
CREASE_REDNESS = 0.3


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
    creases: float = 0.0
    crease_width_m: float = 0.0005
    wrinkles: float = 0.0

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


REC709_LUMA = np.array([0.2126, 0.7152, 0.0722])


def tone_exposure_factor(melanin: float, redness: float, share: float) -> float:
    """Factor (>= 1) on the skin exposure target for a skin of this melanin ([hdri] exposure_tone
    = `share` in [0, 1]): the lightest tone's dorsal albedo luminance over this one's, to the
    power `share` - 0 leaves the exposure relative to the albedo (dark skin renders dark, the
    default), 1 exposes every tone to the same radiance, as a camera metering the hand would;
    in between, that share of the tone's darkness in stops is made up."""
    if share == 0:
        return 1.0
    ratio = float(tone(0.0, redness) @ REC709_LUMA) / float(tone(melanin, redness) @ REC709_LUMA)
    return float(ratio ** share)


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


# ----------------------------------------------------------------------------- creases
# Flexion creases and palm lines, placed on the rest pose from the rig's joint centres (hand
# frame: +x radial/thumb side, +y distal, +z palmar).  Finger creases (fraction along the bone
# from its proximal joint, half-separation of a double line in metres): the palmar digital
# crease at the finger's base (~40% of the proximal phalanx, at the web), a double crease at
# the PIP (thumb: at the MCP), a single one at the DIP (thumb: IP).  Anatomy atlases put them
# there; the positions are not fitted to any photo.
FINGER_CREASES = ((0, 0.40, 0.0011), (1, 0.0, 0.0010), (2, 0.0, 0.0))  # (joint 0/1/2, along, half-sep)
THUMB_CREASES = ((1, 0.0, 0.0010), (2, 0.0, 0.0))
# The three main palm lines as polylines in palm coordinates u (0 at the little finger's MCP,
# 1 at the index MCP, across the palm) and v (0 at the wrist, 1 at the middle MCP, along it):
# the distal transverse crease ("heart line": from the ulnar edge to between index and middle
# finger), the proximal transverse crease ("head line": from the radial edge above the thumb,
# obliquely towards the ulnar side) and the thenar crease ("life line": from the same radial
# start around the ball of the thumb to the wrist).
PALM_LINES = (
    ((-0.25, 0.66), (0.15, 0.70), (0.45, 0.76), (0.72, 0.88)),
    ((1.12, 0.76), (0.80, 0.66), (0.45, 0.58), (0.10, 0.52)),
    ((1.12, 0.76), (0.96, 0.58), (0.88, 0.40), (0.86, 0.20), (0.84, 0.04)),
)
CREASE_REACH_M = 0.004  # a crease's weight falls to 0 between 3 and 5 mm from its centre line


def _palmar_direction(axis: np.ndarray, thumb: bool) -> np.ndarray:
    ref = np.array([-1.0, 0.0, 1.0]) if thumb else np.array([0.0, 0.0, 1.0])
    d = ref - (ref @ axis) * axis
    return d / np.linalg.norm(d)


def _signed_polyline_distance(p: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Signed 2D distance of points p (N, 2) to a polyline (K, 2): the distance to the nearest
    segment, positive on the left of the direction of travel."""
    best = np.full(len(p), np.inf)
    sign = np.ones(len(p))
    for a, b in zip(line[:-1], line[1:]):
        ab = b - a
        t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
        q = a + t[:, None] * ab
        d = np.linalg.norm(p - q, axis=1)
        cr = ab[0] * (p[:, 1] - a[1]) - ab[1] * (p[:, 0] - a[0])
        closer = d < best
        best = np.where(closer, d, best)
        sign = np.where(closer, np.where(cr >= 0, 1.0, -1.0), sign)
    return sign * best


def crease_fields(rest_vertices: np.ndarray, faces: np.ndarray, part: np.ndarray,
                  finger_joints: np.ndarray, tips: np.ndarray) -> dict[str, np.ndarray]:
    """Per-vertex fields from which the shader draws skin creases (all float32, rest pose).

    - `crease_s`: signed distance (m) along the finger (or across a palm line) to the centre
      of the nearest crease.  It is a nearly linear function over a face, so the renderer's
      linear interpolation keeps it exact and the shader can draw lines far thinner than the
      mesh's ~2.3 mm edges (line width is a shader parameter, not the mesh's).
    - `crease_h`: half-separation (m) of that crease's double line (0: single line).
    - `crease_w`: weight of palmar creases and palm lines (0-1): on the palmar half of the
      finger / the palm, fading out by CREASE_REACH_M from the line (so the jump of `crease_s`
      halfway between two creases is never drawn).
    - `wrinkle_w`: weight of the dorsal knuckle wrinkles over the PIP and DIP (thumb: IP),
      drawn as several parallel lines from `crease_s`.

    `finger_joints` (15, 3): the three joint centres per finger, thumb first (CMC, MCP, IP;
    MCP, PIP, DIP), `tips` (5, 3) the fingertips, `part` the dense part labels (finger f is
    f + 1; every other label counts as palm/other and only gets palm lines when it lies
    inside the palm's outline).
    """
    v = np.asarray(rest_vertices, dtype=np.float64)
    n = vertex_normals(v, faces)
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    N = len(v)
    s_out = np.full(N, 1.0, dtype=np.float64)  # 1 m: no crease near
    h_out = np.zeros(N)
    w_out = np.zeros(N)
    wr_out = np.zeros(N)
    J = np.asarray(finger_joints, dtype=np.float64).reshape(5, 3, 3)
    tips = np.asarray(tips, dtype=np.float64)
    reach_lo, reach_hi = CREASE_REACH_M - 0.001, CREASE_REACH_M + 0.001
    for f in range(5):
        sel = np.nonzero(part == f + 1)[0]
        if len(sel) == 0:
            continue
        pts = [J[f, 0], J[f, 1], J[f, 2], tips[f]]
        dirs = [(pts[i + 1] - pts[i]) / np.linalg.norm(pts[i + 1] - pts[i]) for i in range(3)]
        best = np.full(len(sel), np.inf)
        x = v[sel]
        creases = THUMB_CREASES if f == 0 else FINGER_CREASES
        for joint, along, half in creases:
            if along > 0:
                centre = pts[joint] + along * (pts[joint + 1] - pts[joint])
                axis = dirs[joint]
            else:
                axis = dirs[joint - 1] + dirs[joint]
                axis /= np.linalg.norm(axis)
                centre = pts[joint]
            s = (x - centre) @ axis
            r = (x - centre) - np.outer(s, axis)
            r /= np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
            cos = r @ _palmar_direction(axis, f == 0)
            closer = np.abs(s) < best
            best = np.where(closer, np.abs(s), best)
            taper = 1.0 - _smoothstep(np.abs(s), reach_lo, reach_hi)
            palmar = _smoothstep(cos, -0.15, 0.35) * taper
            dorsal = _smoothstep(-cos, 0.2, 0.6) * taper if (along == 0 and joint >= 1) else 0.0 * taper
            s_out[sel] = np.where(closer, s, s_out[sel])
            h_out[sel] = np.where(closer, half, h_out[sel])
            w_out[sel] = np.where(closer, palmar, w_out[sel])
            wr_out[sel] = np.where(closer, dorsal, wr_out[sel])
    # Palm lines on the palmar side of everything that is not a finger.
    other = np.nonzero(~np.isin(part, np.arange(1, 6)))[0]
    little_mcp, index_mcp, middle_mcp = J[4, 0], J[1, 0], J[2, 0]
    u = (v[other, 0] - little_mcp[0]) / (index_mcp[0] - little_mcp[0])
    vv = v[other, 1] / middle_mcp[1]
    scale = np.array([index_mcp[0] - little_mcp[0], middle_mcp[1]])
    p = np.stack([u, vv], axis=1) * scale  # metres, in the palm's plane
    best = np.full(len(other), np.inf)
    s_palm = np.zeros(len(other))
    for line in PALM_LINES:
        d = _signed_polyline_distance(p, np.asarray(line) * scale)
        closer = np.abs(d) < best
        best = np.where(closer, np.abs(d), best)
        s_palm = np.where(closer, d, s_palm)
    inside = _smoothstep(vv, -0.05, 0.05) * (1.0 - _smoothstep(vv, 0.95, 1.05))
    taper = 1.0 - _smoothstep(best, reach_lo, reach_hi)
    s_out[other] = s_palm
    h_out[other] = 0.0
    w_out[other] = _smoothstep(n[other, 2], 0.2, 0.6) * inside * taper
    wr_out[other] = 0.0
    return {"crease_s": s_out.astype(np.float32), "crease_h": h_out.astype(np.float32),
            "crease_w": w_out.astype(np.float32), "wrinkle_w": wr_out.astype(np.float32)}


def crease_profile(s, h, width_m: float, wrinkle_period_m: float = WRINKLE_PERIOD_M) -> tuple[np.ndarray, np.ndarray]:
    """(palmar line, dorsal wrinkle) intensity in [0, 1] at signed distance `s` from a crease
    centre with half-separation `h`: exp(-((|s| - h) / width)^2) and (0.5 + 0.5 cos(2 pi s /
    period))^4.  The renderer's shader computes the same with math nodes (kept in step by
    tests/test_skin.py's render test)."""
    s = np.asarray(s, dtype=np.float64)
    line = np.exp(-(((np.abs(s) - h) / width_m) ** 2))
    wrinkle = (0.5 + 0.5 * np.cos(2 * np.pi * s / wrinkle_period_m)) ** 4
    return line, wrinkle
