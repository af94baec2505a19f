"""Everything the renderer needs about the hand, computed once and cached on disk.

Building the hand (anny + torch, or another registered model) and skinning 1520 poses takes seconds, but the renderer may
run inside Blender's own Python where neither torch nor anny exist.  So the venv side writes
two plain .npz files - the `HandAsset` and the posed base vertices of every pose - keyed by a
hash of everything they depend on, and the renderer only ever loads them with numpy.
"""

from __future__ import annotations

import logging
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datagen import atomic
from datagen.config import REPO_ROOT, Config
from datagen.hand.asset import HandAsset
from datagen.hand.base import KEYPOINT_NAMES
from datagen.poses.paths import prepared_paths  # also importable from here, as before

log = logging.getLogger(__name__)

# Bump when the pose-space definition changes in a way the angle tables below do not show.
POSE_SPACE_VERSION = 4
# The same for the hand with a forearm only (in the key only when [hand] forearm = true, so the
# hand-only caches keep their keys).  2: the wrist keypoint is the middle of the wrist bone;
# 3: the asset holds the forearm's weights and cut-end faces (per-item wrist angles).
FOREARM_VERSION = 3
# Bump when splay or the pose families change (keys of configs that use them; never the paper's).
POSE_OPTIONS_VERSION = 1
# The same for the per-pose hand shapes (in the key only when [hand.shape] has ranges).
SHAPE_VERSION = 2


def _pose_options_on(cfg: Config) -> bool:
    return bool(cfg.poses.splay or cfg.poses.families)


def _paper_keys(cfg: Config) -> dict:
    """[poses] as the key hashed it before the options existed: the options at their "off"
    values are left out (datagen.config.LATER_KEYS), so the paper's key is unchanged."""
    from datagen.config import LATER_KEYS

    return {k: v for k, v in cfg.poses.__dict__.items()
            if ("poses", k) not in LATER_KEYS or v != LATER_KEYS[("poses", k)]}


@dataclass
class Prepared:
    asset: HandAsset
    ids: np.ndarray
    pose_a: np.ndarray
    pose_b: np.ndarray
    t: np.ndarray
    rotations: np.ndarray  # (P, J, 3, 3)
    finger_state: np.ndarray  # (P, 5) bend fraction per finger
    canonical: np.ndarray  # (P,) first pose id with the same finger states (duplicates share it)
    base_vertices: np.ndarray  # (P, Nb, 3) float32, hand frame, metres
    keypoints: np.ndarray  # (P, 21, 3) float32
    key: str
    # With [hand.shape] (datagen.poses.shapes): each pose's phenotypes and its open hand's sizes.
    shape_names: np.ndarray | None = None  # (K,) str: the hand model's phenotypes
    shape_values: np.ndarray | None = None  # (P, K) float64
    shape_measure_names: np.ndarray | None = None  # (M,) str (datagen.poses.shapes.MEASURE_NAMES)
    shape_measures: np.ndarray | None = None  # (P, M) float64, metres
    # With [hand.shape] and a forearm: each pose's forearm-weighted rest vertices minus the
    # forearm bone's head (datagen.poses.tables.HandTables.arm_offsets).
    arm_offsets: np.ndarray | None = None  # (P, n, 3) float32

    def dense_vertices(self, pose_id: int) -> np.ndarray:
        return self.asset.dense(self.base_vertices[pose_id].astype(np.float64))

    def export_table(self, path: str | Path) -> None:
        """The pose table for people and other tools (one .npz, documented keys)."""
        from scipy.spatial.transform import Rotation

        rotvec = Rotation.from_matrix(self.rotations.reshape(-1, 3, 3)).as_rotvec()
        np.savez_compressed(
            path,
            pose_id=self.ids,
            pose_a=self.pose_a,
            pose_b=self.pose_b,
            t=self.t,
            finger_state=self.finger_state.astype(np.float32),
            canonical_id=self.canonical,
            bone_names=np.asarray(self.asset.bone_names),
            joint_rotvec=rotvec.reshape(len(self.ids), -1, 3).astype(np.float32),
            keypoint_names=np.asarray(KEYPOINT_NAMES),
            keypoints_hand_m=self.keypoints,
        )


def _pose_space_digest(cfg: Config) -> str:
    """The prepared-cache key: everything the hand and pose tables depend on.

    The hand model's registry entry supplies its package versions (anny's: {"anny": version})
    and, when it brings them, its own pose-angle tables; the payload is the one this key has
    always hashed, so existing caches (and run.json prepared_key values) stay valid.
    """
    from datagen.hand import hand_model_entry
    from datagen.poses.angles import DEFAULT_ANGLES

    entry = hand_model_entry(cfg.hand.model)
    angles = entry.pose_angles or DEFAULT_ANGLES
    from datagen.config import canonical_dict, tables_config

    # The hand section without the forearm keys at their "off" values (config.LATER_KEYS), so
    # configs from before the forearm keep their key; with the forearm on, the wrist angles
    # depend on the seed too.
    # The render-only keys ([hand] left_share) do not change the tables (config.tables_config).
    hand = canonical_dict({"hand": tables_config(cfg).hand.__dict__})["hand"]
    if cfg.hand.forearm:
        if not cfg.hand.arm_per_item:  # per-item wrists leave the table's arm straight
            hand["seed"] = cfg.seed
        hand["forearm_version"] = FOREARM_VERSION
    if cfg.hand.shape:  # the shapes are drawn from the seed
        hand["seed"] = cfg.seed
        hand["shape_version"] = SHAPE_VERSION
    payload = {
        "hand": hand,
        "poses": _paper_keys(cfg),
        **angles.key(),
        "version": POSE_SPACE_VERSION,
    }
    if _pose_options_on(cfg):
        # Splay and families are drawn from the config's seed; the paper's table is not.
        payload["options"] = {**cfg.poses.__dict__, "seed": cfg.seed, "version": POSE_OPTIONS_VERSION}
    # Blender's Python has no anny: the versions are then missing and the key is only read
    # (datagen.poses.tables.ensure_tables follows the index file the venv side wrote).
    for k, v in entry.package_versions().items():
        if k in payload:
            raise ValueError(f"hand model {entry.name!r}: version key {k!r} collides with the cache key's own")
        payload[k] = v
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    return Path(os.environ.get("HANDSYNTH_CACHE", REPO_ROOT / "cache"))




def save_prepared(p: Prepared, cache_dir: Path) -> None:
    asset_path, poses_path = prepared_paths(cache_dir, p.key)
    asset_path.parent.mkdir(parents=True, exist_ok=True)
    p.asset.save(asset_path)
    shape = {k: getattr(p, k) for k in ("shape_names", "shape_values", "shape_measure_names", "shape_measures",
                                         "arm_offsets") if getattr(p, k) is not None}
    atomic.save_npz(poses_path, ids=p.ids, pose_a=p.pose_a, pose_b=p.pose_b, t=p.t, rotations=p.rotations,
                    finger_state=p.finger_state, canonical=p.canonical,
                    base_vertices=p.base_vertices, keypoints=p.keypoints, **shape)


def load_prepared_files(asset_path: Path, poses_path: Path, key: str) -> Prepared:
    asset = HandAsset.load(asset_path)
    with np.load(poses_path) as z:
        return Prepared(asset=asset, key=key, **{k: z[k] for k in z.files})


def prepare_poses(cfg: Config, cache_dir: str | Path | None = None, progress: bool = False) -> Prepared:
    """Load the prepared hand and poses for `cfg`, building them (venv only) if missing."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = _pose_space_digest(cfg)
    asset_path, poses_path = prepared_paths(cache_dir, key)
    if asset_path.exists() and poses_path.exists():
        return load_prepared_files(asset_path, poses_path, key)

    from datagen.hand import hand_model_entry, load_hand_model
    from datagen.hand.asset import build_asset
    from datagen.poses.construction import build_pose_table, pose_meshes

    if progress:
        log.info("building hand '%s' and %d-step pose table (cached in %s) ...", cfg.hand.model,
                 cfg.poses.interpolation_steps, asset_path.parent)
    hand = load_hand_model(cfg.hand.model, cfg.hand.phenotype,
                           cfg.hand.forearm_length_m if cfg.hand.forearm else None)
    asset = build_asset(hand, cfg.hand.subdivision_levels)
    if cfg.hand.forearm:  # what the per-item arm needs in Blender, where scipy may be missing
        from datagen.cameras.cut_end import cut_end_faces

        asset.cut_faces = cut_end_faces(asset)
    angles = hand_model_entry(cfg.hand.model).pose_angles
    if cfg.hand.shape:  # one drawn hand per canonical pose (datagen.poses.shapes)
        from datagen.poses.shapes import MEASURE_NAMES, build_shaped_table

        st = build_shaped_table(hand, asset, cfg, hand_model_entry(cfg.hand.model).phenotypes, angles, progress)
        t = st.table
        p = Prepared(asset=asset, ids=t.ids, pose_a=t.pose_a, pose_b=t.pose_b, t=t.t, rotations=t.rotations,
                     finger_state=t.finger_state, canonical=t.canonical, base_vertices=st.base_vertices,
                     keypoints=st.keypoints, key=key, shape_names=np.asarray(st.shape_names),
                     shape_values=st.shape_values, shape_measure_names=np.asarray(MEASURE_NAMES),
                     shape_measures=st.shape_measures, arm_offsets=st.arm_offsets)
        save_prepared(p, cache_dir)
        return p
    table = build_pose_table(hand, cfg.poses.interpolation_steps, angles)
    if cfg.poses.splay:
        from datagen.poses.splay import splay_pose_table

        table = splay_pose_table(hand, table, cfg.seed, cfg.poses.splay_scale, angles)
    if cfg.poses.families:
        from datagen.poses.families import append_families

        table = append_families(hand, asset, table, cfg.poses.families, cfg.seed, angles,
                                splay_amount=cfg.poses.splay_scale, progress=progress)
    if cfg.hand.forearm and not cfg.hand.arm_per_item:  # per item: the arm stays straight here
        from datagen.poses.wrist import apply_wrist_angles

        apply_wrist_angles(table, hand.rig, cfg)
    base, kps = pose_meshes(hand, asset, table)
    p = Prepared(asset=asset, ids=table.ids, pose_a=table.pose_a, pose_b=table.pose_b, t=table.t,
                 rotations=table.rotations, finger_state=table.finger_state, canonical=table.canonical,
                 base_vertices=base, keypoints=kps, key=key)
    save_prepared(p, cache_dir)
    return p
