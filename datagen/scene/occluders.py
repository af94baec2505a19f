"""Occluders: objects in front of the hand or held by it, drawn and placed per item (numpy only).

Config `[occluders]` (datagen.config.OccluderConfig; off by default, `share = 0`): a share of
the items gets one object, either

- **front**: between the camera and the hand, on the segment from the camera to a random hand
  vertex, hiding between `coverage[0]` and `coverage[1]` of the hand's silhouette (0.10 - 0.60
  by default: partly covering the hand, never the whole hand); or
- **held**: touching the hand - its vertex furthest towards the hand 0.5 - 2 mm above a random
  hand vertex along that vertex's normal (palmar side 3 times in 4, anywhere on the hand
  otherwise); sticks,
  cylinders and capsules lie across it (their axis in the surface's tangent plane).  At most
  `coverage[1]` of the silhouette may be hidden.

The objects are procedural closed triangle meshes (`object_mesh`; outward winding, watertight):
box, sphere, cylinder (a can), stick (a pen), torus (a ring, a roll of tape), cup (an open
cup with 3 mm walls), capsule; random sizes (`SIZES`) and a random material (`draw_material`:
base colour, roughness, metallic or not, a noise texture mixing in a second colour).

No object may intersect the hand (or the forearm): every placement is checked exactly against
the posed dense mesh (`datagen.geometry.mesh_contact`: edges crossing triangles both ways and
vertices inside the other mesh) and redrawn - seeded, at most `max_attempts` times; an item
whose attempts all fail gets no object (its record says so).  `python -m datagen.scene.occluders
--report` measures the placed objects with an independent method (closest points): the worst
penetration depth and the clearance of the held objects.

Random draws come from the item's own child stream `OCCLUDER_STREAM` of
SeedSequence([seed, pose_id, view_id]) (datagen.scene.items), so every other draw of an item
is the same with the option on or off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from datagen.geometry.mesh_contact import mesh_contact, prepare
from datagen.geometry.normals import vertex_normals
from datagen.geometry.raster import front_facing, rasterize

KINDS = ("box", "sphere", "cylinder", "stick", "torus", "cup", "capsule")
PLACEMENTS = ("front", "held")
# Size ranges (metres) per kind: name -> (low, high), drawn uniformly in this order.
SIZES = {
    "box": {"x": (0.02, 0.10), "y": (0.02, 0.10), "z": (0.01, 0.06)},
    "sphere": {"radius": (0.012, 0.040)},
    "cylinder": {"radius": (0.012, 0.035), "height": (0.04, 0.13)},
    "stick": {"radius": (0.003, 0.006), "height": (0.09, 0.16)},
    "torus": {"radius": (0.018, 0.040), "tube": (0.004, 0.012)},
    "cup": {"radius": (0.025, 0.040), "height": (0.06, 0.10)},
    "capsule": {"radius": (0.008, 0.022), "height": (0.02, 0.08)},
}
ELONGATED = ("cylinder", "stick", "capsule")  # held across the surface (axis in the tangent plane)
CUP_WALL_M = 0.003
SEGMENTS = 16  # around the axis of revolved shapes (Cycles shades them smooth)
HELD_GAP_M = (0.0005, 0.002)
PALMAR_HELD = 0.75  # share of held objects that touch the palmar side (hand frame +z)
FRONT_MARGIN_M = 0.01  # free space between a front object's bounding sphere and its target vertex
CAMERA_CLEARANCE_M = 0.06  # no object vertex nearer the camera than this (camera z)
HAND_PARTS = 6  # dense parts 0..5 are the hand; 6 is the forearm (datagen.hand.forearm.ARM_PART)


# ---------------------------------------------------------------------------------------------
# Meshes
# ---------------------------------------------------------------------------------------------

def _orient_outward(V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """Faces flipped if needed so the signed volume is positive (outward winding)."""
    a, b, c = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
    vol = np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0
    return F if vol > 0 else F[:, ::-1].copy()


def lathe(profile: np.ndarray, segments: int = SEGMENTS, loop: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A closed surface of revolution about z from a profile (m, 2) of (radius, z) points.

    Open profiles start and end on the axis (radius 0: one pole vertex each); `loop=True`
    profiles are closed curves off the axis (a torus).  Returns (V (n, 3) float64, F (f, 3)
    int64) with outward winding."""
    profile = np.asarray(profile, dtype=np.float64)
    ang = np.arange(segments) * (2 * math.pi / segments)
    verts, index = [], []
    for r, z in profile:
        if r < 1e-9:  # on the axis (a pole); arcs end there up to rounding
            index.append([len(verts)] * segments)
            verts.append((0.0, 0.0, z))
        else:
            index.append(list(range(len(verts), len(verts) + segments)))
            verts.extend(zip(r * np.cos(ang), r * np.sin(ang), np.full(segments, z)))
    idx = np.array(index)
    rows = len(profile) if loop else len(profile) - 1
    faces = []
    for i in range(rows):
        i2 = (i + 1) % len(profile)
        for j in range(segments):
            j2 = (j + 1) % segments
            a, b, c, d = idx[i, j], idx[i, j2], idx[i2, j2], idx[i2, j]
            for tri in ((a, b, c), (a, c, d)):
                if len(set(tri)) == 3:
                    faces.append(tri)
    V = np.array(verts)
    F = np.array(faces, np.int64)
    return V, _orient_outward(V, F)


def box_mesh(x: float, y: float, z: float) -> tuple[np.ndarray, np.ndarray]:
    """An axis-aligned box centred at the origin with side lengths x, y, z (12 triangles)."""
    V = np.array([[i, j, k] for i in (-0.5, 0.5) for j in (-0.5, 0.5) for k in (-0.5, 0.5)]) * [x, y, z]
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    F = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))], np.int64)
    return V, _orient_outward(V, F)


def _arc(r: float, z0: float, a0: float, a1: float, n: int) -> list:
    return [(r * math.cos(a), z0 + r * math.sin(a)) for a in np.linspace(a0, a1, n)]


def object_mesh(kind: str, dims: dict) -> tuple[np.ndarray, np.ndarray]:
    """The closed mesh of an object of `kind` with `dims` (metres), centred at the origin (its
    bounding box's centre), axis of revolution along z."""
    if kind == "box":
        return box_mesh(dims["x"], dims["y"], dims["z"])
    if kind == "sphere":
        r = dims["radius"]
        return lathe(_arc(r, 0.0, -math.pi / 2, math.pi / 2, 9))
    if kind in ("cylinder", "stick"):
        r, h = dims["radius"], dims["height"]
        return lathe([(0.0, -h / 2), (r, -h / 2), (r, h / 2), (0.0, h / 2)])
    if kind == "capsule":
        r, h = dims["radius"], dims["height"]
        prof = _arc(r, -h / 2, -math.pi / 2, 0.0, 5) + _arc(r, h / 2, 0.0, math.pi / 2, 5)
        return lathe(prof)
    if kind == "torus":
        R, r = dims["radius"], dims["tube"]
        a = np.arange(12) * (2 * math.pi / 12)
        return lathe(np.stack([R + r * np.cos(a), r * np.sin(a)], 1), loop=True)
    if kind == "cup":
        r, h, w = dims["radius"], dims["height"], CUP_WALL_M
        # outside bottom centre -> outer wall -> rim -> inner wall -> inside bottom centre
        return lathe([(0.0, -h / 2), (r, -h / 2), (r, h / 2), (r - w, h / 2), (r - w, -h / 2 + w),
                      (0.0, -h / 2 + w)])
    raise ValueError(f"unknown occluder kind {kind!r}; known: {', '.join(KINDS)}")


# ---------------------------------------------------------------------------------------------
# Draws
# ---------------------------------------------------------------------------------------------

def draw_dims(kind: str, rng: np.random.Generator) -> dict:
    return {k: float(lo + (hi - lo) * rng.random()) for k, (lo, hi) in SIZES[kind].items()}


def _hsv_to_rgb(h: float, s: float, v: float) -> list[float]:
    i = int(h * 6) % 6
    f = h * 6 - math.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [float(x) for x in [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]]


def draw_material(rng: np.random.Generator) -> dict:
    """A random material: linear RGB base colour (any hue, saturation 0-0.9, value 0.05-0.9),
    roughness 0.1-0.9, metallic (1 in 7), and a noise texture (scale 20-300 per metre) mixing
    in a second colour (value and hue shifted) by up to 0.7."""
    h, s, v = rng.random(), 0.9 * rng.random(), 0.05 + 0.85 * rng.random()
    colour = _hsv_to_rgb(h, s, v)
    colour2 = _hsv_to_rgb((h + 0.15 * (rng.random() - 0.5)) % 1.0, s, float(np.clip(v * (0.4 + 1.2 * rng.random()),
                                                                                      0.02, 0.95)))
    return {"colour": colour, "colour2": colour2, "roughness": float(0.1 + 0.8 * rng.random()),
            "metallic": float(rng.random() < 1 / 7), "noise_scale_per_m": float(20 + 280 * rng.random()),
            "noise_mix": float(0.7 * rng.random())}


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation (3, 3) from a normalised Gaussian quaternion."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _axis_to(a: np.ndarray, spin: float) -> np.ndarray:
    """A rotation taking +z to the unit vector a, then turned by `spin` radians about a."""
    a = a / np.linalg.norm(a)
    helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, a)
    x /= np.linalg.norm(x)
    y = np.cross(a, x)
    c, s = math.cos(spin), math.sin(spin)
    return np.stack([c * x + s * y, -s * x + c * y, a], axis=1)


# ---------------------------------------------------------------------------------------------
# Placement
# ---------------------------------------------------------------------------------------------

@dataclass
class Occluder:
    """One placed object; `vertices` in the hand frame (metres)."""

    kind: str
    placement: str
    dims: dict
    rotation: np.ndarray  # (3, 3): object frame -> hand frame
    centre: np.ndarray  # (3,) hand frame
    material: dict
    vertices: np.ndarray  # (n, 3) hand frame
    faces: np.ndarray  # (f, 3)
    coverage: float  # share of the hand's silhouette it hides
    attempt: int  # 1-based draw that was accepted
    gap_m: float | None = None  # held: the gap along the contact normal

    def record(self) -> dict:
        """The item JSON's entry: enough to rebuild the mesh (object_mesh(kind, dims) rotated
        and moved) and the material."""
        return {"kind": self.kind, "placement": self.placement, "dims": self.dims,
                "rotation": [[float(x) for x in row] for row in self.rotation],
                "centre": [float(x) for x in self.centre], "material": self.material,
                "coverage": float(self.coverage), "attempt": int(self.attempt),
                "gap_m": None if self.gap_m is None else float(self.gap_m)}


@dataclass
class Placement:
    """The outcome of an item's occluder draw."""

    drawn: bool  # the item drew an object (share)
    objects: list = field(default_factory=list)
    attempts: int = 0
    rejected: dict = field(default_factory=lambda: {"intersects": 0, "coverage": 0, "camera": 0, "space": 0})

    def record(self) -> dict:
        return {"drawn": self.drawn, "attempts": self.attempts, "rejected": dict(self.rejected),
                "objects": [o.record() for o in self.objects]}

    def mesh(self) -> tuple[np.ndarray, np.ndarray] | None:
        """All objects as one mesh (hand frame), None when there is none."""
        if not self.objects:
            return None
        V, F, n = [], [], 0
        for o in self.objects:
            V.append(o.vertices)
            F.append(o.faces + n)
            n += len(o.vertices)
        return np.concatenate(V), np.concatenate(F)


def rebuild(rec: dict) -> tuple[np.ndarray, np.ndarray]:
    """An object's mesh (hand frame) from its item-JSON record."""
    V, F = object_mesh(rec["kind"], rec["dims"])
    return V @ np.asarray(rec["rotation"]).T + np.asarray(rec["centre"]), F


def _coverage(hand, obj_cam: np.ndarray, F: np.ndarray, K) -> float:
    """Share of the hand's silhouette the object hides: rasterised on the silhouette's
    bounding box only (the same pixel centres, a shifted principal point)."""
    mask, depth, (x0, y0, x1, y1) = hand
    if mask.sum() == 0:
        return 0.0
    Kc = np.array(K, dtype=np.float64)
    Kc[0, 2] -= x0
    Kc[1, 2] -= y0
    r = rasterize(obj_cam, F[front_facing(obj_cam, F)], Kc, x1 - x0, y1 - y0)
    hidden = mask & r.mask & (r.depth < depth)
    return float(hidden.sum()) / float(mask.sum())


def place(cfg, ss: np.random.SeedSequence, dense: np.ndarray, faces: np.ndarray, dense_part: np.ndarray,
          K: np.ndarray, R: np.ndarray, t: np.ndarray, width: int, height: int, hand_raster=None) -> Placement:
    """Draw and place an item's occluder (datagen.config.OccluderConfig `cfg`) from its stream `ss`.

    dense (N, 3) hand frame, faces (F, 3), dense_part (N,): the posed labelled mesh; K, R, t:
    the item's camera (x_cam = R x + t); `hand_raster`: the mesh's rasterisation with that
    camera if the caller has it (datagen.geometry.raster.Raster; else computed here).  Every
    draw comes from `ss`, in a fixed order, so the result depends only on the item."""
    rng = np.random.default_rng(ss)
    if not rng.random() < cfg.share:
        return Placement(False)
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    dense = np.asarray(dense, dtype=np.float64)
    r = hand_raster if hand_raster is not None else rasterize(dense @ R.T + t, faces, K, width, height)
    ys, xs = np.nonzero(r.mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if xs.size else (0, 0, 1, 1)
    crop = (slice(box[1], box[3]), slice(box[0], box[2]))
    hand = (r.mask[crop], np.where(r.mask, r.depth, np.inf)[crop], box)
    C = -R.T @ t  # camera centre, hand frame
    hand_ids = np.nonzero(dense_part < HAND_PARTS)[0]
    normals = hand_prep = None
    lo_cov, hi_cov = cfg.coverage
    out = Placement(True)
    for attempt in range(1, cfg.max_attempts + 1):
        out.attempts = attempt
        kind = cfg.kinds[int(rng.integers(len(cfg.kinds)))]
        placement = "held" if rng.random() < cfg.held_share else "front"
        dims = draw_dims(kind, rng)
        material = draw_material(rng)
        V0, F = object_mesh(kind, dims)
        radius = float(np.linalg.norm(V0, axis=1).max())
        gap = None
        if placement == "front":
            rot = random_rotation(rng)
            target = dense[hand_ids[int(rng.integers(len(hand_ids)))]]
            D = float(np.linalg.norm(C - target))
            u = (C - target) / D
            d_lo, d_hi = radius + FRONT_MARGIN_M, D - radius - CAMERA_CLEARANCE_M
            s, side, spin = rng.random(), rng.random(), rng.random()
            if d_hi <= d_lo:
                out.rejected["space"] += 1
                continue
            d = d_lo + (d_hi - d_lo) * s * s  # nearer the hand more often
            e = _axis_to(u, 2 * math.pi * spin)[:, 0] * (0.8 * radius * side)
            centre = target + d * u + e
        else:
            if normals is None:
                normals = vertex_normals(dense, faces)
                normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
            palmar = hand_ids[normals[hand_ids, 2] > 0.3]
            pool = palmar if (rng.random() < PALMAR_HELD and len(palmar)) else hand_ids
            vid = pool[int(rng.integers(len(pool)))]
            p, n = dense[vid], normals[vid]
            a, spin = rng.standard_normal(3), rng.random()
            if kind in ELONGATED:
                a = a - np.dot(a, n) * n  # axis across the surface
                if np.linalg.norm(a) < 1e-9:
                    a = np.cross(n, [1.0, 0.0, 0.0])
                rot = _axis_to(a, 2 * math.pi * spin)
            else:
                rot = random_rotation(rng)
            gap = float(HELD_GAP_M[0] + (HELD_GAP_M[1] - HELD_GAP_M[0]) * rng.random())
            Vr = V0 @ rot.T
            lowest = Vr[int(np.argmax(Vr @ -n))]  # the object's point furthest towards the hand
            centre = p + n * gap - lowest  # ... put `gap` above the contact vertex
        V = V0 @ rot.T + centre
        obj_cam = V @ R.T + t
        if obj_cam[:, 2].min() < CAMERA_CLEARANCE_M:
            out.rejected["camera"] += 1
            continue
        cov = _coverage(hand, obj_cam, F, K)
        if cov > hi_cov or (placement == "front" and cov < lo_cov):
            out.rejected["coverage"] += 1
            continue
        if hand_prep is None:  # the hand's boxes, once per item
            hand_prep = prepare(dense, faces)
        if mesh_contact(V, F, dense, faces, exhaustive=False, b_prepared=hand_prep).intersects:
            out.rejected["intersects"] += 1
            continue
        out.objects.append(Occluder(kind, placement, dims, rot, centre, material, V, F, cov, attempt, gap))
        break
    return out
