"""Hand shapes (issue 13, part 1): [hand.shape] draws, the shaped pose table, shape labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datagen.config import ConfigError, config_from_dict
from datagen.hand.shape import BAND_EDGES_MM, draw_phenotypes, hand_measures, shape_band, shape_record

NAMES = ("gender", "age", "muscle", "weight", "height", "proportions")
BASE = {n: 0.5 for n in NAMES}


def test_shape_keys_validated_naming_the_key_and_off_by_default():
    cfg = config_from_dict({})
    assert cfg.hand.shape == {}
    from datagen.config import canonical_dict

    assert "shape" not in canonical_dict(cfg.to_dict())["hand"]  # off: existing digests and cache keys hold
    on = config_from_dict({"hand": {"shape": {"height": [0.3, 0.7], "gender": [0, 1]}}})
    assert list(on.hand.shape) == ["gender", "height"]  # the model's phenotype order (the draw order)
    assert on.hand.shape["height"] == (0.3, 0.7) and on.digest("hand") != cfg.digest("hand")
    for bad, key in (({"size": [0, 1]}, "hand.shape.size"), ({"height": [0.2, 1.5]}, r"hand.shape.height\[1\]"),
                     ({"height": [0.7, 0.3]}, "hand.shape.height"), ({"height": 0.5}, "hand.shape.height")):
        with pytest.raises(ConfigError, match=key):
            config_from_dict({"hand": {"shape": bad}})
    with pytest.raises(ConfigError, match="hand.shape"):
        config_from_dict({"hand": {"shape": [0, 1]}})
    with pytest.raises(ConfigError, match="poses.families"):
        config_from_dict({"hand": {"shape": {"height": [0.3, 0.7]}}, "poses": {"families": {"curl": 4}}})


def test_shape_draws_are_per_canonical_pose_seeded_and_independent_per_phenotype():
    canonical = np.array([0, 1, 1, 3, 0, 5])
    ranges = {"gender": (0.0, 1.0), "height": (0.3, 0.7)}
    a = draw_phenotypes(canonical, 0, NAMES, BASE, ranges)
    assert np.array_equal(a, draw_phenotypes(canonical, 0, NAMES, BASE, ranges))  # deterministic
    assert np.array_equal(a[1], a[2]) and np.array_equal(a[0], a[4])  # identical poses, one hand
    assert not np.array_equal(a[0], a[3])
    assert not np.array_equal(a, draw_phenotypes(canonical, 1, NAMES, BASE, ranges))  # the seed matters
    g, h = NAMES.index("gender"), NAMES.index("height")
    assert (a[:, h] >= 0.3).all() and (a[:, h] <= 0.7).all()
    assert (a[:, [1, 2, 3, 5]] == 0.5).all()  # phenotypes without a range keep [hand.phenotype]
    # a pose's draw does not depend on which other poses are drawn, nor on other phenotypes' ranges
    assert np.array_equal(draw_phenotypes(canonical[3:4], 0, NAMES, BASE, ranges)[0], a[3])
    wider = draw_phenotypes(canonical, 0, NAMES, BASE, {**ranges, "muscle": (0.0, 1.0)})
    assert np.array_equal(wider[:, [g, h]], a[:, [g, h]])


def test_bands_and_records():
    lo, hi = BAND_EDGES_MM
    assert [shape_band(x / 1000) for x in (lo - 1, lo + 1, hi - 1, hi + 1)] == ["small", "medium", "medium", "large"]
    rec = shape_record(["gender", "height"], [0.25, 0.5], 0.19, 0.065)
    assert rec == {"phenotype": {"gender": 0.25, "height": 0.5}, "band": "large", "hand_length_m": 0.19,
                   "palm_width_m": 0.065}


@pytest.fixture(scope="module")
def shaped(hand, prepared, config):
    """A few rows of the shaped table (the whole one is built by `python -m datagen.poses`)."""
    from datagen.poses.shapes import build_shaped_table

    cfg = config_from_dict({"hand": {"shape": {"gender": [0, 1], "height": [0.3, 0.7]}}})
    ids = [0, 5, 31, 32, 33, 100]
    ids += [int(i) for i in np.nonzero(prepared.canonical != np.arange(len(prepared.ids)))[0][:1]]  # a repeat
    ids.append(int(prepared.canonical[ids[-1]]))  # and the pose it repeats
    return ids, build_shaped_table(hand, prepared.asset, cfg, NAMES, pose_ids=ids)


def test_shaped_poses_keypoints_on_the_shaped_rig_in_its_own_frame(shaped, prepared):
    ids, st = shaped
    a = prepared.asset
    assert list(st.table.ids) == ids
    lengths = st.shape_measures[:, 0]
    assert lengths.std() > 0.003  # the hands differ (mm-scale spread)
    for row, pid in enumerate(ids):
        kp, V = st.keypoints[row].astype(np.float64), st.base_vertices[row].astype(np.float64)
        dense = a.dense(V)
        # its own hand frame: origin at its wrist keypoint (the wrist cap's skin follows the thumb by
        # up to 13 um in the one-hand table too)
        assert np.allclose(kp[0], 0, atol=3e-5)
        assert np.allclose(kp[9][[0, 2]], 0, atol=1e-6)  # +y through its middle MCP (palm fixed)
        assert np.allclose(kp[[4, 8, 12, 16, 20]], a.keypoints(np.zeros((len(a.rest_heads), 3)), dense)[[4, 8, 12, 16, 20]],
                           atol=1e-6)  # fingertips: the asset's skin points on this mesh
        if pid != prepared.canonical[pid]:
            twin = ids.index(int(prepared.canonical[pid]))
            assert np.array_equal(st.base_vertices[row], st.base_vertices[twin])  # identical poses, one hand
    # The joint keypoints are the shaped rig's joints: the MCP-PIP distance is that shape's bone
    # length, the same in every pose of that hand, and not the default hand's.
    bone = np.linalg.norm(st.keypoints[:, 10] - st.keypoints[:, 9], axis=1)
    from datagen.poses.shapes import MEASURE_NAMES

    assert np.allclose(bone, st.shape_measures[:, MEASURE_NAMES.index("middle_1_m")], atol=1e-5)
    assert np.ptp(bone) > 1e-3


def test_shape_at_the_default_phenotype_is_the_paper_table(hand, prepared):
    """A zero-width range at [hand.phenotype] reproduces the one-hand table (same construction)."""
    from datagen.poses.shapes import build_shaped_table

    cfg = config_from_dict({"hand": {"shape": {"height": [0.5, 0.5]}}})
    ids = [0, 31, 200, 1519]
    st = build_shaped_table(hand, prepared.asset, cfg, NAMES, pose_ids=ids)
    assert np.abs(st.base_vertices - prepared.base_vertices[ids]).max() < 1e-6
    assert np.abs(st.keypoints - prepared.keypoints[ids]).max() < 1e-6
    m = hand_measures(prepared.keypoints[0])
    assert abs(st.shape_measures[0, 0] - m["hand_length_m"]) < 1e-6


def test_shapes_with_splay_splay_each_shaped_hand_like_the_one_hand_table(hand, prepared):
    """[poses] splay with [hand.shape]: the same per-canonical-pose abduction, on each pose's own hand;
    at a zero-width range it is the splayed one-hand table."""
    from datagen.poses.construction import build_pose_table, pose_meshes
    from datagen.poses.shapes import _rows, build_shaped_table
    from datagen.poses.splay import splay_pose_table

    ids = [0, 31, 200, 1519]
    flat = config_from_dict({"hand": {"shape": {"height": [0.5, 0.5]}}, "poses": {"splay": True}})
    st = build_shaped_table(hand, prepared.asset, flat, NAMES, pose_ids=ids)
    splayed = _rows(splay_pose_table(hand, build_pose_table(hand, 3), flat.seed), np.asarray(ids))
    assert np.abs(st.table.rotations - splayed.rotations).max() < 1e-9
    base, kps = pose_meshes(hand, prepared.asset, splayed)
    assert np.abs(st.base_vertices - base).max() < 1e-6 and np.abs(st.keypoints - kps).max() < 1e-6
    assert np.abs(st.keypoints - prepared.keypoints[ids]).max() > 1e-3  # the splay moved the fingers
    shaped = build_shaped_table(hand, prepared.asset, config_from_dict(
        {"hand": {"shape": {"height": [0.3, 0.7]}}, "poses": {"splay": True}}), NAMES, pose_ids=ids)
    assert np.abs(shaped.keypoints - st.keypoints).max() > 1e-3  # other hands, same abduction draws


def test_shape_fields_travel_json_to_shards_to_reader(tmp_path):
    from support.toy_data import make_render_dir, run_pack

    from datagen.dataset.reader import HandShards
    from datagen.hand.shape import BAND_NAMES

    render = make_render_dir(tmp_path / "render", n_poses=3, n_views=2, shapes=True)
    run_pack(render, tmp_path / "ds")
    ds = HandShards(tmp_path / "ds")
    poses = np.load(render / "poses.npz")
    assert ds.tables.shape_names == ["gender", "height"]
    for i in range(len(ds)):
        s = ds.read_sample(i)
        lab = json.loads((render / "items" / f"{s['pose_id']:05d}" / f"v{s['view_id']:03d}.json").read_text())
        assert np.allclose(s["shape"], list(lab["shape"]["phenotype"].values()), atol=1e-6)
        assert np.allclose(s["shape"], poses["shape_values"][s["pose_id"]], atol=1e-6)
        assert BAND_NAMES[s["shape_band"]] == lab["shape"]["band"]
    assert {BAND_NAMES[ds.read_sample(i)["shape_band"]] for i in range(len(ds))} == set(BAND_NAMES)
    from datagen.inspect.contact_sheet import tile_caption

    assert f"{lab['shape']['hand_length_m'] * 1e3:.0f}mm" in tile_caption(lab)  # the contact sheet names the hand
    # A label whose shape disagrees with poses.npz is refused, naming the field.
    p = render / "items" / "00001" / "v000.json"
    lab = json.loads(p.read_text())
    lab["shape"]["phenotype"]["height"] += 0.1
    p.write_text(json.dumps(lab))
    with pytest.raises(Exception, match="shape"):
        run_pack(render, tmp_path / "ds2")
    # Without shapes the reader returns no shape fields (datasets from before are unchanged).
    plain = make_render_dir(tmp_path / "plain", n_poses=3, n_views=2)
    run_pack(plain, tmp_path / "ds3")
    assert "shape" not in HandShards(tmp_path / "ds3").read_sample(0)


def test_shaped_poses_stay_within_the_penetration_limit(shaped, prepared):
    """A hand that would push a finger > 2 mm into another part is redrawn (datagen.poses.shapes)."""
    from datagen.poses.collision import PenetrationChecker
    from datagen.poses.shapes import PENETRATION_LIMIT_M

    a = prepared.asset
    checker = PenetrationChecker(a.dense_faces, a.dense_part, a.dense(a.rest_base_vertices))
    _, st = shaped
    for V in st.base_vertices:
        found = checker.pose_penetration(a.dense(V.astype(np.float64)))
        assert max((d for _, _, d, _ in found), default=0.0) <= PENETRATION_LIMIT_M


def test_shape_report_needs_shapes_and_says_so(capsys):
    from datagen.poses.__main__ import main

    assert main(["--shapes"]) == 2
    assert "[hand.shape]" in capsys.readouterr().err
