"""Per-item camera variety (`[cameras.jitter]`, docs/RENDERING.md "Camera variety"): distance
and focal jitter, in-plane roll and an off-centre hand, drawn per item around its view's camera.

The sampler's views (the paper's 216 by default) stay the geometry; an item's camera is its
view's camera changed by five uniform draws from its own child stream of the item seed,
child 16 of `SeedSequence([seed, pose_id, view_id])` (`spawn(17)[16]`; the low children are
datagen.scene.items' - environment, skin, Cycles, handedness, background, lights - and 16 leaves
room for more), so every other draw stays bit-identical and any item is rebuilt exactly:

1. distance: the camera moves along its optical axis, away from (scale > 1) or towards the
   point it aims at; the aim's depth d becomes `distance_scale * d` (t_z += (scale - 1) d).
   d is the palm centre's depth: the hemisphere aims at it; another sampler's camera still
   moves along its own axis, by (scale - 1) d.
2. roll: the camera turns by `roll_deg` about its optical axis (R' = Rz R, t' = Rz t); the
   image turns the other way (+roll: the hand turns clockwise in the image).
3. focal: f' = `focal_scale` f (fx = fy), drawn uniformly in [lo, min(hi, cap)], where cap is
   the largest scale at which the hand's silhouette (its posed dense vertices without the
   forearm, the framing report's points) keeps `margin_px` from every image border with the
   principal point where the view has it.  The hand is never cut: where even `lo` would cut
   it, f' = cap (a zoom below the range, counted by the framing report).
4. shift: the principal point moves by (dx, dy), each drawn uniformly in the part of
   [-shift, shift] x (width, height) that keeps the hand's silhouette `margin_px` inside the
   frame (an interval that always holds 0 after step 3).  A crop of a larger photo is exactly
   this: the same perspective, the principal point off the crop's centre.

Every item draws all five uniforms whichever ranges are set, so turning one option on never
changes another's draw.  With every option off (the default) the item's camera is its view's,
unchanged to the bit (`jitter_on` is false and nothing is drawn).

numpy only (imported inside Blender).  Pure arithmetic per point (no BLAS), so the camera does
not depend on how many points are passed beyond the extremes they hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datagen.seeds import CAMERA_JITTER_STREAM as STREAM, item_stream

MIN_DEPTH_M = 0.01  # a hand point nearer to the camera plane than this is refused


@dataclass(frozen=True)
class ItemCamera:
    """One item's camera: K (3, 3), R (3, 3), t (3,) (x_cam = R x_hand + t), the camera centre
    in the hand frame, and the jitter draws (None when jitter is off)."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    centre: np.ndarray
    jitter: dict | None = None


def jitter_on(cam_cfg) -> bool:
    """True when `[cameras.jitter]` of camera config `cam_cfg` changes any camera."""
    return jitter_active(getattr(cam_cfg, "jitter", None))


def jitter_active(j) -> bool:
    """True when jitter config `j` (CameraJitterConfig or None) has any range other than identity."""
    if j is None:
        return False
    return (tuple(j.distance_scale) != (1.0, 1.0) or tuple(j.focal_scale) != (1.0, 1.0)
            or tuple(j.roll_deg) != (0.0, 0.0) or float(j.shift) != 0.0)


def view_camera(views, view_id: int) -> ItemCamera:
    """The view's own camera (jitter off)."""
    return ItemCamera(views.K, views.R[view_id], views.t[view_id], views.centres[view_id], None)


def jitter_draws(config_seed: int, pose_id: int, view_id: int) -> np.ndarray:
    """The item's five uniforms in [0, 1): distance, roll, focal, shift x, shift y."""
    return np.random.default_rng(item_stream(config_seed, pose_id, view_id, STREAM)).random(5)


def _lerp(lo_hi, u: float) -> float:
    lo, hi = (float(x) for x in lo_hi)
    return lo + (hi - lo) * float(u)


def _rotate(R: np.ndarray, points: np.ndarray) -> np.ndarray:
    """points @ R.T, written out per coordinate (bit-stable whatever the number of points)."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    return np.stack([R[i, 0] * x + R[i, 1] * y + R[i, 2] * z for i in range(3)], axis=1)


def focal_cap(normalised: np.ndarray, K: np.ndarray, width: int, height: int, margin: float) -> float:
    """Largest focal scale s at which points with normalised coordinates (x/z, y/z) (N, 2) stay
    `margin` px inside the image, principal point fixed (inf if nothing limits it)."""
    cap = np.inf
    f = float(K[0, 0])
    for axis, c, size in ((0, float(K[0, 2]), width), (1, float(K[1, 2]), height)):
        a = normalised[:, axis]
        hi, lo = float(a.max()), float(a.min())
        if hi > 0:
            cap = min(cap, (size - margin - c) / (f * hi))
        if lo < 0:
            cap = min(cap, (c - margin) / (f * -lo))
    return max(cap, 0.0)


def item_camera(jcfg, views, view_id: int, config_seed: int, pose_id: int, hand_points: np.ndarray,
                aim: np.ndarray) -> ItemCamera:
    """The camera of item (pose_id, view_id) under jitter config `jcfg` ([cameras.jitter]).

    hand_points (N, 3): the posed hand's points, hand frame (all dense vertices of the hand in
    the renderer; the framing report passes their convex hull, which has the same extremes).
    aim (3,): the point the views aim at (the palm centre).  Raises ValueError when a hand point
    comes within MIN_DEPTH_M of the camera plane (distance_scale too small for the hand).
    """
    u = jitter_draws(config_seed, pose_id, view_id)
    K0, R0, t0 = (np.asarray(a, np.float64) for a in (views.K, views.R[view_id], views.t[view_id]))
    W, H = int(views.width), int(views.height)
    aim = np.asarray(aim, np.float64)
    # 1. distance along the optical axis: the aim's depth d -> s d
    d = float(R0[2, 0] * aim[0] + R0[2, 1] * aim[1] + R0[2, 2] * aim[2] + t0[2])
    s_dist = _lerp(jcfg.distance_scale, u[0])
    t1 = t0 + np.array([0.0, 0.0, (s_dist - 1.0) * d])
    # 2. roll about the optical axis
    roll = _lerp(jcfg.roll_deg, u[1])
    c, s = np.cos(np.radians(roll)), np.sin(np.radians(roll))
    Rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    R = Rz @ R0
    t = Rz @ t1
    pts = _rotate(R, np.asarray(hand_points, np.float64)) + t
    if float(pts[:, 2].min()) < MIN_DEPTH_M:
        raise ValueError(f"pose {pose_id} view {view_id}: with cameras.jitter.distance_scale {s_dist:.3f} the hand "
                         f"reaches the camera plane; raise cameras.jitter.distance_scale's low end")
    xy = np.stack([pts[:, 0] / pts[:, 2], pts[:, 1] / pts[:, 2]], axis=1)
    # 3. focal within the range, capped so the hand keeps the margin
    margin = float(jcfg.margin_px)
    cap = focal_cap(xy, K0, W, H, margin)
    lo, hi = (float(x) for x in jcfg.focal_scale)
    if cap < lo:
        s_focal = cap
    else:
        s_focal = _lerp((lo, min(hi, cap)), u[2])
    f = float(K0[0, 0]) * s_focal
    # 4. principal point shift inside the share of [-shift, shift] that keeps the margin
    shift_px = []
    for axis, size, ui in ((0, W, u[3]), (1, H, u[4])):
        cpp = float(K0[axis, 2])
        a = xy[:, axis]
        lo_px = max(-jcfg.shift * size, margin - (cpp + f * float(a.min())))
        hi_px = min(jcfg.shift * size, size - margin - (cpp + f * float(a.max())))
        lo_px, hi_px = min(lo_px, 0.0), max(hi_px, 0.0)  # 0 fits after step 3 (up to rounding)
        shift_px.append(lo_px + (hi_px - lo_px) * float(ui))
    K = np.array([[f, 0.0, float(K0[0, 2]) + shift_px[0]], [0.0, f, float(K0[1, 2]) + shift_px[1]],
                  [0.0, 0.0, 1.0]])
    centre = -(R.T @ t)
    record = {"distance_scale": s_dist, "focal_scale": s_focal, "focal_cap": cap if np.isfinite(cap) else None,
              "roll_deg": roll, "shift_px": [shift_px[0], shift_px[1]]}
    return ItemCamera(K, R, t, centre, record)



def check_item_camera(K, R, t, K0, R0, t0, width: int, height: int, jcfg, tol: float = 1e-6) -> str | None:
    """None when (K, R, t) is a camera `item_camera` can give for the view camera (K0, R0, t0)
    under `jcfg`: the view's camera rolled about its axis within roll_deg, moved along its axis,
    focal at most focal_scale's high end, principal point within shift.  Else one line saying
    what differs (the packer uses it)."""
    K, R, t = (np.asarray(a, np.float64) for a in (K, R, t))
    K0, R0, t0 = (np.asarray(a, np.float64) for a in (K0, R0, t0))
    W, H = int(width), int(height)
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
        return "R is not a rotation"
    if K[0, 1] != 0 or K[1, 0] != 0 or abs(K[0, 0] - K[1, 1]) > tol * K[0, 0] or list(K[2]) != [0.0, 0.0, 1.0]:
        return "K is not a pinhole camera with fx == fy and no skew"
    Rz = R @ R0.T  # must be a rotation about the optical axis
    if abs(Rz[2, 2] - 1.0) > 1e-6:
        return "the camera's optical axis differs from its view's (not an in-plane roll)"
    roll = float(np.degrees(np.arctan2(Rz[1, 0], Rz[0, 0])))
    lo, hi = (float(x) for x in jcfg.roll_deg)
    if not any(lo - 1e-6 <= r <= hi + 1e-6 for r in (roll, roll - 360.0, roll + 360.0)):
        return f"roll {roll:.3f} deg outside cameras.jitter.roll_deg {[lo, hi]}"
    dt = Rz.T @ t - t0  # undo the roll: only the depth may change
    if abs(dt[0]) > 1e-6 or abs(dt[1]) > 1e-6:
        return "the camera centre left its view's optical axis"
    if not (float(K[0, 0]) <= float(K0[0, 0]) * float(jcfg.focal_scale[1]) * (1 + tol)):
        return f"focal {K[0, 0]:.3f} px above cameras.jitter.focal_scale's high end"
    for axis, size in ((0, W), (1, H)):
        if abs(K[axis, 2] - K0[axis, 2]) > float(jcfg.shift) * size + 1e-6:
            return f"principal point moved {K[axis, 2] - K0[axis, 2]:.3f} px, beyond cameras.jitter.shift"
    return None
