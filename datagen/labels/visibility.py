"""Per-item labels: exact silhouette and depth, 2D/3D keypoints, visibility, the label record.

Everything is computed from the labelled dense mesh and the labelled camera (K, R, t) with
`datagen.geometry` - nothing is read back from the path tracer - so labels are exact and
identical on every machine; tests/test_render.py checks that Cycles renders the same
silhouette and depth.

Visibility of keypoint k (`visible[k]`) = in frame (its projection lies inside the image)
AND not self-occluded, decided by counting where the segment camera centre -> keypoint
crosses the mesh surface:
- joint keypoints (thumb CMC..IP, finger MCP..DIP) are joint centres inside the hand:
  visible when at most one surface - the skin enclosing the joint - lies in between (0 only
  happens if skinning leaves a joint outside the skin) AND that skin is the joint's own flesh:
  no further than `JOINT_FLESH_M[k]` from the joint along the ray.  Without the second test a
  camera looking along the forearm would "see" the MCP joints through 9 cm of palm (one
  crossing: the ray enters at the wrist and stays inside).  The limits (measured from the
  distribution over poses and views): 40 mm for the MCPs and the thumb CMC (the palm's
  thickness seen from the palmar side), 25 mm for the thumb MCP, 20 mm for the PIP/DIP/IP
  joints (a finger's diameter at up to ~60 degrees obliquity);
- surface keypoints (the five fingertips, on the skin, and the wrist, the centre of the wrist
  cut, within a few mm of the cap) are visible when no surface lies in between, ignoring
  crossings within `SURFACE_TOLERANCE_M` of the keypoint (its own skin).
Both rules are exact for the keypoint's own ray.  The label is also checked against the
rendered depth at the keypoint's pixel: `depth_gap_m[k]` = keypoint camera z minus the depth
map at the pixel containing its projection (None when that pixel is background or out of
frame) must not exceed the same limit (`SURFACE_TOLERANCE_M`, or `JOINT_FLESH_M[k]`) plus
`DEPTH_MARGIN_M`; this marks hidden the keypoints whose ray slips past an occluding edge
while their pixel shows the occluder.  The gap is about 0 for visible surface keypoints and
the joint's depth under the skin for visible joints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datagen.geometry.projection import project
from datagen.geometry.raster import composite, front_facing, rasterize
from datagen.geometry.triangle_crossings import segment_crossings

SURFACE_KEYPOINTS = (0, 4, 8, 12, 16, 20)
SURFACE_TOLERANCE_M = 0.004
# Largest distance from a joint back to the skin in front of it that still counts as the
# joint's own flesh (metres), per keypoint; 0 for the surface keypoints.
JOINT_FLESH_M = np.array([0.0, 0.040, 0.025, 0.020, 0.0] + [0.040, 0.020, 0.020, 0.0] * 4)
DEPTH_MARGIN_M = 0.003
# Label versions: 1 = the hand alone, wrist keypoint at the centre of the wrist cut (a surface
# keypoint); 2 = hand with forearm ([hand] forearm = true): the wrist keypoint is the wrist joint
# centre (datagen.hand.asset.KEYPOINT_DEFINITIONS), a joint keypoint whose own flesh reaches
# `WRIST_FLESH_M` (half the wrist's 55-65 mm width seen from the side, plus margin), and the
# forearm is part of the labelled mesh, so it occludes like any other skin.  Everything
# wrist-relative follows: keypoints_2d[0], keypoints_3d_cam[0], visible[0], crossings[0],
# skin_distance_m[0], depth_gap_m[0], the hand frame's origin (every 3D label, the camera
# sphere's centre) and the prepared pose tables.
LABEL_VERSION = 1
LABEL_VERSION_FOREARM = 2
WRIST_FLESH_M = 0.035


def visibility_contract(wrist_joint: bool = False) -> dict:
    """The visibility constants as the render run records them (run.json and the dataset
    manifest's render_run.visibility) and `datagen.dataset.verify` checks them.  `wrist_joint`:
    the wrist keypoint is the wrist joint centre (label_version 2), a joint keypoint."""
    surface, flesh = _rules(wrist_joint)
    return {"surface_keypoints": surface, "surface_tolerance_m": SURFACE_TOLERANCE_M,
            "joint_flesh_m": [float(x) for x in flesh]}


def _rules(wrist_joint: bool) -> tuple[list[int], np.ndarray]:
    if not wrist_joint:
        return list(SURFACE_KEYPOINTS), JOINT_FLESH_M
    flesh = JOINT_FLESH_M.copy()
    flesh[0] = WRIST_FLESH_M
    return [k for k in SURFACE_KEYPOINTS if k != 0], flesh


@dataclass
class ItemLabels:
    depth: np.ndarray  # (H, W) float32, camera z metres, 0 = background
    mask: np.ndarray  # (H, W) bool
    keypoints_2d: np.ndarray  # (21, 2) px, continuous (pixel centre = +0.5)
    keypoints_cam: np.ndarray  # (21, 3) m
    in_frame: np.ndarray  # (21,) bool
    crossings: np.ndarray  # (21,) int: surfaces between camera and keypoint (surface kps: beyond tolerance)
    skin_m: np.ndarray  # (21,) distance from the keypoint back to the nearest counted crossing (inf: none)
    visible: np.ndarray  # (21,) bool
    depth_gap: np.ndarray  # (21,) float, nan where undefined
    face: np.ndarray | None = None  # (H, W) int32 dense triangle seen at the pixel centre, -1 = background
    label_version: int = LABEL_VERSION
    # With occluders ([occluders] share > 0; None otherwise): the pixels where an object is the
    # nearest surface, the keypoints an object hides, the objects' records, the hand-only depth.
    object_mask: np.ndarray | None = None  # (H, W) bool
    occluded_by_object: np.ndarray | None = None  # (21,) bool
    occluders: dict | None = None  # datagen.scene.occluders.Placement.record()
    hand_depth: np.ndarray | None = None  # (H, W) float32: the hand alone, as without objects

    def bbox(self) -> list[int] | None:
        """[x0, y0, x1, y1) pixel bounds of the silhouette, None when empty."""
        ys, xs = np.nonzero(self.mask)
        if xs.size == 0:
            return None
        return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def compute_labels(dense_vertices: np.ndarray, faces: np.ndarray, keypoints: np.ndarray,
                   K: np.ndarray, R: np.ndarray, t: np.ndarray, width: int, height: int,
                   wrist_joint: bool = False, hand_raster=None, objects=None,
                   occluders: dict | None = None) -> ItemLabels:
    """Labels of one item from hand-frame dense vertices (Nd, 3) and keypoints (21, 3).

    `wrist_joint`: the wrist keypoint is the wrist joint centre inside a forearm (label_version
    2) and follows the joint rule with `WRIST_FLESH_M`; else it is a surface point.
    `hand_raster`: the dense mesh's rasterisation with this camera, if the caller has it.

    Occluders (`objects` = (V (n, 3) hand frame, F (f, 3)) or None; `occluders`, the item's
    placement record, given whenever the run has occluders, even for an item without one): the object mesh is
    rasterised with the hand (z-buffer composite), so `depth` holds the nearest surface, hand
    or object; `mask` and `face` are the pixels where the hand is that surface (the *visible*
    hand); `object_mask` where an object is.  A keypoint is `occluded_by_object` when in frame
    and an object surface crosses its camera ray (any crossing: objects never intersect the
    hand, so an object on the ray lies in front of the keypoint), or its pixel shows an object
    more than the keypoint's depth limit in front of it; it is then not visible.  `crossings`,
    `skin_distance_m` stay the hand's own surfaces."""
    surface_kps, flesh_m = _rules(wrist_joint)
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    cam = np.asarray(dense_vertices, dtype=np.float64) @ R.T + t
    kc = np.asarray(keypoints, dtype=np.float64) @ R.T + t
    r = hand_raster if hand_raster is not None else rasterize(cam, faces, K, width, height)
    with_objects = occluders is not None or objects is not None
    hand_depth = r.depth if with_objects else None
    obj_cross = np.zeros(len(kc), np.int64)
    if objects is not None:
        ov = np.asarray(objects[0], dtype=np.float64) @ R.T + t
        # Objects are closed and outward-wound and the camera is outside them: the nearest
        # surface on a ray, and the first surface a segment from the camera meets, is a
        # camera-facing triangle, so only those are rasterised and tested (same result).
        front = np.asarray(objects[1])[front_facing(ov, objects[1])]
        r = composite(r, rasterize(ov, front, K, width, height), len(faces))
        obj_cross, _ = segment_crossings(ov, front, kc, 0.0, K)
    object_mask = r.face >= len(faces)
    hand_face = np.where(object_mask, -1, r.face).astype(np.int32)
    uv = project(kc, K)
    in_frame = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height) & (kc[:, 2] > 0)
    surface = np.zeros(len(kc), bool)
    surface[surface_kps] = True
    crossings, skin_m = segment_crossings(cam, faces, kc, np.where(surface, SURFACE_TOLERANCE_M, 0.0), K)
    own_flesh = (crossings == 0) | ((crossings == 1) & (skin_m <= flesh_m))
    gap = np.full(len(kc), np.nan)
    ij = np.floor(uv).astype(np.int64)
    for k in np.nonzero(in_frame)[0]:
        z = r.depth[ij[k, 1], ij[k, 0]]
        if z > 0:
            gap[k] = kc[k, 2] - z
    limit = np.where(surface, SURFACE_TOLERANCE_M, flesh_m) + DEPTH_MARGIN_M
    depth_ok = ~(gap > limit)  # nan (background pixel) passes
    visible = in_frame & np.where(surface, crossings == 0, own_flesh) & depth_ok
    occluded = None
    if with_objects:
        on_object = np.zeros(len(kc), bool)
        on_object[in_frame] = object_mask[ij[in_frame, 1], ij[in_frame, 0]]
        occluded = in_frame & ((obj_cross > 0) | (on_object & (gap > limit)))
        visible &= ~occluded
    return ItemLabels(r.depth, hand_face >= 0, uv, kc, in_frame, crossings, skin_m, visible, gap, hand_face,
                      LABEL_VERSION_FOREARM if wrist_joint else LABEL_VERSION,
                      object_mask=object_mask if with_objects else None, occluded_by_object=occluded,
                      occluders=None if not with_objects else dict(occluders or {}),
                      hand_depth=hand_depth)


def _floats(a) -> list:
    a = np.asarray(a, dtype=np.float64)
    return [None if not np.isfinite(x) else float(x) for x in a.ravel()] if a.ndim == 1 else \
        [_floats(row) for row in a]


def label_record(spec, labels: ItemLabels, K, R, t, hdri: dict, render: dict, versions: dict,
                 shape: dict | None = None) -> dict:
    """The item JSON (docs/LABELS.md); `shape`: the pose's hand shape record
    (datagen.hand.shape, only with [hand.shape])."""
    return {
        "label_version": labels.label_version,
        "pose_id": spec.pose_id,
        "view_id": spec.view_id,
        "item_id": spec.item_id,
        "seed": list(spec.seed),
        "handedness": getattr(spec, "handedness", "right"),
        "image_size": [int(labels.mask.shape[1]), int(labels.mask.shape[0])],
        "keypoints_2d": _floats(labels.keypoints_2d),
        "keypoints_3d_cam": _floats(labels.keypoints_cam),
        "visible": [bool(x) for x in labels.visible],
        "in_frame": [bool(x) for x in labels.in_frame],
        "crossings": [int(x) for x in labels.crossings],
        "skin_distance_m": _floats(labels.skin_m),
        "depth_gap_m": _floats(labels.depth_gap),
        "bbox_xyxy": labels.bbox(),
        "mask_area_px": int(labels.mask.sum()),
        "K": _floats(K),
        "R": _floats(R),
        "t": _floats(t),
        "hdri": hdri,
        "skin": spec.skin.record(),
        **({"shape": shape} if shape is not None else {}),
        "render": render,
        "versions": versions,
    } | ({} if labels.occluded_by_object is None else {
        "occluded_by_object": [bool(x) for x in labels.occluded_by_object],
        "occluders": labels.occluders})
