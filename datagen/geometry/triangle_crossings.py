"""Where rays and segments cross triangles (Möller-Trumbore), and crossings of a whole mesh.

`ray_triangle` is the one ray-triangle test of the project: the keypoint visibility labels
(`segment_crossings`) and the fingertip keypoints of the hand asset (a ray along the distal
phalanx) both use it.  numpy only (runs inside Blender).

Exactness: the labels and the hand asset are stored, so the arithmetic is the former code's,
operation for operation.  One detail matters: with one direction for all triangles (d of
shape (3,)) the product q . d is a matrix-vector product (BLAS), with one direction per
triangle an einsum; the two differ in the last bit for ~40% of values (BLAS uses fused
multiply-adds), and each caller keeps the form it always had.
"""

from __future__ import annotations

import numpy as np

from datagen.geometry.normals import cross
from datagen.geometry.projection import project

__all__ = ["ray_triangle", "segment_crossings"]

# |det| below this (det = e1 . (d x e2), units m^3 for a direction in metres) counts as a ray
# parallel to the triangle's plane: no hit.
PARALLEL_DET = 1e-15
# A crossing closer than this fraction of the segment to its start (the camera) is ignored.
T_MIN = 1e-9


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("...i,...i->...", a, b)


def ray_triangle(origin: np.ndarray, direction: np.ndarray, v0: np.ndarray, v1: np.ndarray,
                 v2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Intersect the rays origin + t * direction with triangles (v0, v1, v2) (Möller-Trumbore).

    origin: (3,) or (..., 3); direction: (3,) - one for every triangle - or (..., 3) - one
    per triangle; v0, v1, v2: (..., 3) corners.  All in the same unit (metres).
    Returns (t, u, v, inside), each (...): the hit point is origin + t * direction =
    (1 - u - v) v0 + u v1 + v v2 (t in units of |direction|: t = 1 at origin + direction);
    inside = the ray's line meets the triangle (u >= 0, v >= 0, u + v <= 1, not parallel).
    The caller chooses the range of t it counts (a ray: t > 0; a segment: 0 < t < 1).
    """
    d = np.asarray(direction, dtype=np.float64)
    v0 = np.asarray(v0, dtype=np.float64)
    e1 = np.asarray(v1, dtype=np.float64) - v0
    e2 = np.asarray(v2, dtype=np.float64) - v0
    p = cross(d, e2)
    det = _dot(e1, p)
    ok = np.abs(det) > PARALLEL_DET
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = np.asarray(origin, dtype=np.float64) - v0
    u = _dot(s, p) * inv
    q = cross(s, e1)
    v = (q @ d if d.ndim == 1 else _dot(q, d)) * inv
    t = _dot(e2, q) * inv
    inside = ok & (u >= 0) & (v >= 0) & (u + v <= 1)
    return t, u, v, inside


def segment_crossings(points_cam: np.ndarray, faces: np.ndarray, targets_cam: np.ndarray,
                      tolerance_m: np.ndarray | float = 0.0, K: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """How many triangles each segment camera centre -> target crosses.

    points_cam: (N, 3) mesh vertices, camera frame, metres; faces: (F, 3) integer ids;
    targets_cam: (T, 3) segment ends, camera frame, metres; tolerance_m: scalar or (T,) -
    crossings closer than this to the target are not counted (a surface keypoint's own skin).
    Returns (counts (T,) int64, distance in metres from the target back to the nearest counted
    crossing (T,), inf when none).  A crossing at the camera end (t <= 1e-9) or exactly at the
    target (t >= 1) is not counted.

    K (3, 3): only triangles whose projected bounding box contains the target's projection are
    tested - a triangle in front of the camera can only cut the segment there - which makes the
    21 keypoints x 12,904 dense faces of an item cost a few milliseconds.  Every vertex must
    then be in front of the camera (z > 0).  K=None tests every triangle (brute force; the
    same counts).
    """
    pts = np.asarray(points_cam, dtype=np.float64)
    tg = np.asarray(targets_cam, dtype=np.float64)
    faces = np.asarray(faces)
    if K is None:
        cand_t, cand_f = np.divmod(np.arange(len(tg) * len(faces)), len(faces))
    else:
        uv = project(pts, K)
        tuv = project(tg, K)
        tri = uv[faces]
        lo, hi = tri.min(axis=1) - 1e-6, tri.max(axis=1) + 1e-6
        cand_t, cand_f = np.nonzero((tuv[:, None, 0] >= lo[None, :, 0]) & (tuv[:, None, 0] <= hi[None, :, 0])
                                    & (tuv[:, None, 1] >= lo[None, :, 1]) & (tuv[:, None, 1] <= hi[None, :, 1]))
    counts = np.zeros(len(tg), np.int64)
    nearest = np.full(len(tg), np.inf)
    if cand_f.size == 0:
        return counts, nearest
    f = faces[cand_f]
    d = tg[cand_t]
    t, _, _, inside = ray_triangle(np.zeros(3), d, pts[f[:, 0]], pts[f[:, 1]], pts[f[:, 2]])
    tol = np.broadcast_to(np.asarray(tolerance_m, dtype=np.float64), (len(tg),))[cand_t]
    seg_len = np.linalg.norm(d, axis=1)
    back_m = (1.0 - t) * seg_len
    hit = inside & (t > T_MIN) & (t < 1.0) & (back_m > tol)
    np.add.at(counts, cand_t[hit], 1)
    np.minimum.at(nearest, cand_t[hit], back_m[hit])
    return counts, nearest
