"""Reading a packed dataset: random access over shards, splits, camera-space labels.

    from datagen.dataset.reader import HandShards
    ds = HandShards("out/ds", split="train")             # split by pose (held-out poses unseen)
    loader = DataLoader(ds, batch_size=32, shuffle=True, num_workers=2)
    s = ds.read_sample(0)                                # the same sample as numpy arrays

One sample (all fixed-size, so the default collate works; docs/DATASET.md has the details):

| key | dtype, shape | meaning |
|---|---|---|
| image | uint8 (3, H, W), or float32 in [0, 1] with image_float=True | RGB |
| mask | bool (H, W) | silhouette: pixel centre inside the hand, the hand the nearest surface (with occluders: the visible hand) |
| depth | float32 (H, W) | camera z in metres of the nearest surface (with occluders: objects too), 0 = background |
| keypoints_2d | float32 (21, 2) | pixels, continuous (pixel centre = index + 0.5) |
| visible, in_frame | bool (21,) | keypoint not occluded and inside the image / inside the image |
| occluded_by_object | bool (21,) | an occluder hides the keypoint (then not visible); all False without occluders |
| depth_gap_m | float32 (21,) | keypoint z minus depth at its pixel; NaN where undefined |
| joints_cam | float32 (21, 3) | rig keypoints in camera space, metres (FreiHAND order) |
| vertices_cam | float32 (778, 3) | the 778-vertex mapped mesh in camera space, metres (a left sample's faces are the template's with reversed vertex order; with a MANO_LEFT.pkl, the left model's vertices and `tables.mano_left["faces"]`) |
| mano_joints_cam | float32 (21, 3) | joint_regressor @ vertices_cam |
| K, R, t | float32 (3, 3), (3, 3), (3,) | the sample's OpenCV camera: x_cam = R x_hand + t (its view's, or its own with [cameras.jitter]) |
| pose_id, view_id, item_id, index | int64 | ids (docs/ARCHITECTURE.md); index = position in this dataset |
| handedness | int64 | with the ids: 0 right hand, 1 left hand (the mirrored right hand; every 3D output above is the left hand's) |
| hdri_index, hdri_rotation_deg, hdri_strength | int64, float32, float32 | HDRI (names in `hdri_names`) |
| skin | float32 (S,) | skin parameters, names in `skin_names` |
| wrist_deg | float32 (2,) | the item's own wrist angles [flexion, deviation] in degrees (`[hand] wrist_draw = "item"`; + palmar flexion / ulnar deviation); NaN, NaN = the pose table's wrist. With finite angles every mesh output (vertices_cam, mano_joints_cam, dense_vertices_cam) is the item's own mesh: the pose's with the forearm turned (tables.h5 `arm/`, `ArmSkin`) |
| shape, shape_band | float32 (K,), int64 | only datasets made with `[hand.shape]`: the pose's drawn phenotypes (names in the tables' `shape_names`) and its hand-length band (index into `datagen.hand.shape.BAND_NAMES`: small, medium, large) |
| dense_vertices_cam | float32 (Nd, 3) | only when asked for in `fields`: the dense render mesh |
| <pass name> | the pass's (datagen.labels.passes) | every further label pass the dataset holds |
| view_<column> | the column's | only with `view_columns` in `fields`: the camera sampler's per-view metadata (hemisphere: longitude_deg, latitude_deg) |

Left samples (datagen.labels.handedness): the pose tables hold the right hand; for a left sample
the hand-frame points are mirrored (x -> -x) before the view's R, t, so joints_cam, vertices_cam,
mano_joints_cam and dense_vertices_cam are the left hand the image shows.

Per-item wrists (`[hand] wrist_draw = "item"`): the pose tables hold the straight arm; a sample
with finite `wrist_deg` gets its own mesh, the pose's plus the change of the forearm-weighted
vertices (`ArmSkin`, its levers made once per dataset from tables.h5 `arm/`); the joints do not move.

`fields=None` (the default) means DEFAULT_FIELDS plus the dataset's further label passes.

Workers: nothing HDF5 is opened in the constructor (the tables are read into numpy and closed),
shards are opened on first use in each process and reopened after a fork, so the dataset is
safe with any number of DataLoader workers and with fork or spawn.

Damage: the constructor refuses a dataset whose files are missing or not the size the
manifest lists (a truncated copy), naming the file; a sample whose bytes fail their checksum
raises `datagen.dataset.shards.CorruptShardError` naming the shard and the sample (see
datagen/dataset/shards.py).  Both are `DatasetError` (a ValueError).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import torch

from datagen.dataset import shards as S
from datagen.geometry.mirror import mirror_points
from datagen.labels.passes import BUILTIN_PASSES, LABEL_PASSES, ordered
from datagen.poses.wrist import arm_delta, forearm_rotation

SPLITS = ("train", "val", "test")
DEFAULT_FIELDS = ("image", "mask", "depth", "keypoints_2d", "visible", "in_frame", "occluded_by_object", "depth_gap_m",
                  "joints_cam", "vertices_cam", "mano_joints_cam", "K", "R", "t", "ids", "hdri", "skin", "shape",
                  "wrist_deg")
ALL_FIELDS = DEFAULT_FIELDS + ("dense_vertices_cam", "view_columns")


def split_hash(keys: np.ndarray, seed: int) -> np.ndarray:
    """Stable uniform [0, 1) per integer key (splitmix64 of key and seed): the same on every machine."""
    with np.errstate(over="ignore"):
        x = np.asarray(keys, np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64((seed * 0xBF58476D1CE4E5B9 + 1) % (1 << 64))
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def split_of(keys: np.ndarray, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> np.ndarray:
    """0 = train, 1 = val, 2 = test for each key; stable when other keys are added or removed."""
    f = np.asarray(fractions, np.float64)
    if f.shape != (3,) or (f < 0).any() or abs(f.sum() - 1) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    return np.searchsorted(np.cumsum(f)[:2], split_hash(keys, seed), side="right")


def select_split(pose_id: np.ndarray, view_id: np.ndarray, split: str = "all", by: str = "pose",
                 fractions=(0.8, 0.1, 0.1), seed: int = 0) -> np.ndarray:
    """Indices of the samples in `split`.

    pose_id: the pose key; pass tables.h5's samples/pose_group (as ShardDataset does) so that
    poses the table repeats under other ids share a split.
    by="pose": every view of a pose goes to the pose's split (held-out poses are unseen);
    by="view": every pose of a view goes to the view's split (held-out cameras are unseen);
    by="both": a sample belongs to split s when its pose and its view are both in s; samples
    whose pose and view fall in different splits belong to none (about 1 - sum(f^2) of them).
    """
    if split == "all":
        return np.arange(len(pose_id))
    if split not in SPLITS:
        raise ValueError(f"split must be 'all' or one of {SPLITS}, got {split!r}")
    s = SPLITS.index(split)
    # Different salts for poses and views so that "both" does not pair pose k with view k.
    ps = split_of(pose_id, fractions, seed)
    vs = split_of(np.asarray(view_id) + (1 << 32), fractions, seed)
    if by == "pose":
        keep = ps == s
    elif by == "view":
        keep = vs == s
    elif by == "both":
        keep = (ps == s) & (vs == s)
    else:
        raise ValueError(f"split_by must be 'pose', 'view' or 'both', got {by!r}")
    return np.nonzero(keep)[0]


def _csr(g, prefix: str):
    """A CSR matrix stored as <prefix>data/indices/indptr/shape in an HDF5 group (datagen.pack)."""
    import scipy.sparse as sp

    return sp.csr_matrix((g[prefix + "data"][()].astype(np.float64), g[prefix + "indices"][()],
                          g[prefix + "indptr"][()]), shape=tuple(int(x) for x in g[prefix + "shape"][()]))


def _touched(A) -> tuple[np.ndarray, object]:
    """(the rows of sparse A with an entry, those rows as CSR): products only touch them."""
    A = A.tocsr()
    rows = np.flatnonzero(np.diff(A.indptr))
    return rows, A[rows]


class ArmSkin:
    """The meshes of a sample whose forearm the item turned ([hand] wrist_draw = "item").

    The pose tables keep the arm straight; the item's base vertices are the pose's plus
    `datagen.poses.wrist.arm_delta` on the forearm-weighted rows `rows`: w * offsets @ (F - P).T,
    with P the forearm bone's rotation in the pose table, F the item's (exactly what skinning
    again with F gives).  Every mesh is linear in the base vertices, so a mesh with matrix A over
    the base vertices (D for the dense mesh, M D for a 778-vertex one, J M D for its regressed
    joints) changes by A[:, rows] @ delta = (A[:, rows] @ (w * offsets)) @ (F - P).T: the
    "lever" A[:, rows] @ (w * offsets) (k, 3), on the k rows A touches, is made once per dataset
    (once per pose with [hand.shape], whose offsets are per pose), and a sample costs its 3 x 3
    rotation and a (k, 3) @ (3, 3) product per mesh.

    tables.h5 `arm/` (datagen.pack): rows (n,) base vertex ids, weights (n,), pose_rotation
    (P, 3, 3) the forearm bone's rotation in each pose of the table (identity: the straight
    arm), offsets (n, 3) - or (P, n, 3) with [hand.shape], one hand per pose - the rows' rest
    positions minus the bone's head.
    """

    def __init__(self, rows, weights, pose_rotation, offsets, dense_matrix, mappings: dict):
        self.rows = np.asarray(rows, np.int64)
        self.weights = np.asarray(weights, np.float64)
        self.pose_rotation = np.asarray(pose_rotation, np.float64)
        self.offsets = np.asarray(offsets, np.float64)
        D = dense_matrix.tocsc()[:, self.rows]
        # name -> (touched rows, A[:, rows] on them, (J A)[:, rows] or None): "dense" and each mapping
        self._ops = {"dense": (*_touched(D), None)}
        for name, (M, J) in mappings.items():
            MD = (M @ D).tocsr()
            self._ops[name] = (*_touched(MD), np.asarray(MD.T @ np.asarray(J, np.float64).T).T)
        self._levers = {name: self._make_lever(name, self.offsets) for name in self._ops} \
            if self.offsets.ndim == 2 else None

    def _make_lever(self, name: str, offsets: np.ndarray):
        _, A, JA = self._ops[name]
        wo = self.weights[:, None] * offsets
        return np.asarray(A @ wo), (None if JA is None else JA @ wo)

    def _lever(self, name: str, pose_row: int):
        if self._levers is not None:
            return self._levers[name]
        return self._make_lever(name, self.offsets[pose_row])  # [hand.shape]: the pose's own hand

    @staticmethod
    def rotation(wrist_deg) -> np.ndarray:
        """(3, 3) the forearm bone's rotation for [flexion, deviation] (degrees)."""
        return forearm_rotation(float(wrist_deg[0]), float(wrist_deg[1]))

    def _change(self, lever: np.ndarray, pose_row: int, rotation: np.ndarray) -> np.ndarray:
        # arm_delta with the lever as offsets (its weights are in it already)
        return arm_delta(lever, np.ones(len(lever)), self.pose_rotation[pose_row], rotation)

    def dense(self, pose_row: int, rotation: np.ndarray, dense: np.ndarray) -> np.ndarray:
        """(Nd, 3) float32: pose row `pose_row`'s dense vertices with the forearm at `rotation`."""
        lever, _ = self._lever("dense", pose_row)
        out = np.asarray(dense, np.float64).copy()
        out[self._ops["dense"][0]] += self._change(lever, pose_row, rotation)
        return out.astype(np.float32)

    def mesh(self, name: str, pose_row: int, rotation: np.ndarray, vertices: np.ndarray, joints: np.ndarray):
        """((nv, 3), (21, 3)) float32: the pose's mapped mesh `name` ("mano" or "mano_left") and
        its regressed joints with the forearm at `rotation`."""
        lever, jlever = self._lever(name, pose_row)
        v = np.asarray(vertices, np.float64).copy()
        v[self._ops[name][0]] += self._change(lever, pose_row, rotation)
        j = np.asarray(joints, np.float64) + self._change(jlever, pose_row, rotation)
        return v.astype(np.float32), j.astype(np.float32)

    @classmethod
    def from_h5(cls, f) -> ArmSkin | None:
        """From an open tables.h5; None when it has no `arm/` group."""
        if "arm" not in f:
            return None
        g = f["arm"]
        mappings = {"mano": (_csr(f["mano"], "matrix_"), f["mano/joint_regressor"][()])}
        if "mano_left" in f:
            mappings["mano_left"] = (_csr(f["mano_left"], "matrix_"), f["mano_left/joint_regressor"][()])
        return cls(g["rows"][()], g["weights"][()], g["pose_rotation"][()], g["offsets"][()],
                   _csr(f["hand"], "dense_matrix_"), mappings)


class Tables:
    """tables.h5 in memory (all but the dense/base meshes, which are read per pose on demand)."""

    def __init__(self, root: Path, expected_bytes: int | None = None):
        self.path = Path(root) / S.TABLES
        S.check_size(self.path, expected_bytes, "tables file")
        try:
            self._load()
        except S.DatasetError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise S.CorruptShardError(f"{self.path}: damaged or incomplete ({S._h5_reason(exc)}); restore it or "
                                      f"re-pack the dataset (python -m datagen.verify {self.path.parent})") from None
        self._f = None
        self._pid = None

    def _load(self) -> None:
        with h5py.File(self.path, "r") as f:
            S.check_schema(f.attrs.get("schema_version", -1), self.path)
            self.height, self.width = int(f.attrs["height"]), int(f.attrs["width"])
            self.samples = {k: f["samples"][k][()] for k in f["samples"]}
            self.pose_ids = f["poses/pose_id"][()]
            self.keypoints = f["poses/keypoints"][()]
            self.mano_vertices = f["poses/mano_vertices"][()]
            self.mano_joints = f["poses/mano_joints"][()]
            # [hand.shape] (datagen.hand.shape): per pose phenotypes, open-hand sizes, band; else None.
            self.shape_values = f["poses/shape_values"][()] if "shape_values" in f["poses"] else None
            self.shape_names = S.attr_json(f["poses/shape_values"], "names") if self.shape_values is not None else []
            self.shape_measures = f["poses/shape_measures"][()] if "shape_measures" in f["poses"] else None
            self.shape_band = f["poses/shape_band"][()] if "shape_band" in f["poses"] else None
            self.views = {k: f["views"][k][()] for k in f["views"]}
            self.mano = {k: f["mano"][k][()] for k in f["mano"]}
            # With a MANO_LEFT.pkl (pack --mano-left): the left model's group and per-pose vertices
            # (mirrored into the right frame); None otherwise (left samples: the right mapping mirrored).
            self.mano_left = {k: f["mano_left"][k][()] for k in f["mano_left"]} if "mano_left" in f else None
            self.mano_left_vertices = f["poses/mano_left_vertices"][()] if self.mano_left is not None else None
            self.mano_left_joints = f["poses/mano_left_joints"][()] if self.mano_left is not None else None
            self.topology = S.attr_json(f["mano"], "topology")
            self.mapping_quality = S.attr_json(f["mano"], "quality")
            self.dense_faces = f["hand/dense_faces"][()]
            self.keypoint_names = [s.decode() if isinstance(s, bytes) else s for s in f["hand/keypoint_names"][()]]
            self.hdri_names = [s.decode() if isinstance(s, bytes) else s for s in f["hdri/name"][()]]
            # [hand] wrist_draw = "item": the per-item forearm (ArmSkin); None otherwise.
            self.arm = ArmSkin.from_h5(f)
        self.K32, self.R32, self.t32 = (self.views[k].astype(np.float32) for k in ("K", "R", "t"))
        # The camera sampler's per-view metadata (datagen.cameras.samplers.Views.columns).
        self.view_columns = {k: v for k, v in self.views.items() if k not in ("view_id", "K", "R", "t", "centres")}
        self.pose_row = np.full(int(self.pose_ids.max()) + 1, -1, np.int64)
        self.pose_row[self.pose_ids] = np.arange(len(self.pose_ids))

    def dense_vertices(self, pose_id: int) -> np.ndarray:
        if self._f is None or self._pid != os.getpid():
            self._f, self._pid = h5py.File(self.path, "r", rdcc_nbytes=0), os.getpid()
        try:
            return self._f["poses/dense_vertices"][self.pose_row[pose_id]]
        except OSError as exc:
            raise S.CorruptShardError(f"{self.path}: the dense mesh of pose {pose_id} cannot be read "
                                      f"({S._h5_reason(exc)}); restore or re-pack the dataset") from None

    def item_rotation(self, wrist_deg) -> np.ndarray | None:
        """The forearm's rotation (3, 3) for a sample's `wrist_deg`, None when the angles are NaN
        (the pose table's wrist)."""
        w = np.asarray(wrist_deg, np.float64)
        if not np.isfinite(w).all():
            return None
        if self.arm is None:
            raise S.DatasetError(f"{self.path}: a sample has its own wrist angles {w.tolist()} but the tables have "
                                 f"no arm/ group to turn the forearm with; re-pack the dataset")
        return self.arm.rotation(w)

    def item_mano(self, pose_row: int, wrist_deg, own_left: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(vertices (nv, 3), joints (21, 3)) float32, hand frame (the right hand's, or with
        `own_left` the left model's mirrored into it): the sample's 778-vertex mesh and its
        regressed joints - the pose's, with the item's forearm when `wrist_deg` is finite."""
        V, J = (self.mano_left_vertices, self.mano_left_joints) if own_left else (self.mano_vertices, self.mano_joints)
        rot = self.item_rotation(wrist_deg)
        if rot is None:
            return V[pose_row], J[pose_row]
        return self.arm.mesh("mano_left" if own_left else "mano", pose_row, rot, V[pose_row], J[pose_row])

    def item_dense(self, pose_id: int, wrist_deg) -> np.ndarray:
        """(Nd, 3) float32 hand frame (right hand): the sample's dense render mesh."""
        dense = self.dense_vertices(pose_id)
        rot = self.item_rotation(wrist_deg)
        return dense if rot is None else self.arm.dense(self.pose_row[pose_id], rot, dense)

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_f"] = d["_pid"] = None
        return d


def to_camera(points_hand: np.ndarray, R: np.ndarray, t: np.ndarray, left: bool = False) -> np.ndarray:
    """Hand frame -> camera (float32: ~0.03 um rounding at 0.3 m); `left`: the right hand's
    points mirrored in the hand frame first (the left hand of a left sample)."""
    p = np.asarray(points_hand, np.float32)
    return (mirror_points(p) if left else p) @ R.T + t


class ShardDataset:
    """Numpy reader over a packed dataset; see the module docstring for the sample layout."""

    def __init__(self, root, split: str = "all", split_by: str = "pose", fractions=(0.8, 0.1, 0.1),
                 split_seed: int = 0, fields=None, image_float: bool = False):
        self.root = Path(root)
        manifest_path = self.root / S.MANIFEST
        if not manifest_path.exists():
            raise FileNotFoundError(f"{manifest_path} is missing: not a packed dataset (python -m datagen.pack)")
        try:
            self.manifest = json.loads(manifest_path.read_text())
            shards = self.manifest["shards"]
            self.shard_files = [s["file"] for s in shards]
            self.shard_bytes = [s.get("bytes") for s in shards]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise S.DatasetError(f"{manifest_path}: unreadable manifest ({type(exc).__name__}: {exc}); re-pack the "
                                 f"dataset (python -m datagen.pack)") from None
        # every file the size the manifest lists (a truncated copy is named here, not deep in h5py)
        for f, n in zip(self.shard_files, self.shard_bytes):
            S.check_size(self.root / f, n, "shard")
        # The label passes stored in the shards (their codecs are listed in the manifest); a pass
        # this process has not registered fails here, by name, rather than at the first read.
        self.pass_names = tuple(ordered(self.manifest.get("encodings") or BUILTIN_PASSES[:3]))
        self._passes = [LABEL_PASSES.get(n) for n in self.pass_names]
        extra = tuple(n for n in self.pass_names if n not in BUILTIN_PASSES)
        if fields is None:
            fields = DEFAULT_FIELDS + extra
        unknown = set(fields) - set(ALL_FIELDS) - set(extra)
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}; known: {ALL_FIELDS + extra}")
        self.fields = tuple(fields)
        self.image_float = image_float
        self.tables = Tables(self.root, (self.manifest.get("tables") or {}).get("bytes"))
        self.skin_names = self.manifest.get("skin_parameters") or []
        self.hdri_names = self.tables.hdri_names
        smp = self.tables.samples
        # Poses are grouped by pose_group (identical poses under other ids stay in one split).
        self.indices = select_split(smp["pose_group"], smp["view_id"], split, split_by, fractions, split_seed)
        self.split, self.split_by = split, split_by
        self._readers: dict[int, S.ShardReader] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_readers"] = {}
        d["_passes"] = None  # entries hold codec functions; a spawned worker looks them up again
        return d

    @property
    def passes(self):
        if self._passes is None:
            self._passes = [LABEL_PASSES.get(n) for n in self.pass_names]
        return self._passes

    def _reader(self, shard: int) -> S.ShardReader:
        if self._pid != os.getpid():  # forked: handles of the parent must not be used here
            self._readers, self._pid = {}, os.getpid()
        r = self._readers.get(shard)
        if r is None:
            r = self._readers[shard] = S.ShardReader(self.root / self.shard_files[shard], self.shard_bytes[shard])
        return r

    def column(self, name: str) -> np.ndarray:
        """A per-sample column (shards.SAMPLE_COLUMNS) for every sample of this split, in order."""
        smp = self.tables.samples
        shard, row = smp["shard"][self.indices], smp["row"][self.indices]
        dtype, shape = S.SAMPLE_COLUMNS[name]
        out = np.empty((len(self.indices), *shape), dtype)
        for k in np.unique(shard):
            sel = shard == k
            out[sel] = self._reader(int(k)).columns[name][row[sel]]
        return out

    def locate(self, i: int) -> tuple[int, int]:
        """(shard, row) of sample i of this split."""
        g = self.indices[i]
        return int(self.tables.samples["shard"][g]), int(self.tables.samples["row"][g])

    def read_sample(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        i = i % len(self)
        shard, row = self.locate(i)
        r = self._reader(shard)
        c = r.columns
        pose, view = int(c["pose_id"][row]), int(c["view_id"][row])
        tb = self.tables
        if "K" in c:  # the sample's own camera (schema 2; per item with [cameras.jitter])
            K, R, t = (c[k][row].astype(np.float32) for k in ("K", "R", "t"))
        else:  # schema 1: the view's
            K, R, t = tb.K32[view], tb.R32[view], tb.t32[view]
        want = self.fields
        out: dict = {}
        options = {"image_float": self.image_float}
        for p in self.passes:  # image, mask, depth, further passes: each returned as its entry says
            if p.name in want:
                out[p.name] = p.read_sample(r, row, out, options)
        for k in ("keypoints_2d", "visible", "in_frame", "occluded_by_object", "depth_gap_m"):
            if k in want:
                out[k] = c[k][row].copy()
        p = tb.pose_row[pose]
        left = bool(c["handedness"][row])
        # a left sample's 778 mesh: the left model's own (MANO_LEFT.pkl given) or the right one mirrored
        own = left and tb.mano_left is not None
        wrist = c["wrist_deg"][row]  # the item's forearm (NaN: the pose table's)
        if "joints_cam" in want:
            out["joints_cam"] = to_camera(tb.keypoints[p], R, t, left)
        if "vertices_cam" in want or "mano_joints_cam" in want:
            V, J = tb.item_mano(p, wrist, own)
            if "vertices_cam" in want:
                out["vertices_cam"] = to_camera(V, R, t, left)
            if "mano_joints_cam" in want:
                out["mano_joints_cam"] = to_camera(J, R, t, left)
        if "dense_vertices_cam" in want:
            out["dense_vertices_cam"] = to_camera(tb.item_dense(pose, wrist), R, t, left)
        if "wrist_deg" in want:
            out["wrist_deg"] = wrist.copy()
        for k, v in (("K", K), ("R", R), ("t", t)):
            if k in want:
                out[k] = v.copy()
        if "ids" in want:
            out.update(pose_id=pose, view_id=view, item_id=int(c["item_id"][row]), index=i, handedness=int(left))
        if "hdri" in want:
            out.update(hdri_index=int(c["hdri_index"][row]), hdri_rotation_deg=np.float32(c["hdri_rotation_deg"][row]),
                       hdri_strength=np.float32(c["hdri_strength"][row]))
        if "skin" in want:
            out["skin"] = c["skin"][row].copy()
        if "shape" in want and tb.shape_values is not None:  # only datasets made with [hand.shape]
            out["shape"] = tb.shape_values[p].copy()
            out["shape_band"] = int(tb.shape_band[p])
        if "view_columns" in want:
            for k, v in tb.view_columns.items():
                out["view_" + k] = v[view].copy()
        return out

    def close(self) -> None:
        for r in self._readers.values():
            r.close()
        self._readers = {}


class HandShards(ShardDataset, torch.utils.data.Dataset):
    """torch Dataset: `read_sample` as tensors (numbers become 0-d tensors)."""

    def __getitem__(self, i: int) -> dict:
        out = {}
        for k, v in self.read_sample(i).items():
            if isinstance(v, np.ndarray):
                out[k] = torch.from_numpy(v)
            elif isinstance(v, (int, np.integer)):
                out[k] = torch.tensor(int(v), dtype=torch.int64)
            else:
                out[k] = torch.tensor(float(v), dtype=torch.float32)
        return out
