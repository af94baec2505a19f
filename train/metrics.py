"""Hand-pose metrics as papers report them (../shared/reference/conventions-and-metrics.md).

Inputs are numpy arrays in metres (3D) or pixels (2D); errors are returned in the same unit
(callers multiply by 1000 for mm).  Definitions:

* MPJPE / MPVPE: mean Euclidean distance per joint / vertex after aligning the roots
  (joint 0, the wrist) - the network predicts root-relative coordinates.
* PA-MPJPE / PA-MPVPE: after a per-sample similarity Procrustes alignment (scale, rotation,
  translation) of the prediction to the truth; reflections are excluded (det R = +1), as in
  most papers' code (FreiHAND's official script allows them - ``allow_reflection=True``).
  Joints and vertices are aligned separately, as FreiHAND does.
* F@d: harmonic mean of precision (share of predicted vertices within d of the true mesh's
  vertices) and recall (the converse), after aligning the vertices (PA), per sample, averaged.
* AUC: area under PCK(threshold) for thresholds linspace(lo, hi, n) (FreiHAND: 0-50 mm, 100
  thresholds), by the trapezoid rule, divided by hi - lo.  PCK pools all joints of all samples.
* Acceleration error: mean over frames and joints of | (X_{t-1} - 2 X_t + X_{t+1}) -
  (Y_{t-1} - 2 Y_t + Y_{t+1}) | (unit per frame^2; multiply by fps^2 for unit/s^2).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from datagen.geometry.alignment import similarity_align

__all__ = ["mpjpe", "root_aligned", "pa_errors", "f_score", "pck", "auc", "accel_error",
           "summarise"]


def root_aligned(x: np.ndarray, root: int = 0) -> np.ndarray:
    return x - x[..., root : root + 1, :]


def mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-sample mean distance (..., N, D) -> (...,) with no alignment (align first if wanted)."""
    return np.linalg.norm(np.asarray(pred, np.float64) - gt, axis=-1).mean(-1)


def pa_errors(pred: np.ndarray, gt: np.ndarray, allow_reflection: bool = False) -> np.ndarray:
    """Per-point distances (..., N) after Procrustes alignment."""
    return np.linalg.norm(similarity_align(pred, gt, allow_reflection) - gt, axis=-1)


def f_score(pred: np.ndarray, gt: np.ndarray, threshold: float) -> float:
    """F-score between two point sets (N, 3) and (M, 3) at ``threshold`` (same unit)."""
    d_pg = cKDTree(gt).query(pred)[0]
    d_gp = cKDTree(pred).query(gt)[0]
    precision = float((d_pg < threshold).mean())
    recall = float((d_gp < threshold).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def pck(errors: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    e = np.asarray(errors, np.float64).ravel()
    return (e[None, :] <= np.asarray(thresholds)[:, None]).mean(1)


def auc(errors: np.ndarray, lo: float, hi: float, n: int = 100) -> float:
    t = np.linspace(lo, hi, n)
    p = pck(errors, t)
    return float(np.sum((p[1:] + p[:-1]) * np.diff(t)) / 2.0 / (hi - lo))


def accel_error(pred: np.ndarray, gt: np.ndarray | None = None) -> float:
    """Sequences (T, N, D) or a list of them: mean |second difference of pred - that of gt|.

    With gt None (a static scene), the acceleration of pred itself.
    """
    preds = pred if isinstance(pred, (list, tuple)) else [pred]
    gts = gt if isinstance(gt, (list, tuple)) else [gt] * len(preds)
    vals = []
    for p, g in zip(preds, gts):
        p = np.asarray(p, np.float64)
        if len(p) < 3:
            continue
        a = p[:-2] - 2 * p[1:-1] + p[2:]
        if g is not None:
            g = np.asarray(g, np.float64)
            a = a - (g[:-2] - 2 * g[1:-1] + g[2:])
        vals.append(np.linalg.norm(a, axis=-1).ravel())
    if not vals:
        return float("nan")
    return float(np.concatenate(vals).mean())


def summarise(pred_joints, gt_joints, pred_verts, gt_verts, pred_uv=None, gt_uv=None,
              allow_reflection: bool = False, fscore=True) -> dict:
    """Per-dataset numbers in mm / px from per-sample arrays in metres / px.

    pred_joints/gt_joints (B, 21, 3) and pred_verts/gt_verts (B, V, 3) may be root-relative or
    camera-space (MPJPE aligns the roots); pred_uv/gt_uv (B, 21, 2) in image pixels.
    """
    pj, gj = np.asarray(pred_joints, np.float64), np.asarray(gt_joints, np.float64)
    pv, gv = np.asarray(pred_verts, np.float64), np.asarray(gt_verts, np.float64)
    out = {"samples": int(len(pj))}
    out["mpjpe_mm"] = 1000 * float(mpjpe(root_aligned(pj), root_aligned(gj)).mean())
    out["mpvpe_mm"] = 1000 * float(mpjpe(pv - pj[:, :1], gv - gj[:, :1]).mean())
    ej = pa_errors(pj, gj, allow_reflection)
    out["pa_mpjpe_mm"] = 1000 * float(ej.mean())
    out["pa_mpvpe_mm"] = 1000 * float(pa_errors(pv, gv, allow_reflection).mean())
    out["auc_3d_pa_0_50mm"] = auc(1000 * ej, 0.0, 50.0, 100)
    out["auc_3d_0_50mm"] = auc(1000 * np.linalg.norm(root_aligned(pj) - root_aligned(gj), axis=-1), 0.0, 50.0, 100)
    if fscore:
        al = similarity_align(pv, gv, allow_reflection)
        out["f_at_5mm"] = float(np.mean([f_score(a, g, 0.005) for a, g in zip(al, gv)]))
        out["f_at_15mm"] = float(np.mean([f_score(a, g, 0.015) for a, g in zip(al, gv)]))
    if pred_uv is not None and gt_uv is not None:
        e2 = np.linalg.norm(np.asarray(pred_uv, np.float64) - gt_uv, axis=-1)
        out["uv_error_px"] = float(e2.mean())
        out["auc_2d_0_30px"] = auc(e2, 0.0, 30.0, 100)
    return out
