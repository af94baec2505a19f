"""Mult-Adds and parameter counter (forward hooks, no dependencies).

Convention (the one the paper's Table 4 and the facts file use): count
multiply-accumulates of Conv2d, Linear, and of the graph/sampling operators
that declare their own cost through a ``mult_adds(inputs, output)`` method
(grid sampling, PVL's matrix product, sparse up-sampling, DSConv,
SpiralConv++); BatchNorm, activations, pooling, SE's channel scaling,
additions and concatenations are free. Parameters are those of the modules
that actually ran in the forward pass (so layers that are built but never
called would not count), BN's affine parameters included.

``count(model, x, groups={...})`` also splits both numbers over named
sub-modules (e.g. encoder / 2D head / lifting / decoder).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["Complexity", "count", "module_mult_adds"]


def module_mult_adds(m: nn.Module, inputs, output) -> int:
    if hasattr(m, "mult_adds"):
        return int(m.mult_adds(inputs, output))
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        return int(output.numel() * (m.in_channels // m.groups) * kh * kw)
    if isinstance(m, nn.Linear):
        return int(output.numel() * m.in_features)
    return 0


@dataclass
class Complexity:
    mult_adds: int = 0
    params: int = 0
    by_group: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def macs_m(self) -> float:
        return self.mult_adds / 1e6

    @property
    def params_m(self) -> float:
        return self.params / 1e6


@torch.no_grad()
def count(model: nn.Module, *inputs, groups: dict[str, nn.Module] | None = None) -> Complexity:
    """Run ``model(*inputs)`` once (batch 1 expected) and count Mult-Adds / used params."""
    macs: dict[nn.Module, int] = {}
    ran: set[nn.Module] = set()
    handles = []

    def hook(m, inp, out):
        ran.add(m)
        macs[m] = macs.get(m, 0) + module_mult_adds(m, inp, out)

    for m in model.modules():
        handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(*inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()

    def tally(root: nn.Module) -> tuple[int, int]:
        seen_p: set[int] = set()
        n_p = 0
        n_m = 0
        for m in root.modules():
            if m not in ran:
                continue
            n_m += macs.get(m, 0)
            for p in m.parameters(recurse=False):
                if id(p) not in seen_p:
                    seen_p.add(id(p))
                    n_p += p.numel()
        return n_m, n_p

    total_m, total_p = tally(model)
    res = Complexity(total_m, total_p)
    for name, sub in (groups or {}).items():
        res.by_group[name] = tally(sub)
    return res
