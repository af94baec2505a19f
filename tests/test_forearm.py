"""The forearm (issue 12): config keys, wrist angles, the hand+forearm model, its labels."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from datagen.config import ConfigError, config_from_dict


def test_forearm_keys_validated_naming_the_key_and_on_by_default():
    cfg = config_from_dict({"hand": {"forearm": False}, "render": {"label_passes": []}})
    assert cfg.hand.forearm is False and "part_mask" not in cfg.render.label_passes
    on = config_from_dict({"hand": {"forearm": True}, "render": {"label_passes": []}})
    assert "part_mask" in on.render.label_passes  # the part mask travels with the forearm
    assert on.digest("hand") != cfg.digest("hand") and config_from_dict({}).hand.forearm is True
    for key, bad in (("wrist_flexion_deg", [-90.0, 0.0]), ("wrist_deviation_deg", [0.0, 50.0]),
                     ("wrist_flexion_deg", [20.0, 10.0]), ("forearm_length_m", 0.5)):
        with pytest.raises(ConfigError, match=f"hand.{key}"):
            config_from_dict({"hand": {"forearm": True, key: bad}})
    with pytest.raises(ConfigError, match="hand.forearm"):
        config_from_dict({"hand": {"forearm": 1}})


def test_wrist_angles_depend_on_seed_and_pose_only_and_bend_the_right_way():
    from datagen.poses.wrist import draw_wrist_angles, forearm_rotation

    a = draw_wrist_angles(np.arange(20), 0, (-30.0, 30.0), (-10.0, 20.0))
    b = draw_wrist_angles(np.arange(20)[::-1], 0, (-30.0, 30.0), (-10.0, 20.0))
    assert np.array_equal(a.flexion_deg, b.flexion_deg[::-1]) and np.array_equal(a.deviation_deg, b.deviation_deg[::-1])
    assert (np.abs(a.flexion_deg) <= 30).all() and ((a.deviation_deg >= -10) & (a.deviation_deg <= 20)).all()
    c = draw_wrist_angles(np.arange(20), 1, (-30.0, 30.0), (-10.0, 20.0))
    assert not np.array_equal(a.flexion_deg, c.flexion_deg)
    arm = np.array([0.0, -1.0, 0.0])  # the forearm at a neutral wrist, hand frame
    assert (forearm_rotation(30, 0) @ arm)[2] > 0.4  # flexion: the V closes palmar (+z)
    assert (forearm_rotation(-30, 0) @ arm)[2] < -0.4  # extension: dorsal
    assert (forearm_rotation(0, 20) @ arm)[0] < -0.3  # ulnar deviation: the V closes ulnar (-x)
    R = forearm_rotation(17, -8)
    assert np.allclose(R @ R.T, np.eye(3)) and np.isclose(np.linalg.det(R), 1)


@pytest.fixture(scope="module")
def forearm_hand(config):
    from datagen.hand import load_hand_model
    from datagen.hand.asset import build_asset

    hand = load_hand_model(config.hand.model, config.hand.phenotype)
    arm = load_hand_model(config.hand.model, config.hand.phenotype, forearm_length_m=0.2)
    return hand, arm, build_asset(arm, config.hand.subdivision_levels)


def test_forearm_continues_the_same_hand_seamlessly(forearm_hand):
    from datagen.hand.asset import _wrist_loop
    from datagen.hand.base import forward_kinematics
    from datagen.hand.forearm import ARM_PART

    hand, arm, asset = forearm_hand
    n = len(hand.rest_vertices)
    assert arm.n_hand == n and arm.arm_vertex[n:].all() and not arm.arm_vertex[:n].any()
    # One open loop, at the elbow end (the wrist loop of the hand is closed by the forearm).
    loop = _wrist_loop(arm.faces)
    assert np.asarray(arm.arm_vertex)[loop].all()
    # Same hand: the hand's vertices, re-framed on the wrist joint, keep their shape.
    a, b = hand.rest_vertices, arm.rest_vertices[:n]
    assert np.allclose(np.linalg.norm(a - a.mean(0), axis=1), np.linalg.norm(b - b.mean(0), axis=1), atol=1e-9)
    # Neutral wrist: the skinned hand is the rest hand; the wrist keypoint is the joint centre (origin).
    J = len(arm.rig.bone_names)
    T = forward_kinematics(arm.rig, np.tile(np.eye(3), (1, J, 1, 1)))
    assert np.allclose(arm.skin(T)[0], arm.rest_vertices, atol=1e-9)
    # The wrist keypoint: the middle of the wrist bone (the carpus), the forearm bone's head, the origin.
    assert np.allclose(asset.rest_heads[arm.rig.forearm], 0) and asset.wrist_vertex == -1
    assert np.allclose(0.5 * (asset.rest_heads[arm.rig.wrist] + asset.rest_tails[arm.rig.wrist]), 0)
    assert asset.joint_bones[0] == arm.rig.forearm
    assert set(np.unique(asset.dense_part)) == set(range(ARM_PART + 1))
    # Arm length: the cut end lies ~forearm_length_m from the wrist joint, proximal (-y).
    far = asset.dense(arm.rest_vertices)[asset.dense_part == ARM_PART]
    assert 0.18 < -far[:, 1].min() < 0.23


def test_wrist_bend_moves_the_arm_only(forearm_hand):
    from datagen.hand.base import forward_kinematics
    from datagen.poses.wrist import forearm_rotation

    _, arm, asset = forearm_hand
    J = len(arm.rig.bone_names)
    R = np.tile(np.eye(3), (1, J, 1, 1))
    R[0, arm.rig.forearm] = forearm_rotation(40, 0)
    V = arm.skin(forward_kinematics(arm.rig, R))[0]
    hand_far = arm.rest_vertices[:, 1] > 0.025  # the body weights reach 34 mm past wrist.R's head, no further
    assert np.allclose(V[hand_far], arm.rest_vertices[hand_far], atol=1e-9)
    elbow_end = arm.arm_vertex & (arm.rest_vertices[:, 1] < -0.15)
    assert (V[elbow_end, 2] - arm.rest_vertices[elbow_end, 2]).mean() > 0.08  # flexion: arm goes palmar
    kp = asset.keypoints(np.einsum("bjik,jk->bji", forward_kinematics(arm.rig, R)[..., :3, :3], asset.rest_heads)[0]
                         + forward_kinematics(arm.rig, R)[0, :, :3, 3], asset.dense(V))
    assert np.allclose(kp[0], 0, atol=1e-9)  # the wrist joint is the centre of rotation


def test_part_mask_and_arm_as_occluder(forearm_hand, config):

    from datagen.cameras.hemisphere import views_for
    from datagen.hand.forearm import ARM_PART
    from datagen.labels.passes import LABEL_PASSES
    from datagen.labels.visibility import compute_labels

    _, arm, asset = forearm_hand
    views = views_for(config.cameras, asset)
    D = asset.dense(arm.rest_vertices)
    kp = asset.keypoints(asset.rest_heads, D)
    part_mask = LABEL_PASSES.get("part_mask")
    seen_arm = 0
    for v in (5 * 36 + 0, 2 * 36 + 9, 0):  # high latitude (over the forearm), side, equator
        L = compute_labels(D, asset.dense_faces, kp, views.K, views.R[v], views.t[v], 256, 256, wrist_joint=True)
        assert L.label_version == 2
        ctx = SimpleNamespace(labels=L, tables=SimpleNamespace(dense_part=asset.dense_part,
                                                               dense_faces=asset.dense_faces))
        pm = part_mask.hook("compute")(ctx)
        assert np.array_equal(pm > 0, L.mask) and pm.max() <= 2
        seen_arm += int((pm == 2).sum())
        assert part_mask.problems({"part_mask": pm, "mask": L.mask}) == []
    assert seen_arm > 0
    # Without the arm's faces the high-latitude camera sees more of the hand: the arm occludes.
    F = asset.dense_faces
    hand_faces = F[~(asset.dense_part[F] == ARM_PART).all(1)]
    v = 5 * 36 + 18
    full = compute_labels(D, F, kp, views.K, views.R[v], views.t[v], 256, 256, wrist_joint=True)
    alone = compute_labels(D, hand_faces, kp, views.K, views.R[v], views.t[v], 256, 256, wrist_joint=True)
    hand_px = (full.face >= 0) & ~(asset.dense_part[F[np.maximum(full.face, 0), 0]] == ARM_PART)
    assert hand_px.sum() <= alone.mask.sum()


def test_cut_end_frame_check_is_exact_against_the_rasteriser(forearm_hand, config):
    # The cut end meets a view's frustum (datagen.cameras.cut_end) whenever the exact
    # rasteriser finds a pixel of it, and never in a view where the frame check says no; with
    # the 0.2 m arm along the pole the top ring looks at the cut end, the equator never does.
    from datagen.cameras.cut_end import cut_end_faces, faces_in_frame
    from datagen.cameras.hemisphere import views_for
    from datagen.geometry.raster import rasterize

    _, arm, asset = forearm_hand
    views = views_for(config.cameras, asset)
    D = asset.dense(arm.rest_vertices)
    cut = cut_end_faces(asset)
    assert 0 < len(cut) < len(asset.dense_faces) // 10
    in_frame = faces_in_frame(D, cut, views)
    assert in_frame[5 * 36:].all() and not in_frame[:36].any()
    for v in range(0, 216, 7):
        cam = D @ views.R[v].T + views.t[v]
        px = (rasterize(cam, cut, views.K, views.width, views.height).face >= 0).any()
        assert in_frame[v] or not px
    # a hand without a forearm has no cut end
    assert len(cut_end_faces(SimpleNamespace(dense_part=np.zeros(3), dense_faces=np.zeros((1, 3))))) == 0


def test_arm_through_the_extended_elbow(config):
    # Past the elbow the upper arm continues the forearm's axis (the elbow extended), cut once.
    from datagen.hand import load_hand_model
    from datagen.hand.asset import _wrist_loop
    from datagen.hand.forearm import ForearmError

    arm = load_hand_model(config.hand.model, config.hand.phenotype, forearm_length_m=0.36)
    loop = np.asarray(_wrist_loop(arm.faces))
    assert arm.arm_vertex[loop].all()
    V = arm.rest_vertices
    u = (arm.elbow - 0) / np.linalg.norm(arm.elbow)  # wrist joint (origin) -> elbow
    s = V @ u
    assert 0.34 < s[arm.arm_vertex].max() < 0.37
    rim = V[loop] - np.outer(V[loop] @ u, u)  # the cut rim around the axis continued past the elbow
    assert np.linalg.norm(rim.mean(0)) < 0.01 and 0.03 < np.linalg.norm(rim - rim.mean(0), axis=1).mean() < 0.07
    with pytest.raises(ForearmError, match="hand.forearm_length_m"):
        load_hand_model(config.hand.model, config.hand.phenotype, forearm_length_m=0.26)  # at the elbow


def test_a_length_at_the_elbow_is_a_config_error_every_command_reports(tmp_path, capsys):
    """The valid lengths depend on the body, so the hand model checks them when it builds the arm;
    the commands report that like any bad config value: the key, exit status 2, no traceback."""
    from datagen.cameras.__main__ import main as cameras_main
    from datagen.config import ConfigError
    from datagen.hand.forearm import ForearmError
    from datagen.poses.__main__ import main as poses_main

    assert issubclass(ForearmError, ConfigError)
    cfg = tmp_path / "elbow.toml"
    cfg.write_text("[hand]\nforearm = true\nforearm_length_m = 0.26\n")
    for main in (poses_main, cameras_main):
        assert main(["--report", "--config", str(cfg), "--cache", str(tmp_path / "cache")]) == 2
        err = capsys.readouterr().err
        assert "error: hand.forearm_length_m = 0.26 m" in err and "Traceback" not in err


def test_forearm_is_the_default_and_the_option_files_keep_their_meaning():
    # The default: the forearm with per-item wrists; configs/forearm.toml: the per-pose option
    # docs/REALISM.md measured before; configs/hand-only.toml: the hand alone, with the very
    # digest and prepared-cache key the default had before the forearm (old renders resume).
    from pathlib import Path

    from datagen.config import load_config
    from datagen.poses.prepared import _pose_space_digest

    configs = Path(__file__).resolve().parent.parent / "configs"
    default = load_config(None)
    assert default.hand.forearm and default.hand.wrist_draw == "item" and default.hand.forearm_length_m == 0.23
    assert default.hand.wrist_flexion_deg == (-60.0, 30.0) and "part_mask" in default.render.label_passes
    cfg = load_config(configs / "forearm.toml")
    assert cfg.hand.forearm and cfg.hand.wrist_draw == "pose" and cfg.hand.wrist_flexion_deg == (-60.0, -30.0)
    assert cfg.cameras == default.cameras and cfg.poses == default.poses  # the paper's 1520 x 216 items
    alone = load_config(configs / "hand-only.toml")
    assert not alone.hand.forearm and alone.render.label_passes == ()
    assert (alone.digest(), _pose_space_digest(alone)) == ("ff8058a5227b5ea5", "45d9c94b7435fd81")


def test_shaped_forearm_follows_the_shaped_hand(forearm_hand):
    """[hand.shape] with the forearm (datagen.hand.forearm.ForearmHand.shaped): the same base
    vertices, the shaped hand's own, the forearm bone at the shaped wrist joint; built into the
    shaped table in its own frame with the wrist angles of the one-hand table."""
    from datagen.config import config_from_dict
    from datagen.hand.asset import frame_like
    from datagen.poses.shapes import build_shaped_table

    hand, arm, asset = forearm_hand
    big = {"gender": 0.0, "height": 0.7}
    shaped_arm = frame_like(arm.shaped(big), asset)
    shaped_hand = hand.shaped(big)
    n = arm.n_hand
    assert shaped_arm.rest_vertices.shape == arm.rest_vertices.shape
    a, b = shaped_hand.rest_vertices, shaped_arm.rest_vertices[:n]  # same hand, another frame
    assert np.allclose(np.linalg.norm(a - a.mean(0), axis=1), np.linalg.norm(b - b.mean(0), axis=1), atol=1e-9)
    assert np.allclose(shaped_arm.rig.heads[shaped_arm.rig.forearm], 0)  # the wrist joint is its origin
    r = shaped_arm.rig
    assert np.allclose(0.5 * (r.heads[r.wrist] + r.tails[r.wrist]), 0)
    # The bigger body's arm is wider than the mean one's (the forearm follows the phenotype).
    width = lambda h: np.ptp(h.rest_vertices[arm.n_hand:][:, 0])  # noqa: E731
    assert width(shaped_arm) > 1.03 * width(arm)
    cfg = config_from_dict({"hand": {"forearm": True, "wrist_draw": "pose", "shape": {"gender": [0, 1], "height": [0.3, 0.7]}}})
    st = build_shaped_table(arm, asset, cfg, ("gender", "age", "muscle", "weight", "height", "proportions"),
                            pose_ids=[0, 700])
    assert np.allclose(st.keypoints[:, 0], 0, atol=1e-6)  # the wrist joint centre of each shaped hand
    from datagen.poses.wrist import draw_wrist_angles, forearm_rotation

    w = draw_wrist_angles(np.array([0, 700]), cfg.seed, cfg.hand.wrist_flexion_deg, cfg.hand.wrist_deviation_deg)
    for i in range(2):
        assert np.allclose(st.table.rotations[i, arm.rig.forearm], forearm_rotation(w.flexion_deg[i], w.deviation_deg[i]))


@pytest.fixture(scope="module")
def arm_tables(forearm_hand, tmp_path_factory):
    """HandTables (the renderer's numpy-only view) of the forearm hand with three poses whose arm
    is straight, as [hand] wrist_draw = "item" prepares them, written and read back."""
    from datagen.cameras.cut_end import cut_end_faces
    from datagen.poses.construction import build_pose_table, pose_meshes
    from datagen.poses.tables import load_tables

    _, arm, asset = forearm_hand
    asset.cut_faces = cut_end_faces(asset)
    full = build_pose_table(arm, 1)
    rows = np.array([0, 31, 100])
    table = type(full)(*(np.asarray(getattr(full, f))[rows] for f in full.__dataclass_fields__))
    base, kps = pose_meshes(arm, asset, table)
    d = tmp_path_factory.mktemp("arm_tables")
    asset.save(d / "hand.npz")
    np.savez(d / "poses.npz", ids=table.ids, pose_a=table.pose_a, pose_b=table.pose_b, t=table.t,
             rotations=table.rotations, base_vertices=base, keypoints=kps)
    return load_tables(d / "hand.npz", d / "poses.npz"), table


def test_item_arm_turns_exactly_what_skinning_turns(forearm_hand, arm_tables):
    """HandTables.item_base (datagen.poses.wrist.arm_delta) = skinning the pose again with the
    item's forearm rotation; the keypoints and every hand vertex the forearm bone does not weigh
    stay where the pose table has them."""
    from datagen.hand.base import forward_kinematics
    from datagen.poses.wrist import forearm_rotation

    _, arm, asset = forearm_hand
    tables, table = arm_tables
    assert tables.forearm_bone == arm.rig.forearm and len(tables.arm_rows) and len(tables.cut_faces)
    assert np.allclose(tables.rotations[:, tables.forearm_bone], np.eye(3))
    for p, (f, d) in zip(range(3), ((-50.0, 15.0), (25.0, -8.0), (-10.0, 0.0))):
        R = table.rotations[[p]].copy()
        R[0, arm.rig.forearm] = forearm_rotation(f, d)
        ref = arm.skin(forward_kinematics(arm.rig, R))[0]
        got = tables.item_base(p, forearm_rotation(f, d))
        assert np.abs(got - ref).max() < 1e-6  # float32 tables
        moved = np.abs(got - tables.base_vertices[p]).max(1) > 1e-9
        assert moved.any() and set(np.nonzero(moved)[0]) <= set(tables.arm_rows.tolist())
        T = forward_kinematics(arm.rig, R)[0]
        heads = np.einsum("jik,jk->ji", T[:, :3, :3], asset.rest_heads) + T[:, :3, 3]
        assert np.allclose(asset.keypoints(heads, tables.dense(got)), tables.keypoints[p], atol=1e-6)


def test_item_arm_keeps_the_cut_end_out_of_every_view(arm_tables, config):
    """Every one of the 216 views, right and left items: the drawn arm's cut end is out of frame
    (checked again by the label rasteriser: no pixel of the cut end's faces), the arm points at
    least MIN_CAMERA_ANGLE_DEG away from the camera, angles within the ranges, deterministic;
    a range that leaves no way out is an error naming the keys."""
    import dataclasses

    from datagen.cameras.hemisphere import views_for
    from datagen.cameras.jitter import view_camera
    from datagen.config import config_from_dict
    from datagen.geometry.mirror import mirror_points
    from datagen.geometry.raster import rasterize
    from datagen.scene.arm import MIN_CAMERA_ANGLE_DEG, ArmError, draw_item_arm

    tables, _ = arm_tables
    cfg = config_from_dict({"hand": {"forearm": True, "wrist_draw": "item", "wrist_flexion_deg": [-60.0, 30.0]}})
    views = views_for(config.cameras, SimpleNamespace(palm_centre=tables.palm_centre))
    cut = np.asarray(tables.cut_faces)
    draws = []
    for v in range(216):
        left = v % 3 == 0
        cam = view_camera(views, v)
        a = draw_item_arm(cfg, tables, v % 3, v, cam, views.width, views.height, left=left)
        assert -60 <= a.flexion_deg <= 30 and -10 <= a.deviation_deg <= 20
        draws.append(a.draws)
        dense = tables.dense(a.base)
        dense = mirror_points(dense) if left else dense
        px = rasterize(dense @ cam.R.T + cam.t, cut, cam.K, views.width, views.height)
        assert not (px.face >= 0).any(), v
        axis = dense[np.unique(cut)].mean(0)
        to_cam = -cam.R.T @ cam.t
        assert np.degrees(np.arccos(axis @ to_cam / np.linalg.norm(axis) / np.linalg.norm(to_cam))) >= MIN_CAMERA_ANGLE_DEG
        if v % 50 == 0:
            again = draw_item_arm(cfg, tables, v % 3, v, cam, views.width, views.height, left=left)
            assert (again.flexion_deg, again.deviation_deg) == (a.flexion_deg, a.deviation_deg)
            other = draw_item_arm(dataclasses.replace(cfg, seed=1), tables, v % 3, v, cam, views.width, views.height,
                                  left=left)
            assert other.flexion_deg != a.flexion_deg
    assert np.median(draws) == 1
    from datagen.scene.arm import arm_problem

    assert arm_problem(cfg, tables, views, [(v % 3, v) for v in range(216)]) is None  # every view has a way out
    stuck = config_from_dict({"hand": {"forearm": True, "wrist_draw": "item", "wrist_flexion_deg": [0.0, 0.0],
                                       "wrist_deviation_deg": [0.0, 0.0]}})
    msg = arm_problem(stuck, tables, views, [(0, v) for v in range(216)])
    assert "hand.wrist_flexion_deg" in msg and "view(s)" in msg
    with pytest.raises(ArmError, match="hand.wrist_flexion_deg"):
        v = 5 * 36  # the top ring looks along a straight arm
        draw_item_arm(stuck, tables, 0, v, view_camera(views, v), views.width, views.height)


def test_wrist_draw_is_validated_and_forearm_keys_leave_hand_only_digests_alone():
    from datagen.config import config_from_dict

    assert config_from_dict({}).hand.wrist_draw == "item"
    assert config_from_dict({"hand": {"wrist_draw": "pose"}}).digest() != config_from_dict({}).digest()
    with pytest.raises(ConfigError, match="hand.wrist_draw"):
        config_from_dict({"hand": {"wrist_draw": "view"}})
    # Without the forearm its keys have no effect, and no effect on the digest either.
    off = config_from_dict({"hand": {"forearm": False}, "render": {"label_passes": []}})
    assert off.digest() == config_from_dict({"hand": {"forearm": False, "forearm_length_m": 0.1, "wrist_draw": "pose",
                                                      "wrist_flexion_deg": [0.0, 10.0]},
                                             "render": {"label_passes": []}}).digest()


def test_poses_report_checks_the_arm_over_the_wrist_ranges(forearm_hand, arm_tables):
    """With per-item wrists the table's arm is straight; the interpenetration report also checks
    the fingers-arm pairs with the arm turned to the ranges' corners and edge midpoints, and
    finds the arm when it is folded into the hand (the check can fail)."""
    from datagen.config import config_from_dict
    from datagen.hand.forearm import ARM_PART
    from datagen.poses.collision import PenetrationChecker, _with_wrists, wrist_range_rotations
    from datagen.poses.wrist import forearm_rotation

    _, arm, asset = forearm_hand
    tables, _ = arm_tables
    item = config_from_dict({"hand": {"forearm": True, "wrist_draw": "item"}})
    assert len(wrist_range_rotations(item)) == 8
    assert wrist_range_rotations(config_from_dict({"hand": {"forearm": True, "wrist_draw": "pose"}})) == []
    checker = PenetrationChecker(asset.dense_faces, asset.dense_part, asset.dense(asset.rest_base_vertices))
    base = tables.base_vertices[1].astype(np.float64)  # a fist
    offsets, straight = tables.arm_offsets(1), tables.rotations[1, tables.forearm_bone]
    in_range = _with_wrists(checker, asset, base, offsets, straight, wrist_range_rotations(item))
    assert not [c for c in in_range if ARM_PART in c[:2]]
    folded = _with_wrists(checker, asset, base, offsets, straight, [forearm_rotation(150.0, 0.0)])
    assert max((d for a, b, d, _ in folded if ARM_PART in (a, b)), default=0.0) > 0.005


def test_shaped_table_with_per_item_wrists_keeps_each_hands_arm_offsets(forearm_hand):
    """[hand.shape] + per-item wrists: the shaped table's arm is straight, and it holds each
    pose's own forearm-weighted rest offsets, so an item re-skins its own hand exactly."""
    from datagen.config import config_from_dict
    from datagen.hand.asset import frame_like
    from datagen.hand.base import forward_kinematics
    from datagen.poses.shapes import build_shaped_table
    from datagen.poses.wrist import arm_delta, forearm_rotation

    _, arm, asset = forearm_hand
    cfg = config_from_dict({"hand": {"shape": {"gender": [0, 1], "height": [0.3, 0.7]}}})
    names = ("gender", "age", "muscle", "weight", "height", "proportions")
    st = build_shaped_table(arm, asset, cfg, names, pose_ids=[0, 700])
    fb = arm.rig.forearm
    assert np.allclose(st.table.rotations[:, fb], np.eye(3)) and st.arm_offsets.shape == (2, len(asset.arm_rows), 3)
    assert not np.allclose(st.arm_offsets[0], st.arm_offsets[1])  # two hands, two arms
    h = frame_like(arm.shaped(dict(zip(names, st.shape_values[1]))), asset)
    R = st.table.rotations[[1]].copy()
    R[0, fb] = forearm_rotation(-40.0, 10.0)
    ref = h.skin(forward_kinematics(h.rig, R))[0]
    got = st.base_vertices[1].astype(np.float64)
    got[asset.arm_rows] += arm_delta(st.arm_offsets[1], asset.arm_weights, np.eye(3), R[0, fb])
    assert np.abs(got - ref).max() < 1e-5


def test_a_run_from_before_the_forearm_reads_as_the_hand_alone():
    # run.json configs lack the keys added after them; those had their "as before" value, not
    # today's default (pack rebuilds a missing pose table from it: datagen.dataset.pack.prepared_for).
    from pathlib import Path

    from datagen.config import FOREARM_ONLY_KEYS, LATER_KEYS, config_from_dict, config_from_run, load_config

    # what a hand-alone run.json held before the forearm keys existed: none of them, nor any later
    # key at its "as before" value
    old = config_from_dict({"hand": {"forearm": False}, "render": {"label_passes": []}}).to_dict()
    for (section, key), value in LATER_KEYS.items():
        if old[section].get(key) == value or (section, key) in FOREARM_ONLY_KEYS:
            old[section].pop(key, None)
    assert "forearm" not in old["hand"] and "wrist_draw" not in old["hand"]
    cfg = config_from_run(old)
    assert not cfg.hand.forearm and cfg.hand.wrist_draw == "pose" and cfg.render.label_passes == ()
    alone = load_config(Path(__file__).resolve().parent.parent / "configs" / "hand-only.toml")
    assert cfg.digest() == alone.digest()
    assert config_from_run(load_config(None).to_dict()) == load_config(None)  # a new run reads as itself
