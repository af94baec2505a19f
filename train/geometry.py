"""Camera geometry for crops: crop affines, crop intrinsics, root recovery (projection is
`datagen.geometry.projection.project`).

Conventions (docs/ARCHITECTURE.md): OpenCV camera (x right, y down, z forward) and
*continuous* pixel coordinates - pixel (row i, column j) covers [j, j+1) x [i, i+1), its
centre is (j + 0.5, i + 0.5).  A crop is a similarity ``A`` (3x3, last row 0 0 1) taking
original-image pixels to crop pixels.  Rotating the crop by an in-plane angle is the same as
rotating the camera about its optical axis, so a crop with rotation ``Rz`` (3x3 about z)
sees the camera-space points ``Rz X`` through the intrinsics ``K_crop = A K Rz^T``:
``K_crop (Rz X) = A K X`` exactly, whatever K is.
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ["rot2", "rot_z", "crop_affine", "warp_crop", "crop_intrinsics", "apply_affine",
           "bbox_from_mask", "bbox_from_points", "recover_root", "recover_root_torch"]


def rot2(angle_rad: float) -> np.ndarray:
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s], [s, c]])


def rot_z(angle_rad: float) -> np.ndarray:
    R = np.eye(3)
    R[:2, :2] = rot2(angle_rad)
    return R


def crop_affine(centre, side: float, angle_rad: float, out: int) -> np.ndarray:
    """3x3 similarity: a square of ``side`` px centred at ``centre``, rotated by ``angle_rad``,
    onto an ``out`` x ``out`` crop.  q = (out / side) R (p - centre) + out / 2."""
    s = out / float(side)
    A = np.eye(3)
    A[:2, :2] = s * rot2(angle_rad)
    A[:2, 2] = out / 2.0 - A[:2, :2] @ np.asarray(centre, np.float64)
    return A


def apply_affine(A: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(..., N, 2) points through the 3x3 affine(s) A (..., 3, 3)."""
    return uv @ np.swapaxes(A[..., :2, :2], -1, -2) + A[..., None, :2, 2]


def warp_crop(img: np.ndarray, A: np.ndarray, out: int, interp=cv2.INTER_LINEAR) -> np.ndarray:
    """Resample ``img`` through the continuous-pixel affine A (cv2 samples at integer centres)."""
    M = A[:2].copy()
    M[:, 2] += M[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return cv2.warpAffine(img, M, (out, out), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def crop_intrinsics(A: np.ndarray, K: np.ndarray, Rz: np.ndarray) -> np.ndarray:
    return A @ K @ Rz.T


def bbox_from_mask(mask: np.ndarray):
    """(x0, y0, x1, y1) in continuous pixels of the silhouette, or None if it is empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def bbox_from_points(uv: np.ndarray):
    return float(uv[:, 0].min()), float(uv[:, 1].min()), float(uv[:, 0].max()), float(uv[:, 1].max())


def recover_root(uv: np.ndarray, K: np.ndarray, rel: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Camera-space translation T with ``project(rel + T, K) ~= uv`` (linear least squares).

    With normalised coordinates (x, y) = K^-1 (u, v, 1), a joint X + T on the ray of (x, y)
    satisfies  Tx - x Tz = x Z - X  and  Ty - y Tz = y Z - Y : two linear equations per joint
    (the algebraic, not the reprojection, error - exact when the prediction is consistent).
    uv (..., N, 2) px, K (..., 3, 3), rel (..., N, 3) metres -> T (..., 3).
    """
    uv, K, rel = np.asarray(uv, np.float64), np.asarray(K, np.float64), np.asarray(rel, np.float64)
    h = np.concatenate([uv, np.ones(uv.shape[:-1] + (1,))], -1)
    n = h @ np.swapaxes(np.linalg.inv(K), -1, -2)
    x, y = n[..., 0] / n[..., 2], n[..., 1] / n[..., 2]
    X, Y, Z = rel[..., 0], rel[..., 1], rel[..., 2]
    one, zero = np.ones_like(x), np.zeros_like(x)
    A = np.concatenate([np.stack([one, zero, -x], -1), np.stack([zero, one, -y], -1)], -2)  # (..., 2N, 3)
    b = np.concatenate([x * Z - X, y * Z - Y], -1)
    if weights is not None:
        w = np.concatenate([weights, weights], -1)
        A, b = A * w[..., None], b * w
    AtA = np.swapaxes(A, -1, -2) @ A
    Atb = (np.swapaxes(A, -1, -2) @ b[..., None])[..., 0]
    return np.linalg.solve(AtA, Atb[..., None])[..., 0]


def recover_root_torch(uv, K, rel):
    """Torch version of :func:`recover_root` (batched, float64 inside)."""
    import torch

    uv, K, rel = uv.double(), K.double(), rel.double()
    h = torch.cat([uv, torch.ones_like(uv[..., :1])], -1)
    n = h @ torch.linalg.inv(K).transpose(-1, -2)
    x, y = n[..., 0] / n[..., 2], n[..., 1] / n[..., 2]
    X, Y, Z = rel.unbind(-1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    A = torch.cat([torch.stack([one, zero, -x], -1), torch.stack([zero, one, -y], -1)], -2)
    b = torch.cat([x * Z - X, y * Z - Y], -1)
    return torch.linalg.lstsq(A, b[..., None]).solution[..., 0]
