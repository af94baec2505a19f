"""Is the forearm's cut end ever in a camera's image?  An exact check over poses x views.

The forearm (datagen.hand.forearm) ends in a cut, closed by a cap.  The cut end is "in frame"
for a view when any part of the dense faces that touch the cap (the cap and the ring of faces
around its rim: every face with a vertex made of the cut loop alone,
datagen.mapping.open778.cap_vertices) lies inside the camera's frustum.  A triangle meets the
frustum exactly when one of its edges does (datagen.geometry.frustum: Liang-Barsky clipping
against the four image-border planes and z > 0) or when the frustum lies inside the triangle,
which then one of the four corner rays of the image pierces (datagen.geometry.triangle_crossings;
a connected piece of frustum that meets no edge lies in the triangle's interior, so its corners
do too).  No sampling of pixels or of points, so a count of 0 is a proof, up to float rounding.

`cut_end_report` runs it for every pose of a prepared table and every view: the per-view share
of poses whose cut end is in frame (and the views with any).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datagen.geometry.frustum import segments_in_frustum
from datagen.geometry.projection import unproject
from datagen.geometry.triangle_crossings import ray_triangle

ARM_PART = 6  # datagen.hand.forearm.ARM_PART (not imported: the hand package needs anny's stack)


def cut_end_faces(asset) -> np.ndarray:
    """(M, 3) dense faces that touch the cap at the forearm's cut; empty without a forearm."""
    from datagen.mapping.open778 import cap_vertices

    part = np.asarray(asset.dense_part)
    if not (part == ARM_PART).any():
        return np.zeros((0, 3), np.int64)
    F = np.asarray(asset.dense_faces, np.int64)
    cap = cap_vertices(asset.dense_matrix, asset.base_faces)
    return F[cap[F].any(1)]


def _corner_rays(K: np.ndarray, width: float, height: float) -> np.ndarray:
    """(4, 3) camera-frame directions through the image's four corners (at depth 1 m)."""
    corners = np.array([[0.0, 0.0], [width, 0.0], [0.0, height], [width, height]])
    return unproject(corners, np.ones(4), K)


def faces_in_frame(points_world: np.ndarray, faces: np.ndarray, views) -> np.ndarray:
    """(V,) bool: does any triangle of `faces` (indices into points_world (N, 3), hand frame,
    metres) meet view v's frustum?  views: datagen.cameras.samplers.Views."""
    faces = np.asarray(faces, np.int64)
    V = len(views.R)
    if len(faces) == 0:
        return np.zeros(V, bool)
    edges = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1), axis=0)
    used = np.unique(faces)
    remap = np.full(len(points_world), -1, np.int64)
    remap[used] = np.arange(len(used))
    P = np.asarray(points_world, np.float64)[used]
    cam = np.einsum("vij,nj->vni", views.R, P) + views.t[:, None, :]  # (V, n, 3)
    e = remap[edges]
    hit = segments_in_frustum(cam[:, e[:, 0]], cam[:, e[:, 1]], views.K, views.width, views.height).any(1)
    rays = _corner_rays(views.K, views.width, views.height)
    f = remap[faces]
    for v in np.nonzero(~hit)[0]:
        c = cam[v]
        for d in rays:
            t, _, _, inside = ray_triangle(np.zeros(3), d, c[f[:, 0]], c[f[:, 1]], c[f[:, 2]])
            if np.any(inside & (t > 0)):
                hit[v] = True
                break
    return hit


@dataclass
class CutEndReport:
    """in_frame (P, V) bool: pose p's cut end meets view v's frustum."""

    in_frame: np.ndarray

    @property
    def item_share(self) -> float:
        return float(self.in_frame.mean()) if self.in_frame.size else 0.0

    @property
    def view_share(self) -> float:
        """Share of views in which the cut end is in frame for at least one pose."""
        return float(self.in_frame.any(0).mean()) if self.in_frame.size else 0.0


def cut_end_report(prepared, views, poses=None, progress: bool = False) -> CutEndReport:
    """The cut end's frame check for `poses` (default: all) of a Prepared table and all views."""
    import scipy.sparse as sp

    faces = cut_end_faces(prepared.asset)
    poses = np.arange(len(prepared.ids)) if poses is None else np.asarray(poses)
    out = np.zeros((len(poses), len(views.R)), bool)
    if len(faces) == 0:
        return CutEndReport(out)
    used = np.unique(faces)
    D = sp.csr_matrix(prepared.asset.dense_matrix)[used]  # only the cut end's dense vertices
    remap = np.full(prepared.asset.dense_matrix.shape[0], -1, np.int64)
    remap[used] = np.arange(len(used))
    local = remap[faces]
    for i, p in enumerate(poses):
        pts = np.asarray(D @ prepared.base_vertices[int(p)].astype(np.float64))
        out[i] = faces_in_frame(pts, local, views)
        if progress and i % 200 == 0:
            print(f"  cut end: pose {i}/{len(poses)}", flush=True)
    return CutEndReport(out)


__all__ = ["CutEndReport", "cut_end_faces", "cut_end_report", "faces_in_frame"]
