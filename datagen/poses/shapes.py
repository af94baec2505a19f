"""The paper's pose table over drawn hand shapes ([hand.shape], datagen.hand.shape).

Every canonical pose gets its own hand (phenotypes drawn from the config's ranges); its rows
are built on that hand exactly as `build_pose_table` builds them on the one hand: the joint
axes come from the shaped rig (`derive_axes`), the base states from the same angle tables and
the intermediate poses by per-bone slerp.  The hand frame is the shaped hand's own (its wrist
keypoint and MCPs), the topology, parts, fingertip definitions and 778 mapping are the asset's.
With the forearm the wrist angles are the same draws as without shapes (datagen.poses.wrist);
with `[poses] splay` the abduction is too (datagen.poses.splay, per canonical pose), applied on
each pose's own hand.

Interpenetration: the angle tables were tuned on the mean hand, and a few drawn hands (about
1.5% of configs/shapes.toml's: mostly male hands with a bent thumb, heavy hands with bent
fingers) push a finger > 2 mm into the palm.  Such a hand is redrawn for its pose (the next
attempt of its own seed stream) until every pose of it stays within 2 mm, so the pose report's
`penetrating_over_2mm=0` holds over the shapes too.

Per pose the table records the phenotype values and the open hand's sizes (hand length, palm
width and breadth, bone lengths; `datagen.hand.shape.hand_measures`), which go to the item
JSON's `shape` record, poses.npz, tables.h5 and the reader.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from datagen.hand.asset import HandAsset, frame_like, posed_bone_heads
from datagen.hand.base import HandModel, forward_kinematics
from datagen.hand.shape import hand_measures
from datagen.poses.construction import PoseTable, build_pose_table, derive_axes, slerp_rotations, state_rotations
from datagen.poses.splay import apply_splay

log = logging.getLogger(__name__)

# The open hand's sizes stored per pose (datagen.hand.shape.hand_measures), in this order.
MEASURE_NAMES = ("hand_length_m", "palm_width_m", "palm_breadth_m") + tuple(
    f"{f}_{i}_m" for f in ("thumb", "index", "middle", "ring", "little") for i in (1, 2, 3))


# A hand whose pose interpenetrates deeper than this is redrawn (the pose report's threshold).
PENETRATION_LIMIT_M = 0.002
MAX_ATTEMPTS = 8


@dataclass
class ShapedTable:
    table: PoseTable
    base_vertices: np.ndarray  # (P, Nb, 3) float32
    keypoints: np.ndarray  # (P, 21, 3) float32
    shape_names: tuple[str, ...]  # the phenotypes, in the model's order
    shape_values: np.ndarray  # (P, K) float64
    shape_measures: np.ndarray  # (P, len(MEASURE_NAMES)) float64, metres
    arm_offsets: np.ndarray | None = None  # (P, n, 3) with a forearm (datagen.poses.tables.HandTables.arm_offsets)


def _rows(table: PoseTable, rows: np.ndarray) -> PoseTable:
    return PoseTable(table.ids[rows], table.pose_a[rows], table.pose_b[rows], table.t[rows], table.rotations[rows],
                     table.finger_state[rows], table.canonical[rows])


def build_shaped_table(hand: HandModel, asset: HandAsset, cfg, names: tuple[str, ...], angles=None,
                       progress: bool = False, pose_ids=None) -> ShapedTable:
    """The pose table of `cfg` with one drawn shape per canonical pose (see the module docstring).

    `hand`: the model at [hand.phenotype] (the asset's hand), `names`: the model's phenotypes;
    `pose_ids`: only these rows (tests; default all).  A hand that makes one of its poses
    interpenetrate by more than `PENETRATION_LIMIT_M` (the pose report's threshold) is redrawn
    (`draw_phenotype` attempts 1, 2, ...; after `MAX_ATTEMPTS` the pose keeps [hand.phenotype]'s hand).
    """
    from datagen.hand.shape import draw_phenotype
    from datagen.poses.collision import PenetrationChecker

    ref = build_pose_table(hand, cfg.poses.interpolation_steps, angles)  # ids, provenance, canonical
    splay = None
    if cfg.poses.splay:  # the same abduction as without shapes (per canonical pose), on each pose's own hand
        from datagen.poses.splay import bent_mcp_angles, draw_table_splay

        splay = draw_table_splay(ref.finger_state, ref.canonical, bent_mcp_angles(angles), cfg.seed,
                                 cfg.poses.splay_scale)  # rows = pose ids (the full table)
    if pose_ids is not None:
        ref = _rows(ref, np.asarray(pose_ids, dtype=np.int64))
        splay = None if splay is None else splay[np.asarray(pose_ids, dtype=np.int64)]
    P = len(ref.ids)
    groups: dict[int, list[int]] = {}
    for row, c in enumerate(ref.canonical.tolist()):
        groups.setdefault(int(c), []).append(row)
    wrist = None
    if cfg.hand.forearm and not cfg.hand.arm_per_item:  # the same wrist angles as without shapes
        from datagen.poses.wrist import draw_wrist_angles, forearm_rotation

        w = draw_wrist_angles(ref.ids, cfg.seed, cfg.hand.wrist_flexion_deg, cfg.hand.wrist_deviation_deg)
        wrist = [forearm_rotation(f, d) for f, d in zip(w.flexion_deg, w.deviation_deg)]
    checker = PenetrationChecker(asset.dense_faces, asset.dense_part, asset.dense(asset.rest_base_vertices))
    rotations = np.empty_like(ref.rotations)
    values = np.empty((P, len(names)))
    base = np.empty((P, asset.n_base, 3), np.float32)
    kps = np.empty((P, 21, 3), np.float32)
    measures = np.full((P, len(MEASURE_NAMES)), np.nan)
    arm = np.empty((P, len(asset.arm_rows), 3), np.float32) if len(asset.arm_rows) else None
    redrawn, kept_default = 0, 0
    it = groups.items()
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="shapes", unit="shape", mininterval=2.0)
    for c, rows in it:
        for attempt in range(MAX_ATTEMPTS + 1):
            if attempt < MAX_ATTEMPTS:
                v = draw_phenotype(c, cfg.seed, names, cfg.hand.phenotype, cfg.hand.shape, attempt)
            else:  # give up: the config's own hand (the one-hand table's, checked by its report)
                v = np.array([cfg.hand.phenotype[n] for n in names], dtype=np.float64)
                kept_default += 1
            R, V, K, m, off = _shaped_rows(hand, asset, ref, rows, dict(zip(names, v.tolist())), angles, wrist, splay)
            worst = max((d for pose_v in V for _, _, d, _ in checker.pose_penetration(asset.dense(pose_v.astype(np.float64)))),
                        default=0.0)
            if worst <= PENETRATION_LIMIT_M or attempt == MAX_ATTEMPTS:
                break
            redrawn += attempt == 0
        rotations[rows], values[rows], base[rows], kps[rows], measures[rows] = R, v, V, K, m
        if arm is not None:
            arm[rows] = off
    if redrawn or kept_default:
        log.info("shapes: %d of %d hands redrawn (a pose interpenetrated by > %.1f mm), %d kept the default hand",
                 redrawn, len(groups), PENETRATION_LIMIT_M * 1e3, kept_default)
    table = PoseTable(ref.ids, ref.pose_a, ref.pose_b, ref.t, rotations, ref.finger_state, ref.canonical)
    return ShapedTable(table, base, kps, tuple(names), values, measures, arm)


def _shaped_rows(hand, asset, ref: PoseTable, rows: list[int], phenotype: dict, angles, wrist, splay=None):
    """Rotations, base vertices, keypoints of `rows` (one canonical pose) on the hand of
    `phenotype`, that hand's open-hand measures, and (with a forearm, else None) its
    forearm-weighted rest vertices minus the forearm bone's head."""
    h = frame_like(hand.shaped(phenotype), asset)
    jx = derive_axes(h)
    states: dict[int, np.ndarray] = {}

    def state(mask):
        if mask not in states:
            states[mask] = state_rotations(h, jx, mask, angles=angles)
        return states[mask]

    R = np.empty((len(rows) + 1,) + ref.rotations.shape[1:])
    for i, row in enumerate(rows):
        a, b, t = int(ref.pose_a[row]), int(ref.pose_b[row]), float(ref.t[row])
        R[i] = state(a) if t == 0 else slerp_rotations(state(a), state(b), t)
        if splay is not None:
            R[i] = apply_splay(R[i], h.rig.chains, splay[row])
        if wrist is not None:
            R[i, h.rig.forearm] = wrist[row]
    R[-1] = state(0)  # the open hand, for the measures
    T = forward_kinematics(h.rig, R)
    V = h.skin(T)
    heads = posed_bone_heads(asset, T, h.rig.heads)
    k = np.stack([asset.keypoints(hd, asset.dense(v)) for hd, v in zip(heads, V)])
    m = hand_measures(k[-1], asset.dense(V[-1]), asset.dense_part)
    off = None
    if len(asset.arm_rows):
        off = h.rest_vertices[asset.arm_rows] - h.rig.heads[h.rig.forearm]
    return (R[:-1], V[:-1].astype(np.float32), k[:-1].astype(np.float32), [m.get(n, np.nan) for n in MEASURE_NAMES],
            off)


__all__ = ["MEASURE_NAMES", "ShapedTable", "build_shaped_table"]
