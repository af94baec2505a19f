"""The labelled geometry of one item: its hand (right, or mirrored for a left item), the object
it may hold or hide behind, and the labels computed from them.  numpy only (runs inside
Blender): the renderer puts `geometry.placement` into the scene and renders; everything the
labels depend on is decided here, from the item's draws and camera.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from datagen.geometry.raster import rasterize
from datagen.labels.handedness import handed_mesh, handed_points
from datagen.labels.visibility import ItemLabels, compute_labels
from datagen.scene.occluders import Placement, place
from datagen.seeds import OCCLUDER_STREAM, item_stream


@dataclass(frozen=True)
class ItemGeometry:
    dense: np.ndarray  # (Nd, 3) the item's hand in its world (the hand frame; mirrored for a left item)
    faces: np.ndarray  # (F, 3) its triangles, outward (reversed for a left item)
    labels: ItemLabels
    placement: Placement | None  # the item's objects ([occluders] share > 0), None without the option


def label_item(cfg, tables, spec, right_dense: np.ndarray, camera: Any, width: int, height: int) -> ItemGeometry:
    """Labels of item `spec` (datagen.scene.items.ItemSpec) seen by `camera` (K, R, t; its view's
    or jittered, datagen.cameras.jitter), from the pose's posed right-hand dense mesh."""
    dense, faces = handed_mesh(right_dense, tables.dense_faces, spec.handedness)
    hand_raster = objects = occluders = placement = None
    if cfg.occluders.share > 0:  # the item's objects, if it draws any (datagen.scene.occluders)
        hand_raster = rasterize(dense @ camera.R.T + camera.t, faces, camera.K, width, height)
        placement = place(cfg.occluders, item_stream(cfg.seed, spec.pose_id, spec.view_id, OCCLUDER_STREAM),
                          dense, faces, tables.dense_part, camera.K, camera.R, camera.t, width, height, hand_raster)
        objects, occluders = placement.mesh(), placement.record()
    labels = compute_labels(dense, faces, handed_points(tables.keypoints[spec.pose_id], spec.handedness),
                            camera.K, camera.R, camera.t, width, height, wrist_joint=tables.wrist_joint,
                            hand_raster=hand_raster, objects=objects, occluders=occluders)
    return ItemGeometry(dense, faces, labels, placement)
