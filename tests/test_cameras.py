"""The 216-view hemisphere: layout, aim, roll, conventions and the projection round trip."""

import dataclasses

import numpy as np
import pytest

from datagen.cameras.hemisphere import POLES, hemisphere, views_for
from datagen.geometry.projection import project_world, unproject
from datagen.config import CameraConfig


@pytest.fixture(scope="module")
def views(config, prepared):
    return views_for(config.cameras, prepared.asset)


def test_layout_216_views_with_paper_steps(views, config, prepared):
    c = config.cameras
    assert len(views) == 216
    assert np.allclose(np.linalg.norm(views.centres, axis=1), c.radius_m)  # wrist at the centre
    lon = views.longitude_deg.reshape(6, 36)
    lat = views.latitude_deg.reshape(6, 36)
    assert np.allclose(np.diff(lon, axis=1), 10.0) and np.allclose(np.diff(lat, axis=0), 15.0)
    assert lat.min() == 0 and lat.max() == 75
    # Latitude is the angle above the equator plane of the pole (egocentric: towards the elbow).
    pole = np.array(POLES["egocentric"])
    elev = np.degrees(np.arcsin(views.centres @ pole / c.radius_m))
    assert np.allclose(elev, views.latitude_deg)
    del prepared


def test_every_camera_aims_at_the_palm_centre(views, prepared):
    for i in range(len(views)):
        uv, z = project_world(prepared.asset.palm_centre, views.K, views.R[i], views.t[i])
        assert np.allclose(uv, [128, 128], atol=1e-9) and z > 0
        assert np.allclose(views.R[i] @ views.R[i].T, np.eye(3)) and np.linalg.det(views.R[i]) == pytest.approx(1)
        assert np.allclose(-views.R[i].T @ views.t[i], views.centres[i])


def test_roll_puts_fingers_up(views, prepared):
    mcp = prepared.asset.rest_heads[prepared.asset.joint_bones[9]]  # middle MCP
    for i in range(len(views)):
        up_img = views.R[i] @ mcp - views.R[i] @ np.zeros(3)
        assert up_img[1] < 0  # image y points down, so the fingers are above the wrist


def test_egocentric_views_exist(views, prepared):
    """Some cameras sit behind the wrist on the forearm side and look along the hand."""
    behind = views.centres[:, 1] < -0.25
    assert behind.sum() >= 36
    fwd = views.R[behind][:, 2, :]  # optical axes
    assert (fwd[:, 1] > 0.5).all()


def test_projection_round_trip(views):
    rng = np.random.default_rng(1)
    pts = rng.uniform(-0.05, 0.15, size=(100, 3))
    for i in (0, 77, 215):
        uv, z = project_world(pts, views.K, views.R[i], views.t[i])
        assert np.allclose(unproject(uv, z, views.K, views.R[i], views.t[i]), pts, atol=1e-12)


@pytest.mark.parametrize("pole", ["frontal", "dorsal", "palmar", (1.0, 1.0, 0.0)])
def test_other_poles(pole):
    cfg = dataclasses.replace(CameraConfig(), pole=pole)
    v = hemisphere(cfg, np.zeros(3), np.array([0.0, 0.07, 0.0]))
    n = np.asarray(POLES[pole] if isinstance(pole, str) else pole, float)
    n /= np.linalg.norm(n)
    assert len(v) == 216 and np.allclose(np.degrees(np.arcsin(v.centres @ n / cfg.radius_m)), v.latitude_deg)


def test_framing_margin_positive_on_sample(prepared, views):
    from datagen.cameras.framing import framing_margins

    class Subset:
        ids = np.arange(0, 1520, 97)
        asset = prepared.asset  # its dense parts: the margin is the hand's (the arm may leave the frame)

        @staticmethod
        def dense_vertices(i):
            return prepared.dense_vertices(int(Subset.ids[i]))

    assert framing_margins(Subset, views).min() > 0
