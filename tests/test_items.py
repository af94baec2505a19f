"""Item selections, per-item seeds and draws, output paths, numpy-only prepared tables."""

import json

import numpy as np
import pytest

from datagen.config import config_from_dict, load_config
from datagen.poses.tables import PreparedMissing, ensure_tables, load_tables
from datagen.render.selection import (
    SelectionError,
    parse_ids,
    parse_item_line,
    parse_shard,
    read_items_file,
    select,
    shard_slice,
)
from datagen.render.layout import is_done, item_paths
from datagen.scene.items import make_spec


def test_parse_ids_forms():
    assert parse_ids("all", 5, "pose").tolist() == [0, 1, 2, 3, 4]
    assert parse_ids("3", 5, "pose").tolist() == [3]
    assert parse_ids("0-2, 4", 5, "pose").tolist() == [0, 1, 2, 4]
    assert parse_ids("4,1-2,2", 5, "pose").tolist() == [1, 2, 4]  # sorted, unique


@pytest.mark.parametrize("text, words", [("1600", ["1600", "0..1519"]), ("5-3", ["backwards"]),
                                         ("a-b", ["cannot parse"]), ("1-1520", ["1520", "out of range"]),
                                         ("-3", ["cannot parse"])])
def test_parse_ids_errors_name_the_token(text, words):
    with pytest.raises(SelectionError) as e:
        parse_ids(text, 1520, "pose")
    for w in words:
        assert w in str(e.value)


def test_select_is_pose_major():
    items = select(4, 3, "1-2", "0,2")
    assert items == [(1, 0), (1, 2), (2, 0), (2, 2)]


@pytest.mark.parametrize("n", [1, 3, 7, 40])
def test_shards_partition_the_selection_contiguously(n):
    full = select(10, 7, "all", "all")
    parts = [select(10, 7, "all", "all", shard=f"{k}/{n}") for k in range(n)]
    assert sum(parts, []) == full  # disjoint, complete, in order
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("bad", ["3/3", "1", "a/b", "0/0", "-1/4"])
def test_bad_shard(bad):
    with pytest.raises(SelectionError):
        parse_shard(bad)


def test_item_lines_and_files(tmp_path):
    assert parse_item_line("70000", 1520, 216) == divmod(70000, 216)
    assert parse_item_line(" 324 16 # comment", 1520, 216) == (324, 16)
    assert parse_item_line("324,16", 1520, 216) == (324, 16)
    assert parse_item_line('{"pose_id": 5, "view_id": 7}', 1520, 216) == (5, 7)
    assert parse_item_line('{"item_id": 1087}', 1520, 216) == (5, 7)
    assert parse_item_line("   # only a comment", 1520, 216) is None
    with pytest.raises(SelectionError, match="view id 216"):
        parse_item_line("3 216", 1520, 216)
    with pytest.raises(SelectionError, match="pose id"):
        parse_item_line(str(1520 * 216), 1520, 216)
    f = tmp_path / "items.txt"
    f.write_text("# two poses\n5 7\n1087\n2 1\n\n")
    assert read_items_file(f, 1520, 216) == [(2, 1), (5, 7)]
    f.write_text("5 7 9\n")
    with pytest.raises(SelectionError, match=r"items.txt:1"):
        read_items_file(f, 1520, 216)
    with pytest.raises(SelectionError, match="no items"):
        f.write_text("# nothing\n")
        read_items_file(f, 1520, 216)


def test_specs_are_seeded_per_item_and_within_ranges():
    cfg = load_config()
    a = make_spec(cfg, 8, 42, 123, 216)
    assert a == make_spec(cfg, 8, 42, 123, 216)  # deterministic
    assert a.item_id == 42 * 216 + 123 and a.seed == (cfg.seed, 42, 123)
    specs = [make_spec(cfg, 8, p, v, 216) for p in range(0, 1520, 97) for v in range(0, 216, 31)]
    assert len({(s.hdri_index, round(s.hdri_rotation_deg, 9)) for s in specs}) > len(specs) * 0.9
    for s in specs:
        assert 0 <= s.hdri_index < 8
        assert cfg.hdri.rotation_deg[0] <= s.hdri_rotation_deg <= cfg.hdri.rotation_deg[1]
        assert cfg.hdri.strength[0] <= s.hdri_strength <= cfg.hdri.strength[1]
        assert cfg.skin.melanin[0] <= s.skin.melanin <= cfg.skin.melanin[1]
        assert cfg.skin.roughness[0] <= s.skin.roughness <= cfg.skin.roughness[1]
        assert 0 <= s.cycles_seed < 2 ** 31
    # every HDRI gets used, and the skin tones span the range
    assert {s.hdri_index for s in specs} == set(range(8))
    mel = np.array([s.skin.melanin for s in specs])
    assert mel.min() < 0.1 and mel.max() > 0.9


def test_streams_are_independent():
    cfg = load_config()
    a, b = make_spec(cfg, 8, 3, 4, 216), make_spec(cfg, 30, 3, 4, 216)
    assert a.skin == b.skin and a.cycles_seed == b.cycles_seed  # more HDRIs change only the env draw
    other = config_from_dict({"seed": 1})
    c = make_spec(other, 8, 3, 4, 216)
    assert c.skin != a.skin and c.cycles_seed != a.cycles_seed  # the config seed matters


def test_paths_and_done(tmp_path):
    p = item_paths(tmp_path, 42, 7)
    assert p.rgb == tmp_path / "items" / "00042" / "v007.png"
    assert p.mask.name == "v007.mask.png" and p.depth.name == "v007.depth.npy" and p.label.name == "v007.json"
    assert not is_done(tmp_path, 42, 7)
    p.label.parent.mkdir(parents=True)
    p.rgb.write_bytes(b"x")
    assert not is_done(tmp_path, 42, 7)  # only the label marks completion
    p.label.write_text(json.dumps({}))
    assert is_done(tmp_path, 42, 7)


def test_numpy_tables_match_prepared(config, prepared, cache_dir):
    tables = ensure_tables(config, cache_dir)
    assert tables.key == prepared.key and tables.n_poses == 1520
    for pose in (0, 31, 1000):
        assert np.allclose(tables.dense_vertices(pose), prepared.dense_vertices(pose), atol=1e-12)
    assert np.array_equal(tables.dense_faces, prepared.asset.dense_faces)
    assert np.array_equal(tables.keypoints, prepared.keypoints)
    # Blender's Python follows the index the venv side wrote; it never builds
    again = ensure_tables(config, cache_dir, can_build=False)
    assert again.key == tables.key
    loaded = load_tables(tables.hand_file, tables.poses_file)
    assert np.array_equal(loaded.base_vertices, tables.base_vertices)


def test_missing_cache_message_names_the_command(config, tmp_path):
    with pytest.raises(PreparedMissing) as e:
        ensure_tables(config, tmp_path / "empty", can_build=False, config_arg="my.toml")
    assert "--prepare-only" in str(e.value) and "my.toml" in str(e.value)


def test_shard_slice_small():
    assert shard_slice(list(range(5)), 0, 2) == [0, 1] and shard_slice(list(range(5)), 1, 2) == [2, 3, 4]
