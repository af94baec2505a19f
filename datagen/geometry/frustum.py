"""Which segments reach into a camera's image: exact clipping against the viewing frustum.

The frustum of a pinhole camera with intrinsics K (last row 0 0 1, any upper-triangular top
rows) and an image of width x height pixels is the set of camera-frame points x with z > 0
whose projection (docs/ARCHITECTURE.md: continuous pixels, the image is [0, W] x [0, H]) lies
in the image.  Because u = (K00 x + K01 y + K02 z) / z, each image border is a plane through
the camera centre, linear in (x, y, z):
    u >= 0  <=>  K00 x + K01 y + K02 z >= 0,          u <= W  <=>  (W - K02) z - K00 x - K01 y >= 0,
    v >= 0  <=>  K11 y + K12 z >= 0,                  v <= H  <=>  (H - K12) z - K11 y >= 0   (z > 0),
so a segment meets the frustum exactly when its clip against these four half-spaces and
z >= near keeps a piece (Liang-Barsky): no sampling, no tolerance beyond float rounding.
numpy only (runs inside Blender).
"""

from __future__ import annotations

import numpy as np

from datagen.geometry.projection import check_K

__all__ = ["frustum_halfspaces", "segments_in_frustum"]


def frustum_halfspaces(K: np.ndarray, width: float, height: float, near: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(normals (5, 3), offsets (5,)): a camera-frame point x is inside when normals @ x + offsets
    >= 0 for all five (four image borders, then z >= near; near in metres, >= 0)."""
    K = check_K(K)
    if K.ndim != 2 or K[1, 0] != 0:
        raise ValueError("frustum_halfspaces needs one upper-triangular K (3, 3)")
    if near < 0:
        raise ValueError(f"near must be >= 0, got {near}")
    n = np.array([
        [K[0, 0], K[0, 1], K[0, 2]],
        [-K[0, 0], -K[0, 1], width - K[0, 2]],
        [0.0, K[1, 1], K[1, 2]],
        [0.0, -K[1, 1], height - K[1, 2]],
        [0.0, 0.0, 1.0],
    ])
    return n, np.array([0.0, 0.0, 0.0, 0.0, -float(near)])


def segments_in_frustum(a: np.ndarray, b: np.ndarray, K: np.ndarray, width: float, height: float,
                        near: float = 0.0) -> np.ndarray:
    """(...,) bool: does the segment a -> b (camera frame, metres, (..., 3) each) have a point
    inside the frustum (see the module docstring; z > near strictly, the image borders
    inclusive)?  A segment lying exactly on a border plane counts as inside."""
    normals, offsets = frustum_halfspaces(K, width, height, near)
    a = np.asarray(a, dtype=np.float64)
    d = np.asarray(b, dtype=np.float64) - a
    fa = a @ normals.T + offsets  # (..., 5): signed value at the start
    fd = d @ normals.T  # (..., 5): change along the segment
    t0 = np.zeros(fa.shape[:-1])
    t1 = np.ones(fa.shape[:-1])
    ok = np.ones(fa.shape[:-1], dtype=bool)
    for k in range(5):
        f, g = fa[..., k], fd[..., k]
        par = g == 0
        ok &= ~(par & (f < 0))  # parallel to the plane and outside it
        with np.errstate(divide="ignore", invalid="ignore"):
            tc = np.where(par, 0.0, -f / np.where(par, 1.0, g))
        t0 = np.where(~par & (g > 0), np.maximum(t0, tc), t0)  # entering
        t1 = np.where(~par & (g < 0), np.minimum(t1, tc), t1)  # leaving
    ok &= t0 <= t1
    # z > near strictly: the kept piece must not be a single point on the near plane
    z_end = np.maximum(fa[..., 4] + t0 * fd[..., 4], fa[..., 4] + t1 * fd[..., 4])
    return ok & (z_end > 0)
