"""Template mesh -> sampling hierarchy (down/up matrices) and spiral sequences.

MobRecon decodes on a 4-times coarsened template (778/389/195/98/49 for the
MANO-style hand), so it needs, for every level ``l``:

* a *down* map from level ``l`` to ``l+1``: a selection (the coarse mesh keeps a
  subset of the fine vertices; :func:`datagen.decimate.collapse_to`);
* an *up* map from ``l+1`` to ``l``: every fine vertex written as barycentric
  coordinates (3 weights) on its closest coarse triangle
  (:func:`datagen.geometry.closest_point.closest_points`, exact) - a kept vertex
  gets the one-hot row of itself;
* spiral neighbour sequences of length ``S`` at every level: the vertex, its
  1-ring in the rotational order of the face winding, then the next ring, cut to
  ``S`` (dilation 1).

Everything is deterministic and cached on disk as ``.npz`` keyed by a hash of
the template (vertices, faces) and of the parameters, so the model builds in
milliseconds after the first call.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from datagen.geometry.closest_point import closest_points
from datagen.geometry.decimate import collapse_to

__all__ = [
    "MeshHierarchy",
    "prepare_mesh",
    "level_sizes",
    "spiral_sequences",
    "ordered_rings",
    "default_cache_dir",
]

_ALGO_VERSION = "mesh_prep-v3"  # bump when the decimator, spirals or up weights change (v3: kernel closest points)


def default_cache_dir() -> Path:
    return Path(os.environ.get("HANDSYNTH_CACHE", Path.home() / ".cache" / "handsynth")) / "mesh_prep"


def level_sizes(n: int, n_levels: int) -> list[int]:
    """[n, ceil(n/2), ...]: 778 -> [778, 389, 195, 98, 49] for 4 levels."""
    out = [n]
    for _ in range(n_levels):
        out.append(math.ceil(out[-1] / 2))
    return out


@dataclass
class MeshHierarchy:
    """Level 0 is the template; level ``l+1`` keeps ``down_idx[l]`` of level ``l``."""

    vertices: list[np.ndarray]  # (N_l, 3) float64
    faces: list[np.ndarray]  # (F_l, 3) int64, indices into level l
    down_idx: list[np.ndarray]  # (N_{l+1},) int64 indices into level l
    up_idx: list[np.ndarray]  # (N_l, 3) int64 indices into level l+1
    up_w: list[np.ndarray]  # (N_l, 3) float64 barycentric weights
    spirals: list[np.ndarray]  # (N_l, S) int64
    key: str = ""

    @property
    def sizes(self) -> list[int]:
        return [len(v) for v in self.vertices]

    def down_matrix(self, level: int) -> sp.csr_matrix:
        """(N_{l+1}, N_l) selection matrix."""
        idx = self.down_idx[level]
        n_f = len(self.vertices[level])
        return sp.csr_matrix((np.ones(len(idx)), (np.arange(len(idx)), idx)), shape=(len(idx), n_f))

    def up_matrix(self, level: int) -> sp.csr_matrix:
        """(N_l, N_{l+1}) barycentric interpolation matrix, 3 stored weights per row."""
        idx, w = self.up_idx[level], self.up_w[level]
        n_f, n_c = len(self.vertices[level]), len(self.vertices[level + 1])
        rows = np.repeat(np.arange(n_f), 3)
        return sp.csr_matrix((w.ravel(), (rows, idx.ravel())), shape=(n_f, n_c))


# --------------------------------------------------------------------------
# spirals


def ordered_rings(faces: np.ndarray, n_vertices: int) -> list[list[int]]:
    """1-ring of every vertex in the rotational order of the face winding.

    For a face (x, a, b) (cyclically) the ring of ``x`` steps a -> b. Interior
    vertices get a closed cycle started at their lowest-index neighbour;
    boundary vertices an open fan started at the boundary neighbour that has no
    predecessor, so the fan is walked in one piece.
    """
    nxt: list[dict[int, int]] = [dict() for _ in range(n_vertices)]
    for f in np.asarray(faces, dtype=np.int64).tolist():
        for k in range(3):
            x, a, b = f[k], f[(k + 1) % 3], f[(k + 2) % 3]
            if a in nxt[x]:
                raise ValueError(f"non-manifold or inconsistently oriented faces at vertex {x}")
            nxt[x][a] = b
    rings: list[list[int]] = []
    for x in range(n_vertices):
        m = nxt[x]
        if not m:
            rings.append([])
            continue
        starts = set(m) - set(m.values())
        if len(starts) > 1:
            raise ValueError(f"vertex {x} is non-manifold (several fans)")
        cur = min(starts) if starts else min(m)
        ring = [cur]
        while cur in m:
            cur = m[cur]
            if cur == ring[0]:
                break
            ring.append(cur)
        if len(ring) != len(set(m) | set(m.values())):
            raise ValueError(f"vertex {x} is non-manifold (ring does not close)")
        rings.append(ring)
    return rings


def spiral_sequences(faces: np.ndarray, n_vertices: int, length: int = 9) -> np.ndarray:
    """(N, length) spirals: vertex, its ordered 1-ring, then outward rings.

    The k+1-th ring is collected by walking the k-th ring in order and, around
    each of its vertices, taking the not-yet-seen neighbours in the same
    rotational direction, starting after the seen ones. If a connected
    component has fewer than ``length`` vertices the sequence is padded by
    repeating it from the start (never happens on the hand levels; tested).
    """
    rings = ordered_rings(faces, n_vertices)
    out = np.empty((n_vertices, length), dtype=np.int64)
    for v in range(n_vertices):
        seq = [v]
        seen = {v}
        frontier = [v]
        while len(seq) < length and frontier:
            new: list[int] = []
            for w in frontier:
                ring = rings[w]
                if not ring:
                    continue
                # rotate so we start at the first unseen vertex after a seen one
                n = len(ring)
                start = 0
                for i in range(n):
                    if ring[i - 1] in seen and ring[i] not in seen:
                        start = i
                        break
                for i in range(n):
                    z = ring[(start + i) % n]
                    if z not in seen:
                        seen.add(z)
                        new.append(z)
            seq.extend(new)
            frontier = new
        seq = seq[:length]
        while len(seq) < length:
            seq.append(seq[len(seq) % max(1, len(seq))])
        out[v] = seq[:length]
    return out


# --------------------------------------------------------------------------
# up-sampling weights


def _up_weights(fine_v, coarse_v, coarse_f, kept):
    """(N_l, 3) coarse vertex ids and barycentric weights (>= 0, rows summing to 1)."""
    fidx, bary, _ = closest_points(coarse_v, coarse_f, fine_v)
    idx = coarse_f[fidx].copy()
    w = bary / bary.sum(1, keepdims=True)
    # kept vertices: exact one-hot on themselves (robust to ties / rounding)
    pos = np.full(len(fine_v), -1, dtype=np.int64)
    pos[kept] = np.arange(len(kept))
    for i in kept:
        c = pos[i]
        row = idx[i]
        if c in row:
            j = int(np.flatnonzero(row == c)[0])
        else:  # cannot happen for a vertex of the coarse mesh, kept for safety
            j = 0
            idx[i, 0] = c
        w[i] = 0.0
        w[i, j] = 1.0
    return idx, w


# --------------------------------------------------------------------------
# main entry


def template_key(vertices: np.ndarray, faces: np.ndarray, n_levels: int, spiral_length: int) -> str:
    h = hashlib.sha256()
    h.update(_ALGO_VERSION.encode())
    h.update(np.ascontiguousarray(np.asarray(vertices, dtype="<f8")).tobytes())
    h.update(np.ascontiguousarray(np.asarray(faces, dtype="<i8")).tobytes())
    h.update(f"{n_levels}-{spiral_length}".encode())
    return h.hexdigest()[:24]


def prepare_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    n_levels: int = 4,
    spiral_length: int = 9,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> MeshHierarchy:
    """Build (or load from cache) the sampling hierarchy of a template mesh."""
    V = np.asarray(vertices, dtype=np.float64)
    F = np.asarray(faces, dtype=np.int64)
    key = template_key(V, F, n_levels, spiral_length)
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    fname = path / f"{key}.npz"
    if use_cache and fname.exists():
        try:
            return _load(fname, n_levels, key)
        except Exception:  # corrupt / partial file: rebuild
            pass
    sizes = level_sizes(len(V), n_levels)
    verts, faces_l, down, up_i, up_w, spir = [V], [F], [], [], [], []
    for lvl in range(n_levels):
        kept, f_c = collapse_to(verts[-1], faces_l[-1], sizes[lvl + 1])
        v_c = verts[-1][kept]
        ui, uw = _up_weights(verts[-1], v_c, f_c, kept)
        down.append(kept)
        up_i.append(ui)
        up_w.append(uw)
        verts.append(v_c)
        faces_l.append(f_c)
    for lvl in range(n_levels + 1):
        spir.append(spiral_sequences(faces_l[lvl], len(verts[lvl]), spiral_length))
    mh = MeshHierarchy(verts, faces_l, down, up_i, up_w, spir, key)
    if use_cache:
        path.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for lvl in range(n_levels + 1):
            arrays[f"v{lvl}"] = verts[lvl]
            arrays[f"f{lvl}"] = faces_l[lvl]
            arrays[f"s{lvl}"] = spir[lvl]
        for lvl in range(n_levels):
            arrays[f"d{lvl}"] = down[lvl]
            arrays[f"ui{lvl}"] = up_i[lvl]
            arrays[f"uw{lvl}"] = up_w[lvl]
        tmp = path / f".{key}.{os.getpid()}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, fname)
    return mh


def _load(fname: Path, n_levels: int, key: str) -> MeshHierarchy:
    with np.load(fname) as z:
        return MeshHierarchy(
            [z[f"v{i}"] for i in range(n_levels + 1)],
            [z[f"f{i}"] for i in range(n_levels + 1)],
            [z[f"d{i}"] for i in range(n_levels)],
            [z[f"ui{i}"] for i in range(n_levels)],
            [z[f"uw{i}"] for i in range(n_levels)],
            [z[f"s{i}"] for i in range(n_levels + 1)],
            key,
        )
