"""DenseStack encoder (MobRecon, CVPR 2022, Sec. 3.1 / Fig. 3).

Two hourglass-like stacks of dense blocks on a 128x128 crop::

    stem      3x3 s2 conv 3->64, mobile unit 64->128, reorg + 1x1 -> 128@32
              (implemented as the equivalent 2x2 stride-2 conv)
    stack 1   down: dense A (2 units +64) SE pool | dense B (4 units +64) SE pool |
                    dense C (4 units +128) pool -> 1024@4
              up:   1024->512 + residual + SE, x2, + skip 512@8
                    512->256  + residual + SE, x2, + skip 256@16
                    residual 256, 256->24, SE; bilinear x2 -> 24@32
    fuse      1x1 24->24, concat with the stem output (152), 1x1 -> 128@32
    stack 2   same down path (SE also after dense C) -> 1024@4, then two residual
              1024 units + SE -> the latent "d4"; up path as stack 1, ending at 24@16
    latent    1x1 1024->256 (no BN/ReLU): Fe = 256@4x4

Only layers that are used are built (the public code builds stack-1 layers it
never calls). The up path of stack 2 feeds only the 2D branch (MapReg); it is
kept as ``self.up2d`` so the cost of the "2D part" can be reported apart from
the encoder, as the paper does.

Where the released description leaves a choice open (number of depthwise
convs per unit, what the extra 4x4 units are, what the last up stage holds),
we chose so that the costs land on the paper's numbers: encoder 373.0 M
Mult-Adds / 6.6 M params, 2D part 47.5 M / 1.4 M (see benchmarks/model_bench.py
for ours). Every mobile unit has one depthwise conv; the extra 4x4 units are
two residual mobile units plus an SE; the last up stage refines the fused
16x16 map with a residual 256 unit before reducing to 24 channels (without it
the 2D part costs only ~29 M Mult-Adds).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import SE, ConvBNReLU, DenseBlock, MobileUnit, StackedEncoder

__all__ = ["DenseStack", "DenseDown", "DenseUp"]


class DenseDown(nn.Module):
    """Down path: returns the 256@16 and 512@8 skips and the 1024@4 bottleneck."""

    def __init__(self, cin: int = 128, se_last: bool = False):
        super().__init__()
        self.block_a = DenseBlock(cin, cin // 2, 2)  # 128 -> 256 @32
        self.se_a = SE(2 * cin)
        self.block_b = DenseBlock(2 * cin, cin // 2, 4)  # 256 -> 512 @16
        self.se_b = SE(4 * cin)
        self.block_c = DenseBlock(4 * cin, cin, 4)  # 512 -> 1024 @8
        self.se_c = SE(8 * cin) if se_last else nn.Identity()

    def forward(self, x: torch.Tensor):
        s16 = F.avg_pool2d(self.se_a(self.block_a(x)), 2)
        s8 = F.avg_pool2d(self.se_b(self.block_b(s16)), 2)
        b4 = F.avg_pool2d(self.se_c(self.block_c(s8)), 2)
        return s16, s8, b4


class DenseUp(nn.Module):
    """Up path 1024@4 -> 24@16 with skip additions at 8x8 and 16x16."""

    def __init__(self, cin: int = 1024, cout: int = 24):
        super().__init__()
        c1, c2 = cin // 2, cin // 4
        self.stage1 = nn.Sequential(MobileUnit(cin, c1), MobileUnit(c1, c1), SE(c1))
        self.stage2 = nn.Sequential(MobileUnit(c1, c2), MobileUnit(c2, c2), SE(c2))
        self.stage3 = nn.Sequential(MobileUnit(c2, c2), MobileUnit(c2, cout), SE(cout))

    def forward(self, b4: torch.Tensor, s8: torch.Tensor, s16: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.stage1(b4), scale_factor=2.0, mode="nearest") + s8
        x = F.interpolate(self.stage2(x), scale_factor=2.0, mode="nearest") + s16
        return self.stage3(x)


class DenseStack(StackedEncoder):
    """128x128x3 image -> {'latent': 256@4x4, 'feat2d': 24@16x16}."""

    def __init__(self, width: int = 128, latent: int = 256, out2d: int = 24):
        super().__init__()
        self.stem = nn.Sequential(
            ConvBNReLU(3, width // 2, 3, 2),
            MobileUnit(width // 2, width),
            ConvBNReLU(width, width, 2, 2),  # = reorg (512@32) + 1x1 512->128
        )
        self.down1 = DenseDown(width)
        self.up1 = DenseUp(8 * width, out2d)
        self.remap1 = ConvBNReLU(out2d, out2d, 1)
        self.fuse = ConvBNReLU(out2d + width, width, 1)
        self.down2 = DenseDown(width, se_last=True)
        self.extra2 = nn.Sequential(MobileUnit(8 * width, 8 * width), MobileUnit(8 * width, 8 * width), SE(8 * width))
        self.latent = nn.Conv2d(8 * width, latent, 1, bias=False)
        self.up2d = DenseUp(8 * width, out2d)
        self.latent_channels = latent
        self.feat2d_channels = out2d
