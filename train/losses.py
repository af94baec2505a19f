"""MobRecon's losses (paper Sec. 3.4, Eq. 9-11) and the pretraining heatmap loss.

All take batched torch tensors; vertices (B, V, 3) are root-relative in units of 0.2 m, uv
(B, 21, 2) in crop pixels / crop size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["mesh_l1", "pose2d_l1", "normal_loss", "edge_length_loss", "con3d_loss", "con2d_loss", "face_edges",
           "gaussian_heatmaps", "heatmap_loss"]


def mesh_l1(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(pred, gt)


def pose2d_l1(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(pred, gt)


def face_edges(faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(F, 3) -> the (F, 3) start and end vertex of each face's three edges."""
    return faces, faces[:, [1, 2, 0]]


def normal_loss(pred: torch.Tensor, gt: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Mean over faces and their 3 edges of |unit(V_i - V_j) . n*_c| (n* = the true face normal)."""
    a, b, c = gt[:, faces[:, 0]], gt[:, faces[:, 1]], gt[:, faces[:, 2]]
    n = F.normalize(torch.cross(b - a, c - a, dim=-1), dim=-1)
    i, j = face_edges(faces)
    e = F.normalize(pred[:, i] - pred[:, j], dim=-1)  # (B, F, 3, 3)
    return (e * n[:, :, None]).sum(-1).abs().mean()


def edge_length_loss(pred: torch.Tensor, gt: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Mean over faces and their 3 edges of | |V_i - V_j| - |V*_i - V*_j| |."""
    i, j = face_edges(faces)
    lp = (pred[:, i] - pred[:, j]).norm(dim=-1)
    lg = (gt[:, i] - gt[:, j]).norm(dim=-1)
    return (lp - lg).abs().mean()


def con3d_loss(v1: torch.Tensor, v2: torch.Tensor, R12: torch.Tensor) -> torch.Tensor:
    """|R12 V1 - V2|_1 (mean): the two views' root-relative meshes differ by the camera roll only."""
    return F.l1_loss(v1 @ R12.transpose(1, 2), v2)


def con2d_loss(uv1: torch.Tensor, uv2: torch.Tensor, T12: torch.Tensor, crop: int) -> torch.Tensor:
    """|T12 uv1 - uv2|_1 (mean), T12 (B, 3, 3) taking crop-1 pixels to crop-2 pixels; uv in px / crop."""
    p = uv1 * crop
    q = p @ T12[:, :2, :2].transpose(1, 2) + T12[:, None, :2, 2]
    return F.l1_loss(q / crop, uv2)


def gaussian_heatmaps(uv: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """(B, J, 2) uv in [0, 1] of the crop -> (B, J, size, size) Gaussians (peak 1) in map cells.

    Cell (r, c) covers [c, c+1) x [r, r+1) in map units; its centre (c + 0.5, r + 0.5).
    """
    g = torch.arange(size, dtype=uv.dtype, device=uv.device) + 0.5
    x = uv[..., 0:1] * size  # (B, J, 1)
    y = uv[..., 1:2] * size
    gx = torch.exp(-((g - x) ** 2) / (2 * sigma**2))  # (B, J, size)
    gy = torch.exp(-((g - y) ** 2) / (2 * sigma**2))
    return gy[..., :, None] * gx[..., None, :]


def heatmap_loss(maps: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error summed over each map, mean over batch and joints."""
    return ((maps - target) ** 2).sum((-1, -2)).mean()
