"""The forearm's direction per item ([hand] wrist_draw = "item"): drawn away from the camera.

With a per-pose arm the cut end at the forearm's far end is in frame in some views of every
pose (the camera sphere is larger than the arm, so some cameras always look along it:
docs/REALISM.md, "The cut end and the arm's direction").  So the pose table keeps the arm
straight and every item draws its own wrist angles - flexion and deviation, uniformly within
`[hand] wrist_flexion_deg` / `wrist_deviation_deg`, from its own stream
(`SeedSequence([seed, pose_id, view_id])`, child `datagen.seeds.ARM_STREAM`) - and keeps the
first draw that passes two tests with the item's own camera (its view's or jittered; the
mirrored world for a left item):

- the cut end is out of frame: no dense face at the arm's cut end meets the camera's viewing
  frustum (`datagen.cameras.cut_end.faces_in_frame`: exact clipping, no sampling);
- the arm points away from the camera: the angle between the arm's axis (wrist joint centre ->
  the cut end's centre) and the direction from the wrist joint centre to the camera is at
  least `MIN_CAMERA_ANGLE_DEG`, so the arm does not lie between the camera and the hand;
- the cut end lies at least `NEAR_M` in front of the camera (a camera close to the wrist could
  otherwise sit beside or inside the arm, which the label rasteriser refuses).

At most `MAX_DRAWS` draws; if none passes, the passing pair of a fixed grid over the ranges
nearest the first draw (deterministic); if no pair passes at all, `ArmError` names the item
(`python -m datagen.cameras --report` checks that every view has passing pairs).  The hand's
keypoints, and every hand vertex the forearm bone does not weigh, do not move
(datagen.poses.wrist.arm_delta); numpy only (runs inside Blender).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from datagen.cameras.cut_end import faces_in_frame
from datagen.geometry.mirror import mirror_points
from datagen.poses.wrist import forearm_rotation
from datagen.seeds import ARM_STREAM, item_stream

MAX_DRAWS = 32
MIN_CAMERA_ANGLE_DEG = 40.0
GRID_STEP_DEG = 5.0
NEAR_M = 0.01


class ArmError(RuntimeError):
    """No wrist angles within the config's ranges keep the cut end out of an item's frame."""


@dataclass(frozen=True)
class ItemArm:
    """One item's wrist angles and its posed base vertices (right hand, hand frame)."""

    flexion_deg: float
    deviation_deg: float
    draws: int  # draws tried until one passed (0: none of MAX_DRAWS did; the grid's pair)
    base: np.ndarray  # (Nb, 3) float64

    def record(self) -> dict:
        """The item JSON's `wrist` block (the angles at full precision: the packed dataset re-skins the
        item's mesh from them, datagen.dataset.reader.ArmSkin)."""
        return {"flexion_deg": float(self.flexion_deg), "deviation_deg": float(self.deviation_deg),
                "draw": "item", "draws": self.draws}


class _ArmGeometry:
    """The cut end's dense rows and faces of a HandTables (computed once per tables)."""

    def __init__(self, tables):
        faces = np.asarray(tables.cut_faces, np.int64)
        if tables.forearm_bone < 0 or len(faces) == 0:
            raise ArmError("wrist_draw = \"item\" needs the forearm's cut-end faces in the prepared hand; "
                           "they are missing (a hand without a forearm, or a cache from before them)")
        self.rows = np.unique(faces)
        remap = np.full(tables.n_dense, -1, np.int64)
        remap[self.rows] = np.arange(len(self.rows))
        self.faces = remap[faces]
        ptr, idx, val = tables.dense_indptr, tables.dense_indices, tables.dense_data
        spans = [np.arange(ptr[r], ptr[r + 1]) for r in self.rows]
        self._owner = np.repeat(np.arange(len(self.rows)), [len(s) for s in spans])
        cat = np.concatenate(spans)
        self._cols, self._vals = idx[cat], val[cat]

    def points(self, base: np.ndarray) -> np.ndarray:
        """(n, 3) the cut end's dense vertices for posed base vertices `base`."""
        b = base[self._cols] * self._vals[:, None]
        return np.stack([np.bincount(self._owner, weights=b[:, c], minlength=len(self.rows)) for c in range(3)], 1)


def _geometry(tables) -> _ArmGeometry:
    """The tables' cut-end geometry, made on first use and kept on the tables object."""
    g = getattr(tables, "_arm_geometry", None)
    if g is None:
        g = _ArmGeometry(tables)
        tables._arm_geometry = g
    return g


def arm_passes(points: np.ndarray, faces: np.ndarray, pivot: np.ndarray, camera, width: int, height: int,
               min_angle_deg: float = MIN_CAMERA_ANGLE_DEG) -> bool:
    """Do the cut end's points (n, 3; the item's world) and faces keep out of `camera`'s frame
    (K, R, t), with the arm's axis (pivot -> the cut end's centre) at least `min_angle_deg` from
    the direction pivot -> camera centre?"""
    centre = -np.asarray(camera.R).T @ np.asarray(camera.t)
    axis, to_cam = points.mean(0) - pivot, centre - pivot
    cos = float(axis @ to_cam) / max(float(np.linalg.norm(axis) * np.linalg.norm(to_cam)), 1e-12)
    if np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))) < min_angle_deg:
        return False
    if float((points @ np.asarray(camera.R)[2] + np.asarray(camera.t)[2]).min()) < NEAR_M:
        return False
    view = SimpleNamespace(R=np.asarray(camera.R)[None], t=np.asarray(camera.t)[None], K=np.asarray(camera.K),
                           width=width, height=height)
    return not bool(faces_in_frame(points, faces, view)[0])


def _grid(cfg) -> np.ndarray:
    """(G, 2) the fixed grid of wrist angle pairs over the config's ranges (flexion, deviation)."""
    (f0, f1), (d0, d1) = cfg.hand.wrist_flexion_deg, cfg.hand.wrist_deviation_deg
    fs = np.linspace(f0, f1, max(2, int(round((f1 - f0) / GRID_STEP_DEG)) + 1))
    ds = np.linspace(d0, d1, max(2, int(round((d1 - d0) / GRID_STEP_DEG)) + 1))
    return np.array([(f, d) for f in fs for d in ds])


def _trial(tables, pose_id: int, f: float, d: float, camera, width: int, height: int, left: bool):
    """(passes, base vertices) of pose `pose_id` with wrist angles (f, d) seen by `camera`."""
    g = _geometry(tables)
    pivot = np.asarray(tables.keypoints[pose_id, 0], np.float64)  # the wrist joint centre
    base = tables.item_base(pose_id, forearm_rotation(f, d))
    pts = g.points(base)
    ok = arm_passes(mirror_points(pts) if left else pts, g.faces, mirror_points(pivot) if left else pivot,
                    camera, width, height)
    return ok, base


def draw_item_arm(cfg, tables, pose_id: int, view_id: int, camera, width: int, height: int,
                  left: bool = False) -> ItemArm:
    """The item's wrist angles and posed base vertices (see the module docstring).  `camera`:
    the item's (datagen.cameras.jitter.ItemCamera); `left`: a left item (mirrored world)."""
    (f0, f1), (d0, d1) = cfg.hand.wrist_flexion_deg, cfg.hand.wrist_deviation_deg

    def trial(f: float, d: float):
        return _trial(tables, pose_id, f, d, camera, width, height, left)

    rng = np.random.default_rng(item_stream(cfg.seed, pose_id, view_id, ARM_STREAM))
    u = rng.random((MAX_DRAWS, 2))
    draws = np.column_stack([f0 + u[:, 0] * (f1 - f0), d0 + u[:, 1] * (d1 - d0)])
    for k, (f, d) in enumerate(draws, start=1):
        ok, base = trial(f, d)
        if ok:
            return ItemArm(float(f), float(d), k, base)
    grid = _grid(cfg)
    for f, d in grid[np.argsort(np.hypot(grid[:, 0] - draws[0, 0], grid[:, 1] - draws[0, 1]), kind="stable")]:
        ok, base = trial(f, d)
        if ok:
            return ItemArm(float(f), float(d), 0, base)
    raise ArmError(f"item pose {pose_id} view {view_id}: no wrist angles in hand.wrist_flexion_deg = [{f0}, {f1}], "
                   f"hand.wrist_deviation_deg = [{d0}, {d1}] keep the forearm's cut end out of the frame")


def arm_problem(cfg, tables, views, items) -> str | None:
    """Before any work: the selected views whose items could find no wrist angles at all (the
    grid, which `draw_item_arm` falls back to, has no passing pair: a fact about the view and the
    ranges, not the seed), as one message naming the keys; None when every view has a way out.
    Uses each view's own camera and the first selected pose seen from it (the arm's geometry
    does not depend on the fingers; with [hand.shape] it does a little, so items still check)."""
    from datagen.cameras.jitter import view_camera

    if not cfg.hand.arm_per_item or not items:
        return None
    first: dict[int, int] = {}
    for p, v in items:
        first.setdefault(int(v), int(p))
    hands = (False, True) if cfg.hand.left_share > 0 else (False,)
    stuck = []
    for v, p in sorted(first.items()):
        cam = view_camera(views, v)
        for left in hands:
            for f, d in _grid(cfg):
                if _trial(tables, p, f, d, cam, views.width, views.height, left)[0]:
                    break
            else:
                stuck.append(v)
                break
    if not stuck:
        return None
    (f0, f1), (d0, d1) = cfg.hand.wrist_flexion_deg, cfg.hand.wrist_deviation_deg
    return (f"no wrist angles in hand.wrist_flexion_deg = [{f0}, {f1}], hand.wrist_deviation_deg = [{d0}, {d1}] keep "
            f"the forearm's cut end out of the frame of {len(stuck)} selected view(s) (first: view {stuck[0]}): widen "
            "the ranges, or draw the wrist per pose (hand.wrist_draw = \"pose\")")


__all__ = ["ARM_STREAM", "ArmError", "ItemArm", "MAX_DRAWS", "MIN_CAMERA_ANGLE_DEG", "arm_passes", "arm_problem",
           "draw_item_arm"]
