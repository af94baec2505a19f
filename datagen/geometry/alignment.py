"""Similarity alignment of point sets (Umeyama 1991): scale, rotation and translation.

Used for the PA- (Procrustes-aligned) metrics of training and evaluation and for the initial
pose of the MANO registration.

Given corresponding points src and dst (..., N, D), `umeyama` finds s > 0, R (a rotation, or
with allow_reflection any orthogonal matrix) and t minimising
    sum_i || s R src_i + t - dst_i ||^2
in closed form: with centred points X, Y and the SVD  Y^T X = U S V^T,  R = U E V^T where
E = diag(1, ..., 1, sign det(U V^T)) excludes reflections, s = trace(S E) / sum |X_i|^2 and
t = mean(dst) - s R mean(src).  Batched over the leading axes; float64 throughout.
"""

from __future__ import annotations

import numpy as np

__all__ = ["umeyama", "similarity_align"]


def umeyama(src: np.ndarray, dst: np.ndarray, allow_reflection: bool = False
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) with dst ~= s * R @ src + t, per batch.

    src, dst: (..., N, D) corresponding points (rows), same shape, any unit.
    Returns scale (...) (unitless), R (..., D, D), t (..., D) (the points' unit); for
    unbatched input, s is a 0-d array (use float(s)).  A degenerate src (all points equal)
    gives s = 0 and t = mean(dst).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim < 2:
        raise ValueError(f"umeyama needs two point sets of the same shape (..., N, D), got {src.shape} and {dst.shape}")
    ms, md = src.mean(-2, keepdims=True), dst.mean(-2, keepdims=True)
    X, Y = src - ms, dst - md
    U, S, Vt = np.linalg.svd(np.swapaxes(Y, -1, -2) @ X)  # (..., D, D) cross-covariance
    E = np.ones(S.shape)
    if not allow_reflection:
        d = np.sign(np.linalg.det(U) * np.linalg.det(Vt))
        E[..., -1] = np.where(d == 0, 1.0, d)
    R = (U * E[..., None, :]) @ Vt
    var = (X ** 2).sum((-1, -2))
    s = (S * E).sum(-1) / np.maximum(var, 1e-300)
    t = md[..., 0, :] - s[..., None] * (R @ ms[..., 0, :, None])[..., 0]
    return s, R, t


def similarity_align(src: np.ndarray, dst: np.ndarray, allow_reflection: bool = False) -> np.ndarray:
    """src (..., N, D) moved onto dst by the best similarity (`umeyama`): s R src + t, float64."""
    s, R, t = umeyama(src, dst, allow_reflection)
    src = np.asarray(src, dtype=np.float64)
    return s[..., None, None] * (src @ np.swapaxes(R, -1, -2)) + t[..., None, :]
