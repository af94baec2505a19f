"""Labels: crossings, visibility rules, depth gaps, the label record (pure numpy)."""

import json

import numpy as np
import pytest

from datagen.cameras.hemisphere import views_for
from datagen.geometry.projection import project_world
from datagen.geometry.triangle_crossings import segment_crossings
from datagen.scene.items import make_spec
from datagen.labels.visibility import (
    DEPTH_MARGIN_M,
    JOINT_FLESH_M,
    SURFACE_KEYPOINTS,
    SURFACE_TOLERANCE_M,
    compute_labels,
    label_record,
)


@pytest.fixture(scope="module")
def views(config, prepared):
    return views_for(config.cameras, prepared.asset)


def _square(z, half=1.0):
    v = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]], float)
    return v, np.array([[0, 1, 2], [0, 2, 3]])


def test_crossings_on_planes_with_tolerance():
    v1, f1 = _square(1.0)
    v2, f2 = _square(2.0)
    V = np.vstack([v1, v2])
    F = np.vstack([f1, f2 + 4])
    targets = np.array([[0.1, 0.2, 3.0], [0.1, 0.2, 2.0], [0.1, 0.2, 1.5], [5.0, 0.0, 3.0]])
    c, near = segment_crossings(V, F, targets, 0.0)
    assert c.tolist() == [2, 1, 1, 0]  # a target exactly on the far plane: that plane is not "in front"
    c, near = segment_crossings(V, F, targets, np.array([1.1, 0.0, 0.0, 0.0]))
    assert c.tolist() == [1, 1, 1, 0]  # the crossing within 1.1 of the first target is ignored
    assert np.isclose(near[2], np.linalg.norm(targets[2]) * (0.5 / 1.5))
    assert np.isinf(near[3])


def test_fast_crossings_equal_brute_force(prepared, views):
    F = prepared.asset.dense_faces
    for pose in (0, 31, 517, 1519):
        D = prepared.dense_vertices(pose)
        for view in range(0, 216, 23):
            cam = D @ views.R[view].T + views.t[view]
            kc = prepared.keypoints[pose] @ views.R[view].T + views.t[view]
            brute, _ = segment_crossings(cam, F, kc, 0.0)  # K=None: every triangle
            fast, _ = segment_crossings(cam, F, kc, 0.0, views.K)
            assert np.array_equal(brute, fast), (pose, view)


def test_labels_are_consistent_with_the_depth_map(prepared, views):
    """Visible keypoints lie on the silhouette at a depth the depth map agrees with;
    keypoints behind another part of the hand have that part's surface well in front."""
    F = prepared.asset.dense_faces
    surf = np.zeros(21, bool)
    surf[list(SURFACE_KEYPOINTS)] = True
    n_vis = n_hidden = 0
    tip_gaps = []
    for pose in (0, 31, 300, 901, 1400):
        D = prepared.dense_vertices(pose)
        for view in range(0, 216, 13):
            L = compute_labels(D, F, prepared.keypoints[pose], views.K, views.R[view], views.t[view], 256, 256)
            uv, z = project_world(prepared.keypoints[pose], views.K, views.R[view], views.t[view])
            assert np.allclose(L.keypoints_2d, uv) and np.allclose(L.keypoints_cam[:, 2], z)
            assert L.in_frame.all()  # the default framing keeps every keypoint in frame
            ij = np.floor(uv).astype(int)
            on_mask = L.mask[ij[:, 1], ij[:, 0]]
            for k in np.nonzero(L.visible)[0]:
                n_vis += 1
                if surf[k]:
                    # nothing in front of a visible surface keypoint (beyond the tolerance); its pixel may
                    # see past it at the silhouette edge, and the wrist floats ~3 mm off the cap
                    if on_mask[k]:
                        assert L.depth_gap[k] <= SURFACE_TOLERANCE_M + DEPTH_MARGIN_M, (pose, view, k)
                        if k:
                            tip_gaps.append(L.depth_gap[k])
                else:
                    assert on_mask[k], (pose, view, k)
                    assert 0.0 < L.depth_gap[k] <= JOINT_FLESH_M[k] + DEPTH_MARGIN_M, (pose, view, k)
            for k in np.nonzero(~L.visible & ~surf & (L.crossings >= 2))[0]:
                n_hidden += 1
                assert on_mask[k] and L.depth_gap[k] > 0.003, (pose, view, k)
    assert n_vis > 500 and n_hidden > 50
    assert np.median(np.abs(tip_gaps)) < 0.0015  # the depth map agrees with visible fingertips


def test_out_of_frame_is_not_visible(prepared, views):
    pose, view = 0, 0
    K = views.K.copy()
    K[0, 2] += 200.0  # shift the image: the hand's right part leaves the frame
    L = compute_labels(prepared.dense_vertices(pose), prepared.asset.dense_faces, prepared.keypoints[pose],
                       K, views.R[view], views.t[view], 256, 256)
    assert (~L.in_frame).any() and L.in_frame.any()
    assert not L.visible[~L.in_frame].any()
    assert np.isnan(L.depth_gap[~L.in_frame]).all()


def test_fist_hides_joints_that_the_open_hand_shows(prepared, views):
    F = prepared.asset.dense_faces
    def n_visible(pose):
        return sum(compute_labels(prepared.dense_vertices(pose), F, prepared.keypoints[pose], views.K, views.R[v],
                                  views.t[v], 256, 256).visible.sum() for v in range(0, 216, 9))
    assert n_visible(31) < n_visible(0)


def test_label_record_is_strict_json(config, prepared, views):
    pose, view = 7, 40
    L = compute_labels(prepared.dense_vertices(pose), prepared.asset.dense_faces, prepared.keypoints[pose],
                       views.K, views.R[view], views.t[view], 256, 256)
    spec = make_spec(config, 8, pose, view, 216)
    rec = label_record(spec, L, views.K, views.R[view], views.t[view], {"name": "x"}, {"samples": 16}, {"bpy": "5"})
    text = json.dumps(rec, allow_nan=False)
    back = json.loads(text)
    for key in ("pose_id", "view_id", "item_id", "seed", "keypoints_2d", "keypoints_3d_cam", "visible", "in_frame",
                "depth_gap_m", "K", "R", "t", "hdri", "skin", "render", "versions", "bbox_xyxy"):
        assert key in back
    assert np.array(back["keypoints_2d"]).shape == (21, 2) and np.array(back["R"]).shape == (3, 3)
    x0, y0, x1, y1 = back["bbox_xyxy"]
    assert L.mask[y0:y1, x0:x1].sum() == L.mask.sum()
