"""MobRecon: 2D encoding -> feature lifting -> 3D decoding (Fig. 2).

``MobRecon(template, encoder='densestack'|'ghoststack', decoder='dsconv'|'spiralpp')``
maps a (B, 3, 128, 128) crop (RGB/255 normalised to [-1, 1]) to

* ``verts``: (B, 778, 3) root-relative vertices in units of 0.2 m,
* ``uv``: (B, 21, 2) joint positions in [0, 1] of the crop (FreiHAND order),
* ``maps``: (B, 21, 16, 16) MapReg's per-joint maps (heatmap pretraining),
* ``latent``: (B, 256, 4, 4) the encoding Fe.

The template (vertices, faces, joint regressor or rest joints) is an
argument: the dataset's template plugs in without code changes; its sampling
hierarchy comes from the on-disk cache of :mod:`mobrecon.mesh_prep`.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .decoder import SpiralDecoder
from .densestack import DenseStack
from .ghoststack import GhostStack
from .lifting import PVL, MapReg, PosePooling
from .mesh_prep import MeshHierarchy, prepare_mesh
from .template import HandTemplate

__all__ = ["MobRecon", "build_encoder", "ENCODERS"]

ENCODERS = {"densestack": DenseStack, "ghoststack": GhostStack}


def build_encoder(name: str) -> nn.Module:
    if name not in ENCODERS:
        raise ValueError(f"encoder must be one of {sorted(ENCODERS)}")
    return ENCODERS[name]()


class MobRecon(nn.Module):
    def __init__(
        self,
        template: HandTemplate,
        encoder: str = "densestack",
        decoder: str = "dsconv",
        mesh: MeshHierarchy | None = None,
        cache_dir=None,
        n_joints: int = 21,
        channels: tuple[int, ...] = (256, 256, 128, 64, 32),
        spiral_length: int = 9,
        template_offset: bool = False,
    ):
        """``template_offset=True`` makes the decoder predict offsets from the rest template
        (root-relative, same 0.2 m units) instead of absolute coordinates.  Not in the paper:
        an untrained network then already outputs a plausible hand, which matters for short
        schedules (the paper's decoder starts from a collapsed mesh)."""
        super().__init__()
        if mesh is None:
            mesh = prepare_mesh(template.vertices, template.faces, 4, spiral_length, cache_dir=cache_dir)
        self.encoder = build_encoder(encoder)
        self.mapreg = MapReg(self.encoder.feat2d_channels, n_joints)
        self.pose_pool = PosePooling()
        self.pvl = PVL(len(mesh.vertices[-1]), n_joints)
        if self.encoder.latent_channels != channels[0]:
            raise ValueError("decoder input width must equal the latent width")
        self.decoder = SpiralDecoder(mesh, channels, 3, decoder)
        self.register_buffer(
            "joint_regressor", torch.as_tensor(template.joint_regressor(), dtype=torch.float32), persistent=False
        )
        self.register_buffer("faces", torch.as_tensor(np.asarray(template.faces), dtype=torch.long), persistent=False)
        self.template_offset = template_offset
        if template_offset:
            V = np.asarray(template.vertices, dtype=np.float64)
            root = template.joint_regressor()[0] @ V
            self.register_buffer("template_rel", torch.as_tensor((V - root) / 0.2, dtype=torch.float32),
                                 persistent=False)
        self.mesh = mesh

    def forward(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        enc = self.encoder(img)
        uv, maps = self.mapreg(enc["feat2d"])
        joint_feat = self.pose_pool(enc["latent"], uv)
        verts = self.decoder(self.pvl(joint_feat))
        if self.template_offset:
            verts = verts + self.template_rel
        return {"verts": verts, "uv": uv, "maps": maps, "latent": enc["latent"]}

    def joints(self, verts: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) -> (B, 21, 3) through the template's joint regressor (same units)."""
        return torch.einsum("jv,bvc->bjc", self.joint_regressor, verts)

    def part_modules(self) -> dict[str, nn.Module]:
        """Sub-modules for cost reports: the 2D part is stack 2's up path + MapReg."""
        return {
            "up2d": self.encoder.up2d,
            "mapreg": self.mapreg,
            "pose_pool": self.pose_pool,
            "pvl": self.pvl,
            "decoder": self.decoder,
            "encoder_all": self.encoder,
        }
