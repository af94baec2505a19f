"""The hand as the dataset sees it: capped, subdivided, with keypoints defined on the rig.

`HandAsset` is everything downstream needs and nothing more - plain arrays that numpy (in
Blender's Python too) can load from one .npz:

- `dense_matrix` D (Nd x Nb sparse): dense vertices = D @ posed base vertices.  It folds
  together the wrist cap (one centre vertex, the mean of the wrist boundary loop) and
  Catmull-Clark subdivision, so the mesh Cycles renders is exactly the labelled mesh.
- `dense_faces` (Fd x 3): triangles of the dense mesh, fixed diagonal split.
- keypoints: 15 finger joint centres are bone heads of the rig (see `KEYPOINT_DEFINITIONS`);
  the wrist is the centre of the wrist cut (the cap's centre vertex) and the 5 fingertips are
  fixed barycentric points on the dense surface, found on the rest pose where the distal
  phalanx's axis leaves the skin - these 6 surface keypoints are carried by the skin.
- the hand frame is fixed on the rest pose's keypoints: origin at the wrist keypoint, +y
  through the middle-finger MCP (see `anatomical_frame`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from datagen import atomic
from datagen.geometry.triangle_crossings import ray_triangle

from .base import FINGERS, HandModel, anatomical_frame, forward_kinematics
from .subdivision import subdivide, triangulate

KEYPOINT_DEFINITIONS = {
    "wrist": "without a forearm ([hand] forearm = false, label_version 1): centre of the wrist cut, the "
    "dense vertex at the centre of the wrist cap, on the skin.  With the forearm (label_version 2): the "
    "wrist joint centre between hand and forearm - the wrist's centre of rotation, the middle of the "
    "rig's wrist bone wrist.R (which spans the carpus from the end of the forearm bones to the "
    "metacarpal bases, 32 mm for the average adult: its middle is the capitate head, about which "
    "flexion/extension and deviation turn); inside the flesh, 16 mm distal of wrist.R's head.  It is "
    "the head of the forearm bone, the centre of the wrist angles.  Measured against MediaPipe "
    "(docs/REALISM.md): its wrist lies 0.2 x |wrist -> middle MCP| distal of wrist.R's head and "
    "agrees with this point (wrist PCK@0.1 0.75 vs 0.16 at wrist.R's head)",
    "thumb_cmc": "head of the thumb's first bone (carpometacarpal joint centre)",
    "thumb_mcp": "head of the thumb's second bone (metacarpophalangeal joint centre)",
    "thumb_ip": "head of the thumb's distal bone (interphalangeal joint centre)",
    "<finger>_mcp": "head of the proximal phalanx bone (metacarpophalangeal joint centre)",
    "<finger>_pip": "head of the middle phalanx bone (proximal interphalangeal joint centre)",
    "<finger>_dip": "head of the distal phalanx bone (distal interphalangeal joint centre)",
    "<finger>_tip": "skin point where the distal bone's axis (head -> tail, extended) exits the rest-pose "
    "dense surface, stored as a triangle + barycentric coordinates and skinned with the mesh",
}


@dataclass
class HandAsset:
    name: str
    base_faces: np.ndarray  # (Fb, 3) triangles of the open base mesh (the model's own vertices)
    dense_matrix: sp.csr_matrix  # (Nd, Nb)
    dense_faces: np.ndarray  # (Fd, 3)
    dense_quads: np.ndarray  # (Qd, 4) the subdivision's quads (dense_faces split them)
    bone_names: tuple[str, ...]
    parents: np.ndarray
    rest_heads: np.ndarray  # (J, 3) hand frame
    rest_tails: np.ndarray  # (J, 3)
    joint_bones: np.ndarray  # (16,) bone per joint keypoint, in keypoint order minus tips (0: the wrist bone)
    wrist_vertex: int  # dense vertex of the wrist keypoint (centre of the wrist cap); -1: the wrist
    # keypoint is the rig's wrist joint centre (bone head, hand with forearm)
    tip_faces: np.ndarray  # (5,) dense triangle per fingertip
    tip_barycentric: np.ndarray  # (5, 3)
    base_part: np.ndarray  # (Nb,) 0 palm, 1..5 thumb..little: dominant skinning part
    dense_part: np.ndarray  # (Nd,)
    rest_base_vertices: np.ndarray  # (Nb, 3)
    palm_centre: np.ndarray  # (3,) aim point of every camera
    # With a forearm (datagen.hand.forearm; empty without): the base vertices the forearm bone
    # moves (its skinning weight > 0: the arm and the hand's wrist region) and those weights,
    # which turn the arm per item (datagen.poses.wrist.arm_delta); and the dense faces at the
    # arm's cut end (datagen.cameras.cut_end.cut_end_faces, set by datagen.poses.prepared).
    arm_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (n,)
    arm_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n,)
    cut_faces: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))  # (M, 3)
    licence: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def n_base(self) -> int:
        return self.dense_matrix.shape[1]

    @property
    def n_dense(self) -> int:
        return self.dense_matrix.shape[0]

    def dense(self, base_vertices: np.ndarray) -> np.ndarray:
        """(N, Nb, 3) or (Nb, 3) posed base vertices -> dense vertices."""
        base = np.asarray(base_vertices)
        if base.ndim == 2:
            return np.asarray(self.dense_matrix @ base)
        return np.stack([np.asarray(self.dense_matrix @ b) for b in base])

    def keypoints(self, bone_heads: np.ndarray, dense_vertices: np.ndarray) -> np.ndarray:
        """21 keypoints (FreiHAND order) from posed bone heads (J,3) and dense vertices (Nd,3)."""
        joints = bone_heads[self.joint_bones]  # wrist bone, then 3 per finger
        tri = dense_vertices[self.dense_faces[self.tip_faces]]  # (5, 3, 3)
        tips = np.einsum("fk,fkc->fc", self.tip_barycentric, tri)
        out = [dense_vertices[self.wrist_vertex] if self.wrist_vertex >= 0 else joints[0]]
        for f in range(5):
            out.extend(joints[1 + 3 * f : 4 + 3 * f])
            out.append(tips[f])
        return np.stack(out)

    # ---- persistence: a flat .npz that numpy alone can read (Blender's Python included) ----
    def save(self, path: str | Path) -> None:
        D = self.dense_matrix.tocsr()
        arrays = {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        arrays["wrist_vertex"] = np.asarray(self.wrist_vertex)
        arrays.update(
            dense_indptr=D.indptr, dense_indices=D.indices, dense_data=D.data,
            dense_shape=np.asarray(D.shape), name=np.asarray(self.name),
            bone_names=np.asarray(self.bone_names),
            licence=np.asarray(repr(self.licence)), versions=np.asarray(repr(self.versions)),
        )
        atomic.save_npz(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> HandAsset:
        import ast

        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        missing = {"wrist_vertex", "dense_data", "dense_indices", "dense_indptr", "dense_shape"} - set(d)
        if missing:
            raise ValueError(f"{path}: not a hand asset of this version (missing {', '.join(sorted(missing))}); "
                             "it was written by an older handsynth - render again into a new folder")
        D = sp.csr_matrix((d.pop("dense_data"), d.pop("dense_indices"), d.pop("dense_indptr")),
                          shape=tuple(d.pop("dense_shape")))
        return cls(
            name=str(d.pop("name")),
            dense_matrix=D,
            bone_names=tuple(str(b) for b in d.pop("bone_names")),
            wrist_vertex=int(d.pop("wrist_vertex")),
            licence=ast.literal_eval(str(d.pop("licence"))),
            versions=ast.literal_eval(str(d.pop("versions"))),
            **d,
        )


def _wrist_loop(faces: list[np.ndarray]) -> list[int]:
    """The boundary loop, ordered so that a cap fan over it has the mesh's winding."""
    directed = {}
    count: dict[tuple[int, int], int] = {}
    for f in faces:
        for a, b in zip(f, np.roll(f, -1)):
            directed[(int(a), int(b))] = True
            key = (min(a, b), max(a, b))
            count[key] = count.get(key, 0) + 1
    # A boundary half-edge a->b has no twin b->a; the cap must use b->a.
    nxt = {b: a for (a, b) in directed if count[(min(a, b), max(a, b))] == 1}
    if not nxt:
        return []
    start = min(nxt)
    loop, cur = [start], nxt[start]
    while cur != start:
        loop.append(cur)
        cur = nxt[cur]
        if len(loop) > len(nxt):
            raise ValueError("boundary is not a single simple loop")
    if len(loop) != len(nxt):
        raise ValueError(f"expected one wrist boundary loop, found {len(nxt)} boundary edges "
                         f"but a loop of {len(loop)}")
    return loop


def _fingertip(dense_vertices, dense_faces, head, tail) -> tuple[int, np.ndarray]:
    """Where the ray head->tail (beyond the tail) leaves the surface: (triangle, barycentric)."""
    d = tail - head
    d = d / np.linalg.norm(d)
    F = np.asarray(dense_faces)
    V = dense_vertices
    t, u, v, inside = ray_triangle(head, d, V[F[:, 0]], V[F[:, 1]], V[F[:, 2]])
    hit = inside & (t > 0)
    if not hit.any():
        raise ValueError("fingertip ray does not meet the surface")
    # The farthest exit along the axis is the fingertip (the ray starts inside the finger).
    i = int(np.argmax(np.where(hit, t, -np.inf)))
    return i, np.array([1 - u[i] - v[i], u[i], v[i]])


def build_asset(hand: HandModel, subdivision_levels: int = 1) -> HandAsset:
    """Cap the wrist, subdivide, define the keypoints on the rest pose of `hand`, and fix the
    hand frame on the wrist keypoint (this re-frames `hand` in place)."""
    n = len(hand.rest_vertices)
    faces = [np.asarray(f) for f in hand.faces]
    # With a forearm (datagen.hand.forearm) the one open loop is the cut near the elbow: the cap
    # closes the arm there, and the wrist keypoint is the rig's wrist joint centre.
    arm = getattr(hand, "arm_vertex", None)
    loop = _wrist_loop(faces)
    # Cap: one centre vertex = mean of the loop (a fixed linear row, so it skins for free),
    # fanned with triangles that subdivision turns into quads.
    A = sp.vstack([sp.identity(n, format="csr"),
                   sp.csr_matrix((np.full(len(loop), 1 / len(loop)), (np.zeros(len(loop), int), loop)),
                                 shape=(1, n))]).tocsr()
    capped = list(faces) + [np.array([n, loop[i], loop[(i + 1) % len(loop)]]) for i in range(len(loop))]
    S, quads = subdivide(A.shape[0], capped, subdivision_levels)
    D = (S @ A).tocsr()
    D.eliminate_zeros()
    if not loop:
        raise ValueError("the hand mesh has no wrist opening to cap")
    wrist_vertex = n if arm is None else -1  # the cap centre keeps its id: subdivision lists vertex points first
    _frame_on_wrist(hand, D, wrist_vertex)
    rig = hand.rig
    dense_faces = triangulate(quads)
    base_tris = triangulate(faces)

    # Parts: 0 = palm (wrist and metacarpals), 1..5 = the finger owning the vertex's heaviest bone.
    bone_part = np.zeros(len(rig.bone_names), np.int64)
    for k, finger in enumerate(FINGERS, start=1):
        for b in rig.chains[finger]:
            bone_part[b] = k
    W = hand.skinning_weights
    part_w = np.zeros((n, 6))
    np.add.at(part_w.T, bone_part, W.T)
    base_part = part_w.argmax(1)
    n_parts = 6
    if arm is not None:
        from .forearm import ARM_PART

        base_part[np.asarray(arm, bool)] = ARM_PART
        n_parts = ARM_PART + 1
    cap_part = np.concatenate([base_part, [0 if arm is None else n_parts - 1]])
    dense_part_w = np.asarray(S @ np.eye(n_parts)[cap_part])
    dense_part = dense_part_w.argmax(1)

    rest_dense = np.asarray(D @ hand.rest_vertices)
    arm_rows = np.zeros(0, np.int64)
    if arm is not None:
        arm_rows = np.nonzero(W[:, rig.forearm] > 0)[0]
    tip_faces, tip_bary = [], []
    for finger in FINGERS:
        distal = rig.chains[finger][2]
        f, b = _fingertip(rest_dense, dense_faces, rig.heads[distal], rig.tails[distal])
        tip_faces.append(f)
        tip_bary.append(b)

    joint_bones = np.asarray(rig.joint_bones(), dtype=np.int64)
    mcps = [rig.chains[f][0] for f in FINGERS[1:]]
    wrist_rest = rest_dense[wrist_vertex] if wrist_vertex >= 0 else rig.heads[rig.forearm]
    palm_centre = np.mean(np.vstack([wrist_rest, rig.heads[mcps]]), axis=0)
    return HandAsset(
        name=hand.name,
        base_faces=base_tris,
        dense_matrix=D,
        dense_faces=dense_faces,
        dense_quads=np.asarray(quads),
        bone_names=rig.bone_names,
        parents=rig.parents,
        rest_heads=rig.heads,
        rest_tails=rig.tails,
        joint_bones=joint_bones,
        wrist_vertex=wrist_vertex,
        tip_faces=np.asarray(tip_faces),
        tip_barycentric=np.asarray(tip_bary),
        base_part=base_part,
        dense_part=dense_part,
        rest_base_vertices=hand.rest_vertices,
        palm_centre=palm_centre,
        arm_rows=arm_rows,
        arm_weights=np.asarray(W[arm_rows, rig.forearm], np.float64) if arm is not None else np.zeros(0),
        licence=dict(hand.licence),
        versions=dict(hand.versions),
    )


def _frame_on_wrist(hand: HandModel, D, wrist_vertex: int) -> None:
    """Re-frame `hand` in place on its wrist keypoint: origin at the wrist (the dense vertex
    `wrist_vertex` = row of D, or the forearm bone's head when -1), +y through the middle MCP."""
    rig = hand.rig
    mcp = {f: rig.heads[rig.chains[f][0]] for f in ("index", "middle", "little")}
    wrist = (np.asarray(D[wrist_vertex] @ hand.rest_vertices).ravel() if wrist_vertex >= 0
             else rig.heads[rig.forearm].copy())
    hand.reframe(anatomical_frame(wrist, mcp["index"], mcp["middle"], mcp["little"]))


def frame_like(hand: HandModel, asset: HandAsset) -> HandModel:
    """Fix `hand` (another shape of the asset's model: same topology) in its own hand frame, the
    way `build_asset` fixed the asset's hand: on its wrist keypoint and MCPs (in place)."""
    if len(hand.rest_vertices) != asset.n_base:
        raise ValueError(f"hand has {len(hand.rest_vertices)} base vertices, the asset {asset.n_base}")
    _frame_on_wrist(hand, asset.dense_matrix, asset.wrist_vertex)
    return hand


def posed_bone_heads(asset: HandAsset, bone_transforms: np.ndarray, rest_heads: np.ndarray | None = None) -> np.ndarray:
    """(B, J, 3) posed joint centres from bone transforms (B, J, 4, 4); `rest_heads` (J, 3): those
    of another shape of the asset's hand (datagen.hand.shape; default: the asset's)."""
    h = asset.rest_heads if rest_heads is None else rest_heads
    return np.einsum("bjik,jk->bji", bone_transforms[..., :3, :3], h) + bone_transforms[..., :3, 3]


__all__ = ["HandAsset", "build_asset", "frame_like", "posed_bone_heads", "forward_kinematics", "KEYPOINT_DEFINITIONS"]
