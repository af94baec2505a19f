"""GhostStack encoder: DenseStack's two-stack layout rebuilt from ghost modules.

The paper (Sec. 3.1) gives only GhostStack's cost - 96.2 M Mult-Adds and
5.0 M parameters at 128x128 - and Table 4 puts the whole GhostStack + DSConv
model at 123.5 M / 5.3 M, so this model's 2D part (stack-2 up path + MapReg)
can cost only ~7.5 M / ~0.2 M (DenseStack's: 47.5 M / 1.4 M). The code was
never released; this is our design, built to land on those numbers
(ours: encoder 95.9 M / 5.01 M, 2D part 7.6 M / 0.15 M):

* Ghost modules (GhostNet, Han et al. 2020, ratio 2): a 1x1 conv makes half
  of the output channels and a depthwise 3x3 derives the other half, so a
  "1x1" costs about half. Ghost bottlenecks (ghost expand x3 -> [depthwise
  stride 2] -> SE -> linear ghost project, + shortcut) replace the dense
  blocks, and strided bottlenecks replace the average pooling.
* Little compute at high resolution: a thin stem (3x3 s2 conv 3->16, ghost
  16->32 at 64x64, reorg + ghost -> 64@32) costs 7.9 M where DenseStack's
  costs 110 M; each stack then goes 64@32 -> 96@16 -> 192@8 -> 384@4 (two
  bottlenecks at 4x4), ~34 M per stack.
* Parameters where they are cheap: SE excitations act on pooled vectors, so
  their 2.4 M parameters cost ~2.4 M Mult-Adds; the 4x4 stage holds 1.6 M
  per stack for 15 M; stack 2 ends with one wide bottleneck 384 -> 768 at 4x4
  (1.15 M params, 12 M) giving the latent, which a 1x1 maps to Fe = 256@4x4.
* Up paths are ghost modules: 384@4 -> 192@8 (+skip) -> 96@16 (+skip) ->
  24@16; the 2D one (``self.up2d``) adds a residual ghost bottleneck at 16x16.

Outputs match :class:`~mobrecon.densestack.DenseStack`: latent 256@4x4 and a
24@16x16 map for MapReg.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import SE, ConvBNReLU, GhostBottleneck, GhostModule, StackedEncoder

__all__ = ["GhostStack", "GhostDown", "GhostUp"]


class GhostDown(nn.Module):
    """c0@32 -> c1@16 -> c2@8 -> c3@4 through ghost bottlenecks (SE in each).

    ``blocks`` bottlenecks per stage, the first one strided. Returns the 16x16
    and 8x8 skips and the 4x4 bottleneck.
    """

    def __init__(self, widths=(64, 96, 192, 384), blocks=(1, 1, 2), expand: float = 3.0):
        super().__init__()
        stages = []
        for i, n in enumerate(blocks):
            cin, cout = widths[i], widths[i + 1]
            layers = [GhostBottleneck(cin, int(expand * cin), cout, 2, se=True)]
            layers += [GhostBottleneck(cout, int(expand * cout), cout, se=True) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
        self.s16, self.s8, self.s4 = stages

    def forward(self, x: torch.Tensor):
        s16 = self.s16(x)
        s8 = self.s8(s16)
        return s16, s8, self.s4(s8)


class GhostUp(nn.Module):
    """c3@4 -> (+skip c2@8) -> (+skip c1@16) -> cout@16, optionally refined at 16x16."""

    def __init__(self, widths=(64, 96, 192, 384), cout: int = 24, refine: bool = False):
        super().__init__()
        _, c1, c2, c3 = widths
        self.reduce4 = GhostModule(c3, c2)
        self.reduce8 = GhostModule(c2, c1)
        self.refine = GhostBottleneck(c1, 2 * c1, c1, se=True) if refine else nn.Identity()
        self.out = nn.Sequential(GhostModule(c1, cout), SE(cout))

    def forward(self, b4: torch.Tensor, s8: torch.Tensor, s16: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.reduce4(b4), scale_factor=2.0, mode="nearest") + s8
        x = F.interpolate(self.reduce8(x), scale_factor=2.0, mode="nearest") + s16
        return self.out(self.refine(x))


class GhostStack(StackedEncoder):
    """128x128x3 image -> {'latent': 256@4x4, 'feat2d': 24@16x16}."""

    def __init__(self, widths=(64, 96, 192, 384), latent: int = 256, out2d: int = 24, wide: int = 768, stem: int = 16):
        super().__init__()
        c0, c3 = widths[0], widths[-1]
        self.stem = nn.Sequential(
            ConvBNReLU(3, stem, 3, 2),  # 16@64
            GhostModule(stem, 2 * stem),  # 32@64
            GhostModule(2 * stem, c0, k=2, stride=2),  # reorg (128@32) + ghost -> 64@32
        )
        self.down1 = GhostDown(widths)
        self.up1 = GhostUp(widths, out2d)
        self.remap1 = nn.Identity()
        self.fuse = GhostModule(out2d + c0, c0)
        self.down2 = GhostDown(widths)
        self.extra2 = GhostBottleneck(c3, wide, wide, se=True)
        self.latent = nn.Conv2d(wide, latent, 1, bias=False)
        self.up2d = GhostUp(widths, out2d, refine=True)
        self.latent_channels = latent
        self.feat2d_channels = out2d
