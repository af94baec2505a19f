"""Do two closed triangle meshes touch?  Points inside a mesh (ray parity) and triangle crossings.

`points_inside` is the one inside/outside test of the project (occluder placement, its report);
`mesh_contact` combines it with the exact triangle-triangle test - an edge of one mesh crossing
a triangle of the other (`ray_triangle`, Möller-Trumbore, on the edge as a segment) - into the
answer "do the two solids share any volume": two closed surfaces intersect exactly when an edge
of one crosses a triangle of the other, and otherwise one solid is either wholly inside the
other (a vertex of it is inside the other) or apart.  Coplanar overlaps (measure zero for
meshes in general position) are not reported.  numpy only (runs inside Blender).

Units: whatever the vertices are in (metres throughout the project).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datagen.geometry.triangle_crossings import ray_triangle

__all__ = ["points_inside", "segments_crossing", "mesh_contact", "Contact", "Prepared", "prepare"]

# Parity rays go along this fixed, generic direction (no axis, no simple ratio), so a ray
# through a vertex or along an edge of a modelled mesh is a measure-zero accident.
RAY_DIRECTION = np.array([0.5773502691896258, 0.5017209056940287, 0.6442029479004532])
RAY_DIRECTION = RAY_DIRECTION / np.linalg.norm(RAY_DIRECTION)


def _basis(d: np.ndarray) -> np.ndarray:
    """(2, 3): two unit vectors orthogonal to d and to each other."""
    a = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(d, a)
    u /= np.linalg.norm(u)
    return np.stack([u, np.cross(d, u)])


@dataclass
class Prepared:
    """A mesh's per-triangle boxes, computed once for many tests against it (`prepare`)."""

    V: np.ndarray  # (N, 3) float64
    F: np.ndarray  # (T, 3)
    box_lo: np.ndarray  # (T, 3) triangle bounding boxes
    box_hi: np.ndarray
    ray_lo: np.ndarray  # (T, 2) the triangles' boxes projected across RAY_DIRECTION (points_inside)
    ray_hi: np.ndarray


def prepare(V: np.ndarray, F: np.ndarray) -> Prepared:
    """The boxes `points_inside` and `mesh_contact` compute for mesh (V, F), computed once: pass
    the result as `prepared=` / `b_prepared=` to test many points or meshes against it."""
    V = np.asarray(V, dtype=np.float64)
    F = np.asarray(F)
    box_lo, box_hi = _corner_bounds(V, F)
    ray_lo, ray_hi = _corner_bounds(V @ _basis(RAY_DIRECTION).T, F)
    return Prepared(V, F, box_lo, box_hi, ray_lo, ray_hi)


def _corner_bounds(P: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-triangle min and max of its corners' coordinates (elementwise over three (T, d)
    arrays: several times faster than reducing a (T, 3, d) gather over its middle axis)."""
    a, b, c = P[F[:, 0]], P[F[:, 1]], P[F[:, 2]]
    return np.minimum(np.minimum(a, b), c), np.maximum(np.maximum(a, b), c)


def points_inside(V: np.ndarray, F: np.ndarray, Q: np.ndarray, chunk: int = 2_000_000,
                  prepared: Prepared | None = None) -> np.ndarray:
    """(n,) bool: query point Q[i] lies inside the closed, watertight mesh (V, F).

    V: (N, 3) vertices; F: (T, 3) integer faces (winding does not matter); Q: (n, 3) points,
    same unit.  Parity of the crossings of the ray Q[i] + s * RAY_DIRECTION, s > 0, with the
    triangles; only triangles whose projection along the ray contains the point's are tested.
    Points exactly on the surface may go either way.  `prepared`: `prepare(V, F)`, if computed.
    """
    V = np.asarray(V, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64).reshape(-1, 3)
    F = np.asarray(F)
    out = np.zeros(len(Q), bool)
    if len(Q) == 0 or len(F) == 0:
        return out
    B = _basis(RAY_DIRECTION)
    if prepared is None:  # the triangles' boxes on the plane across the ray
        lo, hi = _corner_bounds(V @ B.T, F)
    else:
        lo, hi = prepared.ray_lo, prepared.ray_hi
    q2 = Q @ B.T
    counts = np.zeros(len(Q), np.int64)
    step = max(1, chunk // max(len(F), 1))
    for s in range(0, len(Q), step):
        qq = q2[s:s + step]
        qi, fi = _overlaps(qq[:, :1], qq[:, :1], lo[:, :1], hi[:, :1])
        keep = (qq[qi, 1] >= lo[fi, 1]) & (qq[qi, 1] <= hi[fi, 1])
        qi, fi = qi[keep], fi[keep]
        if qi.size == 0:
            continue
        f = F[fi]
        t, _, _, inside = ray_triangle(Q[s + qi], RAY_DIRECTION, V[f[:, 0]], V[f[:, 1]], V[f[:, 2]])
        np.add.at(counts, s + qi[inside & (t > 0)], 1)
    out[:] = counts % 2 == 1
    return out


def _overlaps(alo: np.ndarray, ahi: np.ndarray, blo: np.ndarray, bhi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) of every pair of boxes a[i], b[j] ((n, d) low and high corners) that overlap: one
    axis as a full (n, m) test, the others only on the pairs it leaves."""
    i, j = np.nonzero((alo[:, None, 0] <= bhi[None, :, 0]) & (ahi[:, None, 0] >= blo[None, :, 0]))
    for k in range(1, alo.shape[1]):
        keep = (alo[i, k] <= bhi[j, k]) & (ahi[i, k] >= blo[j, k])
        i, j = i[keep], j[keep]
    return i, j


def _edges(F: np.ndarray) -> np.ndarray:
    """(E, 2) the distinct undirected edges of faces F."""
    e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]]).astype(np.int64)
    e.sort(axis=1)
    n = int(e.max()) + 1
    key = np.unique(e[:, 0] * n + e[:, 1])
    return np.stack([key // n, key % n], axis=1)


def segments_crossing(A: np.ndarray, B: np.ndarray, V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """(S,) int: how many triangles of (V, F) each segment A[i] -> B[i] crosses (ends included).

    A, B: (S, 3) segment ends; V: (N, 3); F: (T, 3).  Only triangles whose bounding box
    overlaps the segment's are tested (exactly, `ray_triangle` with 0 <= t <= 1)."""
    A = np.asarray(A, dtype=np.float64).reshape(-1, 3)
    B = np.asarray(B, dtype=np.float64).reshape(-1, 3)
    V = np.asarray(V, dtype=np.float64)
    F = np.asarray(F)
    counts = np.zeros(len(A), np.int64)
    if len(A) == 0 or len(F) == 0:
        return counts
    tlo, thi = _corner_bounds(V, F)
    slo, shi = np.minimum(A, B), np.maximum(A, B)
    si, fi = _overlaps(slo, shi, tlo, thi)
    if si.size == 0:
        return counts
    f = F[fi]
    t, _, _, inside = ray_triangle(A[si], B[si] - A[si], V[f[:, 0]], V[f[:, 1]], V[f[:, 2]])
    np.add.at(counts, si[inside & (t >= 0) & (t <= 1)], 1)
    return counts


@dataclass
class Contact:
    """How two closed meshes a and b meet (`mesh_contact`)."""

    crossings: int  # edges of a crossing triangles of b, plus edges of b crossing triangles of a
    a_inside_b: np.ndarray  # (Na,) bool: vertex of a inside b (False where not tested: outside b's box)
    b_inside_a: np.ndarray  # (Nb,) bool

    @property
    def intersects(self) -> bool:
        return bool(self.crossings or self.a_inside_b.any() or self.b_inside_a.any())


def mesh_contact(Va: np.ndarray, Fa: np.ndarray, Vb: np.ndarray, Fb: np.ndarray, margin: float = 0.0,
                 exhaustive: bool = True, b_prepared: Prepared | None = None) -> Contact:
    """Exact contact test of two closed meshes (see the module docstring).

    Only the parts of each mesh inside the other's bounding box (grown by `margin`) are tested:
    nothing outside it can touch.  Every vertex inside the other mesh is found (not only one),
    so callers can measure how deep the meshes overlap; `exhaustive=False` stops at the first
    kind of evidence (crossings, then vertices of a inside b), for a yes/no answer.
    `b_prepared`: `prepare(Vb, Fb)`, when b is tested against many meshes (the same result)."""
    Va, Vb = np.asarray(Va, dtype=np.float64), np.asarray(Vb, dtype=np.float64)
    Fa, Fb = np.asarray(Fa), np.asarray(Fb)
    a_in = np.zeros(len(Va), bool)
    b_in = np.zeros(len(Vb), bool)
    lo = np.maximum(Va.min(0), Vb.min(0)) - margin
    hi = np.minimum(Va.max(0), Vb.max(0)) + margin
    if np.any(lo > hi):
        return Contact(0, a_in, b_in)

    def near_faces(V, F, prep=None):
        if prep is None:
            tlo, thi = _corner_bounds(V, F)
        else:
            tlo, thi = prep.box_lo, prep.box_hi
        return F[np.all((thi >= lo) & (tlo <= hi), axis=1)]

    def near_points(V):
        return np.nonzero(np.all((V >= lo) & (V <= hi), axis=1))[0]

    fa, fb = near_faces(Va, Fa), near_faces(Vb, Fb, b_prepared)
    crossings = 0
    if len(fa) and len(fb):
        ea, eb = _edges(fa), _edges(fb)
        crossings = int(segments_crossing(Va[ea[:, 0]], Va[ea[:, 1]], Vb, fb).sum()
                        + segments_crossing(Vb[eb[:, 0]], Vb[eb[:, 1]], Va, fa).sum())
    if crossings and not exhaustive:
        return Contact(crossings, a_in, b_in)
    ia, ib = near_points(Va), near_points(Vb)
    a_in[ia] = points_inside(Vb, Fb, Va[ia], prepared=b_prepared)
    if a_in.any() and not exhaustive:
        return Contact(crossings, a_in, b_in)
    b_in[ib] = points_inside(Va, Fa, Vb[ib])
    return Contact(crossings, a_in, b_in)
