"""21 hand joints (FreiHAND order) from mesh vertices.

A regressor is a (21, V) matrix ``R`` with ``joints = R @ vertices``. When the
dataset ships its own regressor (MANO's, or datagen's) it is used as is.
Otherwise one is derived from the template and the template's rest joint
positions: each joint becomes a fixed, sparse, convex combination of nearby
template vertices,

    w_j = argmin ||sum_i w_i v_i - J_j||^2 + lam * sum_i w_i^2 ||v_i - J_j||^2
          s.t. w >= 0, sum w = 1, support = the k (24) nearest vertices,

solved with NNLS (`datagen.geometry.joint_regressor`, the fit the open778 mapping uses too,
here on one pose with the locality term). The second (ridge) term makes the fit well posed
and leans on the closer vertices; a joint that sits on a vertex (a fingertip, as in
MANO-based datasets) gets the one-hot row of that vertex. A joint outside the
convex hull of its k nearest vertices (anny's wrist, 2.4 mm) is reproduced
only up to that distance. Because the rows are
convex combinations, the regressor is translation-equivariant and follows
the surface when the hand is posed.
"""
from __future__ import annotations

import numpy as np

from datagen.geometry.joint_regressor import fit_joint_regressor

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
    """(J, V) row-stochastic, non-negative regressor reproducing ``joints`` (J, 3) on
    ``vertices`` (V, 3) (metres, one rest pose)."""
    return fit_joint_regressor(vertices, joints, k=k, locality=locality)[0]


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
