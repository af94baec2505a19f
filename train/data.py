"""Data sources, their mixture, and a deterministic, resumable, rank-aware sample plan.

A *source* gives raw samples as numpy::

    image  uint8 (H, W, 3) RGB        mask  bool (H, W) or None
    K      float64 (3, 3)             joints float64 (21, 3) camera space, metres (FreiHAND order)
    verts  float64 (778, 3) camera space, metres
    pose_id, view_id, item_id  int (-1 where unknown)
    handedness  int: 0 right, 1 left (the image's hand; FreiHAND: 0)
    flipped     bool: the source flipped a left sample to a right one (:func:`flip_sample`)

and describes itself with ``name``, ``topology`` and (ours only) the 778-vertex template.
Sources: :class:`ShardSource` (our HDF5 shards through ``datagen.dataset``) and
:class:`FreiHANDSource` (the official FreiHAND layout).  This module is the one place that
knows how a source is read.

:class:`MixedDataset` turns ``(source, index, seed)`` into the network's views
(:mod:`train.augment`); :class:`PlanSampler` decides, per epoch, which ``(source, index,
seed)`` each process sees, from the run seed and the epoch only - so the data order and the
augmentation are the same with any number of workers, and a resumed run continues exactly.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch

from datagen import atomic
from datagen.geometry.mirror import flip_image, flip_K, mirror_points

from .augment import AugmentParams, eval_crop, make_view

EFFECTS_STREAM = 0xEFF  # the image effects' generator: default_rng([sample seed, EFFECTS_STREAM])

__all__ = ["split_keys", "flip_sample", "FLIP_MODES", "ShardSource", "FreiHANDSource", "MixedDataset", "PlanSampler", "TopologyError", "Template",
           "build_sources", "template_of", "epoch_plan"]


class TopologyError(ValueError):
    """Sources whose 778-vertex meshes do not share one topology cannot train one network."""


class Template:
    """The 778-vertex template of a dataset: rest vertices (m), faces, 21x778 joint regressor."""

    def __init__(self, vertices, faces, regressor, topology: str, name: str = ""):
        self.vertices = np.asarray(vertices, np.float64)
        self.faces = np.asarray(faces, np.int64)
        self.regressor = np.asarray(regressor, np.float64)
        self.topology = topology
        self.name = name or topology

    def to_dict(self) -> dict:
        return {"vertices": self.vertices, "faces": self.faces, "regressor": self.regressor,
                "topology": self.topology, "name": self.name}

    @classmethod
    def from_dict(cls, d: dict) -> Template:
        return cls(d["vertices"], d["faces"], d["regressor"], d["topology"], d.get("name", ""))

    def hand_template(self):
        from mobrecon.template import HandTemplate

        return HandTemplate(self.vertices, self.faces, self.regressor, None, self.name)


# ---------------------------------------------------------------------------------------------
# left hands

# Which samples a source flips to right hands: "left" (those whose handedness is left: the
# config's data.left_hands = "flip", MobRecon's convention), "none" ("keep"), "all" (evaluate /
# predict --hand left: every image is taken as a left hand).
FLIP_MODES = ("left", "none", "all")


def flip_sample(raw: dict) -> dict:
    """A raw sample mirrored horizontally: image and mask columns reversed, K -> flip_K (the
    principal point moves to W - cx), camera-space joints and mesh x -> -x.  Exact (no
    resampling): the flipped image is the mirrored hand seen by the flipped camera
    (datagen.geometry.mirror).  A left hand becomes a right hand; the mesh's faces are then the
    template's own.  Sets ``flipped``; applying it twice gives the sample back."""
    out = dict(raw)
    w = raw["image"].shape[1]
    out["image"] = flip_image(raw["image"])
    if raw.get("mask") is not None:
        out["mask"] = flip_image(raw["mask"])
    out["K"] = flip_K(np.asarray(raw["K"], np.float64), w)
    for k in ("joints", "verts"):
        if raw.get(k) is not None:
            out[k] = mirror_points(np.asarray(raw[k], np.float64))
    out["flipped"] = not raw.get("flipped", False)
    return out


# ---------------------------------------------------------------------------------------------
# our shards


def split_keys(sample_pose_id, sample_pose_group, pose_table: dict, split_by: str) -> np.ndarray:
    """Per sample, the key whose stable hash decides its split (``datagen.dataset.select_split``).

    ``pose``, ``both`` (and ``view``, where it is not used): the dataset's ``pose_group`` -
    identical poses under other ids share a group, hence a split.  ``chain``: the connected
    components of "same pose group" and "interior pose of the same base pair" (t = 1/4, 1/2,
    3/4 of a -> b): a chain is held out whole, and chains that meet in an identical midpoint
    (e.g. 0 -> 31 and 6 -> 25 both pass through "every finger half bent") are held out
    together, so no pose group is split and no sample is dropped.  Base poses keep their group
    as key; a component's key is 2^20 + its smallest pose group.
    """
    pid = np.asarray(sample_pose_id, np.int64)
    grp = np.asarray(sample_pose_group, np.int64)
    if split_by != "chain":
        return grp
    if not {"pose_id", "pose_a", "pose_b"} <= set(pose_table):
        raise ValueError("no pose provenance (pose_a, pose_b) in tables.h5; split_by='chain' needs it")
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    # Graph nodes: the pose groups (0..G-1), then the chains (base pairs a < b, G..G+C-1);
    # an edge joins a sampled interior pose's group to its chain.
    groups, grp_node = np.unique(grp, return_inverse=True)
    node_of_pose = dict(zip(pid.tolist(), grp_node.tolist()))
    tp, ta, tb = (np.asarray(pose_table[k], np.int64) for k in ("pose_id", "pose_a", "pose_b"))
    sampled = np.array([p in node_of_pose for p in tp.tolist()], bool)  # table poses with a sample
    tp, ta, tb = tp[sampled], ta[sampled], tb[sampled]
    node = np.array([node_of_pose[p] for p in tp.tolist()], np.int64)
    is_base = np.zeros(len(groups), bool)
    is_base[node[ta == tb]] = True
    inner = ta != tb
    chains, chain_node = np.unique(np.stack([np.minimum(ta, tb), np.maximum(ta, tb)], 1)[inner], axis=0,
                                   return_inverse=True)
    n = len(groups) + len(chains)
    edges = coo_matrix((np.ones(int(inner.sum())), (node[inner], len(groups) + chain_node.ravel())), shape=(n, n))
    _, component = connected_components(edges, directed=False)
    comp_min = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(comp_min, component[:len(groups)], groups)  # each component's smallest pose group
    return np.where(is_base[grp_node], grp, (1 << 20) + comp_min[component[grp_node]])


class ShardSource:
    """Our packed dataset (``python -m datagen.pack``), one split of it.

    Splits are ``datagen.dataset.select_split`` (a stable hash per key) on the dataset's own
    pose groups (tables.h5 ``samples/pose_group``: identical poses under other ids share a
    group), so the pose splits are exactly ``datagen.dataset.ShardDataset``'s.
    ``split_by="chain"`` (ours) keys whole interpolation chains (see :func:`split_keys`): a
    held-out chain gives complete pose sequences for the acceleration error.  No split shares
    a pose group with another (checked), and no sample is dropped: train + val + test = all.
    ``flip`` (:data:`FLIP_MODES`): which samples :meth:`get` flips to right hands.
    """

    FIELDS = ("image", "mask", "joints_cam", "vertices_cam", "K", "ids")

    def __init__(self, root, split="train", split_by="pose", fractions=(0.8, 0.1, 0.1), split_seed=0,
                 flip: str = "left"):
        from datagen.dataset.reader import ShardDataset, select_split

        if split_by not in ("pose", "view", "both", "chain"):
            raise ValueError(f"split_by must be pose, view, both or chain, got {split_by!r}")
        if flip not in FLIP_MODES:
            raise ValueError(f"flip must be one of {FLIP_MODES}, got {flip!r}")
        self.flip = flip
        self.root = Path(root)
        self.ds = ShardDataset(self.root, split="all", fields=self.FIELDS)
        self.manifest = self.ds.manifest
        self.topology = str(self.ds.tables.topology)
        self.name = f"{self.root.name}:{split}"
        self.split = split
        with h5py.File(self.root / "tables.h5", "r") as f:
            g = f["poses"]
            self.pose_table = {k: g[k][()] for k in ("pose_id", "pose_a", "pose_b", "t") if k in g}
        smp = self.ds.tables.samples
        self.keys = split_keys(smp["pose_id"], smp["pose_group"], self.pose_table, split_by)
        by = "pose" if split_by == "chain" else split_by

        def rows_of(name):
            return select_split(self.keys, smp["view_id"], name, by, tuple(fractions), split_seed)

        rows = rows_of(split)
        if split not in ("train", "all") and by != "view":  # by construction; a cheap guard all the same
            leaked = set(smp["pose_group"][rows].tolist()) & set(smp["pose_group"][rows_of("train")].tolist())
            if leaked:
                raise AssertionError(f"{root}: pose groups {sorted(leaked)[:5]} are in {split!r} and in 'train'")
        self.ds.indices = rows
        self.pose_ids = smp["pose_id"][rows].astype(np.int64)
        self.pose_groups = smp["pose_group"][rows].astype(np.int64)
        self.view_ids = smp["view_id"][rows].astype(np.int64)

    def __len__(self) -> int:
        return len(self.ds)

    def template(self) -> Template:
        m = self.ds.tables.mano
        return Template(m["template"], m["faces"], m["joint_regressor"], self.topology, f"{self.root.name}-{self.topology}")

    def get(self, i: int) -> dict:
        s = self.ds.read_sample(i)
        raw = {"image": np.ascontiguousarray(s["image"].transpose(1, 2, 0)), "mask": s["mask"],
               "K": s["K"].astype(np.float64), "joints": s["joints_cam"].astype(np.float64),
               "verts": s["vertices_cam"].astype(np.float64), "pose_id": int(s["pose_id"]),
               "view_id": int(s["view_id"]), "item_id": int(s["item_id"]), "handedness": int(s["handedness"]),
               "flipped": False}
        if self.flip == "all" or (self.flip == "left" and raw["handedness"] == 1):
            raw = flip_sample(raw)
        return raw


# ---------------------------------------------------------------------------------------------
# FreiHAND


def _cache_root() -> Path:
    return Path(os.environ.get("HANDSYNTH_CACHE", Path.home() / ".cache" / "handsynth")) / "freihand"


def _load_json_array(path: Path, dtype=np.float32) -> np.ndarray:
    """A big FreiHAND JSON list as a numpy array, cached as .npy (parsing 500 MB of JSON is slow)."""
    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cache = _cache_root() / f"{path.stem}-{key}.npy"
    if cache.exists():
        return np.load(cache)
    arr = np.asarray(json.loads(path.read_text()), dtype)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic.save_npy(cache, arr)
    except OSError:
        pass
    return arr


class FreiHANDSource:
    """FreiHAND (Zimmermann et al. 2019) in its official layout.

    ``training``: ``training/rgb/%08d.jpg`` (4 versions of each of the N = len(training_K.json)
    samples: image ``v * N + i``), ``training/mask/%08d.jpg`` (N silhouettes, shared by the
    versions), ``training_{K,xyz,verts}.json``.  ``evaluation``: ``evaluation/rgb``,
    ``evaluation_K.json`` and, in the release with ground truth, ``evaluation_{xyz,verts}.json``
    and silhouettes in ``evaluation/segmap/%08d.png`` or ``evaluation/mask/%08d.jpg``.  Without
    silhouettes the crop comes from the projected ground-truth mesh.  Joints are in FreiHAND
    order, meshes in MANO topology, metres, camera space.
    """

    topology = "mano"

    def __init__(self, root, split: str = "training", versions=(0, 1, 2, 3)):
        self.root = Path(root)
        if split not in ("training", "evaluation"):
            raise ValueError(f"FreiHAND split must be 'training' or 'evaluation', got {split!r}")
        self.split = split
        self.name = f"freihand:{split}"
        kf = self.root / f"{split}_K.json"
        if not kf.exists():
            raise FileNotFoundError(f"{kf} is missing: {self.root} is not a FreiHAND root "
                                    f"(expected {split}/rgb/, {split}_K.json, {split}_xyz.json, {split}_verts.json)")
        self.K = _load_json_array(kf, np.float64)
        self.n = len(self.K)
        xyz, verts = self.root / f"{split}_xyz.json", self.root / f"{split}_verts.json"
        self.has_gt = xyz.exists() and verts.exists()
        self.xyz = _load_json_array(xyz) if self.has_gt else None
        self.verts = _load_json_array(verts) if self.has_gt else None
        if split == "training" and not self.has_gt:
            raise FileNotFoundError(f"{xyz} / {verts} missing: FreiHAND training needs its labels")
        self.versions = [0] if split == "evaluation" else list(versions)
        rgb = self.root / split / "rgb"
        if not (rgb / f"{0:08d}.jpg").exists():
            raise FileNotFoundError(f"{rgb}/00000000.jpg is missing")
        for v in self.versions:
            if not (rgb / f"{v * self.n:08d}.jpg").exists():
                raise FileNotFoundError(f"FreiHAND version {v} not found ({rgb}/{v * self.n:08d}.jpg)")

    def __len__(self) -> int:
        return self.n * len(self.versions)

    def _mask(self, i: int):
        for rel, thr in ((f"{self.split}/mask/{i:08d}.jpg", 128), (f"{self.split}/segmap/{i:08d}.png", 0)):
            p = self.root / rel
            if p.exists():
                m = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
                if m is not None:
                    return m > thr
        return None

    def get(self, j: int) -> dict:
        v, i = divmod(int(j), self.n)
        img_idx = self.versions[v] * self.n + i
        img = cv2.imread(str(self.root / self.split / "rgb" / f"{img_idx:08d}.jpg"), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"cannot read FreiHAND image {img_idx}")
        out = {"image": np.ascontiguousarray(img[..., ::-1]), "mask": self._mask(i), "K": self.K[i],
               "pose_id": -1, "view_id": -1, "item_id": img_idx, "handedness": 0, "flipped": False}
        if self.has_gt:
            out["joints"] = self.xyz[i].astype(np.float64)
            out["verts"] = self.verts[i].astype(np.float64)
        return out


# ---------------------------------------------------------------------------------------------
# building sources from a config


def flip_mode(data_cfg: dict) -> str:
    """The ShardSource flip mode of a run's [data] section (left_hands; runs before it: flip)."""
    return "left" if data_cfg.get("left_hands", "flip") == "flip" else "none"


def build_sources(cfg: dict, split: str, with_freihand: bool = True) -> list:
    d = cfg["data"]
    sources = [ShardSource(p, split, d["split_by"], d["split_fractions"], d["split_seed"], flip_mode(d))
               for p in d["datasets"]]
    if with_freihand and d["freihand"]:
        fsplit = "training" if split in ("train", "all") else "evaluation"
        sources.append(FreiHANDSource(d["freihand"], fsplit, d["freihand_versions"]))
    if not sources:
        raise ValueError("no data: give --data DIR (a packed dataset) and/or --freihand DIR")
    for s in sources:
        if len(s) == 0:
            raise ValueError(f"source {s.name} has no samples in split {split!r}")
    return sources


def template_of(sources: list) -> Template:
    """The one 778-vertex template all sources share; refuses mixed topologies clearly."""
    ours = [s for s in sources if isinstance(s, ShardSource)]
    if not ours:
        raise TopologyError(
            "no packed dataset given: the network's template (faces, joint regressor) comes from a dataset's "
            "manifest. Pass --data DIR with a dataset packed with the same topology as the other sources")
    tops = {s.name: s.topology for s in sources}
    if len(set(tops.values())) > 1:
        detail = ", ".join(f"{k}={v}" for k, v in tops.items())
        raise TopologyError(
            f"the sources do not share one 778-vertex topology ({detail}). A network predicts one fixed mesh "
            "topology; FreiHAND is MANO topology, so mix it only with datasets packed with "
            "`python -m datagen.pack RENDER_DIR OUT_DIR --topology mano --mano MANO_RIGHT.pkl`")
    t0 = ours[0].template()
    for s in ours[1:]:
        t = s.template()
        if t.faces.shape != t0.faces.shape or not np.array_equal(t.faces, t0.faces):
            raise TopologyError(f"{ours[0].name} and {s.name} both say topology {t0.topology!r} but their faces "
                                "differ (packed with different mappings); repack them with one mapping")
    return t0


# ---------------------------------------------------------------------------------------------
# mixture + plan


def epoch_plan(sizes, weights, samples_per_epoch: int, seed: int, epoch: int) -> np.ndarray:
    """(N, 3) int64 rows (source, index, sample seed) for one epoch, shuffled.

    Source k gets round(N * w_k / sum w) samples: a fresh permutation of its indices, repeated
    when it must give more than it has.  Everything depends on (seed, epoch) only.
    """
    sizes = [int(s) for s in sizes]
    w = np.asarray(weights if weights else sizes, np.float64)
    if len(w) != len(sizes):
        raise ValueError(f"data.weights has {len(w)} entries for {len(sizes)} sources")
    if w.sum() <= 0:
        raise ValueError("data.weights must not all be 0")
    total = int(samples_per_epoch) or int(sum(sizes))
    counts = np.floor(total * w / w.sum()).astype(np.int64)
    rem = total - counts.sum()
    order = np.argsort(-(total * w / w.sum() - counts), kind="stable")
    counts[order[:rem]] += 1
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    rows = []
    for k, (n, c) in enumerate(zip(sizes, counts)):
        if c == 0:
            continue
        reps = -(-c // n)
        idx = np.concatenate([rng.permutation(n) for _ in range(reps)])[:c]
        rows.append(np.stack([np.full(c, k), idx], 1))
    plan = np.concatenate(rows, 0)
    plan = plan[rng.permutation(len(plan))]
    seeds = rng.integers(0, 2**62, size=len(plan))
    return np.concatenate([plan, seeds[:, None]], 1).astype(np.int64)


class PlanSampler(torch.utils.data.Sampler):
    """Yields (source, index, seed) tuples of this rank's share of the epoch plan.

    The plan is cut to a multiple of world_size x batch_size (every rank runs the same number
    of full steps); rank r takes every world_size-th batch-sized chunk.  ``start_batch``
    skips batches already done (exact mid-epoch resume).
    """

    def __init__(self, sizes, weights, samples_per_epoch, seed, batch_size, rank=0, world_size=1):
        self.sizes, self.weights, self.spe = list(sizes), list(weights), samples_per_epoch
        self.seed, self.batch_size, self.rank, self.world = seed, batch_size, rank, world_size
        self.epoch, self.start_batch = 0, 0
        n = int(samples_per_epoch) or int(sum(self.sizes))
        self.batches = n // (batch_size * world_size)
        if self.batches == 0:
            raise ValueError(f"an epoch of {n} samples is smaller than one step of {batch_size} x {world_size} "
                             "processes; lower --batch-size or add data")

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return (self.batches - self.start_batch) * self.batch_size

    def __iter__(self):
        plan = epoch_plan(self.sizes, self.weights, self.spe, self.seed, self.epoch)
        B, W = self.batch_size, self.world
        plan = plan[: self.batches * B * W].reshape(self.batches, W, B, 3)[:, self.rank]
        for b in range(self.start_batch, self.batches):
            for row in plan[b]:
                yield tuple(int(x) for x in row)


class MixedDataset(torch.utils.data.Dataset):
    """(source, index, seed) -> dict of tensors with a leading view axis (V = 1 or 2).

    ``train=False`` gives the deterministic evaluation crop (no randomness) and V = 1; then an
    int index (into the concatenation of the sources) also works.
    """

    def __init__(self, sources: list, aug: AugmentParams, crop_size: int = 128, views: int = 2, train: bool = True):
        self.sources, self.aug, self.out = sources, aug, crop_size
        self.views = views if train else 1
        self.train = train
        self.offsets = np.cumsum([0] + [len(s) for s in sources])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, j: int) -> tuple[int, int]:
        k = int(np.searchsorted(self.offsets, j, side="right") - 1)
        return k, int(j - self.offsets[k])

    def __getitem__(self, key):
        if isinstance(key, tuple):
            k, i, seed = key
        else:
            (k, i), seed = self.locate(int(key)), 0
        raw = self.sources[k].get(i)
        rng = np.random.default_rng(seed) if self.train else None
        effects_rng = partner = None
        if self.train and self.aug.effects:
            # A stream of its own: the crop/colour draws above stay those of a run without effects.
            effects_rng = np.random.default_rng([seed, EFFECTS_STREAM])
            if self.aug.amplitude_mix_prob > 0 and len(self) > 1:
                j = int(effects_rng.integers(len(self) - 1))
                j += j >= int(self.offsets[k]) + i  # another sample than this one
                k2, i2 = self.locate(j)
                partner = eval_crop(self.sources[k2].get(i2), self.aug, self.out)
        views = [make_view(raw, rng, self.aug, self.out, effects_rng, partner) for _ in range(self.views)]
        out = {key_: torch.from_numpy(np.stack([v[key_] for v in views])) for key_ in views[0]}
        out["source"] = torch.tensor(k)
        out["index"] = torch.tensor(i)
        for name in ("pose_id", "view_id", "item_id"):
            out[name] = torch.tensor(int(raw.get(name, -1)))
        out["handedness"] = torch.tensor(int(raw.get("handedness", 0)))
        out["flipped"] = torch.tensor(bool(raw.get("flipped", False)))
        out["image_width"] = torch.tensor(int(raw["image"].shape[1]))
        if not self.train:
            out["K"] = torch.from_numpy(np.asarray(raw["K"], np.float32))
            out["joints_cam"] = torch.from_numpy(np.asarray(raw["joints"], np.float32))
            out["verts_cam"] = torch.from_numpy(np.asarray(raw["verts"], np.float32))
        return out
