"""Pose options beyond the paper: finger splay and pose families (configs/splay.toml,
configs/families.toml).  The paper's table, its cache key and its config digest must not move."""

import numpy as np
import pytest

from datagen.config import Config, ConfigError, config_from_dict, load_config
from datagen.poses import construction as P
from datagen.poses import splay as S
from datagen.poses.collision import PenetrationChecker


def test_defaults_leave_the_paper_keys_alone():
    from datagen.config import REPO_ROOT
    from datagen.poses.prepared import _pose_space_digest

    cfg = load_config()
    assert cfg.poses.splay is False and cfg.poses.families == {}
    on = config_from_dict({"poses": {"splay": True}})
    assert on.digest("hand", "poses") != cfg.digest("hand", "poses")
    assert _pose_space_digest(on) != _pose_space_digest(cfg)
    # The splay draws follow the seed; the paper's table does not.
    assert _pose_space_digest(config_from_dict({"seed": 5})) == _pose_space_digest(cfg)
    assert _pose_space_digest(config_from_dict({"seed": 5, "poses": {"splay": True}})) != _pose_space_digest(on)
    from datagen.poses.tables import _index_path

    assert _index_path("c", cfg).name == f"index_{cfg.digest('hand', 'poses')}.json"  # the paper's, unchanged
    seeded = config_from_dict({"seed": 5, "poses": {"splay": True}})
    assert _index_path("c", seeded) != _index_path("c", on)  # Blender follows the right seed's tables
    splay = load_config(REPO_ROOT / "configs" / "splay.toml")
    fam = load_config(REPO_ROOT / "configs" / "families.toml")
    assert splay.poses.splay and not fam.poses.splay
    assert list(fam.poses.families) == ["curl", "spread", "pinch", "grasp"]


@pytest.mark.parametrize("raw, key", [
    ({"poses": {"splay": 1}}, "poses.splay"),
    ({"poses": {"splay_scale": 1.5}}, "poses.splay_scale"),
    ({"poses": {"families": {"peace_sign": 3}}}, "poses.families.peace_sign"),
    ({"poses": {"families": {"curl": -1}}}, "poses.families.curl"),
    ({"poses": {"families": {"curl": 2.5}}}, "poses.families.curl"),
    ({"poses": {"families": 3}}, "poses.families"),
])
def test_pose_options_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_from_dict(raw)


def test_family_order_is_the_documented_one():
    cfg = config_from_dict({"poses": {"families": {"grasp": 2, "curl": 3, "pinch": 0}}})
    assert list(cfg.poses.families.items()) == [("curl", 3), ("grasp", 2)]
    assert config_from_dict({}) == Config()


def test_constrain_keeps_limits_and_never_converges():
    lo = np.array([S.SPLAY_LIMITS_DEG[f][0] for f in S.FINGERS])
    hi = np.array([S.SPLAY_LIMITS_DEG[f][1] for f in S.FINGERS])
    rng = np.random.default_rng(0)
    for _ in range(500):
        scale = rng.uniform(0, 1, 5)
        out = S.constrain(rng.uniform(-30, 30, 5), lo * scale, hi * scale)
        assert np.all(out >= lo * scale - 1e-9) and np.all(out <= hi * scale + 1e-9)
        assert np.all(np.diff(out) <= 1e-9)  # thumb >= index >= middle >= ring >= little


def test_splay_shrinks_with_flexion_and_is_seeded():
    assert np.allclose(S.limit_scale([0, 45, 90, 120], 1.0), [0, 1, 0.5, 0, 0])
    a = S.draw_splay(np.random.default_rng(np.random.SeedSequence([0, S.SPLAY_STREAM, 7])), np.ones(5))
    b = S.draw_splay(np.random.default_rng(np.random.SeedSequence([0, S.SPLAY_STREAM, 7])), np.ones(5))
    assert np.array_equal(a, b) and a[1] >= 0 >= a[4]
    assert np.allclose(S.draw_splay(np.random.default_rng(1), np.zeros(5)), 0)  # a fist has no splay


@pytest.fixture(scope="module")
def splayed(hand, prepared):
    table = P.build_pose_table(hand)
    return S.splay_pose_table(hand, table, seed=0)


def test_splayed_table_keeps_ids_groups_and_spreads_the_open_hand(hand, prepared, splayed):
    from datagen.hand import forward_kinematics

    assert np.array_equal(splayed.ids, prepared.ids) and np.array_equal(splayed.canonical, prepared.canonical)
    dup = np.nonzero(prepared.canonical != prepared.ids)[0]
    # Identical up to slerp rounding, as in the paper table (same splay for the same canonical pose).
    assert len(dup) == 285 and np.allclose(splayed.rotations[dup], splayed.rotations[prepared.canonical[dup]], atol=1e-6)
    # Thumb and index move radially (+x), little ulnar, relative to the paper's open hand.
    T0 = forward_kinematics(hand.rig, prepared.rotations[[0]])[0]
    T1 = forward_kinematics(hand.rig, splayed.rotations[[0]])[0]
    tip = lambda T, f: (T[hand.rig.chains[f][2]] @ np.r_[hand.rig.tails[hand.rig.chains[f][2]], 1])[:3]  # noqa: E731
    assert tip(T1, "index")[0] > tip(T0, "index")[0] and tip(T1, "little")[0] < tip(T0, "little")[0]
    # Abduction is in the palm plane: the flexion of the fist's fingers is kept.
    assert np.allclose(np.linalg.det(splayed.rotations), 1)


def test_splayed_poses_do_not_penetrate(hand, prepared, splayed):
    from datagen.hand import forward_kinematics

    a = prepared.asset
    checker = PenetrationChecker(a.dense_faces, a.dense_part, a.dense(a.rest_base_vertices))
    ids = list(range(32)) + list(range(32, 1520, 53))
    V = hand.skin(forward_kinematics(hand.rig, splayed.rotations[ids]))
    worst = max(max((d for *_, d, _ in checker.pose_penetration(a.dense(v))), default=0.0) for v in V)
    assert worst < 0.002


def test_family_rows_are_their_own_pose_groups():
    from datagen.dataset.pack import pose_groups

    pa = np.r_[np.arange(32), [3, 1], [1520, 1521]]
    pb = np.r_[np.arange(32), [5, 7], [1520, 1521]]
    t = np.r_[np.zeros(32), [0.5, 0.5], [0, 0]]
    state = P.finger_states(pa, pb, t)
    assert np.isnan(state[-2:]).all() and not np.isnan(state[:-2]).any()
    ids = np.r_[np.arange(34), [1520, 1521]]
    groups = pose_groups({"ids": ids, "pose_a": pa, "pose_b": pb, "t": t})
    assert list(groups[-2:]) == [1520, 1521]  # the dataset's pose groups (pack) agree
    assert groups[32] == groups[33]  # 3 -> 5 and 1 -> 7 meet at t = 1/2, as before


def test_families_are_seeded_within_limits_and_checked(hand, prepared):
    from datagen.hand import forward_kinematics
    from datagen.poses.families import ACCEPT_DEPTH_M, append_families

    table = P.build_pose_table(hand)
    fam = {"curl": 1, "spread": 1, "pinch": 1, "grasp": 1}
    out = append_families(hand, prepared.asset, table, fam, seed=3)
    again = append_families(hand, prepared.asset, table, {"curl": 1, "spread": 1}, seed=3)
    assert np.array_equal(out.ids, np.arange(1524)) and np.array_equal(out.rotations[:1520], table.rotations)
    assert np.array_equal(out.canonical[:1520], table.canonical) and list(out.canonical[1520:]) == [1520, 1521, 1522,
                                                                                                     1523]
    assert np.array_equal(again.rotations[1520:], out.rotations[1520:1522])  # a pose's draw is its id's
    a = prepared.asset
    checker = PenetrationChecker(a.dense_faces, a.dense_part, a.dense(a.rest_base_vertices))
    V = hand.skin(forward_kinematics(hand.rig, out.rotations[1520:]))
    for v in V:
        assert max((d for *_, d, _ in checker.pose_penetration(a.dense(v))), default=0.0) <= ACCEPT_DEPTH_M + 1e-9
