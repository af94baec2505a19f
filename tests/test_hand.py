"""The hand: subdivision matrix, wrist cap, keypoint definitions and order."""

import numpy as np
import pytest
import trimesh

from datagen.hand import KEYPOINT_NAMES, forward_kinematics
from datagen.hand.subdivision import catmull_clark, subdivide, triangulate


def test_catmull_clark_cube():
    box = trimesh.creation.box(extents=(2, 2, 2))
    # Rebuild the cube as 6 quads.
    v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    quads = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
    S, new = catmull_clark(8, [np.array(q) for q in quads])
    assert S.shape == (8 + 12 + 6, 8) and len(new) == 24
    assert np.allclose(S.sum(axis=1), 1.0)
    dense = S @ v
    # Known values: a cube corner moves to (5/9) of the way in (|x| = 5/9), face points stay at the faces.
    assert np.allclose(np.abs(dense[:8]), 5 / 9)
    assert np.allclose(np.sort(np.abs(dense[20:]), axis=1)[:, 2], 1.0)
    mesh = trimesh.Trimesh(dense, triangulate(new), process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    del box


def test_subdivision_is_affine_invariant():
    rng = np.random.default_rng(0)
    grid = [np.array([i * 4 + j, i * 4 + j + 1, (i + 1) * 4 + j + 1, (i + 1) * 4 + j]) for i in range(3) for j in range(3)]
    S, _ = subdivide(16, grid, 2)
    v = rng.normal(size=(16, 3))
    A, b = rng.normal(size=(3, 3)), rng.normal(size=3)
    assert np.allclose(S @ (v @ A.T + b), (S @ v) @ A.T + b)


def test_identity_pose_reproduces_rest(hand):
    T = forward_kinematics(hand.rig, np.tile(np.eye(3), (1, len(hand.rig.bone_names), 1, 1)))
    assert np.allclose(hand.skin(T)[0], hand.rest_vertices, atol=1e-12)


def test_dense_mesh_is_closed_and_matches_counts(prepared):
    a = prepared.asset
    hand_part = a.base_part != 6  # the default hand has its forearm (part 6), capped at its cut
    assert hand_part.sum() == 1609 and a.n_base == 1802 and 7000 <= a.n_dense <= 7500
    assert (a.dense_part != 6).sum() > 6000
    dense = a.dense(a.rest_base_vertices)
    m = trimesh.Trimesh(dense, a.dense_faces, process=False)
    assert m.is_watertight and m.is_winding_consistent and m.volume > 0  # cut capped, outward normals
    assert np.allclose(np.asarray(a.dense_matrix.sum(axis=1)).ravel(), 1.0)


def test_hand_frame_and_keypoint_order_follow_anatomy(prepared):
    a = prepared.asset
    kp = a.keypoints(a.rest_heads, a.dense(a.rest_base_vertices))
    assert kp.shape == (21, 3) and len(KEYPOINT_NAMES) == 21
    assert np.allclose(kp[0], 0)  # wrist at the origin
    # Fingers: MCP x decreases from index to little (radial -> ulnar); the thumb is radial.
    mcp_x = kp[[5, 9, 13, 17], 0]
    assert np.all(np.diff(mcp_x) < 0) and kp[1:5, 0].min() > mcp_x[0] - 0.01
    # Along each finger the keypoints move away from the wrist, ending at the tip.
    for f in range(5):
        chain = kp[1 + 4 * f : 5 + 4 * f]
        assert np.all(np.diff(np.linalg.norm(chain, axis=1)) > 0), KEYPOINT_NAMES[1 + 4 * f]
    assert np.argmax(np.linalg.norm(kp, axis=1)) == 12  # the middle fingertip is farthest
    assert kp[9, 1] > 0.05 and abs(kp[9, 0]) < 1e-9 and abs(kp[9, 2]) < 1e-9  # +y through the middle MCP


def test_fingertips_lie_on_the_skin_and_the_wrist_joint_inside(prepared):
    a = prepared.asset
    dense = a.dense(a.rest_base_vertices)
    m = trimesh.Trimesh(dense, a.dense_faces, process=False)
    kp = a.keypoints(a.rest_heads, dense)
    _, dist, _ = trimesh.proximity.closest_point_naive(m, kp[[4, 8, 12, 16, 20]])
    assert dist.max() < 1e-9
    # With the forearm the wrist keypoint is the wrist joint centre, inside the wrist (label_version 2)
    _, dist, _ = trimesh.proximity.closest_point_naive(m, kp[[0]])
    assert 0.01 < dist[0] < 0.035
    _, dist, _ = trimesh.proximity.closest_point_naive(m, kp[[5, 6, 7]])
    assert dist.min() > 0.003  # joint centres are inside the finger, not on the skin


def test_asset_round_trips_through_npz(prepared, tmp_path):
    from datagen.hand.asset import HandAsset

    a = prepared.asset
    a.save(tmp_path / "hand.npz")
    b = HandAsset.load(tmp_path / "hand.npz")
    v = prepared.base_vertices[31].astype(np.float64)
    assert np.array_equal(a.dense(v), b.dense(v))
    assert b.bone_names == a.bone_names and b.licence == a.licence


@pytest.mark.parametrize("pose", [0, 31, 700])
def test_prepared_keypoints_match_skinning(prepared, hand, pose):
    from datagen.hand.asset import posed_bone_heads

    T = forward_kinematics(hand.rig, prepared.rotations[pose][None])
    V = hand.skin(T)[0]
    kp = prepared.asset.keypoints(posed_bone_heads(prepared.asset, T)[0], prepared.asset.dense(V))
    assert np.allclose(kp, prepared.keypoints[pose], atol=1e-6)
