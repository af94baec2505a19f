"""What to render: item selections, per-item seeds and draws, output paths, prepared tables.

An item is one (pose id, view id) pair; item id = pose_id * n_views + view_id.  Selections are
always ordered pose-major (pose, then view) so a renderer changes the mesh only when the pose
changes.  Every random choice of an item (HDRI, rotation, strength, skin, Cycles seed) comes
from ``SeedSequence([config seed, pose_id, view_id])``, so it does not depend on which worker,
shard or order renders it.

Selection syntax (command line):
- ids: ``all``, ``7``, ``0-31`` (inclusive), lists ``0-3,10,200-215``;
- shard ``k/N``: the k-th (0-based) of N contiguous, balanced slices of the ordered selection
  (contiguous keeps a pose's views together);
- items file: one item per line - an item id (``70000``), ``pose view`` (``324 16``), or a JSON
  object ``{"pose_id": 324, "view_id": 16}`` / ``{"item_id": 70000}``; ``#`` starts a comment.

This module also loads the prepared hand and pose tables with numpy alone
(`load_tables`), which is all the renderer needs inside Blender's own Python.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .skin import SkinParams, draw_skin


class SelectionError(ValueError):
    """An item selection is malformed or out of range; the message says which token."""


class PreparedMissing(RuntimeError):
    """The prepared hand/pose cache this config needs has not been built (Blender's Python)."""


# ----------------------------------------------------------------------------- selections

def parse_ids(text: str, n: int, what: str) -> np.ndarray:
    """'all' | '5' | '0-31' | '0-3,10,200-215' -> sorted unique ids in [0, n)."""
    text = str(text).strip()
    if text.lower() in ("all", "*", ""):
        return np.arange(n)
    out: list[int] = []
    for tok in text.split(","):
        tok = tok.strip()
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", tok)
        if not m:
            raise SelectionError(f"{what} ids: cannot parse {tok!r} in {text!r} "
                                 f"(use 'all', 'N', 'A-B' or comma-separated lists)")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if a > b:
            raise SelectionError(f"{what} ids: range {tok!r} runs backwards")
        if b >= n:
            raise SelectionError(f"{what} id {b} in {tok!r} is out of range: valid {what} ids are 0..{n - 1}")
        out.extend(range(a, b + 1))
    return np.unique(np.asarray(out, dtype=np.int64))


def parse_shard(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise SelectionError(f"shard {text!r}: use k/N with 0 <= k < N, e.g. 0/8")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= k < n:
        raise SelectionError(f"shard {text!r}: need 0 <= k < N")
    return k, n


def shard_slice(items: list, k: int, n: int) -> list:
    total = len(items)
    return items[k * total // n : (k + 1) * total // n]


def select(n_poses: int, n_views: int, poses: str = "all", views: str = "all",
           shard: str | None = None) -> list[tuple[int, int]]:
    """Pose-major list of (pose_id, view_id) for a pose x view selection, optionally sharded."""
    P = parse_ids(poses, n_poses, "pose")
    V = parse_ids(views, n_views, "view")
    items = [(int(p), int(v)) for p in P for v in V]
    if shard:
        items = shard_slice(items, *parse_shard(shard))
    return items


def parse_item_line(line: str, n_poses: int, n_views: int, where: str = "") -> tuple[int, int] | None:
    """One items-file / stdin line -> (pose, view), None for blank/comment lines."""
    s = line.split("#", 1)[0].strip() if not line.lstrip().startswith("{") else line.strip()
    if not s:
        return None
    try:
        if s.startswith("{"):
            obj = json.loads(s)
            if "item_id" in obj and "pose_id" not in obj:
                p, v = divmod(int(obj["item_id"]), n_views)
            else:
                p, v = int(obj["pose_id"]), int(obj["view_id"])
        else:
            parts = re.split(r"[\s,]+", s)
            if len(parts) == 1:
                p, v = divmod(int(parts[0]), n_views)
            elif len(parts) == 2:
                p, v = int(parts[0]), int(parts[1])
            else:
                raise ValueError("expected an item id, 'pose view' or a JSON object")
    except (ValueError, KeyError, TypeError) as exc:
        raise SelectionError(f"{where}cannot parse item {line.strip()!r}: {exc}") from None
    if not 0 <= p < n_poses:
        raise SelectionError(f"{where}pose id {p} is out of range 0..{n_poses - 1} ({line.strip()!r})")
    if not 0 <= v < n_views:
        raise SelectionError(f"{where}view id {v} is out of range 0..{n_views - 1} ({line.strip()!r})")
    return p, v


def read_items_file(path: str | Path, n_poses: int, n_views: int) -> list[tuple[int, int]]:
    """Items listed in a file, deduplicated and ordered pose-major."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise SelectionError(f"items file {path}: {exc.strerror}") from None
    items = set()
    for i, line in enumerate(lines, 1):
        it = parse_item_line(line, n_poses, n_views, where=f"{path}:{i}: ")
        if it is not None:
            items.add(it)
    if not items:
        raise SelectionError(f"items file {path} lists no items")
    return sorted(items)


# ----------------------------------------------------------------------------- per-item draws

@dataclass(frozen=True)
class ItemSpec:
    pose_id: int
    view_id: int
    item_id: int
    seed: tuple[int, int, int]  # SeedSequence entropy: (config seed, pose_id, view_id)
    hdri_index: int
    hdri_rotation_deg: float
    hdri_strength: float
    skin: SkinParams
    cycles_seed: int

    @property
    def key(self) -> str:
        return f"{self.pose_id:05d}/v{self.view_id:03d}"


def item_seed(config_seed: int, pose_id: int, view_id: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(config_seed), int(pose_id), int(view_id)])


def make_spec(cfg, n_hdris: int, pose_id: int, view_id: int, n_views: int) -> ItemSpec:
    """Draw an item's random choices from its own seed.

    Three independent child streams (SeedSequence.spawn): 0 = environment (HDRI index,
    rotation, strength), 1 = skin, 2 = the Cycles sampling seed; adding a draw to one stream
    never changes the others.  The HDRI index depends on how many HDRIs the sources hold.
    """
    if n_hdris < 1:
        raise ValueError("no HDRIs to choose from")
    env_ss, skin_ss, render_ss = item_seed(cfg.seed, pose_id, view_id).spawn(3)
    env = np.random.default_rng(env_ss)
    index = int(env.integers(n_hdris))
    r0, r1 = cfg.hdri.rotation_deg
    rotation = float(r0 + (r1 - r0) * env.random())
    s0, s1 = cfg.hdri.strength
    strength = float(s0 + (s1 - s0) * env.random())
    skin = draw_skin(cfg.skin, np.random.default_rng(skin_ss))
    cycles_seed = int(render_ss.generate_state(1, np.uint32)[0] & 0x7FFFFFFF)
    return ItemSpec(pose_id, view_id, pose_id * n_views + view_id, (int(cfg.seed), int(pose_id), int(view_id)),
                    index, rotation, strength, skin, cycles_seed)


# ----------------------------------------------------------------------------- output paths

@dataclass(frozen=True)
class ItemPaths:
    rgb: Path
    mask: Path
    depth: Path
    label: Path

    def all(self) -> tuple[Path, ...]:
        return (self.rgb, self.mask, self.depth, self.label)


def item_paths(out_dir: str | Path, pose_id: int, view_id: int) -> ItemPaths:
    d = Path(out_dir) / "items" / f"{pose_id:05d}"
    stem = f"v{view_id:03d}"
    return ItemPaths(d / f"{stem}.png", d / f"{stem}.mask.png", d / f"{stem}.depth.npy", d / f"{stem}.json")


def mesh_path(out_dir: str | Path, pose_id: int) -> Path:
    return Path(out_dir) / "meshes" / f"pose_{pose_id:05d}.npz"


def is_done(out_dir: str | Path, pose_id: int, view_id: int) -> bool:
    """An item is complete when its label JSON exists (it is written last)."""
    return item_paths(out_dir, pose_id, view_id).label.exists()


# ----------------------------------------------------------------------------- prepared tables

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
    licence: dict
    versions: dict
    ids: np.ndarray
    pose_a: np.ndarray
    pose_b: np.ndarray
    t: np.ndarray
    rotations: np.ndarray
    base_vertices: np.ndarray  # (P, Nb, 3) float32
    keypoints: np.ndarray  # (P, 21, 3) float32
    _rows: np.ndarray = field(default=None, repr=False)

    def __post_init__(self):
        self._rows = np.repeat(np.arange(self.n_dense), np.diff(self.dense_indptr))

    @property
    def n_poses(self) -> int:
        return len(self.ids)

    def dense(self, base: np.ndarray) -> np.ndarray:
        """Dense vertices (Nd, 3) float64 = D @ base (CSR product in numpy)."""
        b = np.asarray(base, dtype=np.float64)[self.dense_indices] * self.dense_data[:, None]
        return np.stack([np.bincount(self._rows, weights=b[:, c], minlength=self.n_dense) for c in range(3)], axis=1)

    def dense_vertices(self, pose_id: int) -> np.ndarray:
        return self.dense(self.base_vertices[pose_id])

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
        licence=ast.literal_eval(str(h["licence"])), versions=ast.literal_eval(str(h["versions"])),
        ids=p["ids"], pose_a=p["pose_a"], pose_b=p["pose_b"], t=p["t"], rotations=p["rotations"],
        base_vertices=p["base_vertices"], keypoints=p["keypoints"],
    )


def _index_path(cache_dir: Path, cfg) -> Path:
    return Path(cache_dir) / "prepared" / f"index_{cfg.digest('hand', 'poses')}.json"


def ensure_tables(cfg, cache_dir: str | Path | None = None, can_build: bool = True,
                  config_arg: str = "CONFIG") -> HandTables:
    """Load the prepared tables for `cfg`, building them first when `can_build` (venv).

    Blender's own Python cannot build them (no torch/anny/scipy), and cannot compute the
    cache key either (it hashes code constants and the anny version), so the venv side leaves
    an index file `cache/prepared/index_<config digest>.json` naming the files it built last
    for this [hand]/[poses] configuration; Blender follows it.
    """
    from .config import REPO_ROOT

    cache_dir = Path(cache_dir) if cache_dir else None
    if can_build:
        from .prepared import default_cache_dir, prepare_poses, prepared_paths

        cache_dir = cache_dir or default_cache_dir()
        prep = prepare_poses(cfg, cache_dir=cache_dir, progress=True)
        hand_file, poses_file = prepared_paths(cache_dir, prep.key)
        index = _index_path(cache_dir, cfg)
        from .atomic import write_json

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
