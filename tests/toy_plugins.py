"""Toy plugins: one hand model, one camera sampler and one label pass, each defined and
registered in this one file - the way a user adds them, without touching datagen.

- hand model "toy": a procedural right hand (an elliptic palm tube open at the wrist, five
  capsule fingers) with the 21-keypoint rig interface (wrist + metacarpals + three bones per
  finger), rigid-with-blended-joints skinning, its own licence/version strings and its own,
  gentler pose-angle tables;
- camera sampler "ring": one ring of cameras around the hand, with its own [cameras.options]
  (`views`, `elevation_deg`) and two per-view metadata columns (`azimuth_deg`, `slot`);
- label pass "part": a per-pixel hand-part image (0 background, 1 palm, 2..6 thumb..little),
  computed from the exact rasterisation, written as items/<pose>/v<view>.part.png, stored with
  its own shard codec, checked against the silhouette, returned by the reader as `part`.

Import-light like the registries (numpy at import; cv2 only where the packer reads a file),
so a Blender worker can load it too: HANDSYNTH_PLUGINS=toy_plugins with tests/ on the path.
tests/test_registries.py renders, packs, verifies and reads a dataset made with all three.
"""

from __future__ import annotations

import numpy as np

from datagen import atomic
from datagen.cameras import Views, register_camera_sampler
from datagen.dataset.codecs import Codec
from datagen.hand import HandModel, HandRig, register_hand_model
from datagen.hand.base import FINGERS
from datagen.labels.passes import LabelPass, PassError, register_label_pass
from datagen.poses.angles import PoseAngles

# ---------------------------------------------------------------------------------------------
# Hand model "toy"
# ---------------------------------------------------------------------------------------------

TOY_LICENCE = {"name": "toy procedural hand (tests/toy_plugins.py)", "licence": "CC0-1.0",
               "url": "https://example.invalid/toy-hand"}
TOY_VERSION = "1.0"
# Gentler than anny's tables: capsule fingers have no knuckle pads to fold around.
TOY_ANGLES = PoseAngles(bent={f: (55.0, 65.0, 45.0) for f in ("index", "middle", "ring", "little")},
                        thumb_bent=(35.0, 20.0, -15.0, 30.0, 40.0))

SEGMENTS = 12  # vertices around a tube
BAND = 0.004  # skinning weights blend over +-4 mm around a joint
_FINGER_X = {"index": 0.030, "middle": 0.010, "ring": -0.010, "little": -0.030}
_FINGER_LEN = {"index": 0.070, "middle": 0.078, "ring": 0.072, "little": 0.058}
_SPLIT = (0.45, 0.30, 0.25)  # proximal, middle, distal phalanx as fractions of the finger
MCP_Y = 0.080
THUMB_BASE = np.array([0.032, 0.012, 0.004])
THUMB_AXIS = np.array([0.6, 0.8, 0.25]) / np.linalg.norm([0.6, 0.8, 0.25])
THUMB_BONES = (0.035, 0.022, 0.018)


def _frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) with u x v = axis: the cross-section axes of a tube along `axis`."""
    ref = np.array([0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(axis, np.cross(ref, axis))
    u /= np.linalg.norm(u)
    return u, np.cross(axis, u)


def _tube(start, axis, s0, s1, rings, ru, rv, close_start, tip):
    """Vertices and outward faces of a tube from start + s0 axis to start + s1 axis.

    Closed at s1 with a rounded tip (a fan to a point `tip` beyond), at s0 too when
    `close_start`, else left open (the palm's wrist)."""
    u, v = _frame(axis)
    theta = 2 * np.pi * np.arange(SEGMENTS) / SEGMENTS
    ring_pts = np.cos(theta)[:, None] * ru * u + np.sin(theta)[:, None] * rv * v
    verts = [start + s * axis + ring_pts for s in np.linspace(s0, s1, rings)]
    V = list(np.concatenate(verts))
    idx = lambda k, j: k * SEGMENTS + j % SEGMENTS  # noqa: E731
    faces = [np.array([idx(k, j), idx(k, j + 1), idx(k + 1, j + 1), idx(k + 1, j)])
             for k in range(rings - 1) for j in range(SEGMENTS)]
    V.append(start + (s1 + tip) * axis)
    top = len(V) - 1
    faces += [np.array([idx(rings - 1, j), idx(rings - 1, j + 1), top]) for j in range(SEGMENTS)]
    if close_start:
        V.append(start + (s0 - 0.4 * tip) * axis)
        bottom = len(V) - 1
        faces += [np.array([idx(0, j + 1), idx(0, j), bottom]) for j in range(SEGMENTS)]
    return np.asarray(V), faces


def _blend(s: np.ndarray, cuts: list[float], bones: list[int], n_bones: int) -> np.ndarray:
    """Weights (N, J) along a chain: bones[k] before cuts[k], bones[k + 1] after, linear over
    +-BAND around each cut (cuts are further apart than 2 BAND)."""
    W = np.zeros((len(s), n_bones))
    cuts = np.asarray(cuts)
    seg = np.searchsorted(cuts, s)  # bones[seg] owns the vertex away from the cuts
    W[np.arange(len(s)), np.asarray(bones)[seg]] = 1.0
    near = np.argmin(np.abs(s[:, None] - cuts[None]), axis=1)
    alpha = np.clip((s - cuts[near] + BAND) / (2 * BAND), 0.0, 1.0)
    blend = np.abs(s - cuts[near]) < BAND
    i = np.nonzero(blend)[0]
    W[i] = 0.0
    W[i, np.asarray(bones)[near[i]]] = 1.0 - alpha[i]
    W[i, np.asarray(bones)[near[i] + 1]] += alpha[i]
    return W


@register_hand_model("toy", title="toy procedural right hand", licence=TOY_LICENCE,
                     versions=lambda: {"toy_hand": TOY_VERSION}, phenotypes=("finger_length",),
                     pose_angles=TOY_ANGLES, description="a tiny procedural hand for the tests")
class ToyHand(HandModel):
    """A procedural right hand in the hand frame's axes: +y distal, +z palmar, +x radial."""

    def __init__(self, phenotype: dict[str, float] | None = None):
        scale = 0.8 + 0.4 * float((phenotype or {}).get("finger_length", 0.5))  # 0.5 -> as designed
        names, parents, heads, tails = ["wrist"], [-1], [np.zeros(3)], [np.array([0.0, 0.04, 0.0])]
        chains, meta = {}, {}
        for f in FINGERS[1:]:
            x = _FINGER_X[f]
            meta[f] = len(names)
            names.append(f"metacarpal_{f}")
            parents.append(0)
            heads.append(np.array([0.4 * x, 0.01, 0.0]))
            tails.append(np.array([x, MCP_Y, 0.0]))
        joints = {f: np.array([_FINGER_X[f], MCP_Y, 0.0]) + np.outer(
            np.concatenate([[0.0], np.cumsum(_SPLIT)]) * _FINGER_LEN[f] * scale, [0, 1, 0]) for f in FINGERS[1:]}
        joints["thumb"] = THUMB_BASE + np.outer(np.concatenate([[0.0], np.cumsum(THUMB_BONES)]) * scale, THUMB_AXIS)
        for f in FINGERS:
            ids = []
            for k in range(3):
                ids.append(len(names))
                names.append(f"{f}_{k + 1}")
                parents.append(0 if (f == "thumb" and k == 0) else (meta[f] if k == 0 else ids[-2]))
                heads.append(joints[f][k])
                tails.append(joints[f][k + 1])
            chains[f] = tuple(ids)
        J = len(names)

        # Tubes along +y have u = +z (depth), v = +x (width); the palm stays open at the wrist.
        palm_v, palm_f = _tube(np.zeros(3), np.array([0.0, 1.0, 0.0]), 0.0, MCP_Y + 0.005, 6, 0.014, 0.042,
                               close_start=False, tip=0.004)
        verts, faces = [palm_v], list(palm_f)
        weights = [np.tile(np.eye(J)[0], (len(palm_v), 1))]
        for f in FINGERS:
            axis = THUMB_AXIS if f == "thumb" else np.array([0.0, 1.0, 0.0])
            base = joints[f][0]
            length = float(np.linalg.norm(joints[f][3] - base))
            r = (0.011, 0.0085) if f == "thumb" else (0.0075, 0.0085)
            v, fc = _tube(base, axis, -0.018, length, 14, r[0], r[1], close_start=True, tip=0.6 * r[0])
            offset = sum(len(a) for a in verts)
            faces += [face + offset for face in fc]
            verts.append(v)
            s = (v - base) @ axis
            cuts = [0.0] + [float(np.linalg.norm(joints[f][k] - base)) for k in (1, 2)]
            parent = 0 if f == "thumb" else meta[f]
            weights.append(_blend(s, cuts, [parent, *chains[f]], J))

        self.rig = HandRig(bone_names=tuple(names), parents=np.asarray(parents, np.int64),
                           heads=np.asarray(heads, np.float64), tails=np.asarray(tails, np.float64), wrist=0,
                           chains=chains, palm_bones=(0, *meta.values()))
        self.rest_vertices = np.concatenate(verts)
        self.faces = faces
        self.skinning_weights = np.concatenate(weights)
        self.licence = dict(TOY_LICENCE)
        self.versions = {"toy_hand": TOY_VERSION}

    def skin(self, bone_transforms: np.ndarray) -> np.ndarray:
        """Linear blend skinning in numpy."""
        T = np.asarray(bone_transforms, np.float64)
        moved = np.einsum("bjik,nk->bjni", T[..., :3, :3], self.rest_vertices) + T[:, :, None, :3, 3]
        return np.einsum("nj,bjni->bni", self.skinning_weights, moved)


# ---------------------------------------------------------------------------------------------
# Camera sampler "ring"
# ---------------------------------------------------------------------------------------------


def _check_ring(cfg) -> None:
    o = cfg.options
    if not 1 <= o["views"] <= 360:
        raise ValueError(f"cameras.options.views = {o['views']}: must be 1..360")
    if not -80.0 <= o["elevation_deg"] <= 80.0:
        raise ValueError(f"cameras.options.elevation_deg = {o['elevation_deg']}: must be within -80..80")


@register_camera_sampler("ring", options={"views": 8, "elevation_deg": 20.0}, validate=_check_ring,
                         description="one ring of cameras around the hand (toy)")
def sample_ring(cfg, hand) -> Views:
    from datagen.cameras import CAMERA_SAMPLERS
    from datagen.cameras.hemisphere import intrinsics, look_at_opencv, pole_frame

    o = CAMERA_SAMPLERS.get("ring").option_values(cfg)
    n, e0, e1 = pole_frame(cfg.pole)
    aim = np.asarray(hand.palm_centre, np.float64)
    el = np.radians(o["elevation_deg"])
    az = 360.0 * np.arange(o["views"]) / o["views"]
    Rs, ts, cs = [], [], []
    for a in np.radians(az):
        c = aim + cfg.radius_m * (np.cos(el) * (np.cos(a) * e0 + np.sin(a) * e1) + np.sin(el) * n)
        R, t = look_at_opencv(c, aim, np.array([0.0, 1.0, 0.0]), n)
        Rs.append(R)
        ts.append(t)
        cs.append(c)
    return Views(intrinsics(cfg), np.stack(Rs), np.stack(ts), np.stack(cs), cfg.width, cfg.height,
                 {"azimuth_deg": az, "slot": np.arange(o["views"], dtype=np.int32)})


# ---------------------------------------------------------------------------------------------
# Label pass "part"
# ---------------------------------------------------------------------------------------------

N_PARTS = 6  # palm, thumb, index, middle, ring, little (HandAsset.dense_part + 1)


def compute_part(ctx) -> np.ndarray:
    """Part id of the triangle seen at each pixel centre (the exact rasterisation)."""
    face = ctx.labels.face
    part = np.zeros(face.shape, np.uint8)
    hit = face >= 0
    part[hit] = ctx.tables.dense_part[ctx.tables.dense_faces[face[hit], 0]] + 1
    return part


def save_part(path, part: np.ndarray, fsync: bool) -> None:
    atomic.write_png(path, np.asarray(part, np.uint8), level=6, fsync=fsync)


def load_part(path, height: int, width: int) -> dict:
    import cv2

    part = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if part is None:
        raise PassError("part PNG cannot be decoded")
    if part.shape != (height, width) or part.dtype != np.uint8:
        raise PassError(f"part image is {part.shape} {part.dtype}, expected ({height}, {width}) uint8")
    return {"part": part}


def check_part(arrays: dict) -> list[tuple[str, str]]:
    part = arrays["part"]
    problems = []
    if part.max(initial=0) > N_PARTS:
        problems.append(("part", f"part ids up to {int(part.max())}, there are {N_PARTS} parts"))
    if "mask" in arrays and not np.array_equal(part > 0, arrays["mask"]):
        problems.append(("part vs silhouette", f"part image and silhouette differ at "
                                               f"{int(np.count_nonzero((part > 0) != arrays['mask']))} px"))
    return problems


def _same(a, _src=None):
    return np.asarray(a, np.uint8), None


def _same_dec(a, _offset=None, _hw=None):
    return a


PART_CODECS = {"u8-gzip": Codec("u8-gzip", "array", "uint8 part id per pixel, gzip 4", _same, _same_dec, "uint8",
                                lambda h, w: (h, w), ("gzip", 4, False))}

PART_PASS = register_label_pass(LabelPass(
    "part", ".part.png", "hand part per pixel: 0 background, 1 palm, 2..6 thumb..little (toy)",
    compute=compute_part, save=save_part, load=load_part, shape=lambda h, w: (h, w), codecs=PART_CODECS,
    default_codec="u8-gzip", check=check_part))
