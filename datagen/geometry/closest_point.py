"""Exact closest points: on one triangle (`closest_barycentric`) and on a mesh (`closest_points`).

Used by the mapping (dense -> 778 rows, surface distances, MANO registration), the collision
check of the pose space and the network's up-sampling weights (mobrecon.mesh_prep).

numpy only at import; `closest_points` imports scipy's cKDTree when called (never inside
Blender).  Units: whatever the positions are in (metres throughout the project).
"""

from __future__ import annotations

import numpy as np

from datagen.geometry.normals import face_normals

__all__ = ["closest_barycentric", "closest_points"]


def closest_barycentric(P: np.ndarray, A: np.ndarray, B: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (..., 3), float64, of the point of triangle ABC closest to P.

    P, A, B, C: (..., 3) positions, broadcast against each other (one triangle per point, or
    one point against many triangles).  The weights are >= 0 and sum to 1 (to rounding);
    closest point = w0 A + w1 B + w2 C.

    Region tests after Ericson, "Real-Time Collision Detection" 5.1.5, vectorised; degenerate
    triangles fall back to the best edge/vertex region."""
    P, A, B, C = np.broadcast_arrays(P, A, B, C)
    ab, ac, ap = B - A, C - A, P - A
    d1 = np.einsum("...i,...i", ab, ap)
    d2 = np.einsum("...i,...i", ac, ap)
    bp = P - B
    d3 = np.einsum("...i,...i", ab, bp)
    d4 = np.einsum("...i,...i", ac, bp)
    cp = P - C
    d5 = np.einsum("...i,...i", ab, cp)
    d6 = np.einsum("...i,...i", ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2

    def div(a, b):
        return np.where(np.abs(b) > 0, a / np.where(np.abs(b) > 0, b, 1.0), 0.0)

    out = np.empty(P.shape[:-1] + (3,))
    den = va + vb + vc
    v_in, w_in = div(vb, den), div(vc, den)
    out[..., 0], out[..., 1], out[..., 2] = 1 - v_in - w_in, v_in, w_in
    # Assign regions from the lowest priority to the highest so the first matching test wins.
    t_bc = div(d4 - d3, (d4 - d3) + (d5 - d6))
    m = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)
    out[m] = np.stack([np.zeros_like(t_bc), 1 - t_bc, t_bc], -1)[m]
    t_ac = div(d2, d2 - d6)
    m = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    out[m] = np.stack([1 - t_ac, np.zeros_like(t_ac), t_ac], -1)[m]
    m = (d6 >= 0) & (d5 <= d6)
    out[m] = (0.0, 0.0, 1.0)
    t_ab = div(d1, d1 - d3)
    m = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    out[m] = np.stack([1 - t_ab, t_ab, np.zeros_like(t_ab)], -1)[m]
    m = (d3 >= 0) & (d4 <= d3)
    out[m] = (0.0, 1.0, 0.0)
    m = (d1 <= 0) & (d2 <= 0)
    out[m] = (1.0, 0.0, 0.0)
    return np.clip(out, 0.0, 1.0)


def closest_points(V: np.ndarray, F: np.ndarray, Q: np.ndarray, normals: np.ndarray | None = None,
                   min_cos: float = 0.0, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact closest point on the triangle mesh (V, F) for each query point.

    V: (N, 3) vertex positions; F: (T, 3) integer faces; Q: (n, 3) query points (same unit).
    Returns (face index (n,) int64, barycentric (n, 3) float64 on that face, distance (n,)
    float64, same unit as V).  Ties go to the lowest face index.

    The distance d0 to the nearest mesh vertex bounds the answer, so only triangles whose
    centroid lies within d0 + (largest centroid-to-corner radius) can hold it; those are
    tested exactly (`closest_barycentric`) and the nearest wins.

    With `normals` (n, 3), only triangles whose unit normal has cos >= `min_cos` with the
    query's normal are admitted (a point on one finger does not snap to its neighbour across
    a gap); such queries search all triangles if needed, and a query with no admissible
    triangle at all falls back to the unrestricted closest point.
    """
    from scipy.spatial import cKDTree

    V = np.asarray(V, dtype=np.float64)
    F = np.asarray(F, dtype=np.int64)
    Q = np.asarray(Q, dtype=np.float64).reshape(-1, 3)
    if V.ndim != 2 or V.shape[1] != 3 or F.ndim != 2 or F.shape[1] != 3 or not len(F):
        raise ValueError(f"closest_points needs V (N, 3) and a non-empty F (T, 3), got {V.shape} and {F.shape}")
    A, B, C = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
    cen = (A + B + C) / 3
    r_t = np.sqrt(np.max(np.stack([((X - cen) ** 2).sum(1) for X in (A, B, C)]), axis=0))
    rad = float(r_t.max())
    used = np.unique(F)
    d0, _ = cKDTree(V[used]).query(Q)
    tree = cKDTree(cen)
    fn = face_normals(V, F, unit=True)
    nq = None if normals is None else np.asarray(normals, dtype=np.float64).reshape(-1, 3)

    n = len(Q)
    face = np.full(n, -1, dtype=np.int64)
    bary = np.zeros((n, 3))
    dist = np.full(n, np.inf)

    def solve(qidx: np.ndarray, cand: list, bound: bool = True) -> None:
        qi = np.repeat(qidx, [len(c) for c in cand])
        ti = np.concatenate([np.asarray(c, dtype=np.int64) for c in cand]) if len(cand) else np.zeros(0, np.int64)
        if bound:  # a triangle farther than the nearest vertex cannot hold the closest point
            ok = np.linalg.norm(cen[ti] - Q[qi], axis=1) - r_t[ti] <= d0[qi] * (1 + 1e-9) + 1e-12
            qi, ti = qi[ok], ti[ok]
        if nq is not None:
            ok = np.einsum("ij,ij->i", fn[ti], nq[qi]) >= min_cos
            qi, ti = qi[ok], ti[ok]
        if not len(qi):
            return
        w = closest_barycentric(Q[qi], A[ti], B[ti], C[ti])
        pts = w[:, :1] * A[ti] + w[:, 1:2] * B[ti] + w[:, 2:] * C[ti]
        d = np.linalg.norm(pts - Q[qi], axis=1)
        order = np.lexsort((ti, d, qi))  # per query: nearest first, ties by face id
        first = order[np.unique(qi[order], return_index=True)[1]]
        face[qi[first]], bary[qi[first]], dist[qi[first]] = ti[first], w[first], d[first]

    for s in range(0, n, chunk):
        qidx = np.arange(s, min(s + chunk, n))
        cand = tree.query_ball_point(Q[qidx], d0[qidx] + rad * (1 + 1e-9) + 1e-12)
        solve(qidx, list(cand))
    if nq is not None:
        lost = np.flatnonzero(~np.isfinite(dist))
        step = max(1, chunk * 16 // max(len(F), 1))
        for s in range(0, len(lost), step):
            qidx = lost[s:s + step]
            solve(qidx, [np.arange(len(F))] * len(qidx), bound=False)
        lost = ~np.isfinite(dist)
        if lost.any():
            f2, b2, d2 = closest_points(V, F, Q[lost])
            face[lost], bary[lost], dist[lost] = f2, b2, d2
    return face, bary, dist
