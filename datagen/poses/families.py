"""Pose families beyond the paper's construction: partial curls, spread-and-curled mixes,
thumb-to-finger pinches ("OK") and power grasps (`[poses.families]`, docs/POSES.md "Families").

The paper's poses are mixes of two states per finger, so every finger moves in its flexion
plane from "straight" to "fist" with all three joints in lockstep, and the thumb never opposes
a finger.  Real photographs are full of what that cannot reach.  Each family here is a seeded
sampler of joint angles within the same human limits (datagen.poses.angles.LIMITS); a pose is
kept only when its deepest interpenetration (datagen.poses.collision) is at most 1 mm,
otherwise the pose's own seed stream draws again:

- ``curl``: every finger curled independently and partially: MCP ~ U(0, 1) x its bent angle,
  PIP ~ U(0, 1) x its bent angle, DIP = PIP's fraction x U(0.6, 1) (the DIP follows the PIP,
  oblique retinacular ligament), the thumb a fraction ~ U(0, 1) of its bent state.  Hook
  (MCP straight, PIP/DIP bent) and tabletop (MCP bent, PIP/DIP straight) shapes included.
- ``spread``: a ``curl`` draw plus finger splay (datagen.poses.splay: ranges shrinking with
  MCP flexion, neighbours never converging).
- ``pinch``: the thumb tip brought to a fingertip (index with probability 1/2, else middle,
  ring or little): the target finger flexed MCP 25-55, PIP 30-70, DIP 10-40 deg, the other
  fingers loosely open (fractions 0-0.4 of their bent state) as in the "OK" sign, and the
  thumb's five angles solved (bounded least squares) so the two tip keypoints are 3-12 mm
  apart - pads touching to an almost-closed pinch.
- ``grasp``: a power grasp around an imagined cylinder: the four fingers curled together
  (fraction ~ U(0.25, 0.75), each finger +-0.1), the thumb opposed: CMC flexion 15-40, palmar
  abduction 30-50, axial rotation -45..-15 deg, MCP 0-30, IP 0-40.

Ids: the families follow the paper's poses in the order of `FAMILY_NAMES`, each with the count
its config gives.  Pose p draws from ``SeedSequence([seed, FAMILY_STREAM, p, attempt])``:
deterministic from the seed and the id, never from how work is split.  Provenance: pose_a ==
pose_b == p, t = 0 (a pose of its own: each is its own pose group, datagen.poses.construction
.canonical_ids).
"""

from __future__ import annotations

import logging

import numpy as np

from datagen.hand.base import FINGERS, HandModel, forward_kinematics
from datagen.poses.angles import DEFAULT_ANGLES, FAMILY_NAMES, LIMITS, PoseAngles

log = logging.getLogger(__name__)

FAMILY_STREAM = 0xFA31
MAX_ATTEMPTS = 40
ACCEPT_DEPTH_M = 0.001  # kept when the deepest penetration is at most this (the report's bar is 2 mm)
PINCH_GAP_MM = (3.0, 12.0)  # thumb tip keypoint to fingertip keypoint
# Thumb angle bounds for the pinch solve (degrees; CMC relative to rest like the tables).
THUMB_BOUNDS = (np.array([0.0, 0.0, -50.0, 0.0, 0.0]), np.array([60.0, 50.0, 0.0, LIMITS["thumb_mcp"],
                                                                  LIMITS["thumb_ip"]]))


def joint_rotations(hand: HandModel, jx, flex: dict, thumb) -> np.ndarray:
    """Local rotations (J, 3, 3): finger flexions (MCP, PIP, DIP degrees, anatomical) and the
    thumb's five angles, with the conventions of datagen.poses.construction.state_rotations."""
    from datagen.poses.construction import rotation_about

    rig = hand.rig
    R = np.tile(np.eye(3), (len(rig.bone_names), 1, 1))
    chain = rig.chains["thumb"]
    cmc_flex, cmc_abd, cmc_opp, mcp, ip = np.radians(np.asarray(thumb, float))
    a = jx.axes["thumb"]
    R[chain[0]] = (rotation_about(a[0], cmc_flex) @ rotation_about(jx.thumb_abduction_axis, cmc_abd)
                   @ rotation_about(jx.thumb_long_axis, cmc_opp))
    R[chain[1]] = rotation_about(a[1], mcp - jx.rest_angles["thumb"][1])
    R[chain[2]] = rotation_about(a[2], ip - jx.rest_angles["thumb"][2])
    for finger in FINGERS[1:]:
        target = np.radians(np.asarray(flex[finger], float))
        for j, b in enumerate(rig.chains[finger]):
            R[b] = rotation_about(jx.axes[finger][j], target[j] - jx.rest_angles[finger][j])
    return R


def _curl(rng, angles: PoseAngles):
    flex = {}
    for f in FINGERS[1:]:
        mcp, pip, dip = angles.bent[f]
        s_mcp, s_pip = rng.uniform(0, 1, 2)
        flex[f] = (s_mcp * mcp, s_pip * pip, s_pip * rng.uniform(0.6, 1.0) * dip)
    thumb = rng.uniform(0, 1) * np.asarray(angles.thumb_bent)
    return flex, thumb


def _grasp(rng, angles: PoseAngles):
    s = rng.uniform(0.25, 0.75)
    flex = {}
    for f in FINGERS[1:]:
        sk = np.clip(s + rng.uniform(-0.1, 0.1), 0, 1)
        mcp, pip, dip = angles.bent[f]
        flex[f] = (sk * mcp, sk * pip, sk * dip)
    thumb = np.array([rng.uniform(15, 40), rng.uniform(30, 50), rng.uniform(-45, -15), rng.uniform(0, 30),
                      rng.uniform(0, 40)])
    return flex, thumb


class _PinchSolver:
    """Thumb angles that bring the thumb tip to a fingertip (tips follow their distal bones rigidly)."""

    def __init__(self, hand: HandModel, jx, rest_tips: np.ndarray):
        self.hand, self.jx = hand, jx
        self.rest_tips = np.c_[rest_tips, np.ones(5)]  # (5, 4) homogeneous, thumb..little
        self.distal = [hand.rig.chains[f][2] for f in FINGERS]

    def tips(self, flex, thumb) -> np.ndarray:
        T = forward_kinematics(self.hand.rig, joint_rotations(self.hand, self.jx, flex, thumb)[None])[0]
        return np.stack([(T[b] @ self.rest_tips[k])[:3] for k, b in enumerate(self.distal)])

    def solve(self, flex, target: int, gap_m: float, x0) -> np.ndarray:
        from scipy.optimize import least_squares

        def residual(x):
            tips = self.tips(flex, x)
            d = np.linalg.norm(tips[0] - tips[target])
            return np.r_[(d - gap_m) / 0.001, 0.02 * (x - x0) / 10.0]  # mm; a weak pull to the start

        lo, hi = THUMB_BOUNDS
        return least_squares(residual, np.clip(x0, lo, hi), bounds=(lo, hi), diff_step=1e-3).x


def _pinch(rng, angles: PoseAngles, solver: _PinchSolver):
    target = 1 if rng.uniform() < 0.5 else int(rng.integers(2, 5))
    flex = {}
    for k, f in enumerate(FINGERS[1:], start=1):
        mcp, pip, dip = angles.bent[f]
        if k == target:
            flex[f] = (rng.uniform(25, 55), rng.uniform(30, 70), rng.uniform(10, 40))
        else:
            s = rng.uniform(0, 0.4)
            flex[f] = (s * mcp, s * pip, s * dip)
    gap = rng.uniform(*PINCH_GAP_MM) / 1000
    x0 = np.array([35.0, 30.0, -30.0, 20.0, 20.0]) + rng.uniform(-5, 5, 5)
    return flex, solver.solve(flex, target, gap, x0)


def _curl_fraction(flex: dict, thumb, angles: PoseAngles) -> np.ndarray:
    """(5,) bend fraction per finger (mean over its joints of angle / bent angle), in [0, 1]."""
    tb = np.asarray(angles.thumb_bent)
    t = np.asarray(thumb)[[0, 3, 4]] / np.where(tb[[0, 3, 4]] == 0, 1, tb[[0, 3, 4]])
    out = [np.clip(t.mean(), 0, 1)]
    for f in FINGERS[1:]:
        out.append(np.clip(np.mean(np.asarray(flex[f]) / np.asarray(angles.bent[f])), 0, 1))
    return np.asarray(out)


def append_families(hand: HandModel, asset, table, families: dict, seed: int, angles: PoseAngles | None = None,
                    splay_amount: float = 1.0, progress: bool = False):
    """`table` (the paper's poses, splayed or not) followed by the families' poses.

    Every family pose is checked with the interpenetration detector as it is drawn; a pose
    deeper than `ACCEPT_DEPTH_M` is drawn again from its own stream (attempt 1, 2, ...), up to
    `MAX_ATTEMPTS`, after which the shallowest attempt is kept and logged."""
    from datagen.poses.collision import PenetrationChecker
    from datagen.poses.construction import PoseTable, canonical_ids, derive_axes, finger_states
    from datagen.poses.splay import apply_splay, draw_splay, limit_scale

    angles = DEFAULT_ANGLES if angles is None else angles
    jx = derive_axes(hand)
    rest_dense = asset.dense(asset.rest_base_vertices)
    checker = PenetrationChecker(asset.dense_faces, asset.dense_part, rest_dense)
    rest_kp = asset.keypoints(asset.rest_heads, rest_dense)
    solver = _PinchSolver(hand, jx, rest_kp[[4, 8, 12, 16, 20]])
    ids, rots, states = [], [], []
    next_id = len(table)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(families.values()), desc="pose families", unit="pose", mininterval=2.0)
    for name in FAMILY_NAMES:
        for _ in range(families.get(name, 0)):
            pid = next_id
            next_id += 1
            best = None
            for attempt in range(MAX_ATTEMPTS):
                rng = np.random.default_rng(np.random.SeedSequence([seed, FAMILY_STREAM, pid, attempt]))
                if name in ("curl", "spread"):
                    flex, thumb = _curl(rng, angles)
                elif name == "grasp":
                    flex, thumb = _grasp(rng, angles)
                else:
                    flex, thumb = _pinch(rng, angles, solver)
                R = joint_rotations(hand, jx, flex, thumb)
                state = _curl_fraction(flex, thumb, angles)
                if name == "spread":
                    scale = limit_scale([flex[f][0] for f in FINGERS[1:]], float(state[0]))
                    R = apply_splay(R, hand.rig.chains, draw_splay(rng, scale, splay_amount))
                V = asset.dense(hand.skin(forward_kinematics(hand.rig, R[None]))[0])
                depth = max((d for _, _, d, _ in checker.pose_penetration(V)), default=0.0)
                if best is None or depth < best[0]:
                    best = (depth, R, state)
                if depth <= ACCEPT_DEPTH_M:
                    break
            else:
                log.warning("pose %d (%s): no attempt of %d under %.1f mm; kept the shallowest (%.2f mm)",
                            pid, name, MAX_ATTEMPTS, ACCEPT_DEPTH_M * 1000, best[0] * 1000)
            ids.append(pid)
            rots.append(best[1])
            states.append(best[2])
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    fam = np.asarray(ids, dtype=table.ids.dtype)
    pose_a = np.concatenate([table.pose_a, fam])
    pose_b = np.concatenate([table.pose_b, fam])
    t = np.concatenate([table.t, np.zeros(len(fam))])
    canonical = canonical_ids(finger_states(pose_a, pose_b, t))
    return PoseTable(np.concatenate([table.ids, fam]), pose_a, pose_b, t,
                     np.concatenate([table.rotations, np.stack(rots)]) if rots else table.rotations,
                     np.concatenate([table.finger_state, np.asarray(states).reshape(-1, 5)]), canonical)
