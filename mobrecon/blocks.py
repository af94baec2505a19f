"""2D building blocks shared by DenseStack and GhostStack.

* ``ConvBNReLU``: conv (no bias) + BN + ReLU - the unit every cost is built of;
  BN folds into the conv at export time.
* ``MobileUnit``: 1 or 2 depthwise 3x3 then a 1x1, residual when shapes match
  (MobileNet-style, as in the public DenseStack).
* ``DenseBlock``: mobile units each adding ``growth`` channels to a running
  concatenation (DenseNet).
* ``SE``: squeeze-and-excitation, hidden = min(C/2, 256), Hardtanh(0, 4) as the
  bounded ReLU of the linear layers.
* ``Reorg``: 2x2 space-to-depth (keeps all pixels while halving resolution).
  A reorg followed by a 1x1 conv is the same linear map as one 2x2 stride-2
  conv (same weights, same Mult-Adds); the encoders use the latter, which
  skips a 6-D transpose that cost ~2 ms in ONNX Runtime.
* ``GhostModule`` / ``GhostBottleneck``: GhostNet (Han et al., CVPR 2020): a
  1x1 makes ``ceil(C/ratio)`` primary channels, a cheap depthwise 3x3 derives
  the rest from them.
* ``StackedEncoder``: the two-stack skeleton both encoders share.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConvBNReLU",
    "MobileUnit",
    "DenseBlock",
    "SE",
    "Reorg",
    "GhostModule",
    "GhostBottleneck",
    "BoundedReLU",
    "StackedEncoder",
]


def BoundedReLU() -> nn.Module:
    """ReLU capped at 4 (Hardtanh(0, 4)), used after linear layers."""
    return nn.Hardtanh(0.0, 4.0)


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class MobileUnit(nn.Module):
    def __init__(self, cin: int, cout: int, num_dw: int = 1, stride: int = 1):
        super().__init__()
        dws = [ConvBNReLU(cin, cin, 3, stride if i == num_dw - 1 else 1, groups=cin) for i in range(num_dw)]
        self.dw = nn.Sequential(*dws)
        self.pw = ConvBNReLU(cin, cout, 1)
        self.residual = cin == cout and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.dw(x))
        return x + y if self.residual else y


class DenseBlock(nn.Module):
    """``n`` units; unit i sees cin + i*growth channels and adds ``growth``."""

    def __init__(self, cin: int, growth: int, n: int, num_dw: int = 1):
        super().__init__()
        self.units = nn.ModuleList(MobileUnit(cin + i * growth, growth, num_dw) for i in range(n))
        self.cout = cin + n * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for u in self.units:
            x = torch.cat([x, u(x)], dim=1)
        return x


class SE(nn.Module):
    def __init__(self, c: int, hidden: int | None = None):
        super().__init__()
        h = hidden or min(c // 2, 256)
        self.fc1 = nn.Linear(c, h, bias=False)
        self.act = BoundedReLU()
        self.fc2 = nn.Linear(h, c, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3))
        s = torch.sigmoid(self.fc2(self.act(self.fc1(s))))
        return x * s[:, :, None, None]


class Reorg(nn.Module):
    """(B, C, H, W) -> (B, 4C, H/2, W/2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(x, 2)


class GhostModule(nn.Module):
    """``cout`` channels from a ``ceil(cout/ratio)``-channel 1x1 plus cheap depthwise 3x3 copies.

    ``k=2, stride=2`` makes the primary conv a reorg + 1x1 (see ``Reorg``).
    """

    def __init__(self, cin: int, cout: int, ratio: int = 2, act: bool = True, k: int = 1, stride: int = 1):
        super().__init__()
        self.cout = cout
        init = math.ceil(cout / ratio)
        self.primary = ConvBNReLU(cin, init, k, stride, act=act)
        self.cheap = ConvBNReLU(init, init * (ratio - 1), 3, groups=init, act=act)
        self.trim = init * ratio != cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.primary(x)
        y = torch.cat([p, self.cheap(p)], dim=1)
        return y[:, : self.cout] if self.trim else y


class GhostBottleneck(nn.Module):
    """Ghost(expand) -> [depthwise 3x3 stride 2] -> [SE] -> Ghost(project, linear) + shortcut.

    The shortcut is the identity when shapes match, else a depthwise 3x3 (with the
    stride) followed by a 1x1 projection, as in GhostNet.
    """

    def __init__(self, cin: int, hidden: int, cout: int, stride: int = 1, se: bool = False):
        super().__init__()
        self.expand = GhostModule(cin, hidden)
        self.down = ConvBNReLU(hidden, hidden, 3, stride, groups=hidden, act=False) if stride > 1 else nn.Identity()
        self.se = SE(hidden) if se else nn.Identity()
        self.project = GhostModule(hidden, cout, act=False)
        if cin == cout and stride == 1:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                ConvBNReLU(cin, cin, 3, stride, groups=cin, act=False),
                ConvBNReLU(cin, cout, 1, act=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.se(self.down(self.expand(x)))) + self.shortcut(x)


class StackedEncoder(nn.Module):
    """Two-stack hourglass skeleton (Fig. 3); subclasses build the parts.

    stem -> stack 1 (down1, up1, bilinear x2) -> remap1, concat with the stem
    output -> fuse -> stack 2 (down2) -> extra2 -> latent (Fe), and in
    parallel stack 2's up path ``up2d`` -> the 16x16 map for MapReg.
    """

    stem: nn.Module
    down1: nn.Module
    up1: nn.Module
    remap1: nn.Module
    fuse: nn.Module
    down2: nn.Module
    extra2: nn.Module
    latent: nn.Module
    up2d: nn.Module

    def forward(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        x0 = self.stem(img)
        s16, s8, b4 = self.down1(x0)
        y = F.interpolate(self.up1(b4, s8, s16), scale_factor=2.0, mode="bilinear", align_corners=False)
        x1 = self.fuse(torch.cat([self.remap1(y), x0], dim=1))
        s16, s8, b4 = self.down2(x1)
        return {"latent": self.latent(self.extra2(b4)), "feat2d": self.up2d(b4, s8, s16)}
