"""Handedness of an item: the right hand as the tables hold it, or its mirror image.

The hand and pose tables (and RENDER_DIR/meshes/pose_*.npz, tables.h5) hold the right hand in
the hand frame.  A left item is that hand reflected in the hand frame, x -> S x with
S = diag(-1, 1, 1) (datagen.geometry.mirror), seen by the same camera (K, R, t): the world of
a left item is the mirrored hand frame (docs/ARCHITECTURE.md, "Frames and conventions").  Its
mesh keeps the vertex and face ids, with every triangle's vertex order reversed so normals
stay outward; every label (silhouette, depth, keypoints, visibility, further passes) is
computed on that mesh by the same code as for a right hand.

Shards store the handedness per sample as `HANDEDNESS_CODES` (0 right, 1 left).  numpy only
(imported inside Blender).
"""

from __future__ import annotations

import numpy as np

from datagen.geometry.mirror import mirror_mesh, mirror_points

HANDEDNESS = ("right", "left")
HANDEDNESS_CODES = {"right": 0, "left": 1}


def check_handedness(name) -> str:
    if name not in HANDEDNESS:
        raise ValueError(f"handedness must be 'right' or 'left', got {name!r}")
    return name


def handedness_code(name: str) -> int:
    return HANDEDNESS_CODES[check_handedness(name)]


def handedness_name(code) -> str:
    c = int(code)
    if c not in (0, 1):
        raise ValueError(f"handedness code must be 0 (right) or 1 (left), got {code!r}")
    return HANDEDNESS[c]


def handed_points(points: np.ndarray, handedness: str) -> np.ndarray:
    """Hand-frame points (..., 3) of the right hand -> the item's hand (mirrored when left)."""
    return mirror_points(points) if check_handedness(handedness) == "left" else np.asarray(points)


def handed_mesh(vertices: np.ndarray, faces: np.ndarray, handedness: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, faces) of the item's hand: as given for a right hand, `mirror_mesh` for a left one."""
    if check_handedness(handedness) == "left":
        return mirror_mesh(vertices, faces)
    return np.asarray(vertices), np.asarray(faces)
