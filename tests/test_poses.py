"""Pose space: counts, ids, interpolation, anatomy, and measured interpenetration."""

import itertools

import numpy as np
import pytest

from datagen.poses import construction as P
from datagen.poses.collision import PenetrationChecker


def test_counts_ids_and_provenance(prepared):
    assert len(prepared.ids) == 1520 and np.array_equal(prepared.ids, np.arange(1520))
    base = prepared.t == 0
    assert base.sum() == 32 and np.array_equal(prepared.pose_a[base], np.arange(32))
    pairs = list(zip(prepared.pose_a[~base], prepared.pose_b[~base]))
    assert sorted(set(pairs)) == list(itertools.combinations(range(32), 2)) == P.pair_list()
    # Documented ordering: id = 32 + 3 * pair_index + (step - 1).
    for pid in (32, 33, 34, 35, 1519):
        pair, step = divmod(pid - 32, 3)
        assert (prepared.pose_a[pid], prepared.pose_b[pid]) == P.pair_list()[pair]
        assert prepared.t[pid] == pytest.approx((step + 1) / 4)


def test_duplicate_poses_are_exactly_the_coinciding_midpoints(prepared):
    flat = np.round(prepared.rotations.reshape(1520, -1), 6)
    _, first, inverse = np.unique(flat, axis=0, return_index=True, return_inverse=True)
    assert len(first) == 1235  # 32 base + 211 distinct midpoints + 992 quarter points
    # The canonical ids group exactly the poses whose joint rotations are identical.
    assert np.array_equal(prepared.canonical, np.asarray(first)[inverse.ravel()])
    dup = prepared.canonical != prepared.ids
    assert np.all(prepared.t[dup] == 0.5)


def test_interpolation_endpoints_and_midpoint(hand, prepared):
    jx = P.derive_axes(hand)
    a, b = prepared.rotations[5], prepared.rotations[26]
    assert np.allclose(P.slerp_rotations(a, b, 0.0), a) and np.allclose(P.slerp_rotations(a, b, 1.0), b)
    pid = 32 + 3 * P.pair_list().index((5, 26)) + 1  # t = 1/2
    mid = prepared.rotations[pid]
    # Geodesic midpoint: equal rotation angle to both ends, per bone.
    for j in range(len(mid)):
        da = np.arccos(np.clip((np.trace(a[j].T @ mid[j]) - 1) / 2, -1, 1))
        db = np.arccos(np.clip((np.trace(mid[j].T @ b[j]) - 1) / 2, -1, 1))
        assert da == pytest.approx(db, abs=1e-7)
    assert np.allclose(P.state_rotations(hand, jx, 5), a)


def test_fist_closes_and_open_hand_is_straight(prepared):
    kp = prepared.keypoints
    palm = kp[0, [0, 5, 9, 13, 17]].mean(axis=0)
    for tip in (8, 12, 16, 20):
        open_d = np.linalg.norm(kp[0, tip] - palm)
        fist_d = np.linalg.norm(kp[31, tip] - palm)
        assert fist_d < 0.6 * open_d
    # Extended fingers are straight: MCP, PIP, DIP and tip nearly collinear.
    for f in range(1, 5):
        chain = kp[0, 1 + 4 * f : 5 + 4 * f]
        d = np.diff(chain, axis=0)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        assert (d[:-1] * d[1:]).sum(axis=1).min() > np.cos(np.radians(12))


def test_angle_tables_within_human_limits():
    assert P.check_limits() == []


def _report_for(prepared, ids):
    a = prepared.asset
    checker = PenetrationChecker(a.dense_faces, a.dense_part, a.dense(a.rest_base_vertices))
    return max(max((d for *_, d, _ in checker.pose_penetration(prepared.dense_vertices(i))), default=0.0) for i in ids)


def test_sampled_poses_do_not_penetrate(prepared):
    # All base poses and a spread of interpolated ones (the CLI checks all 1520).
    ids = list(range(32)) + list(range(32, 1520, 37))
    assert _report_for(prepared, ids) < 0.002


def test_detector_catches_an_overbent_fist(hand, prepared):
    """Fingers bent past their contact with the palm must be reported (the test can fail)."""
    from datagen.hand import forward_kinematics

    jx = P.derive_axes(hand)
    overbent = {f: (90.0, 110.0, 80.0) for f in P.BENT}
    R = P.state_rotations(hand, jx, 0b11110, bent=overbent)
    V = prepared.asset.dense(hand.skin(forward_kinematics(hand.rig, R[None]))[0])
    a = prepared.asset
    found = PenetrationChecker(a.dense_faces, a.dense_part, a.dense(a.rest_base_vertices)).pose_penetration(V)
    assert max(d for *_, d, _ in found) > 0.004
    assert {b for _, b, _, _ in found} >= {0}  # into the palm


def test_checker_measures_depth_on_boxes():
    import trimesh

    def box(centre, part):
        b = trimesh.creation.box(extents=(0.02, 0.02, 0.02))
        b = b.subdivide().subdivide()
        return np.asarray(b.vertices) + centre, np.asarray(b.faces), np.full(len(b.vertices), part)

    parts = [box([0, 0, 0], 0), box([0.05, 0, 0], 1)]
    V = np.vstack([p[0] for p in parts])
    F = np.vstack([parts[0][1], parts[1][1] + len(parts[0][0])])
    part = np.concatenate([p[2] for p in parts])
    checker = PenetrationChecker(F, part, V)
    assert checker.pose_penetration(V) == []
    moved = V.copy()
    moved[part == 1] -= [0.05 - 0.017, 0, 0]  # overlap 3 mm along x
    found = {(a, b): d for a, b, d, _ in checker.pose_penetration(moved)}
    assert found[(1, 0)] == pytest.approx(0.003, abs=1e-6)
    assert found[(0, 1)] == pytest.approx(0.003, abs=1e-6)
