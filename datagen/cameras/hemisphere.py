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

from typing import TYPE_CHECKING

import numpy as np

from datagen.cameras.samplers import Views, register_camera_sampler

if TYPE_CHECKING:
    from datagen.config import CameraConfig

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
