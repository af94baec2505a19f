"""Spiral graph convolutions on vertex features (B, V, C) (Sec. 3.3).

* :class:`DSConv`: depth-wise separable spiral conv. For every vertex its S
  spiral neighbours are gathered; a depthwise step mixes the S samples with a
  separate weight per channel (S x Cin), a pointwise Cin x Cout linear mixes
  channels. Params S*Cin + Cin*Cout (no bias), cost O(S D + D^2) per vertex.
* :class:`SpiralConvPP`: SpiralConv++ (Gong et al. 2019) - one linear over the
  concatenated S*Cin neighbour features, with bias: O(S D^2).
* :class:`Upsample`: fine vertex = barycentric mix of 3 coarse vertices
  (the up matrix of :mod:`mobrecon.mesh_prep` stored as 3 indices + 3 weights
  per row, so it exports to ONNX as Gather/Mul/ReduceSum instead of a dense
  matmul).

Gathers use ``index_select`` on a flat index, the fastest form we measured
for both eager PyTorch and ONNX Runtime.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["DSConv", "SpiralConvPP", "Upsample"]


def _as_index(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.long)


class _SpiralGather(nn.Module):
    """Holds a (V, S) spiral table; ``gather`` -> (B, V, S, C)."""

    def __init__(self, spiral: np.ndarray | torch.Tensor):
        super().__init__()
        sp = _as_index(spiral)
        self.n_vertices, self.seq_len = sp.shape
        self.register_buffer("index", sp.reshape(-1), persistent=False)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        return torch.index_select(x, 1, self.index).view(x.shape[0], self.n_vertices, self.seq_len, x.shape[2])


class DSConv(_SpiralGather):
    def __init__(self, cin: int, cout: int, spiral: np.ndarray | torch.Tensor):
        super().__init__(spiral)
        self.depthwise = nn.Parameter(torch.empty(self.seq_len, cin))
        self.pointwise = nn.Linear(cin, cout, bias=False)
        # variance-preserving: each channel sums S samples; the pointwise feeds a ReLU
        bound = math.sqrt(3.0 / self.seq_len)
        nn.init.uniform_(self.depthwise, -bound, bound)
        nn.init.kaiming_uniform_(self.pointwise.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise((self.gather(x) * self.depthwise).sum(dim=2))

    def mult_adds(self, inputs, output) -> int:
        # depthwise part only: the pointwise nn.Linear is counted by its own hook
        b = output.shape[0]
        return b * self.n_vertices * self.seq_len * self.depthwise.shape[1]


class SpiralConvPP(_SpiralGather):
    def __init__(self, cin: int, cout: int, spiral: np.ndarray | torch.Tensor):
        super().__init__(spiral)
        self.layer = nn.Linear(cin * self.seq_len, cout)
        nn.init.kaiming_uniform_(self.layer.weight, nonlinearity="relu")
        nn.init.zeros_(self.layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(self.gather(x).flatten(2))


class Upsample(nn.Module):
    def __init__(self, index: np.ndarray, weight: np.ndarray):
        super().__init__()
        idx = _as_index(index)
        self.n_out = idx.shape[0]
        self.register_buffer("index", idx.reshape(-1), persistent=False)
        self.register_buffer("weight", torch.as_tensor(np.asarray(weight), dtype=torch.float32)[..., None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        g = torch.index_select(x, 1, self.index).view(b, self.n_out, 3, c)
        return (g * self.weight).sum(dim=2)

    def mult_adds(self, inputs, output) -> int:
        return 3 * output.numel()
