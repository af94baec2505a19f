"""The small interface every hand model implements.

The pose space, the keypoints and the renderer only ever see a `HandModel`: a rig with named
articulation chains and a skinning function.  Adding a MANO model the user supplies, or a
rigged glTF/FBX, means writing one more subclass; nothing downstream changes.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

FINGERS = ("thumb", "index", "middle", "ring", "little")

# FreiHAND / MediaPipe order: wrist, then per finger 3 joints proximal->distal and the tip.
KEYPOINT_NAMES = ("wrist",) + tuple(
    f"{finger}_{joint}"
    for finger, joints in zip(
        FINGERS,
        [("cmc", "mcp", "ip", "tip")] + [("mcp", "pip", "dip", "tip")] * 4,
    )
    for joint in joints
)


@dataclass(frozen=True)
class HandRig:
    """Rest-pose skeleton in the hand frame (metres).

    `chains[finger]` lists the three articulated bones of a finger, proximal to distal; the
    head of each is the joint centre of the matching keypoint (thumb CMC/MCP/IP, finger
    MCP/PIP/DIP).  `tails[j]` is where bone j ends (used for axis and fingertip geometry).
    """

    bone_names: tuple[str, ...]
    parents: np.ndarray  # (J,), -1 for the root
    heads: np.ndarray  # (J, 3)
    tails: np.ndarray  # (J, 3)
    wrist: int  # bone whose head is the wrist keypoint
    chains: dict[str, tuple[int, int, int]]
    palm_bones: tuple[int, ...]  # bones that move with the palm (wrist, metacarpals)
    # The forearm bone (datagen.hand.forearm), -1 without a forearm.  A root bone whose head is
    # the wrist joint centre (the wrist keypoint): its rotation is the forearm's, relative to the
    # fixed hand.
    forearm: int = -1

    def joint_bones(self) -> list[int]:
        """Bone index per non-tip keypoint, in keypoint order (16 entries)."""
        # With a forearm the wrist keypoint is the forearm bone's head: the wrist's centre of
        # rotation (datagen.hand.forearm), which no pose moves.
        out = [self.forearm if self.forearm >= 0 else self.wrist]
        for finger in FINGERS:
            out.extend(self.chains[finger])
        return out


class HandModel(ABC):
    """A rigged, skinned hand whose rest pose is expressed in the hand frame.

    Hand frame (right hand): +y from the wrist joint towards the middle-finger MCP, +z out of
    the palm (palmar), +x = y cross z towards the thumb side (radial).  `build_asset` fixes the
    frame on the wrist keypoint (the centre of the wrist cut) with `anatomical_frame`.
    """

    name: str
    rig: HandRig
    faces: list[np.ndarray]  # base polygons (quads or triangles), consistent outward winding
    rest_vertices: np.ndarray  # (N, 3)
    skinning_weights: np.ndarray  # (N, J) dense, rows sum to 1
    licence: dict[str, str]  # {"name":..., "licence":..., "url":...} for the manifest
    versions: dict[str, str]

    def reframe(self, G: np.ndarray) -> None:
        """Re-express the model in another frame (G: 4x4 rigid, current -> new coordinates).

        Everything the model keeps is expressed in the hand frame and skinning commutes with
        rigid changes of frame, so transforming the rest data is the whole change."""
        apply = lambda p: p @ G[:3, :3].T + G[:3, 3]  # noqa: E731
        self.rest_vertices = apply(self.rest_vertices)
        self.rig = dataclasses.replace(self.rig, heads=apply(self.rig.heads), tails=apply(self.rig.tails))

    def shaped(self, phenotype: dict[str, float]) -> HandModel:
        """This model with another phenotype ([hand.shape], datagen.hand.shape): same topology,
        bones and skinning weights, its own rest geometry.  Models without phenotypes cannot."""
        raise NotImplementedError(f"hand model {getattr(self, 'name', type(self).__name__)!r} cannot change shape "
                                  f"(hand.shape needs a model with phenotypes)")

    @abstractmethod
    def skin(self, bone_transforms: np.ndarray) -> np.ndarray:
        """Posed base vertices (B, N, 3) for per-bone rigid transforms (B, J, 4, 4) that map
        rest hand-frame points to posed hand-frame points, using the model's own skinning."""


def anatomical_frame(wrist, index_mcp, middle_mcp, little_mcp) -> np.ndarray:
    """4x4 rigid transform to the hand frame: origin at `wrist`, +y through the middle MCP,
    +z = (index MCP - little MCP) x y (palmar for a right hand), +x = y x z (radial)."""
    y = middle_mcp - wrist
    y = y / np.linalg.norm(y)
    z = np.cross(index_mcp - little_mcp, y)
    z /= np.linalg.norm(z)
    x = np.cross(y, z)
    G = np.eye(4)
    G[:3, :3] = np.stack([x, y, z])  # rows: hand axes in the source coordinates
    G[:3, 3] = -G[:3, :3] @ wrist
    return G


def forward_kinematics(rig: HandRig, local_rotations: np.ndarray) -> np.ndarray:
    """Bone transforms (B, J, 4, 4) from per-bone rotations about the rest joint centres.

    local_rotations[b, j] is a rotation in rest hand-frame axes applied at bone j's head;
    it carries bone j and all its descendants.  The root and the wrist are the reference
    frame in every pose we generate (identity), so the camera rig can be fixed to the hand.
    """
    R = np.asarray(local_rotations, dtype=np.float64)
    B, J = R.shape[:2]
    local = np.tile(np.eye(4), (B, J, 1, 1))
    local[:, :, :3, :3] = R
    heads = rig.heads
    local[:, :, :3, 3] = heads[None] - np.einsum("bjik,jk->bji", R, heads)
    T = np.empty_like(local)
    order = _topological_order(rig.parents)
    for j in order:
        p = rig.parents[j]
        T[:, j] = local[:, j] if p < 0 else T[:, p] @ local[:, j]
    return T


def _topological_order(parents: np.ndarray) -> list[int]:
    order, seen = [], set()

    def visit(j):
        if j in seen:
            return
        if parents[j] >= 0:
            visit(int(parents[j]))
        seen.add(j)
        order.append(j)

    for j in range(len(parents)):
        visit(j)
    return order
