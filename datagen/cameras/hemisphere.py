"""The 216 views: a hemisphere of cameras centred on the wrist, all aimed at the palm centre.

Conventions (OpenCV), also in docs/ARCHITECTURE.md:
- World = the hand frame (metres): origin at the wrist keypoint, +y towards the middle MCP,
  +z palmar, +x radial.  The hand's wrist and palm never move, so a view is fixed to the hand.
- `R`, `t` map world to camera: x_cam = R @ x_world + t; camera x right, y down, z forward.
- `K` = [[f, 0, cx], [0, f, cy], [0, 0, 1]] in continuous pixel coordinates where pixel
  (row i, column j) spans [j, j+1) x [i, i+1): its centre is (j + 0.5, i + 0.5) and the
  default principal point (128, 128) is the exact image centre.  Subtract 0.5 for the
  "integer pixel centre" convention of cv2 drawing/remap functions.
- Depth is camera z (not distance along the ray).

Hemisphere: latitude 0 is the equator, the pole is a configurable direction in the hand
frame.  The default pole, "egocentric", points from the wrist towards the elbow (-y): the
equator ring circles the hand (palm, back, both sides) and higher latitudes look over the
wrist along the forearm - first-person views.  Longitude 0 is the dorsal side (-z) for the
egocentric and frontal poles (for the dorsal and palmar poles it is the ulnar side, -x) and
longitude increases counter-clockwise seen from the pole.

View ids: view = lat_index * n_longitudes + lon_index (lat_index 0 = equator).

Roll: the image's up direction is the hand's distal axis (+y, wrist -> middle MCP) projected
on the image plane, so the fingers point up where they can; where the view looks along that
axis (within 1 degree) the pole is used instead.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from datagen.cameras.samplers import Views, register_camera_sampler
from datagen.config import CameraConfig
from datagen.geometry.projection import project

POLES = {
    "egocentric": (0.0, -1.0, 0.0),
    "frontal": (0.0, 1.0, 0.0),
    "dorsal": (0.0, 0.0, -1.0),
    "palmar": (0.0, 0.0, 1.0),
}


def intrinsics(cfg: CameraConfig) -> np.ndarray:
    return np.array([[cfg.focal_px, 0.0, cfg.width / 2], [0.0, cfg.focal_px, cfg.height / 2], [0.0, 0.0, 1.0]])


def pole_frame(pole) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pole, e0, e1): the pole and an orthonormal basis of the equator plane (e0 = longitude 0)."""
    n = np.asarray(POLES[pole] if isinstance(pole, str) else pole, dtype=np.float64)
    n = n / np.linalg.norm(n)
    for ref in ((0.0, 0.0, -1.0), (-1.0, 0.0, 0.0)):
        ref = np.asarray(ref)
        e0 = ref - np.dot(ref, n) * n
        if np.linalg.norm(e0) > 1e-6:
            break
    e0 /= np.linalg.norm(e0)
    e1 = np.cross(n, e0)
    return n, e0, e1


def look_at_opencv(centre: np.ndarray, target: np.ndarray, up: np.ndarray, fallback_up: np.ndarray):
    z = target - centre
    z = z / np.linalg.norm(z)
    u = up - np.dot(up, z) * z
    if np.linalg.norm(u) < np.sin(np.radians(1.0)) * np.linalg.norm(up):
        u = fallback_up - np.dot(fallback_up, z) * z
    y = -u / np.linalg.norm(u)
    x = np.cross(y, z)
    R = np.stack([x, y, z])
    return R, -R @ centre


def hemisphere(cfg: CameraConfig, centre: np.ndarray, aim: np.ndarray) -> Views:
    """All views for a sphere centred at `centre` (the wrist) aimed at `aim` (the palm centre)."""
    n, e0, e1 = pole_frame(cfg.pole)
    up = np.array([0.0, 1.0, 0.0])
    Rs, ts, cs, lons, lats = [], [], [], [], []
    for i in range(cfg.latitudes):
        lat = np.radians(cfg.latitude_start_deg + i * cfg.latitude_step_deg)
        for j in range(cfg.longitudes):
            lon = np.radians(j * cfg.longitude_step_deg)
            d = np.cos(lat) * (np.cos(lon) * e0 + np.sin(lon) * e1) + np.sin(lat) * n
            c = np.asarray(centre) + cfg.radius_m * d
            R, t = look_at_opencv(c, np.asarray(aim, dtype=np.float64), up, n)
            Rs.append(R)
            ts.append(t)
            cs.append(c)
            lons.append(np.degrees(lon))
            lats.append(np.degrees(lat))
    return Views(intrinsics(cfg), np.stack(Rs), np.stack(ts), np.stack(cs), cfg.width, cfg.height,
                 {"longitude_deg": np.asarray(lons), "latitude_deg": np.asarray(lats)})


@register_camera_sampler("hemisphere", description="the paper's 216-view hemisphere (the default)")
def sample_hemisphere(cfg: CameraConfig, hand) -> Views:
    """The sphere is centred on the wrist keypoint, which is the origin of the hand frame by
    construction (datagen.hand.asset.build_asset), and aimed at the palm centre."""
    return hemisphere(cfg, np.zeros(3), hand.palm_centre)


def views_for(cfg: CameraConfig, asset) -> Views:
    """The dataset's views for a prepared hand, from the sampler the config selects
    (datagen.cameras.samplers.views_for; kept here for existing callers)."""
    from datagen.cameras.samplers import views_for as sampled

    return sampled(cfg, asset)


def _silhouette_extremes(V: np.ndarray) -> np.ndarray:
    """The points whose projections bound the silhouette: the convex-hull vertices (scipy), or
    all vertices where scipy is missing (Blender's own Python)."""
    try:
        from scipy.spatial import ConvexHull
    except ImportError:
        return V
    return V[ConvexHull(V).vertices]


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
    vertices, so those are all that is projected.  Negative = the hand leaves the frame.
    """
    P = len(prepared.ids)
    margins = np.empty((P, len(views)))
    it = range(P)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="framing", unit="pose", mininterval=2.0)
    all_views = np.arange(len(views))
    for p in it:
        margins[p] = _margins(_silhouette_extremes(prepared.dense_vertices(p)), views, all_views)
    return margins


def item_margins(prepared, views: Views, items) -> np.ndarray:
    """framing_margins for a list of (pose, view) items only (one hull per pose)."""
    items = [(int(p), int(v)) for p, v in items]
    out = np.empty(len(items))
    by_pose: dict[int, list[int]] = {}
    for k, (p, _) in enumerate(items):
        by_pose.setdefault(p, []).append(k)
    for p, ks in by_pose.items():
        out[ks] = _margins(_silhouette_extremes(prepared.dense_vertices(p)), views, [items[k][1] for k in ks])
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


def main(argv=None) -> int:
    from datagen.config import load_config
    from datagen.poses.prepared import prepare_poses

    ap = argparse.ArgumentParser(prog="python -m datagen.cameras", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="dataset config (TOML); default: configs/default.toml")
    ap.add_argument("--report", action="store_true", help="check framing of every pose in every view")
    ap.add_argument("--export", metavar="PATH", help="write K, R, t, centres per view (.npz)")
    ap.add_argument("--cache", default=None, help="cache folder (default: cache/ at the repo root)")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    prepared = prepare_poses(cfg, cache_dir=args.cache, progress=True)
    views = views_for(cfg.cameras, prepared.asset)
    if args.export:
        np.savez(args.export, K=views.K, R=views.R, t=views.t, centres=views.centres, **views.columns)
        print(f"wrote {args.export}")
    if args.report or not args.export:
        m = framing_margins(prepared, views, progress=True)
        p, v = np.unravel_index(np.argmin(m), m.shape)
        where = ""
        if cfg.cameras.sampler == "hemisphere":
            per_lat = m.reshape(len(prepared.ids), cfg.cameras.latitudes, cfg.cameras.longitudes).min(axis=(0, 2))
            print(f"{'latitude':>9s} {'worst margin px':>16s}")
            for i, val in enumerate(per_lat):
                print(f"{cfg.cameras.latitude_start_deg + i * cfg.cameras.latitude_step_deg:9.1f} {val:16.1f}")
            where = f" (lat {views.latitude_deg[v]:.0f}, lon {views.longitude_deg[v]:.0f})"
        print(f"radius {cfg.cameras.radius_m} m, f {cfg.cameras.focal_px} px, {cfg.cameras.width}x{cfg.cameras.height}")
        print(f"worst: pose {p} view {v}{where}")
        print(f"views={len(views)} worst_margin_px={m.min():.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
