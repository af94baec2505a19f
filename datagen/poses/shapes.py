"""The paper's pose table over drawn hand shapes ([hand.shape], datagen.hand.shape).

Every canonical pose gets its own hand (phenotypes drawn from the config's ranges); its rows
are built on that hand exactly as `build_pose_table` builds them on the one hand: the joint
axes come from the shaped rig (`derive_axes`), the base states from the same angle tables and
the intermediate poses by per-bone slerp.  The hand frame is the shaped hand's own (its wrist
keypoint and MCPs), the topology, parts, fingertip definitions and 778 mapping are the asset's.
With the forearm the wrist angles are the same draws as without shapes (datagen.poses.wrist).

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
from datagen.hand.shape import draw_phenotypes, hand_measures
from datagen.poses.construction import PoseTable, build_pose_table, derive_axes, slerp_rotations, state_rotations

log = logging.getLogger(__name__)

# The open hand's sizes stored per pose (datagen.hand.shape.hand_measures), in this order.
MEASURE_NAMES = ("hand_length_m", "palm_width_m", "palm_breadth_m") + tuple(
    f"{f}_{i}_m" for f in ("thumb", "index", "middle", "ring", "little") for i in (1, 2, 3))


@dataclass
class ShapedTable:
    table: PoseTable
    base_vertices: np.ndarray  # (P, Nb, 3) float32
    keypoints: np.ndarray  # (P, 21, 3) float32
    shape_names: tuple[str, ...]  # the phenotypes, in the model's order
    shape_values: np.ndarray  # (P, K) float64
    shape_measures: np.ndarray  # (P, len(MEASURE_NAMES)) float64, metres


def _rows(table: PoseTable, rows: np.ndarray) -> PoseTable:
    return PoseTable(table.ids[rows], table.pose_a[rows], table.pose_b[rows], table.t[rows], table.rotations[rows],
                     table.finger_state[rows], table.canonical[rows])


def build_shaped_table(hand: HandModel, asset: HandAsset, cfg, names: tuple[str, ...], angles=None,
                       progress: bool = False, pose_ids=None) -> ShapedTable:
    """The pose table of `cfg` with one drawn shape per canonical pose (see the module docstring).

    `hand`: the model at [hand.phenotype] (the asset's hand), `names`: the model's phenotypes;
    `pose_ids`: only these rows (tests; default all)."""
    ref = build_pose_table(hand, cfg.poses.interpolation_steps, angles)  # ids, provenance, canonical
    if pose_ids is not None:
        ref = _rows(ref, np.asarray(pose_ids, dtype=np.int64))
    values = draw_phenotypes(ref.canonical, cfg.seed, names, cfg.hand.phenotype, cfg.hand.shape)
    P = len(ref.ids)
    rotations = np.empty_like(ref.rotations)
    groups: dict[int, list[int]] = {}
    for row, c in enumerate(ref.canonical.tolist()):
        groups.setdefault(int(c), []).append(row)
    hands: dict[int, HandModel] = {}
    it = groups.items()
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="shapes", unit="shape", mininterval=2.0)
    for c, rows in it:
        h = frame_like(hand.shaped(dict(zip(names, values[rows[0]].tolist()))), asset)
        jx = derive_axes(h)
        states: dict[int, np.ndarray] = {}

        def state(mask, h=h, jx=jx, states=states):
            if mask not in states:
                states[mask] = state_rotations(h, jx, mask, angles=angles)
            return states[mask]

        for row in rows:
            a, b, t = int(ref.pose_a[row]), int(ref.pose_b[row]), float(ref.t[row])
            rotations[row] = state(a) if t == 0 else slerp_rotations(state(a), state(b), t)
        hands[c] = (h, state(0))
    table = PoseTable(ref.ids, ref.pose_a, ref.pose_b, ref.t, rotations, ref.finger_state, ref.canonical)
    if cfg.hand.forearm:  # the same draws as without shapes (per pose id)
        from datagen.poses.wrist import apply_wrist_angles

        apply_wrist_angles(table, hand.rig, cfg)
    base = np.empty((P, asset.n_base, 3), np.float32)
    kps = np.empty((P, 21, 3), np.float32)
    measures = np.full((P, len(MEASURE_NAMES)), np.nan)
    for c, rows in groups.items():
        h, open_hand = hands[c]
        R = np.concatenate([table.rotations[rows], open_hand[None]])
        T = forward_kinematics(h.rig, R)
        V = h.skin(T)
        heads = posed_bone_heads(asset, T, h.rig.heads)
        k = [asset.keypoints(hd, asset.dense(v)) for hd, v in zip(heads, V)]
        base[rows] = V[:-1]
        kps[rows] = np.stack(k[:-1])
        m = hand_measures(k[-1], asset.dense(V[-1]), asset.dense_part)
        measures[rows] = [m.get(n, np.nan) for n in MEASURE_NAMES]
    return ShapedTable(table, base, kps, tuple(names), values, measures)


__all__ = ["MEASURE_NAMES", "ShapedTable", "build_shaped_table"]
