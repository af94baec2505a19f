"""Feature lifting (Sec. 3.2): MapReg 2D head, pose pooling, pose-to-vertex lifting.

* :class:`MapReg`: a 1x1 conv turns the 16x16 fused map into one map per joint;
  each map is flattened (256 values) and a per-joint-shared MLP regresses its
  (u, v). Middle resolution + skip fusion (accuracy) with a global receptive
  field per joint (temporal coherence). uv is in [0, 1] of the crop (pixel /
  crop size), no sigmoid, as released.
* :class:`PosePooling`: bilinear grid sampling of the latent Fe (256@4x4) at
  the 21 predicted positions -> 21 x 256 pose-aligned features.
* :class:`PVL`: a learnable 49 x 21 matrix (init 0.01) maps joint features to
  the 49 vertices of the coarsest mesh: cost O(N V C) instead of an FC's
  O(V C^2).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import BoundedReLU

__all__ = ["MapReg", "PosePooling", "PVL"]


class MapReg(nn.Module):
    def __init__(self, cin: int = 24, n_joints: int = 21, map_size: int = 16, hidden=(128, 64)):
        super().__init__()
        self.reduce = nn.Conv2d(cin, n_joints, 1)
        dims = [map_size * map_size, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b, bias=False), BoundedReLU()]
        layers.append(nn.Linear(dims[-1], 2, bias=False))
        self.mlp = nn.Sequential(*layers)

    def forward(self, feat2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, 16, 16) -> uv (B, 21, 2), maps (B, 21, 16, 16)."""
        maps = self.reduce(feat2d)
        uv = self.mlp(maps.flatten(2))
        return uv, maps


class PosePooling(nn.Module):
    """Grid-sample (bilinear, align_corners=True) Fe at uv in [0,1] -> (B, N, C)."""

    def forward(self, latent: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        grid = (uv * 2.0 - 1.0).clamp(-1.0, 1.0).unsqueeze(1)  # (B, 1, N, 2)
        out = F.grid_sample(latent, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return out[:, :, 0].transpose(1, 2)

    def mult_adds(self, inputs, output) -> int:
        return 4 * output.numel()  # 4 taps per sampled value


class PVL(nn.Module):
    def __init__(self, n_vertices: int = 49, n_joints: int = 21, init: float = 0.01):
        super().__init__()
        self.weight = nn.Parameter(torch.full((n_vertices, n_joints), init))

    def forward(self, joint_feat: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, V_mini, C)."""
        return torch.matmul(self.weight, joint_feat)

    def mult_adds(self, inputs, output) -> int:
        return output.numel() * self.weight.shape[1]
