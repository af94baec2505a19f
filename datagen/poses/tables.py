"""The prepared hand and pose tables, read with numpy alone (all the renderer needs in Blender).

`ensure_tables` builds them first when it runs in the venv (`datagen.poses.prepared`), and
inside Blender's own Python follows the index file the venv side left.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class PreparedMissing(RuntimeError):
    """The prepared hand/pose cache this config needs has not been built (Blender's Python)."""


@dataclass
class HandTables:
    """The prepared hand (datagen.hand.asset.HandAsset file) and pose table, read with numpy.

    Mirrors what the renderer needs from `datagen.prepared.Prepared` without scipy, torch or
    anny, so it loads inside Blender's own Python.
    """

    key: str
    hand_file: Path
    poses_file: Path
    dense_faces: np.ndarray
    dense_indptr: np.ndarray
    dense_indices: np.ndarray
    dense_data: np.ndarray
    n_dense: int
    rest_heads: np.ndarray
    joint_bones: np.ndarray
    palm_centre: np.ndarray
    rest_base_vertices: np.ndarray
    base_faces: np.ndarray
    dense_part: np.ndarray
    tip_faces: np.ndarray
    tip_barycentric: np.ndarray
    wrist_joint: bool  # the wrist keypoint is the rig's wrist joint centre (hand with forearm, label_version 2)
    licence: dict
    versions: dict
    ids: np.ndarray
    pose_a: np.ndarray
    pose_b: np.ndarray
    t: np.ndarray
    rotations: np.ndarray
    base_vertices: np.ndarray  # (P, Nb, 3) float32
    keypoints: np.ndarray  # (P, 21, 3) float32
    # With [hand.shape] (datagen.poses.shapes), else None: per pose phenotypes and open-hand sizes.
    shape_names: np.ndarray | None = None
    shape_values: np.ndarray | None = None
    shape_measure_names: np.ndarray | None = None
    shape_measures: np.ndarray | None = None
    # With a forearm (datagen.hand.asset.HandAsset.arm_rows): the base vertices the forearm bone
    # moves, their weights, the forearm bone, the dense faces at the arm's cut end; with shapes
    # (each pose its own rest hand) the per-pose offsets of those vertices from the bone's head.
    bone_names: tuple = ()
    arm_rows: np.ndarray | None = None
    arm_weights: np.ndarray | None = None
    cut_faces: np.ndarray | None = None
    arm_offset_table: np.ndarray | None = None  # (P, n, 3) float32
    _rows: np.ndarray = field(default=None, repr=False)

    def __post_init__(self):
        self._rows = np.repeat(np.arange(self.n_dense), np.diff(self.dense_indptr))

    @property
    def n_poses(self) -> int:
        return len(self.ids)

    def shape_record(self, pose_id: int) -> dict | None:
        """The item JSON's `shape` record of a pose (datagen.hand.shape), None without shapes."""
        if self.shape_values is None:
            return None
        from datagen.hand.shape import shape_record

        m = dict(zip((str(n) for n in self.shape_measure_names), self.shape_measures[pose_id]))
        return shape_record([str(n) for n in self.shape_names], self.shape_values[pose_id],
                            m["hand_length_m"], m["palm_width_m"])

    def dense(self, base: np.ndarray) -> np.ndarray:
        """Dense vertices (Nd, 3) float64 = D @ base (CSR product in numpy)."""
        b = np.asarray(base, dtype=np.float64)[self.dense_indices] * self.dense_data[:, None]
        return np.stack([np.bincount(self._rows, weights=b[:, c], minlength=self.n_dense) for c in range(3)], axis=1)

    def dense_vertices(self, pose_id: int) -> np.ndarray:
        return self.dense(self.base_vertices[pose_id])

    @property
    def forearm_bone(self) -> int:
        """Index of the forearm bone (datagen.hand.forearm.FOREARM_BONE), -1 without a forearm."""
        return self.bone_names.index("forearm.R") if "forearm.R" in self.bone_names else -1

    def arm_offsets(self, pose_id: int) -> np.ndarray:
        """(n, 3) rest positions of the forearm-weighted base vertices minus the forearm bone's
        head (the wrist joint centre), in pose `pose_id`'s hand frame."""
        from datagen.poses.wrist import arm_offsets

        return arm_offsets(self.rest_base_vertices, self.rest_heads, self.bone_names, self.arm_rows,
                           self.arm_offset_table, pose_id)

    def item_base(self, pose_id: int, forearm_rotation: np.ndarray) -> np.ndarray:
        """(Nb, 3) float64 base vertices of pose `pose_id` with the forearm bone turned to
        `forearm_rotation` (3, 3; datagen.poses.wrist) instead of the pose table's."""
        from datagen.poses.wrist import arm_delta

        if self.forearm_bone < 0 or self.arm_rows is None:
            raise ValueError("the hand has no forearm to turn")
        base = np.asarray(self.base_vertices[pose_id], np.float64).copy()
        base[self.arm_rows] += arm_delta(self.arm_offsets(pose_id), self.arm_weights,
                                         self.rotations[pose_id, self.forearm_bone], forearm_rotation)
        return base

    def rest_tips(self, rest_dense: np.ndarray) -> np.ndarray:
        """(5, 3) fingertip keypoints on the rest-pose dense mesh."""
        tri = rest_dense[self.dense_faces[self.tip_faces]]
        return np.einsum("fk,fkc->fc", self.tip_barycentric, tri)

    def distal_joint_centres(self) -> np.ndarray:
        """(5, 3) rest-pose centres of the joint at the base of each distal phalanx (thumb IP, DIPs)."""
        return self.rest_heads[self.joint_bones[3::3]]

    def finger_joint_centres(self) -> np.ndarray:
        """Rest-pose centres of the 15 finger joints (keypoints 1-3, 5-7, ... : CMC/MCP/IP, MCP/PIP/DIP)."""
        return self.rest_heads[self.joint_bones[1:]]


def load_tables(hand_file: str | Path, poses_file: str | Path, key: str = "") -> HandTables:
    with np.load(hand_file, allow_pickle=False) as z:
        h = {k: z[k] for k in z.files}
    with np.load(poses_file, allow_pickle=False) as z:
        p = {k: z[k] for k in z.files}
    return HandTables(
        key=key, hand_file=Path(hand_file), poses_file=Path(poses_file),
        dense_faces=h["dense_faces"].astype(np.int64), dense_indptr=h["dense_indptr"],
        dense_indices=h["dense_indices"], dense_data=h["dense_data"].astype(np.float64),
        n_dense=int(h["dense_shape"][0]), rest_heads=h["rest_heads"], joint_bones=h["joint_bones"],
        palm_centre=h["palm_centre"], rest_base_vertices=h["rest_base_vertices"], base_faces=h["base_faces"],
        dense_part=h["dense_part"], tip_faces=h["tip_faces"], tip_barycentric=h["tip_barycentric"],
        wrist_joint=int(h["wrist_vertex"]) < 0, licence=ast.literal_eval(str(h["licence"])), versions=ast.literal_eval(str(h["versions"])),
        ids=p["ids"], pose_a=p["pose_a"], pose_b=p["pose_b"], t=p["t"], rotations=p["rotations"],
        base_vertices=p["base_vertices"], keypoints=p["keypoints"],
        **{k: p[k] for k in ("shape_names", "shape_values", "shape_measure_names", "shape_measures") if k in p},
        bone_names=tuple(str(b) for b in h["bone_names"]),
        **{k: h[k] for k in ("arm_rows", "arm_weights", "cut_faces") if k in h},
        **({"arm_offset_table": p["arm_offsets"]} if "arm_offsets" in p else {}),
    )


def _index_path(cache_dir: Path, cfg) -> Path:
    """The index file of this [hand]/[poses] configuration.  Splay, the pose families and the
    forearm's per-pose wrist angles are drawn from the config's seed, so with any of them on the seed is
    part of the name (the paper's table does not depend on it, and its index name is unchanged)."""
    on = (getattr(cfg.poses, "splay", False) or getattr(cfg.poses, "families", None)
          or (getattr(cfg.hand, "forearm", False) and not getattr(cfg.hand, "arm_per_item", False))
          or getattr(cfg.hand, "shape", None))
    from datagen.config import tables_config

    cfg = tables_config(cfg)  # render-only [hand] keys (left_share) do not change the tables
    digest = cfg.digest("seed", "hand", "poses") if on else cfg.digest("hand", "poses")
    return Path(cache_dir) / "prepared" / f"index_{digest}.json"


def ensure_tables(cfg, cache_dir: str | Path | None = None, can_build: bool = True,
                  config_arg: str = "CONFIG") -> HandTables:
    """Load the prepared tables for `cfg`, building them first when `can_build` (venv).

    Blender's own Python cannot build them (no torch/anny/scipy), and cannot compute the
    cache key either (it hashes code constants and the anny version), so the venv side leaves
    an index file `cache/prepared/index_<config digest>.json` naming the files it built last
    for this [hand]/[poses] configuration; Blender follows it.
    """
    from datagen.config import REPO_ROOT

    cache_dir = Path(cache_dir) if cache_dir else None
    if can_build:
        from datagen.poses.prepared import default_cache_dir, prepare_poses, prepared_paths

        cache_dir = cache_dir or default_cache_dir()
        prep = prepare_poses(cfg, cache_dir=cache_dir, progress=True)
        hand_file, poses_file = prepared_paths(cache_dir, prep.key)
        index = _index_path(cache_dir, cfg)
        from datagen.atomic import write_json

        write_json(index, {"key": prep.key, "hand": hand_file.name, "poses": poses_file.name})
        return load_tables(hand_file, poses_file, prep.key)
    if cache_dir is None:
        import os

        cache_dir = Path(os.environ.get("HANDSYNTH_CACHE", REPO_ROOT / "cache"))
    index = _index_path(cache_dir, cfg)
    cmd = f".venv/bin/python blender_scripts/render.py --config {config_arg} --prepare-only"
    if not index.exists():
        raise PreparedMissing(
            f"the prepared hand/pose cache for this config is not built yet ({index} missing).\n"
            f"Blender's own Python cannot build it (it needs torch and anny). Run once, from {REPO_ROOT}:\n"
            f"    {cmd}\nthen re-run this Blender command.")
    rec = json.loads(index.read_text())
    hand_file = index.parent / rec["hand"]
    poses_file = index.parent / rec["poses"]
    if not (hand_file.exists() and poses_file.exists()):
        raise PreparedMissing(f"{index} names {hand_file.name} / {poses_file.name}, which are missing; "
                              f"rebuild them with:\n    {cmd}")
    return load_tables(hand_file, poses_file, rec["key"])
