"""3D mesh decoder: coarse vertex features -> template-resolution vertices.

Four blocks of (up-sample x2, spiral conv, ReLU) walk the hierarchy
49 -> 98 -> 195 -> 389 -> 778 with 256 -> 256 -> 128 -> 64 -> 32 channels
(paper: D = {256, 128, 64, 32}, S = 9); a last spiral conv 32 -> 3 gives the
coordinates. ``conv='dsconv'`` is MobRecon's decoder, ``conv='spiralpp'`` the
SpiralConv++ baseline of Table 4 (same layout, heavier convolution).
"""
from __future__ import annotations

import torch
from torch import nn

from .dsconv import DSConv, SpiralConvPP, Upsample
from .mesh_prep import MeshHierarchy

__all__ = ["SpiralDecoder"]

_CONVS = {"dsconv": DSConv, "spiralpp": SpiralConvPP}


class SpiralDecoder(nn.Module):
    def __init__(
        self,
        mesh: MeshHierarchy,
        channels: tuple[int, ...] = (256, 256, 128, 64, 32),
        out_channels: int = 3,
        conv: str = "dsconv",
    ):
        super().__init__()
        if conv not in _CONVS:
            raise ValueError(f"conv must be one of {sorted(_CONVS)}")
        n_levels = len(mesh.vertices) - 1
        if len(channels) != n_levels + 1:
            raise ValueError(f"need {n_levels + 1} channel sizes for {n_levels} levels")
        Conv = _CONVS[conv]
        self.ups = nn.ModuleList()
        self.convs = nn.ModuleList()
        for i in range(n_levels):
            lvl = n_levels - 1 - i  # target level: 3, 2, 1, 0
            self.ups.append(Upsample(mesh.up_idx[lvl], mesh.up_w[lvl]))
            self.convs.append(Conv(channels[i], channels[i + 1], mesh.spirals[lvl]))
        self.head = Conv(channels[-1], out_channels, mesh.spirals[0])
        self.act = nn.ReLU(inplace=True)
        self.in_vertices = len(mesh.vertices[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, V_mini, C0) -> (B, V, out_channels)."""
        for up, conv in zip(self.ups, self.convs):
            x = self.act(conv(up(x)))
        return self.head(x)
