"""Reflection across the plane x = 0: left hands from the right hand, horizontal image flips.

A left hand is the right hand reflected in its own frame, x -> S x with S = diag(-1, 1, 1)
(`MIRROR_X`, det -1).  A reflection turns a triangle mesh inside out unless every triangle's
vertex order is reversed too: `mirror_mesh` does both, so the mirrored mesh's outward
normals (right-hand rule on the vertex order, `datagen.geometry.normals`) are the reflected
outward normals of the original.

The same reflection in camera space (x_cam -> -x_cam) is a horizontal image flip: a point at
pixel u (continuous coordinates, pixel centres at +0.5) of a camera K is seen at W - u by the
camera `flip_K(K, W)` = F K S with F: u -> W - u; with the principal point at the image
centre (cx = W / 2), flip_K(K, W) == K.  Flipping the image's columns (`flip_image`) and
reflecting the camera-space labels with `mirror_points` therefore gives an exact sample of the
mirrored hand (training flips left hands to right ones this way, train/).

numpy only; shapes: points (..., 3) in any frame, faces (F, 3) int, uv (..., 2) pixels,
K (..., 3, 3), images (H, W, ...) or with `axis` (..., H, W) / (C, H, W).
"""

from __future__ import annotations

import numpy as np

__all__ = ["MIRROR_X", "mirror_points", "reverse_winding", "mirror_mesh", "flip_uv", "flip_K", "flip_image"]

MIRROR_X = np.diag([-1.0, 1.0, 1.0])


def mirror_points(points: np.ndarray) -> np.ndarray:
    """x -> -x of (..., 3) points (a copy, same dtype)."""
    p = np.array(points, copy=True)
    if p.shape[-1:] != (3,):
        raise ValueError(f"points must be (..., 3), got {p.shape}")
    p[..., 0] = -p[..., 0]
    return p


def reverse_winding(faces: np.ndarray) -> np.ndarray:
    """(F, 3) triangles with their vertex order reversed (normals flipped); same face order."""
    f = np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must be (F, 3), got {f.shape}")
    return np.ascontiguousarray(f[:, ::-1])


def mirror_mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reflected mesh with outward normals kept outward: (mirror_points(v), reverse_winding(f))."""
    return mirror_points(vertices), reverse_winding(faces)


def flip_uv(uv: np.ndarray, width: float) -> np.ndarray:
    """Continuous pixel coordinates (..., 2) after a horizontal flip of a `width`-wide image."""
    out = np.array(uv, dtype=np.result_type(np.asarray(uv).dtype, np.float32), copy=True)
    out[..., 0] = width - out[..., 0]
    return out


def flip_K(K: np.ndarray, width: float) -> np.ndarray:
    """The intrinsics that see the camera-space reflection x -> -x at the flipped pixels
    (u -> width - u): F K S.  Skew and K[1, 0] change sign; cx -> width - cx."""
    K = np.asarray(K)
    F = np.array([[-1.0, 0.0, float(width)], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return (F @ K.astype(np.float64) @ MIRROR_X).astype(K.dtype if K.dtype.kind == "f" else np.float64)


def flip_image(image: np.ndarray, axis: int = 1) -> np.ndarray:
    """Columns reversed (a contiguous copy); `axis` is the width axis (1 for (H, W, C) and
    (H, W), 2 for (C, H, W), -1 for (..., H, W))."""
    return np.ascontiguousarray(np.flip(np.asarray(image), axis=axis))
