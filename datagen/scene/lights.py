"""Extra light sources per item, besides the HDRI (config `[lights]`, docs/RENDERING.md).

Each item draws, from a child stream of its own seed (datagen.scene.items), `count` lights in
`[lights] count`; each light has a type (area, spot or point), a direction from the palm centre
within `cone_deg` of the direction to the camera, a distance, a size, a spot angle, a colour
temperature and a relative power.  All in the hand frame: the renderer maps them into Blender's
world with the item's hand-to-world rotation, so the light moves with the hand and camera.

Power is relative to the environment: `power` is the irradiance the light gives a surface at
the palm centre that faces it, over the HDRI's predicted skin irradiance (the quantity the
"skin" exposure rule exposes for, datagen.scene.hdri.LightProbe.skin_irradiance).  The light's
predicted contribution to the visible skin is then power x the HDRI's skin irradiance x
`facing` (the projected-area-weighted mean of max(0, n . l) over the camera-facing faces), and
the exposure rule exposes for the sum (`exposure_factor`), so adding lights changes the light's
direction and colour on the hand, not the image's overall brightness.

Blender's light units (Cycles): `WATTS_PER_UNIT_IRRADIANCE` converts; measured with
benchmarks/light_units.py (a white diffuse plane at 1 m, read back linear).  numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Watts per (irradiance/pi in the HDRI's radiance units) at 1 m, per light type: a light of
# power P at distance d gives a surface facing it radiance-equivalent P / (W * d^2) (the value
# of a white Lambertian surface in the linear image); measured in Cycles (bpy 5.0.1) by
# benchmarks/light_units.py.
WATTS_PER_UNIT_IRRADIANCE = {"point": 4 * math.pi ** 2, "spot": 4 * math.pi ** 2, "area": math.pi ** 2}


@dataclass(frozen=True)
class LightDraw:
    type: str
    # Direction palm centre -> light about the direction palm centre -> camera: angle from it and
    # azimuth about it (0 = towards the hand frame's +x side of the camera axis; see `direction`).
    polar_deg: float
    azimuth_deg: float
    distance_m: float
    size_m: float
    spot_deg: float
    temperature_k: float
    power: float  # relative (see the module docstring)

    def direction(self, to_camera) -> np.ndarray:
        """Unit hand-frame direction palm centre -> light, for the view's palm-centre -> camera
        direction `to_camera`."""
        axis = np.asarray(to_camera, np.float64)
        axis = axis / np.linalg.norm(axis)
        helper = np.array([0.0, 1.0, 0.0]) if abs(axis[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
        e1 = np.cross(helper, axis)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(axis, e1)
        t, p = math.radians(self.polar_deg), math.radians(self.azimuth_deg)
        d = math.cos(t) * axis + math.sin(t) * (math.cos(p) * e1 + math.sin(p) * e2)
        return d / np.linalg.norm(d)

    def record(self, to_camera) -> dict:
        return {"type": self.type, "polar_deg": self.polar_deg, "azimuth_deg": self.azimuth_deg,
                "direction_hand": [float(x) for x in self.direction(to_camera)], "distance_m": self.distance_m,
                "size_m": self.size_m, "spot_deg": self.spot_deg if self.type == "spot" else None,
                "temperature_k": self.temperature_k, "power": self.power,
                "rgb": [float(c) for c in blackbody_rgb(self.temperature_k)]}


def draw_lights(cfg, rng: np.random.Generator) -> tuple[LightDraw, ...]:
    """An item's lights (`[lights]` config): directions uniform on the sphere cap of half-angle
    cone_deg about the camera direction.  Every light takes the same eight draws in order."""
    n = int(rng.integers(cfg.count[0], cfg.count[1] + 1))
    cos_max = math.cos(math.radians(cfg.cone_deg))
    out = []

    def uni(lo_hi):
        lo, hi = lo_hi
        return float(lo + (hi - lo) * rng.random())

    for _ in range(n):
        kind = cfg.types[int(rng.integers(len(cfg.types)))]
        polar = math.degrees(math.acos(1.0 - rng.random() * (1.0 - cos_max)))  # uniform in solid angle
        azimuth = 360.0 * rng.random()
        out.append(LightDraw(kind, polar, azimuth, uni(cfg.distance_m), uni(cfg.size_m),
                             uni(cfg.spot_deg), uni(cfg.temperature_k), uni(cfg.power)))
    return tuple(out)


def blackbody_rgb(temperature_k: float) -> np.ndarray:
    """Linear Rec.709 RGB of a black body at `temperature_k`, scaled to luminance 1.

    Chromaticity from Kim et al.'s cubic spline of the Planckian locus (1667..25000 K), then
    xyY (Y = 1) -> XYZ -> linear sRGB (D65 primaries); negative components (never for
    1667..25000 K within rounding) are clipped."""
    t = float(np.clip(temperature_k, 1667.0, 25000.0))
    if t <= 4000:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t <= 2222:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t <= 4000:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    xyz = np.array([x / y, 1.0, (1.0 - x - y) / y])
    m = np.array([[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560],
                  [0.0556434, -0.2040259, 1.0572252]])
    rgb = np.clip(m @ xyz, 0.0, None)
    return rgb / float(rgb @ np.array([0.2126, 0.7152, 0.0722]))


def facing(normals: np.ndarray, weights: np.ndarray, direction) -> float:
    """Weighted mean of max(0, n . l) over unit normals (N, 3) for a unit direction l (same
    frame): how much of the visible skin a distant light in that direction reaches."""
    w = np.asarray(weights, np.float64)
    total = w.sum()
    if not total > 0:
        return 0.0
    cos = np.clip(np.asarray(normals, np.float64) @ np.asarray(direction, np.float64), 0.0, None)
    return float((cos * w).sum() / total)


def exposure_factor(lights, normals, weights, to_camera) -> tuple[float, list[float]]:
    """(1 + sum(power_i x facing_i), [facing_i]): the visible skin's predicted irradiance with
    the lights over the HDRI's alone (normals, weights and to_camera in the hand frame)."""
    f = [facing(normals, weights, li.direction(to_camera)) for li in lights]
    return 1.0 + sum(li.power * fi for li, fi in zip(lights, f)), f


def light_watts(light: LightDraw, skin_irradiance: float) -> float:
    """Blender power (W) giving a surface at the palm centre facing the light an irradiance of
    light.power x the HDRI's skin irradiance (both in the HDRI's units, before film exposure)."""
    return float(light.power * skin_irradiance * WATTS_PER_UNIT_IRRADIANCE[light.type] * light.distance_m ** 2)
