"""Pinhole projection with an intrinsic matrix K, and its inverse.

Conventions (docs/ARCHITECTURE.md): OpenCV camera - x right, y down, z forward - and
continuous pixel coordinates: pixel (row i, column j) covers [j, j+1) x [i, i+1), its centre
is (j + 0.5, i + 0.5).  K maps normalised coordinates (x/z, y/z, 1) to pixels; its last row
is (0, 0, 1).  Its top rows may be general - a skew K[0, 1], or the rotated crop intrinsics
of training (K_crop = A K Rz^T, where K[1, 0] != 0) - and are all used.

Exactness: u = K00 x/z + K01 y/z + K02 is evaluated in this order, so with K01 = K10 = 0 the
result is bit-identical to the former (x/z) * fx + cx of the label rasteriser (adding an exact
0 changes nothing): silhouettes, depth maps and 2D keypoints are unchanged.
"""

from __future__ import annotations

import numpy as np

__all__ = ["project", "project_world", "unproject"]


def check_K(K: np.ndarray) -> np.ndarray:
    """K (..., 3, 3) as float64, refused (ValueError) unless its last row is (0, 0, 1)."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape[-2:] != (3, 3):
        raise ValueError(f"K must be (..., 3, 3), got {K.shape}")
    if np.any(K[..., 2, :] != np.array([0.0, 0.0, 1.0])):
        raise ValueError("K's last row must be (0, 0, 1) (a pinhole camera, not a homography)")
    return K


def project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-space points -> continuous pixel coordinates.

    points_cam: (..., 3) metres, camera frame, z > 0 for points in front (not checked:
    z <= 0 gives meaningless pixels, z == 0 inf/nan).  K: (3, 3) or (..., 3, 3), broadcast
    against the points' leading axes without their last point axis - (B, 3, 3) with points
    (B, N, 3).  Returns (..., 2) float64 pixels (u right, v down).
    """
    p = np.asarray(points_cam, dtype=np.float64)
    if p.shape[-1:] != (3,):
        raise ValueError(f"points must be (..., 3), got {p.shape}")
    K = check_K(K)
    x = p[..., 0] / p[..., 2]
    y = p[..., 1] / p[..., 2]
    k = K[..., None, :, :] if K.ndim > 2 else K  # (..., 1, 3, 3): one K per batch of points
    if K.ndim > 2 and p.ndim < 3:
        raise ValueError(f"batched K {K.shape} needs batched points (..., N, 3), got {p.shape}")
    u = k[..., 0, 0] * x + k[..., 0, 1] * y + k[..., 0, 2]
    v = k[..., 1, 0] * x + k[..., 1, 1] * y + k[..., 1, 2]
    return np.stack([u, v], axis=-1)


def project_world(points: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World (hand-frame) points (..., 3) metres -> (pixels (..., 2), camera z (...) metres).

    x_cam = R @ x + t with R (3, 3) a rotation and t (3,) metres; K (3, 3) as in `project`.
    """
    cam = np.asarray(points, dtype=np.float64) @ np.asarray(R, dtype=np.float64).T + np.asarray(t, dtype=np.float64)
    return project(cam, K), cam[..., 2]


def unproject(uv: np.ndarray, z: np.ndarray, K: np.ndarray, R: np.ndarray | None = None,
              t: np.ndarray | None = None) -> np.ndarray:
    """Pixels (..., 2) at camera depth z (...) metres -> points (..., 3) metres.

    The inverse of `project` (K (3, 3), any upper-triangular top rows: skew allowed).  With R
    (3, 3) and t (3,), the points are returned in the world frame (x = R^T (x_cam - t)), else
    in the camera frame.
    """
    K = check_K(K)
    if K.ndim != 2:
        raise ValueError("unproject takes one K (3, 3)")
    if K[1, 0] != 0:
        raise ValueError("unproject needs K[1, 0] == 0 (an upper-triangular K)")
    uv = np.asarray(uv, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    y = (uv[..., 1] - K[1, 2]) / K[1, 1]
    x = (uv[..., 0] - K[0, 2] - K[0, 1] * y) / K[0, 0]
    cam = np.stack([x * z, y * z, z], axis=-1)
    if R is None:
        return cam
    return (cam - np.asarray(t, dtype=np.float64)) @ np.asarray(R, dtype=np.float64)
