"""Framing: how far the posed hand stays inside each camera's image (the framing report).

Works on any sampler's `Views`; the renderer and the job driver refuse items whose hand leaves
the frame (`framing_problem`) before any work, and `python -m datagen.cameras --report`
prints the worst margin over all poses and views.
"""

from __future__ import annotations

import numpy as np

from datagen.cameras.jitter import ItemCamera, item_camera, jitter_on, view_camera
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


def hand_vertices(prepared, pose: int) -> np.ndarray:
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
    the hand counts (`hand_vertices`).
    """
    P = len(prepared.ids)
    margins = np.empty((P, len(views)))
    it = range(P)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="framing", unit="pose", mininterval=2.0)
    all_views = np.arange(len(views))
    for p in it:
        margins[p] = _margins(_silhouette_extremes(hand_vertices(prepared, p)), views, all_views)
    return margins


def item_margins(prepared, views: Views, items) -> np.ndarray:
    """framing_margins for a list of (pose, view) items only (one hull per pose)."""
    items = [(int(p), int(v)) for p, v in items]
    out = np.empty(len(items))
    by_pose: dict[int, list[int]] = {}
    for k, (p, _) in enumerate(items):
        by_pose.setdefault(p, []).append(k)
    for p, ks in by_pose.items():
        out[ks] = _margins(_silhouette_extremes(hand_vertices(prepared, p)), views, [items[k][1] for k in ks])
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


def camera_for_item(cam_cfg, views: Views, prepared, config_seed: int, pose_id: int, view_id: int,
                    points: np.ndarray | None = None, aim: np.ndarray | None = None) -> ItemCamera:
    """Item (pose_id, view_id)'s camera: its view's, or with `[cameras.jitter]` on the jittered
    one (datagen.cameras.jitter) fitted to the posed hand.  `points`: the hand's points if the
    caller has them (default: every dense vertex of the hand, `hand_vertices`; the renderer's
    choice, which needs no scipy; it passes a left hand's mirrored points); `aim`: the point the
    distance is measured to (default the palm centre); `prepared`: Prepared or HandTables."""
    if not jitter_on(cam_cfg):
        return view_camera(views, view_id)
    if points is None:
        points = hand_vertices(prepared, pose_id)
    if aim is None:
        aim = getattr(prepared, "asset", prepared).palm_centre
    return item_camera(cam_cfg.jitter, views, view_id, config_seed, pose_id, points, aim)


def jitter_framing(cam_cfg, prepared, views: Views, config_seed: int, progress: bool = False) -> dict:
    """Framing of every item's own (jittered) camera: all poses x views, each item's one draw.

    Per item: the hand's margin to the border (px), its silhouette box side over the image side
    (`box_frac`: max of width/W and height/H of the projected hull), the box centre's offset
    from the image centre as a fraction of the image (`offset_frac`, the larger axis), and the
    draws.  The hull of the posed hand stands for the dense mesh (same extremes)."""
    P, V = len(prepared.ids), len(views)
    out = {k: np.empty((P, V)) for k in ("margin", "box_frac", "offset_frac", "distance_scale", "focal_scale",
                                         "roll_deg", "capped")}
    it = range(P)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="framing (jitter)", unit="pose", mininterval=2.0)
    W, H = views.width, views.height
    lo = float(cam_cfg.jitter.focal_scale[0])
    for p in it:
        pts = _silhouette_extremes(hand_vertices(prepared, p))
        pose_id = int(prepared.ids[p])  # the item seed's pose id (row p of the table)
        for v in range(V):
            cam = camera_for_item(cam_cfg, views, prepared, config_seed, pose_id, v, pts)
            c = pts @ cam.R.T + cam.t
            uv = project(c, cam.K)
            x0, y0 = uv.min(axis=0)
            x1, y1 = uv.max(axis=0)
            out["margin"][p, v] = min(x0, W - x1, y0, H - y1) if (c[:, 2] > 1e-6).all() else -np.inf
            out["box_frac"][p, v] = max((x1 - x0) / W, (y1 - y0) / H)
            out["offset_frac"][p, v] = max(abs((x0 + x1) / 2 - W / 2) / W, abs((y0 + y1) / 2 - H / 2) / H)
            j = cam.jitter or {}
            out["distance_scale"][p, v] = j.get("distance_scale", 1.0)
            out["focal_scale"][p, v] = j.get("focal_scale", 1.0)
            out["roll_deg"][p, v] = j.get("roll_deg", 0.0)
            out["capped"][p, v] = j.get("focal_scale", 1.0) < lo
    return out


def box_stats(views: Views, prepared, progress: bool = False) -> dict:
    """box_frac and offset_frac (as in `jitter_framing`) of the views' own cameras."""
    P, V = len(prepared.ids), len(views)
    box, off = np.empty((P, V)), np.empty((P, V))
    it = range(P)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="boxes", unit="pose", mininterval=2.0)
    W, H = views.width, views.height
    for p in it:
        pts = _silhouette_extremes(hand_vertices(prepared, p))
        cam = (pts @ views.R.reshape(3 * V, 3).T).reshape(len(pts), V, 3) + views.t[None]
        uv = project(cam, views.K)
        lo, hi = uv.min(axis=0), uv.max(axis=0)
        box[p] = np.maximum((hi[:, 0] - lo[:, 0]) / W, (hi[:, 1] - lo[:, 1]) / H)
        off[p] = np.maximum(abs((lo[:, 0] + hi[:, 0]) / 2 - W / 2) / W, abs((lo[:, 1] + hi[:, 1]) / 2 - H / 2) / H)
    return {"box_frac": box, "offset_frac": off}
