"""21 hand joints (FreiHAND order) from mesh vertices.

A regressor is a (21, V) matrix ``R`` with ``joints = R @ vertices``. When the
dataset ships its own regressor (MANO's, or datagen's) it is used as is.
Otherwise one is derived from the template and the template's rest joint
positions: each joint becomes a fixed, sparse, convex combination of nearby
template vertices,

    w_j = argmin ||sum_i w_i v_i - J_j||^2 + lam * sum_i w_i^2 ||v_i - J_j||^2
          s.t. w >= 0, sum w = 1, support = the k (24) nearest vertices,

solved with NNLS. The second (ridge) term makes the fit well posed and leans
on the closer vertices; a joint that sits on a vertex (a fingertip, as in
MANO-based datasets) gets the one-hot row of that vertex. A joint outside the
convex hull of its k nearest vertices (anny's wrist, 2.4 mm) is reproduced
only up to that distance. Because the rows are
convex combinations, the regressor is translation-equivariant and follows
the surface when the hand is posed.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

__all__ = ["JOINT_NAMES", "TIP_IDS", "fit_sparse_regressor", "joint_regressor"]

JOINT_NAMES = (
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "little_mcp", "little_pip", "little_dip", "little_tip",
)  # fmt: skip
TIP_IDS = (4, 8, 12, 16, 20)


def fit_sparse_regressor(
    vertices: np.ndarray, joints: np.ndarray, k: int = 24, locality: float = 1e-2
) -> np.ndarray:
    """(J, V) row-stochastic, non-negative regressor reproducing ``joints`` on ``vertices``."""
    V = np.asarray(vertices, dtype=np.float64)
    J = np.asarray(joints, dtype=np.float64)
    R = np.zeros((len(J), len(V)))
    for j, p in enumerate(J):
        d2 = ((V - p) ** 2).sum(1)
        nn = np.argsort(d2, kind="stable")[: min(k, len(V))]
        if d2[nn[0]] < 1e-16:
            R[j, nn[0]] = 1.0
            continue
        big = 1e2 * np.sqrt(d2[nn].mean())  # sum-to-one row, weighted to act as a constraint
        A = np.vstack([V[nn].T, np.sqrt(locality) * np.diag(np.sqrt(d2[nn])), big * np.ones(len(nn))])
        b = np.concatenate([p, np.zeros(len(nn)), [big]])
        w, _ = nnls(A, b, maxiter=50 * len(nn))
        w = w / w.sum()
        R[j, nn] = w
    return R


def joint_regressor(vertices: np.ndarray, regressor=None, joints=None) -> np.ndarray:
    """The dataset's regressor if given, else one fitted to the template's rest joints."""
    if regressor is not None:
        R = np.asarray(regressor, dtype=np.float64)
        if R.shape != (21, len(vertices)):
            raise ValueError(f"regressor must be (21, {len(vertices)}), got {R.shape}")
        return R
    if joints is None:
        raise ValueError("template has neither a joint regressor nor rest joints to derive one from")
    return fit_sparse_regressor(vertices, joints)
