"""Interpenetration between fingers, and between fingers and palm, measured on posed meshes.

A pose is implausible when skin of one part sinks into another part.  For every ordered pair
of parts (A, B) - the five fingers and the palm - we take the vertices of A, find the exact
closest point on B's triangles, and call the vertex penetrating when it lies behind that
triangle (negative side of its outward normal); the depth is the distance.  Parts meet at the
finger roots, where "behind the neighbour" is meaningless, so:

- vertices of A that lie within `JUNCTION_M` of B on the rest pose are not tested against B;
- closest points on B's open border (where B meets another part) are ignored.

Parts are the dominant skinning part of each dense vertex (see `HandAsset.dense_part`).  With
the forearm ([hand] forearm = true) the arm is part 6 and every finger/palm - arm pair is
checked the same way (measured on the 1520 poses with wrist flexion in [-30, 30] and in
[20, 50] degrees: nothing reaches into the arm; the worst pair stays ring into palm, 0.73-0.74 mm).
With per-item wrists ([hand] wrist_draw = "item") the table's arm is straight, so the report
also checks every pose's fingers-arm pairs with the arm at the wrist ranges' corners and edge
midpoints (`wrist_range_rotations`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from datagen.geometry.closest_point import closest_barycentric
from datagen.geometry.normals import triangle_normals

JUNCTION_M = 0.006  # rest-pose distance under which two parts count as joined
BROAD_PHASE_M = 0.015  # only vertices this close to B's vertices can be inside B
NEIGHBOURS = 4  # faces around this many nearest vertices of B hold the closest point
PART_NAMES = ("palm", "thumb", "index", "middle", "ring", "little", "forearm")


@dataclass
class PartGeometry:
    """Static, pose-independent bookkeeping for one part."""

    faces: np.ndarray  # (F, 3) dense faces fully inside the part
    vertices: np.ndarray  # vertex ids of the part
    vertex_faces_padded: np.ndarray  # (n, max valence) incident local faces, -1 padded
    face_on_border: np.ndarray  # (F,) face touches the part's open border


@dataclass
class Contact:
    pose: int
    part_a: int
    part_b: int
    depth_m: float
    vertex: int


@dataclass
class PenetrationReport:
    worst_per_pose: np.ndarray  # (P,) metres, 0 = no penetration
    worst_pair_per_pose: list[tuple[int, int]]
    contacts: list[Contact] = field(default_factory=list)

    @property
    def worst_mm(self) -> float:
        return float(self.worst_per_pose.max() * 1000) if len(self.worst_per_pose) else 0.0

    def count_over(self, depth_m: float) -> int:
        return int((self.worst_per_pose > depth_m).sum())

    def table(self, top: int = 10) -> str:
        d = self.worst_per_pose * 1000
        lines = ["interpenetration between parts (fingers, palm, forearm if any), per pose", ""]
        lines.append(f"{'depth':>14s} {'poses':>7s}")
        for lo, hi in [(0, 0), (0, 0.5), (0.5, 1), (1, 2), (2, 5), (5, np.inf)]:
            n = int(((d == 0) if hi == 0 else ((d > lo) & (d <= hi))).sum())
            name = "none" if hi == 0 else f"{lo:g}-{hi:g} mm"
            lines.append(f"{name:>14s} {n:7d}")
        order = np.argsort(-d)[:top]
        lines += ["", f"deepest {top}: pose  depth_mm  parts"]
        for i in order:
            if d[i] <= 0:
                break
            a, b = self.worst_pair_per_pose[i]
            lines.append(f"  {i:5d}  {d[i]:7.2f}  {PART_NAMES[a]} into {PART_NAMES[b]}")
        return "\n".join(lines)


class PenetrationChecker:
    def __init__(self, dense_faces: np.ndarray, dense_part: np.ndarray, rest_vertices: np.ndarray):
        self.faces = dense_faces
        self.part = dense_part
        n_parts = int(dense_part.max()) + 1
        self.parts: list[PartGeometry] = []
        face_part = dense_part[dense_faces]
        for k in range(n_parts):
            fmask = (face_part == k).all(1)
            faces = dense_faces[fmask]
            verts = np.nonzero(dense_part == k)[0]
            local = {int(v): i for i, v in enumerate(verts)}
            vf: list[list[int]] = [[] for _ in verts]
            for fi, f in enumerate(faces):
                for v in f:
                    vf[local[int(v)]].append(fi)
            # Border: vertices of the part that touch a face not fully inside the part.
            border = np.zeros(len(dense_part), bool)
            mixed = dense_faces[(face_part == k).any(1) & ~fmask]
            border[mixed.ravel()] = True
            border &= dense_part == k
            deg = max((len(x) for x in vf), default=0)
            padded = np.full((len(verts), max(deg, 1)), -1, np.int64)
            for i, x in enumerate(vf):
                padded[i, : len(x)] = x
            face_on_border = border[faces].any(1) if len(faces) else np.zeros(0, bool)
            self.parts.append(PartGeometry(faces, verts, padded, face_on_border))
        # Per part B, the vertices of other parts far enough from B at rest to be tested.
        self.tested_against: list[np.ndarray] = []
        for b in range(n_parts):
            others = np.nonzero(dense_part != b)[0]
            dist, _ = cKDTree(rest_vertices[self.parts[b].vertices]).query(rest_vertices[others])
            self.tested_against.append(others[dist > JUNCTION_M])

    def pose_penetration(self, vertices: np.ndarray, with_part: int | None = None) -> list[tuple[int, int, float, int]]:
        """(part A, part B, depth m, vertex) of the deepest penetration for every pair that has one;
        `with_part`: only the pairs one of whose parts it is (e.g. the forearm's)."""
        out = []
        for b, pb in enumerate(self.parts):
            if len(pb.faces) == 0:
                continue
            cand = self.tested_against[b]
            if with_part is not None and b != with_part:
                cand = cand[self.part[cand] == with_part]
            if len(cand) == 0:
                continue
            tree = cKDTree(vertices[pb.vertices])
            pts = vertices[cand]
            dist, _ = tree.query(pts, distance_upper_bound=BROAD_PHASE_M)
            near = np.isfinite(dist)
            if not near.any():
                continue
            pts, ids = pts[near], cand[near]
            _, nn = tree.query(pts, k=NEIGHBOURS)
            # Candidate triangles: every face around the nearest vertices of B (padded with -1).
            fidx = pb.vertex_faces_padded[nn].reshape(len(pts), -1)
            rows = np.repeat(np.arange(len(pts)), fidx.shape[1])
            fidx = fidx.ravel()
            valid = fidx >= 0
            rows, fidx = rows[valid], fidx[valid]
            tri = vertices[pb.faces[fidx]]
            w = closest_barycentric(pts[rows], tri[:, 0], tri[:, 1], tri[:, 2])
            q = np.einsum("ik,ikc->ic", w, tri)
            region = (w <= 0).sum(axis=1)  # 0 inside the face, 1 on an edge, 2 at a vertex
            diff = pts[rows] - q
            d = np.einsum("ij,ij->i", diff, diff)
            normal = triangle_normals(tri[:, 0], tri[:, 1], tri[:, 2])
            sign = np.einsum("ij,ij->i", diff, normal)
            on_border = pb.face_on_border[fidx] & (region > 0)
            order = np.lexsort((d, rows))
            first = np.ones(len(order), bool)
            first[1:] = rows[order][1:] != rows[order][:-1]
            sel = order[first]
            inside = (sign[sel] < 0) & ~on_border[sel]
            if not inside.any():
                continue
            depth = np.sqrt(d[sel])
            part_a = self.part[ids[rows[sel]]]
            for a in np.unique(part_a[inside]):
                m = inside & (part_a == a)
                i = int(np.argmax(np.where(m, depth, -1)))
                out.append((int(a), b, float(depth[i]), int(ids[rows[sel][i]])))
        return out


_WORKER = {}


def _init_worker(prepared_key, cache_dir, wrists=()):
    """Load the prepared hand and posed vertices straight from the cache files (numpy and the
    HandAsset file format only: importing datagen.poses.prepared here would close an import
    cycle through the pose families, which use this checker)."""
    from datagen.hand.asset import HandAsset
    from datagen.poses.paths import prepared_paths

    hand_file, poses_file = prepared_paths(cache_dir, prepared_key)
    asset = HandAsset.load(hand_file)
    with np.load(poses_file) as z:
        _WORKER["base"] = z["base_vertices"]
        _WORKER["rotations"] = z["rotations"]
        _WORKER["arm_offsets"] = z["arm_offsets"] if "arm_offsets" in z.files else None
    _WORKER["asset"] = asset
    _WORKER["wrists"] = list(wrists)
    _WORKER["checker"] = PenetrationChecker(asset.dense_faces, asset.dense_part, asset.dense(asset.rest_base_vertices))


def _check_pose(pid: int):
    base = _WORKER["base"][pid].astype(np.float64)  # as Prepared.dense_vertices
    a, wrists = _WORKER["asset"], _WORKER["wrists"]
    if not wrists:
        return pid, _WORKER["checker"].pose_penetration(a.dense(base))
    fb = list(a.bone_names).index("forearm.R")
    return pid, _with_wrists(_WORKER["checker"], a, base, _arm_offsets(a, _WORKER["arm_offsets"], pid),
                             _WORKER["rotations"][pid, fb], wrists)


def wrist_range_rotations(cfg) -> list[np.ndarray]:
    """With per-item wrists ([hand] wrist_draw = "item") the pose table's arm is straight and an
    item may turn it anywhere in the wrist ranges: the forearm rotations at the ranges' four
    corners and edge midpoints, where the fingers-arm pairs are checked too (empty otherwise)."""
    from datagen.poses.wrist import forearm_rotation

    if not cfg.hand.arm_per_item:
        return []
    (f0, f1), (d0, d1) = cfg.hand.wrist_flexion_deg, cfg.hand.wrist_deviation_deg
    fm, dm = (f0 + f1) / 2, (d0 + d1) / 2
    pairs = [(f0, d0), (f0, d1), (f1, d0), (f1, d1), (fm, d0), (fm, d1), (f0, dm), (f1, dm)]
    return [forearm_rotation(f, d) for f, d in dict.fromkeys(pairs)]


def _with_wrists(checker, asset, base, offsets, rot_pose, wrists) -> list[tuple[int, int, float, int]]:
    """The pose's own check plus the forearm's pairs at each of `wrists` (datagen.poses.wrist)."""
    from datagen.poses.wrist import arm_delta

    found = checker.pose_penetration(asset.dense(base))
    arm = int(asset.dense_part.max())
    for R in wrists:
        turned = base.copy()
        turned[asset.arm_rows] += arm_delta(offsets, asset.arm_weights, rot_pose, R)
        found += checker.pose_penetration(asset.dense(turned), with_part=arm)
    return found


def _arm_offsets(asset, table, pid: int) -> np.ndarray:
    """datagen.poses.wrist.arm_offsets of a HandAsset and the poses file's per-pose table (or None)."""
    from datagen.poses.wrist import arm_offsets

    return arm_offsets(asset.rest_base_vertices, asset.rest_heads, asset.bone_names, asset.arm_rows, table, pid)


def penetration_report(prepared, progress: bool = False, poses=None, workers: int | None = None,
                       cache_dir=None, wrists=()) -> PenetrationReport:
    """Check every pose (or `poses`); uses `workers` processes when the prepared files are cached.
    `wrists` (forearm rotations, `wrist_range_rotations`): also check the fingers-arm pairs with
    the arm turned to each."""
    import os

    ids = [int(i) for i in (range(len(prepared.ids)) if poses is None else poses)]
    workers = workers or os.cpu_count() or 1
    index = {pid: n for n, pid in enumerate(ids)}
    worst = np.zeros(len(ids))
    pairs: list[tuple[int, int]] = [(0, 0)] * len(ids)
    contacts = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), desc="interpenetration", unit="pose", mininterval=2.0)

    def collect(pid, found):
        n = index[pid]
        for a, b, depth, v in found:
            contacts.append(Contact(pid, a, b, depth, v))
            if depth > worst[n]:
                worst[n] = depth
                pairs[n] = (a, b)
        if bar:
            bar.update(1)

    if workers > 1 and cache_dir is not None and len(ids) > 50:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(prepared.key, cache_dir, list(wrists))) as ex:
            for pid, found in ex.map(_check_pose, ids, chunksize=16):
                collect(pid, found)
    else:
        a = prepared.asset
        checker = PenetrationChecker(a.dense_faces, a.dense_part, a.dense(a.rest_base_vertices))
        for pid in ids:
            base = prepared.base_vertices[pid].astype(np.float64)
            if wrists:
                fb = list(a.bone_names).index("forearm.R")
                collect(pid, _with_wrists(checker, a, base, _arm_offsets(a, prepared.arm_offsets, pid),
                                          prepared.rotations[pid, fb], wrists))
            else:
                collect(pid, checker.pose_penetration(a.dense(base)))
    if bar:
        bar.close()
    return PenetrationReport(worst, pairs, contacts)
