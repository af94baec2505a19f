"""Small exact geometry shared by the mesh tools (closest points on triangles)."""

from __future__ import annotations

import numpy as np


def closest_barycentric(P: np.ndarray, A: np.ndarray, B: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Barycentric coordinates (..., 3) of the closest point to P on triangles ABC (all (..., 3)).

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
