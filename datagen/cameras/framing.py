"""Framing: how far the posed hand stays inside each camera's image (the framing report).

Works on any sampler's `Views`; the renderer and the job driver refuse items whose hand leaves
the frame (`framing_problem`) before any work, and `python -m datagen.cameras --report`
prints the worst margin over all poses and views.
"""

from __future__ import annotations

import numpy as np

from datagen.cameras.samplers import Views
from datagen.geometry.projection import project


def _silhouette_extremes(V: np.ndarray) -> np.ndarray:
    """The points whose projections bound the silhouette: the convex-hull vertices (scipy), or
    all vertices where scipy is missing (Blender's own Python)."""
    try:
        from scipy.spatial import ConvexHull
    except ImportError:
        return V
    return V[ConvexHull(V).vertices]


def _hand_vertices(prepared, pose: int) -> np.ndarray:
    """Posed dense vertices of the hand alone: a forearm (dense part 6, datagen.hand.forearm) may
    leave the frame, as in any photograph of a hand.  `prepared`: Prepared or HandTables."""
    V = prepared.dense_vertices(pose)
    part = getattr(prepared, "dense_part", None)
    if part is None:
        part = getattr(getattr(prepared, "asset", None), "dense_part", None)
    if part is None:  # a table without parts: all of it is the hand
        return V
    part = np.asarray(part)
    return V[part != 6] if (part == 6).any() else V


def _margins(points: np.ndarray, views: Views, view_ids) -> np.ndarray:
    """Smallest pixel distance of the projected points to the image border, per view."""
    R, t = views.R[view_ids], views.t[view_ids]
    n = len(R)
    cam = (points @ R.reshape(3 * n, 3).T).reshape(len(points), n, 3) + t[None]  # (N, views, 3)
    uv = project(cam, views.K)
    u, v = uv[..., 0], uv[..., 1]
    m = np.minimum(np.minimum(u, views.width - u), np.minimum(v, views.height - v))
    # a point behind (or on) the camera plane is out of frame whatever its projection says
    m[cam[..., 2] <= 1e-6] = -np.inf
    return m.min(axis=0)


def framing_margins(prepared, views: Views, progress: bool = False) -> np.ndarray:
    """(P, V) smallest distance in pixels between the projected hand and the image border.

    The silhouette's extreme points are projections of the posed dense mesh's convex-hull
    vertices, so those are all that is projected.  Negative = the hand leaves the frame.  Only
    the hand counts (`_hand_vertices`).
    """
    P = len(prepared.ids)
    margins = np.empty((P, len(views)))
    it = range(P)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="framing", unit="pose", mininterval=2.0)
    all_views = np.arange(len(views))
    for p in it:
        margins[p] = _margins(_silhouette_extremes(_hand_vertices(prepared, p)), views, all_views)
    return margins


def item_margins(prepared, views: Views, items) -> np.ndarray:
    """framing_margins for a list of (pose, view) items only (one hull per pose)."""
    items = [(int(p), int(v)) for p, v in items]
    out = np.empty(len(items))
    by_pose: dict[int, list[int]] = {}
    for k, (p, _) in enumerate(items):
        by_pose.setdefault(p, []).append(k)
    for p, ks in by_pose.items():
        out[ks] = _margins(_silhouette_extremes(_hand_vertices(prepared, p)), views, [items[k][1] for k in ks])
    return out


def framing_problem(prepared, views: Views, items, sampler: str = "hemisphere") -> str | None:
    """None when the hand is whole in every item's image; else one line saying where it is not
    and which config keys to change (the renderer refuses such items unless told otherwise)."""
    items = list(items)
    if not items:
        return None
    m = item_margins(prepared, views, items)
    bad = np.nonzero(m < 0)[0]
    if not len(bad):
        return None
    k = int(bad[np.argmin(m[bad])])
    p, v = items[k]
    worst = "behind the camera" if not np.isfinite(m[k]) else f"{-m[k]:.1f} px outside"
    lat = views.columns.get("latitude_deg")
    at = f" at latitude {lat[v]:.0f} deg" if lat is not None else ""
    distance = (f"cameras.radius_m (distance {np.linalg.norm(views.centres[v]):.3f} m)" if sampler == "hemisphere"
                else f"the camera distance of sampler {sampler!r} ([cameras.options])")
    return (f"the camera crops the hand in {len(bad)} of {len(items)} item(s) (worst: pose {p} view {v}, "
            f"{worst} the {views.width}x{views.height} image{at}): increase {distance} or lower "
            f"cameras.focal_px ({views.K[0, 0]:g}); `python -m datagen.cameras --report --config ...` "
            f"shows the margins")
