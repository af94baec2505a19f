"""Catmull-Clark subdivision as a fixed sparse matrix.

Subdivision is linear in the vertex positions, so one matrix S maps any posing of the base
mesh to its dense mesh: dense = S @ base.  That is what makes the labelled dense mesh and
the rendered mesh the same thing (Blender gets the product, never a modifier), and what lets
a posed dense mesh be rebuilt from the 1.6K base vertices alone.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _edges_of(faces: list[np.ndarray]) -> tuple[np.ndarray, dict[tuple[int, int], int]]:
    index: dict[tuple[int, int], int] = {}
    edges = []
    for f in faces:
        for a, b in zip(f, np.roll(f, -1)):
            key = (int(min(a, b)), int(max(a, b)))
            if key not in index:
                index[key] = len(edges)
                edges.append(key)
    return np.asarray(edges, dtype=np.int64), index


def catmull_clark(n_vertices: int, faces: list[np.ndarray]) -> tuple[sp.csr_matrix, list[np.ndarray]]:
    """One Catmull-Clark step on a polygon mesh (any face sizes, boundaries allowed).

    Returns the (n_new, n_vertices) subdivision matrix and the new quads.  New vertices are
    ordered [vertex points | edge points | face points] so the first n_vertices keep the
    base mesh's ids.  Boundary edges and vertices use the crease rules (midpoint; 1/8-3/4-1/8),
    which keeps an open boundary in place.
    """
    faces = [np.asarray(f, dtype=np.int64) for f in faces]
    edges, edge_index = _edges_of(faces)
    n_e, n_f = len(edges), len(faces)
    base_e, base_f = n_vertices, n_vertices + n_e
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []

    def add(r, c, v):
        rows.append(np.atleast_1d(np.asarray(r, dtype=np.int64)))
        cols.append(np.atleast_1d(np.asarray(c, dtype=np.int64)))
        vals.append(np.atleast_1d(np.asarray(v, dtype=np.float64)))

    edge_faces: list[list[int]] = [[] for _ in range(n_e)]
    vert_faces: list[list[int]] = [[] for _ in range(n_vertices)]
    vert_edges: list[list[int]] = [[] for _ in range(n_vertices)]
    new_faces = []
    for fi, f in enumerate(faces):
        k = len(f)
        add(np.full(k, base_f + fi), f, np.full(k, 1.0 / k))  # face point
        for i in range(k):
            a, b, prev = int(f[i]), int(f[(i + 1) % k]), int(f[i - 1])
            e_next = edge_index[(min(a, b), max(a, b))]
            e_prev = edge_index[(min(prev, a), max(prev, a))]
            edge_faces[e_next].append(fi)
            vert_faces[a].append(fi)
            new_faces.append(np.array([a, base_e + e_next, base_f + fi, base_e + e_prev]))
    for ei, (a, b) in enumerate(edges):
        vert_edges[a].append(ei)
        vert_edges[b].append(ei)
    boundary_edge = np.array([len(fs) == 1 for fs in edge_faces])
    if any(len(fs) > 2 for fs in edge_faces):
        raise ValueError("non-manifold mesh: an edge is shared by more than two faces")

    for ei, (a, b) in enumerate(edges):
        if boundary_edge[ei]:
            add([base_e + ei] * 2, [a, b], [0.5, 0.5])
        else:
            add([base_e + ei] * 2, [a, b], [0.25, 0.25])
            for fi in edge_faces[ei]:
                f = faces[fi]
                add(np.full(len(f), base_e + ei), f, np.full(len(f), 0.25 / len(f)))

    for v in range(n_vertices):
        ves = vert_edges[v]
        if not ves:
            add(v, v, 1.0)  # isolated vertex stays put
            continue
        b_edges = [e for e in ves if boundary_edge[e]]
        if b_edges:
            if len(b_edges) != 2:
                raise ValueError(f"vertex {v} touches {len(b_edges)} boundary edges (non-manifold)")
            others = [int(edges[e][0] + edges[e][1] - v) for e in b_edges]
            add([v] * 3, [v, *others], [0.75, 0.125, 0.125])
            continue
        n = len(ves)
        # (Q + 2R + (n - 3) P) / n, Q = mean face point, R = mean edge midpoint.
        add(v, v, (n - 3.0) / n)
        for fi in vert_faces[v]:
            f = faces[fi]
            add(np.full(len(f), v), f, np.full(len(f), 1.0 / (n * len(vert_faces[v]) * len(f))))
        for e in ves:
            add([v] * 2, edges[e], [2.0 / (n * n * 2)] * 2)

    n_new = n_vertices + n_e + n_f
    S = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_new, n_vertices),
    ).tocsr()
    S.sum_duplicates()
    return S, new_faces


def subdivide(n_vertices: int, faces: list[np.ndarray], levels: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """`levels` Catmull-Clark steps; returns the composed matrix and the final quads (Q, 4)."""
    S = sp.identity(n_vertices, format="csr")
    current = [np.asarray(f) for f in faces]
    n = n_vertices
    for _ in range(levels):
        step, current = catmull_clark(n, current)
        S = (step @ S).tocsr()
        n = step.shape[0]
    if levels == 0 and any(len(f) != 4 for f in current):
        return S, current  # caller triangulates mixed faces
    return S, np.stack(current)


def triangulate(faces) -> np.ndarray:
    """Fan-split polygons into triangles along fixed diagonals (quad a,b,c,d -> abc, acd).

    The split is fixed and documented because the rasterised labels and Cycles must see the
    very same triangles."""
    tris = []
    for f in faces:
        f = np.asarray(f)
        for i in range(1, len(f) - 1):
            tris.append((f[0], f[i], f[i + 1]))
    return np.asarray(tris, dtype=np.int64)
