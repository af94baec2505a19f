"""Deployment paths: BN folding, ONNX export, ONNX Runtime session.

What we measured on the 2-core AMD EPYC (Zen 4, AVX-512) dev machine, batch 1,
one thread (benchmarks/model_bench.py prints the table; DenseStack / GhostStack):

* ONNX Runtime with ``ORT_ENABLE_ALL`` is the fastest path (~13 / ~5 ms): it
  folds BN into the convs, fuses Conv+ReLU (and Conv+Add+ReLU), and runs the
  convs in its blocked NCHWc layout (AVX-512 kernels). ``ORT_ENABLE_EXTENDED``
  (no layout change) is ~1.7x slower.
* PyTorch eager ~28-31 / ~16-18 ms; BN folded (:func:`fold_batchnorm`) +
  channels-last ~21 / ~13 ms; TorchScript freeze + optimize_for_inference ~22-26
  / ~14 ms; torch.compile (inductor, ~1 min to compile) ~19 / ~11 ms.
* Graph choices that matter for ORT: the reorg (space-to-depth) + 1x1 conv is
  written as the equivalent 2x2 stride-2 conv (the 6-D transpose alone took
  ~2 ms), and the mesh up-sampling is Gather+Mul+ReduceSum on 3 indices per
  vertex rather than a dense matrix product. A channel-first decoder (depthwise
  spiral as a grouped conv) was 10x slower in ORT; SE through
  GlobalAveragePool / 1x1 convs made no difference.
* fp32 only: no quantisation (its accuracy would have to be reported).

The exported graph returns ``verts`` and ``uv`` (the maps and latent are
training-only outputs).
"""
from __future__ import annotations

import copy
import io
import os
import warnings

import numpy as np
import torch
from torch import nn

__all__ = [
    "InferenceModel",
    "fold_batchnorm",
    "warm_bn_stats_",
    "export_onnx",
    "ort_session",
    "onnx_max_error",
]


class InferenceModel(nn.Module):
    """img -> (verts, uv): what a deployed model returns."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, img: torch.Tensor):
        out = self.model(img)
        return out["verts"], out["uv"]


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, bias=True,
    )  # fmt: skip
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.data.copy_(conv.weight.detach() * scale[:, None, None, None])
    b0 = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.data.copy_((b0 - bn.running_mean) * scale + bn.bias.detach())
    return fused


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Eval-mode copy with every Conv2d directly followed by a BatchNorm2d (inside an
    ``nn.Sequential``) replaced by one biased conv. Same outputs up to rounding."""
    model = copy.deepcopy(model).eval()
    for mod in model.modules():
        if isinstance(mod, nn.Sequential):
            names = list(mod._modules)
            for a, b in zip(names, names[1:]):
                c, n = mod._modules[a], mod._modules[b]
                if isinstance(c, nn.Conv2d) and isinstance(n, nn.BatchNorm2d):
                    mod._modules[a] = _fold(c, n)
                    mod._modules[b] = nn.Identity()
    return model


@torch.no_grad()
def warm_bn_stats_(model: nn.Module, steps: int = 2, batch: int = 4, seed: int = 0, size: int = 128) -> nn.Module:
    """Fill BN running statistics from random images so that an untrained model has
    activations of order one (otherwise deep random nets output ~1e-4 and any
    export check passes trivially). In place; returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average
            m.reset_running_stats()
    for _ in range(steps):
        model(torch.rand(batch, 3, size, size, generator=g) * 2 - 1)
    return model.eval()


def export_onnx(model: nn.Module, path: str | os.PathLike | None = None, opset: int = 17, size: int = 128):
    """Export ``img -> (verts, uv)`` (batch dimension dynamic). Returns the path, or the
    serialized bytes when ``path`` is None."""
    wrapped = InferenceModel(model).eval()  # eval() on the wrapper: export restores its mode
    x = torch.zeros(1, 3, size, size)
    target = io.BytesIO() if path is None else os.fspath(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped, (x,), target, dynamo=False, opset_version=opset,
            input_names=["img"], output_names=["verts", "uv"],
            dynamic_axes={"img": {0: "batch"}, "verts": {0: "batch"}, "uv": {0: "batch"}},
            do_constant_folding=True,
        )  # fmt: skip
    model.eval()
    return target.getvalue() if path is None else target


def ort_session(model_path_or_bytes, threads: int = 1, level: str = "all", spinning: bool = True):
    """ONNX Runtime CPU session with the settings we measured fastest (see module doc)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(model_path_or_bytes, so, providers=["CPUExecutionProvider"])


@torch.no_grad()
def onnx_max_error(model: nn.Module, session, x: torch.Tensor) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime on ``x``."""
    ref = InferenceModel(model).eval()(x)
    out = session.run(None, {"img": x.numpy()})
    return float(max(np.abs(o - r.numpy()).max() for o, r in zip(out, ref)))
