"""The label rasteriser against analytic geometry."""

import numpy as np
import pytest

from datagen.geometry.raster import rasterize

K = np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]])


def quad(z0, z1, half=0.1):
    """A square in front of the camera, tilted so z goes from z0 (left) to z1 (right)."""
    v = np.array([[-half, -half, z0], [half, -half, z1], [half, half, z1], [-half, half, z0]])
    return v, np.array([[0, 1, 2], [0, 2, 3]])


def test_fronto_parallel_square_area_and_depth():
    v, f = quad(1.0, 1.0)
    r = rasterize(v, f, K, 64, 64)
    # Projected square spans 32 +/- 10 px: pixel centres 22.5 .. 41.5 -> 20 x 20 pixels.
    assert r.mask.sum() == 400
    assert np.allclose(r.depth[r.mask], 1.0)
    assert (r.depth[~r.mask] == 0).all() and (r.face[~r.mask] == -1).all()


def test_slanted_plane_depth_is_perspective_correct():
    v, f = quad(0.8, 1.4)
    r = rasterize(v, f, K, 64, 64)
    ii, jj = np.nonzero(r.mask)
    # Exact ray-plane intersection for every covered pixel centre.
    x = (jj + 0.5 - 32) / 100
    slope = (1.4 - 0.8) / 0.2  # dz/dX
    z = (0.8 + slope * 0.1) / (1 - slope * x)  # z = z_mid + slope * X, X = x z
    assert np.allclose(r.depth[ii, jj], z, rtol=1e-6)  # float32 depth maps


def test_nearest_surface_wins():
    near, f = quad(1.0, 1.0, half=0.05)
    far, _ = quad(2.0, 2.0, half=0.2)
    v = np.vstack([near, far])
    faces = np.vstack([f, f + 4])
    r = rasterize(v, faces, K, 64, 64)
    centre = r.face[32, 32]
    assert centre in (0, 1) and r.depth[32, 32] == pytest.approx(1.0)
    assert r.depth[32, 24] == pytest.approx(2.0)


def test_rejects_points_behind_camera():
    v, f = quad(-1.0, 1.0)
    with pytest.raises(ValueError):
        rasterize(v, f, K, 64, 64)
