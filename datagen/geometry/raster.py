"""Exact z-buffer rasterisation of a triangle mesh at pixel centres (pure numpy).

Silhouettes and depth maps are labels, so they are computed from the labelled mesh and the
labelled camera, not read back from the path tracer: a pixel belongs to the hand exactly when
its centre's ray hits a triangle, and its depth is that hit's camera z.  No anti-aliasing, no
sampling noise, identical on every machine.  The Blender test checks that Cycles renders the
same silhouette and depth.

Pixel convention (also datagen/geometry/projection.py): continuous image coordinates, pixel (row i,
column j) spans [j, j+1) x [i, i+1), so its centre is (j + 0.5, i + 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datagen.geometry.normals import face_normals
from datagen.geometry.projection import project


@dataclass
class Raster:
    depth: np.ndarray  # (H, W) float32 camera z in metres, 0 where no surface
    face: np.ndarray  # (H, W) int32 triangle id, -1 where no surface

    @property
    def mask(self) -> np.ndarray:
        return self.face >= 0


def rasterize(points_cam: np.ndarray, faces: np.ndarray, K: np.ndarray, width: int, height: int) -> Raster:
    """Rasterise triangles given in camera coordinates (OpenCV: x right, y down, z forward).

    points_cam: (N, 3) metres, every z > 1e-6 (else ValueError); faces: (F, 3) integer ids;
    K: (3, 3) intrinsics (pixels, `datagen.geometry.projection`); width, height: pixels.
    """
    pts = np.asarray(points_cam, dtype=np.float64)
    if np.any(pts[:, 2] <= 1e-6):
        raise ValueError("mesh crosses the camera plane; every vertex must have z > 0")
    uv = project(pts, K)
    tri_uv = uv[faces]  # (F, 3, 2)
    inv_z = 1.0 / pts[faces, 2]  # (F, 3)

    # Corner-wise min/max (the same values as .min(axis=1), ~6x faster on (F, 3, 2)).
    a0, a1, a2 = tri_uv[:, 0], tri_uv[:, 1], tri_uv[:, 2]
    lo = np.floor(np.minimum(np.minimum(a0, a1), a2) - 0.5).astype(np.int64) + 1  # first pixel centre >= min
    hi = np.floor(np.maximum(np.maximum(a0, a1), a2) - 0.5).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi[:, 0] = np.minimum(hi[:, 0], width - 1)
    hi[:, 1] = np.minimum(hi[:, 1], height - 1)
    nx = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0)
    ny = np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    counts = nx * ny
    keep = counts > 0
    face_ids = np.repeat(np.nonzero(keep)[0], counts[keep])
    if face_ids.size == 0:
        return Raster(np.zeros((height, width), np.float32), np.full((height, width), -1, np.int32))
    # Enumerate each face's bounding box of pixel centres.
    starts = np.repeat(np.cumsum(counts[keep]) - counts[keep], counts[keep])
    local = np.arange(face_ids.size) - starts
    fx = nx[face_ids]
    px = lo[face_ids, 0] + local % fx
    py = lo[face_ids, 1] + local // fx
    cx, cy = px + 0.5, py + 0.5

    a, b, c = tri_uv[face_ids, 0], tri_uv[face_ids, 1], tri_uv[face_ids, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    w0 = (b[:, 0] - cx) * (c[:, 1] - cy) - (b[:, 1] - cy) * (c[:, 0] - cx)
    w1 = (c[:, 0] - cx) * (a[:, 1] - cy) - (c[:, 1] - cy) * (a[:, 0] - cx)
    w2 = area - w0 - w1
    with np.errstate(divide="ignore", invalid="ignore"):
        l0, l1, l2 = w0 / area, w1 / area, w2 / area
    inside = (np.abs(area) > 1e-12) & (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
    face_ids, px, py = face_ids[inside], px[inside], py[inside]
    bary = np.stack([l0[inside], l1[inside], l2[inside]], axis=1)
    # Screen-space barycentrics interpolate 1/z exactly (perspective-correct depth).
    z = 1.0 / np.einsum("ij,ij->i", bary, inv_z[face_ids])

    pix = py * width + px
    order = np.lexsort((z, pix))
    pix_sorted = pix[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = pix_sorted[1:] != pix_sorted[:-1]
    win = order[first]
    depth = np.zeros(height * width, np.float32)
    face = np.full(height * width, -1, np.int32)
    depth[pix[win]] = z[win]
    face[pix[win]] = face_ids[win]
    return Raster(depth.reshape(height, width), face.reshape(height, width))


def composite(a: Raster, b: Raster, b_face_offset: int) -> Raster:
    """The z-buffer of two rasters of the same camera and size: at each pixel the nearer
    surface; b's triangle ids shifted by `b_face_offset` (the number of a's triangles), so the
    result is what rasterising both meshes together gives (a wins exact ties)."""
    if a.depth.shape != b.depth.shape:
        raise ValueError(f"composite: rasters of different sizes {a.depth.shape} and {b.depth.shape}")
    take_b = b.mask & (~a.mask | (b.depth < a.depth))
    depth = np.where(take_b, b.depth, a.depth).astype(np.float32)
    face = np.where(take_b, b.face + np.int32(b_face_offset), a.face).astype(np.int32)
    return Raster(depth, face)


def front_facing(points_cam: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) bool: the triangle faces the camera (its outward normal points towards the camera
    centre, the origin of camera coordinates).  For a closed, outward-wound mesh seen from
    outside, the nearest surface on any ray is where the ray enters the solid - a front-facing
    triangle - so rasterising only these gives the same depth and coverage at half the work."""
    pts = np.asarray(points_cam, dtype=np.float64)
    n = face_normals(pts, faces)
    return np.einsum("ij,ij->i", n, pts[np.asarray(faces)[:, 0]]) < 0
