"""Wrist angles per pose: where the forearm points, relative to the fixed hand.

The hand frame is fixed on the hand (the cameras are too), so a wrist angle moves the forearm,
not the hand: the forearm bone (`HandRig.forearm`, head = the wrist joint centre) gets the
inverse of the hand's rotation relative to the forearm.

- flexion f (degrees, + flexion = palm towards the forearm's palmar side, - extension): the
  hand rotates about the hand frame's +x (radial) axis by +f (+y turns towards +z, palmar);
- deviation d (+ ulnar = fingers towards the little-finger side, -x; - radial): the hand rotates
  about +z (palmar normal) by +d (+y turns towards -x).
Hand relative to forearm H = Rz(d) @ Rx(f); the forearm bone's rotation is H^T.

Angles are drawn uniformly within the config's ranges ([hand] wrist_flexion_deg,
wrist_deviation_deg) from `numpy.random.SeedSequence([seed, pose_id, WRIST_STREAM])`: a pose's
angles depend on the config seed and its id only, never on how work is split.  With
`[hand] wrist_draw = "item"` the pose table keeps the arm straight (the forearm bone's rotation
is the identity) and every item turns it (datagen.scene.arm): the forearm bone is a root bone
rotating about its head, so under linear blend skinning only the vertices it weighs move, by
`arm_delta` - exactly what skinning the pose again with the item's rotation gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WRIST_STREAM = 0x57  # third SeedSequence word: keeps these draws apart from the items' ([seed, pose, view])


@dataclass(frozen=True)
class WristAngles:
    """Per-pose wrist angles in degrees: flexion (+ palmar) and deviation (+ ulnar)."""

    flexion_deg: np.ndarray  # (P,)
    deviation_deg: np.ndarray  # (P,)


def draw_wrist_angles(pose_ids: np.ndarray, seed: int, flexion_deg: tuple[float, float],
                      deviation_deg: tuple[float, float]) -> WristAngles:
    f, d = [], []
    for pid in np.asarray(pose_ids, dtype=np.int64):
        u = np.random.default_rng(np.random.SeedSequence([int(seed), int(pid), WRIST_STREAM])).random(2)
        f.append(flexion_deg[0] + u[0] * (flexion_deg[1] - flexion_deg[0]))
        d.append(deviation_deg[0] + u[1] * (deviation_deg[1] - deviation_deg[0]))
    return WristAngles(np.asarray(f), np.asarray(d))


def forearm_rotation(flexion_deg: float, deviation_deg: float) -> np.ndarray:
    """The forearm bone's rotation (3, 3, hand-frame axes) for one pair of wrist angles."""
    f, d = np.radians(flexion_deg), np.radians(deviation_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(f), -np.sin(f)], [0, np.sin(f), np.cos(f)]])
    rz = np.array([[np.cos(d), -np.sin(d), 0], [np.sin(d), np.cos(d), 0], [0, 0, 1]])
    return (rz @ rx).T


def arm_delta(offsets: np.ndarray, weights: np.ndarray, rot_from: np.ndarray, rot_to: np.ndarray) -> np.ndarray:
    """(n, 3) change of the base vertices the forearm bone weighs when its rotation goes from
    `rot_from` to `rot_to` (3, 3): weights (n,) times (rot_to - rot_from) @ offset, where
    `offsets` (n, 3) are those vertices' rest positions minus the bone's head (its pivot)."""
    return np.asarray(weights, np.float64)[:, None] * (np.asarray(offsets, np.float64) @ (rot_to - rot_from).T)


RANGE_TOL_DEG = 1e-3  # item JSONs round the angles to 1e-4 degrees


def wrist_range_problem(flexion_deg: float, deviation_deg: float, flexion_range, deviation_range) -> str | None:
    """Why a pair of wrist angles is not within the config's ranges ([hand] wrist_flexion_deg,
    wrist_deviation_deg; RANGE_TOL_DEG of slack), naming the key; None when it is."""
    for key, v, (lo, hi) in (("flexion_deg", flexion_deg, flexion_range), ("deviation_deg", deviation_deg, deviation_range)):
        if not np.isfinite(v) or not lo - RANGE_TOL_DEG <= v <= hi + RANGE_TOL_DEG:
            return f"{key} {v} is outside [hand] wrist_{key} = [{lo}, {hi}]"
    return None


def arm_offsets(rest_base: np.ndarray, rest_heads: np.ndarray, bone_names, arm_rows: np.ndarray,
                table: np.ndarray | None = None, pose_id: int | None = None) -> np.ndarray:
    """(n, 3) float64 rest positions of the forearm-weighted base vertices `arm_rows` minus the
    forearm bone's head (its pivot, the wrist joint centre): from the one rest hand, or with
    per-pose hands ([hand.shape]) row `pose_id` of their `table` (P, n, 3)."""
    if table is not None:
        return np.asarray(table[pose_id], np.float64)
    fb = [str(b) for b in bone_names].index("forearm.R")
    return np.asarray(rest_base, np.float64)[np.asarray(arm_rows)] - np.asarray(rest_heads, np.float64)[fb]


def item_base_from_files(base: np.ndarray, hand, poses, pose_id: int, wrist: dict | None) -> np.ndarray:
    """An item's base vertices (Nb, 3) float64 from a RENDER_DIR's files: `base` its pose's
    (meshes/pose_NNNNN.npz "base"), `hand` / `poses` the arrays of hand.npz / poses.npz (any
    mapping, e.g. np.load), `wrist` the item JSON's `wrist` block (None: the pose's own arm)."""
    out = np.asarray(base, np.float64).copy()
    if not wrist:
        return out
    fb = [str(b) for b in hand["bone_names"]].index("forearm.R")
    rows = np.asarray(hand["arm_rows"])
    offsets = arm_offsets(hand["rest_base_vertices"], hand["rest_heads"], hand["bone_names"], rows,
                          poses["arm_offsets"] if "arm_offsets" in poses else None, pose_id)
    turn = forearm_rotation(float(wrist["flexion_deg"]), float(wrist["deviation_deg"]))
    out[rows] += arm_delta(offsets, hand["arm_weights"], poses["rotations"][pose_id, fb], turn)
    return out


def apply_wrist_angles(table, rig, cfg) -> WristAngles:
    """Set the forearm bone's rotation of every pose of `table` (in place) from the config."""
    if rig.forearm < 0:
        raise ValueError("the hand model has no forearm bone")
    angles = draw_wrist_angles(table.ids, cfg.seed, cfg.hand.wrist_flexion_deg, cfg.hand.wrist_deviation_deg)
    for p in range(len(table.ids)):
        table.rotations[p, rig.forearm] = forearm_rotation(angles.flexion_deg[p], angles.deviation_deg[p])
    return angles


__all__ = ["RANGE_TOL_DEG", "WristAngles", "apply_wrist_angles", "arm_delta", "draw_wrist_angles", "forearm_rotation",
           "arm_offsets", "item_base_from_files", "WRIST_STREAM", "wrist_range_problem"]


__all__ = ["WristAngles", "apply_wrist_angles", "arm_delta", "item_base_from_files", "draw_wrist_angles", "forearm_rotation", "WRIST_STREAM"]
