"""The pose space of the complement dataset: 32 base poses, 496 pairs, 1520 poses.

Each finger has two states, fully extended and fully bent (a natural fist when all five are
bent).  A state is a set of anatomical joint angles; a joint angle is a rotation about the
joint's flexion axis, which we derive from the rig's geometry rather than from imported bone
rolls (those are arbitrary):

- fingers: axis = bone direction x palm normal, the palm normal coming from the wrist and the
  MCP joint centres (see `datagen.hand.anny_hand.hand_frame`);
- thumb: the thumb is pronated with respect to the fingers, so its axis is the width
  direction of its distal phalanx - the principal axis of that phalanx's skin cross-section
  (the nail makes it wider than deep) - orthogonalised against each thumb bone.

Angles are anatomical: 0 = the bone continues its parent's direction, measured in the
flexion plane.  `EXTENDED` straightens the slightly curled rest pose; `BENT` is a fist within
human active ranges of motion (MCP <= 90, PIP <= 110, DIP <= 80 degrees; thumb MCP <= 60,
IP <= 80).  The thumb's CMC has three rotations (flexion about the thumb axis, palmar abduction, and
axial rotation about the metacarpal's long axis) relative to its rest orientation, because
its rest angle to the wrist has no anatomical zero.

Pose ids (stable, documented in docs/ARCHITECTURE.md):
- 0..31: base poses; bit k of the id is finger k's state (thumb = bit 0 ... little = bit 4,
  1 = bent).  Pose 0 is the open hand, 31 the fist.
- 32..1519: pair (a, b) with a < b in lexicographic order, pair index p = 0..495, then
  t = 1/4, 1/2, 3/4: id = 32 + 3 p + (step - 1).
Intermediate poses interpolate joint rotations (slerp per bone), never vertices.  Only 1235
of the 1520 poses are distinct (see `canonical_ids`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from datagen.hand.asset import HandAsset, posed_bone_heads
from datagen.hand.base import FINGERS, HandModel, forward_kinematics
# The angle tables live in datagen.poses.angles (import-light: a hand model's registration may
# bring its own); the names stay importable from here.
from datagen.poses.angles import (  # noqa: F401 - the tables stay importable from here
    BENT,
    DEFAULT_ANGLES,
    EXTENDED,
    LIMITS,
    THUMB_BENT,
    THUMB_EXTENDED,
    PoseAngles,
)


def rotation_about(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle_rad) * K + (1 - np.cos(angle_rad)) * K @ K


def _unit(v):
    return v / np.linalg.norm(v)


@dataclass
class JointAxes:
    """Per finger, per joint: rest direction of the bone and its parent, and the flexion axis."""

    axes: dict[str, list[np.ndarray]]
    rest_angles: dict[str, list[float]]  # anatomical flexion of the rest pose (radians)
    thumb_long_axis: np.ndarray  # opposition axis of the CMC (the metacarpal's direction)
    thumb_abduction_axis: np.ndarray  # long axis x flexion axis: moves the thumb out of the palm plane


def _flexion(parent_dir: np.ndarray, d: np.ndarray, axis: np.ndarray) -> float:
    """Signed angle (radians) from the parent bone's direction to d about axis, in the flexion plane."""
    p = _unit(parent_dir - np.dot(parent_dir, axis) * axis)
    q = _unit(d - np.dot(d, axis) * axis)
    return float(np.arctan2(np.dot(np.cross(p, q), axis), np.dot(p, q)))


def derive_axes(hand: HandModel) -> JointAxes:
    rig = hand.rig
    palm_normal = np.array([0.0, 0.0, 1.0])  # the hand frame's z is the palm normal by construction
    axes: dict[str, list[np.ndarray]] = {}
    rest: dict[str, list[float]] = {}
    def direction(b):
        return _unit(rig.tails[b] - rig.heads[b])

    # Thumb axis from the distal phalanx cross-section.
    tb = rig.chains["thumb"]
    d3 = direction(tb[2])
    sel = hand.skinning_weights[:, tb[2]] > 0.6
    P = hand.rest_vertices[sel] - hand.rest_vertices[sel].mean(0)
    P -= np.outer(P @ d3, d3)
    width = np.linalg.eigh(P.T @ P)[1][:, 2]
    palm_centre = rig.heads[[rig.wrist] + [rig.chains[f][0] for f in FINGERS[1:]]].mean(0)
    thumb_axes = []
    for b in tb:
        d = direction(b)
        a = _unit(width - np.dot(width, d) * d)
        if np.dot(np.cross(a, d), palm_centre - rig.heads[b]) < 0:
            a = -a  # positive angles swing the thumb towards the palm
        thumb_axes.append(a)
    axes["thumb"] = thumb_axes
    # The CMC has no anatomical zero against the wrist (angles are relative to rest); the MCP
    # and IP are measured like the fingers' joints.
    rest["thumb"] = [0.0] + [_flexion(direction(tb[j - 1]), direction(tb[j]), thumb_axes[j]) for j in (1, 2)]

    for finger in FINGERS[1:]:
        chain = rig.chains[finger]
        parent_dir = direction(int(rig.parents[chain[0]]))  # the metacarpal
        fa, fr = [], []
        for b in chain:
            d = direction(b)
            a = _unit(np.cross(d, palm_normal))
            fa.append(a)
            fr.append(_flexion(parent_dir, d, a))
            parent_dir = d
        axes[finger] = fa
        rest[finger] = fr
    long_axis = direction(tb[0])
    abduction = _unit(np.cross(long_axis, thumb_axes[0]))
    if np.dot(np.cross(abduction, long_axis), palm_normal) < 0:
        abduction = -abduction  # positive abduction lifts the thumb palmar
    return JointAxes(axes=axes, rest_angles=rest, thumb_long_axis=long_axis, thumb_abduction_axis=abduction)


def state_rotations(hand: HandModel, jx: JointAxes, bent_mask: int,
                    bent=None, thumb_bent=None, angles: PoseAngles | None = None) -> np.ndarray:
    """Local rotations (J, 3, 3) of a base pose; bit k of bent_mask bends finger k.

    `angles`: the hand model's angle tables (default: the anny-tuned DEFAULT_ANGLES);
    `bent`/`thumb_bent` override its bent state (tests of the joint limits)."""
    angles = DEFAULT_ANGLES if angles is None else angles
    bent = angles.bent if bent is None else bent
    thumb_bent = angles.thumb_bent if thumb_bent is None else thumb_bent
    rig = hand.rig
    R = np.tile(np.eye(3), (len(rig.bone_names), 1, 1))
    for k, finger in enumerate(FINGERS):
        is_bent = bool(bent_mask >> k & 1)
        chain = rig.chains[finger]
        if finger == "thumb":
            cmc_flex, cmc_abd, cmc_opp, mcp, ip = np.radians(thumb_bent if is_bent else angles.thumb_extended)
            a = jx.axes["thumb"]
            R[chain[0]] = (rotation_about(a[0], cmc_flex) @ rotation_about(jx.thumb_abduction_axis, cmc_abd)
                           @ rotation_about(jx.thumb_long_axis, cmc_opp))
            R[chain[1]] = rotation_about(a[1], mcp - jx.rest_angles["thumb"][1])
            R[chain[2]] = rotation_about(a[2], ip - jx.rest_angles["thumb"][2])
        else:
            target = np.radians(bent[finger] if is_bent else angles.extended[finger])
            for j, b in enumerate(chain):
                R[b] = rotation_about(jx.axes[finger][j], target[j] - jx.rest_angles[finger][j])
    return R


def slerp_rotations(Ra: np.ndarray, Rb: np.ndarray, t: float) -> np.ndarray:
    """Per-bone geodesic interpolation between two stacks of rotations."""
    out = np.empty_like(Ra)
    for j in range(len(Ra)):
        rel = Ra[j].T @ Rb[j]
        cos = np.clip((np.trace(rel) - 1) / 2, -1, 1)
        angle = np.arccos(cos)
        if angle < 1e-9:
            out[j] = Ra[j]
            continue
        axis = np.array([rel[2, 1] - rel[1, 2], rel[0, 2] - rel[2, 0], rel[1, 0] - rel[0, 1]])
        if np.linalg.norm(axis) < 1e-9:  # angle ~ pi: take the axis from the symmetric part
            w, v = np.linalg.eigh((rel + rel.T) / 2)
            axis = v[:, np.argmax(w)]
        out[j] = Ra[j] @ rotation_about(axis, t * angle)
    return out


@dataclass
class PoseTable:
    """All poses: provenance, joint rotations and (filled by `pose_meshes`) geometry."""

    ids: np.ndarray  # (P,)
    pose_a: np.ndarray  # (P,) base pose at t = 0
    pose_b: np.ndarray  # (P,) base pose at t = 1 (== pose_a for base poses)
    t: np.ndarray  # (P,)
    rotations: np.ndarray  # (P, J, 3, 3) local rotations about rest joint centres, hand frame
    finger_state: np.ndarray  # (P, 5) bend fraction per finger (thumb..little), 0 extended, 1 bent
    canonical: np.ndarray  # (P,) smallest pose id with the same finger states (see below)

    def __len__(self) -> int:
        return len(self.ids)


def pair_list(n_base: int = 32) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(n_base), 2))


def build_pose_table(hand: HandModel, steps: int = 3, angles: PoseAngles | None = None) -> PoseTable:
    """The paper's pose table for `hand`; `angles` = the hand model's tables (None: the default)."""
    jx = derive_axes(hand)
    base = np.stack([state_rotations(hand, jx, m, angles=angles) for m in range(32)])
    ids, pa, pb, ts, rots = [], [], [], [], []
    for m in range(32):
        ids.append(m)
        pa.append(m)
        pb.append(m)
        ts.append(0.0)
        rots.append(base[m])
    for a, b in pair_list():
        for s in range(1, steps + 1):
            t = s / (steps + 1)
            ids.append(len(ids))
            pa.append(a)
            pb.append(b)
            ts.append(t)
            rots.append(slerp_rotations(base[a], base[b], t))
    pa, pb, ts = np.asarray(pa), np.asarray(pb), np.asarray(ts)
    state = finger_states(pa, pb, ts)
    return PoseTable(np.asarray(ids), pa, pb, ts, np.stack(rots), state, canonical_ids(state))


def finger_states(pose_a: np.ndarray, pose_b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(P, 5) bend fraction of each finger: (1 - t) * state_a + t * state_b.

    Rows of the pose families (datagen.poses.families: pose_a == pose_b == their own id,
    beyond the 32 base poses) are no mix of two base states: NaN, and `canonical_ids` gives
    each its own group."""
    pose_a, pose_b = np.asarray(pose_a), np.asarray(pose_b)
    t = np.asarray(t, dtype=np.float64)
    family = pose_a >= 32
    bits = lambda m: (np.where(family, 0, m)[:, None] >> np.arange(5)) & 1  # noqa: E731
    state = (1 - t)[:, None] * bits(pose_a) + t[:, None] * bits(pose_b)
    if family.any():
        state[family] = np.nan
    return state


def canonical_ids(state: np.ndarray) -> np.ndarray:
    """For each pose, the first pose id with identical finger states.

    The paper's construction repeats poses: at t = 1/2 every moving finger is half bent, so
    two pairs that differ only in which way their fingers move meet in the same pose (e.g.
    thumb bent -> index bent and open hand -> thumb+index bent).  1520 ids hold 1235 distinct
    poses (32 + 211 midpoints + 992 quarter points).  Ids are kept (they are the paper's), and
    splits by pose must group by this canonical id or identical poses leak across splits.
    """
    own = np.isnan(state).any(axis=1)  # family poses (finger_states): each its own group
    key = np.round(np.where(own[:, None], 0, state) * 4).astype(np.int64) @ (5 ** np.arange(5))
    key[own] = -1 - np.nonzero(own)[0]  # paper keys are >= 0
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first[inverse]


def pose_meshes(hand: HandModel, asset: HandAsset, table: PoseTable, batch: int = 256):
    """Posed base vertices (P, Nb, 3) and 21 keypoints (P, 21, 3) for every pose, hand frame."""
    base, kps = [], []
    for s in range(0, len(table), batch):
        T = forward_kinematics(hand.rig, table.rotations[s : s + batch])
        V = hand.skin(T)
        heads = posed_bone_heads(asset, T)
        for v, h in zip(V, heads):
            kps.append(asset.keypoints(h, asset.dense(v)))
        base.append(V)
    return np.concatenate(base).astype(np.float32), np.stack(kps).astype(np.float32)


def check_limits(angles: PoseAngles | None = None) -> list[str]:
    """Problems with the angle tables against human ranges of motion (empty = fine)."""
    angles = DEFAULT_ANGLES if angles is None else angles
    problems = []
    for finger, (mcp, pip, dip) in angles.bent.items():
        for name, v in (("mcp", mcp), ("pip", pip), ("dip", dip)):
            if not 0 <= v <= LIMITS[name]:
                problems.append(f"{finger} {name} = {v} outside 0..{LIMITS[name]}")
    _, _, _, tmcp, tip = angles.thumb_bent
    if not 0 <= tmcp <= LIMITS["thumb_mcp"]:
        problems.append(f"thumb mcp = {tmcp}")
    if not 0 <= tip <= LIMITS["thumb_ip"]:
        problems.append(f"thumb ip = {tip}")
    return problems
