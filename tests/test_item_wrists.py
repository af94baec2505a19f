"""Per-item wrists ([hand] wrist_draw = "item") in the packed dataset: every 3D label a reader
gets is the mesh that was rendered.

One real render (bpy, 64 px, right and left items, the forearm turned per item) -> pack ->
verify -> reader: the reader's dense mesh rasterises to the rendered silhouette, its 778-vertex
mesh is not the pose table's straight arm near the wrist, its joints stay the pose's; verify
catches angles outside the config's ranges, pack names a garbled `wrist` block.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from support.renders import write_render_config
from support.toy_data import rehash_manifest

REPO = Path(__file__).resolve().parent.parent
SIZE = 64
POSES = (0, 700)
WRIST = ('[hand]\nforearm = true\nwrist_draw = "item"\nleft_share = 0.5\nwrist_flexion_deg = [-60.0, 30.0]\n'
         'wrist_deviation_deg = [-10.0, 20.0]\n')


def _items(cfg) -> list[tuple[int, int]]:
    """Two right and two left items of POSES among views that show the hand's side (lat 1-2)."""
    from datagen.scene.items import make_spec

    picked = {"right": [], "left": []}
    for v in range(36, 108, 7):
        for p in POSES:
            hand = make_spec(cfg, 1, p, v, 216).handedness
            if len(picked[hand]) < 2 and all(q != p for q, _ in picked[hand]):
                picked[hand].append((p, v))
    assert len(picked["right"]) == len(picked["left"]) == 2, picked
    return sorted(picked["right"] + picked["left"])


@pytest.fixture(scope="module")
def wrist_render(tmp_path_factory, cache_dir):
    from datagen.config import load_config

    d = tmp_path_factory.mktemp("item_wrists")
    cfg_path = write_render_config(d / "c.toml", size=SIZE, samples=1, denoise=False)
    cfg_path.write_text(cfg_path.read_text() + WRIST)
    cfg = load_config(cfg_path)
    items = _items(cfg)
    (d / "items.txt").write_text("".join(f"{p} {v}\n" for p, v in items))
    render = d / "render"
    r = subprocess.run([sys.executable, str(REPO / "blender_scripts" / "render.py"), "--config", str(cfg_path),
                        "--out", str(render), "--items-file", str(d / "items.txt"), "--cache", str(cache_dir),
                        "--no-progress"], capture_output=True, text=True, cwd=REPO, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return cfg, render, items


@pytest.fixture(scope="module")
def wrist_ds(wrist_render, cache_dir, tmp_path_factory):
    from datagen.dataset.pack import pack

    _, render, _ = wrist_render
    out = tmp_path_factory.mktemp("item_wrists_ds") / "ds"
    pack(render, out, cache_dir=cache_dir, progress=False, log=lambda *_: None)
    return out


@pytest.mark.blender
@pytest.mark.slow
def test_reader_meshes_are_the_rendered_items(wrist_render, wrist_ds, cache_dir):
    from datagen.dataset.reader import HandShards, to_camera
    from datagen.dataset.verify import verify
    from datagen.geometry.mirror import reverse_winding
    from datagen.geometry.raster import rasterize
    from datagen.poses.tables import ensure_tables
    from datagen.poses.wrist import forearm_rotation

    cfg, render, items = wrist_render
    rep = verify(wrist_ds)
    assert rep.ok, rep.text()
    with h5py.File(wrist_ds / "tables.h5", "r") as f:  # the straight arm in the tables, the turn in arm/
        assert np.allclose(f["arm/pose_rotation"][()], np.eye(3)) and f["arm/offsets"].ndim == 2
    ds = HandShards(wrist_ds, fields=("mask", "ids", "joints_cam", "vertices_cam", "mano_joints_cam",
                                      "dense_vertices_cam", "K", "R", "t", "wrist_deg"))
    tb = ds.tables
    assert len(ds) == len(items) and tb.arm is not None
    hand_tables = ensure_tables(cfg, cache_dir)  # the renderer's own re-skinning (HandTables.item_base)
    hands, off_straight = set(), 0
    for i in range(len(ds)):
        s = ds.read_sample(i)
        p, v, left = s["pose_id"], s["view_id"], bool(s["handedness"])
        hands.add(left)
        lab = json.loads((render / f"items/{p:05d}/v{v:03d}.json").read_text())
        assert np.array_equal(s["wrist_deg"], np.float32([lab["wrist"]["flexion_deg"], lab["wrist"]["deviation_deg"]]))
        K = s["K"].astype(np.float64)
        faces = reverse_winding(tb.dense_faces) if left else tb.dense_faces
        # the dense mesh the reader gives is the rendered one: its silhouette is the mask
        dense = s["dense_vertices_cam"].astype(np.float64)
        got = rasterize(dense, faces, K, SIZE, SIZE).face >= 0
        iou = (got & s["mask"]).sum() / (got | s["mask"]).sum()
        assert iou > 0.999, (p, v, iou)
        base = hand_tables.item_base(p, forearm_rotation(lab["wrist"]["flexion_deg"], lab["wrist"]["deviation_deg"]))
        ref = to_camera(hand_tables.dense(base), s["R"], s["t"], left)
        assert np.abs(ref - s["dense_vertices_cam"]).max() < 2e-6
        # ... and not the pose table's straight arm (so this test can fail)
        straight = to_camera(tb.dense_vertices(p), s["R"], s["t"], left).astype(np.float64)
        was = rasterize(straight, faces, K, SIZE, SIZE).face >= 0
        off_straight += int((was != s["mask"]).sum())
        assert (was != s["mask"]).sum() > (got != s["mask"]).sum(), (p, v)
        # the 778-vertex mesh moves near the wrist (open778 keeps the wrist region), the joints do not
        row = tb.pose_row[p]
        V0 = to_camera(tb.mano_vertices[row], s["R"], s["t"], left)
        moved = np.linalg.norm(s["vertices_cam"] - V0, axis=1)
        assert moved.max() > 1e-3, (p, v, moved.max())
        near = np.linalg.norm(V0 - s["joints_cam"][0], axis=1) < 0.06  # the wrist region (<= 48 mm measured)
        assert (moved > 1e-6).sum() > 0 and (moved[~near] < 1e-6).all()
        assert np.allclose(s["mano_joints_cam"], tb.mano["joint_regressor"] @ s["vertices_cam"], atol=1e-6)
        assert np.allclose(s["joints_cam"], to_camera(tb.keypoints[row], s["R"], s["t"], left))
    assert hands == {False, True} and off_straight > 50, off_straight
    ds.close()


@pytest.mark.blender
@pytest.mark.slow
def test_verify_and_pack_check_the_wrist(wrist_render, wrist_ds, cache_dir, tmp_path):
    from datagen.dataset.pack import PackError, pack
    from datagen.dataset.reader import ShardDataset
    from datagen.dataset.verify import verify

    cfg, render, items = wrist_render
    # verify: an angle outside the config's range, a sample without its angles
    bad = tmp_path / "bad"
    shutil.copytree(wrist_ds, bad)
    shard = sorted(bad.glob("shard-*.h5"))[0]
    with h5py.File(shard, "r+") as f:
        w = f["wrist_deg"][()]
        w[0, 0], w[1] = 45.0, np.nan
        f["wrist_deg"][...] = w
    rehash_manifest(bad, shard.name)
    rep = verify(bad, quick=True)
    text = rep.text()
    assert "wrist" in rep.problems and "flexion_deg 45.0 is outside [hand] wrist_flexion_deg" in text
    assert "finite angles expected" in text
    # ... and with them the meshes the reader gives are not the rendered ones: the mesh check sees it
    full = verify(bad)
    assert {"wrist", "mesh vs silhouette"} <= set(full.problems), full.text()
    assert all("row 0 " in m or "row 1 " in m for m in full.problems["mesh vs silhouette"])
    # an older shard (no wrist_deg column) reads as the pose table's wrist: NaN, straight-arm meshes
    with h5py.File(shard, "r+") as f:
        del f["wrist_deg"]
    s = ShardDataset(bad, fields=("ids", "vertices_cam", "R", "t", "wrist_deg")).read_sample(0)
    assert np.isnan(s["wrist_deg"]).all()
    # pack: a garbled wrist block is a bad item naming the field; skipped with --skip-bad
    src = tmp_path / "render"
    shutil.copytree(render, src)
    p, v = items[0]
    js = src / f"items/{p:05d}/v{v:03d}.json"
    lab = json.loads(js.read_text())
    del lab["wrist"]["flexion_deg"]
    js.write_text(json.dumps(lab))
    with pytest.raises(PackError, match=r"wrist\.flexion_deg"):
        pack(src, tmp_path / "ds2", cache_dir=cache_dir, progress=False, log=lambda *_: None)
    del lab["wrist"]
    js.write_text(json.dumps(lab))
    m = pack(src, tmp_path / "ds3", cache_dir=cache_dir, progress=False, log=lambda *_: None, skip_bad=True)
    assert m["counts"]["samples"] == len(items) - 1 and "'wrist' missing" in m["skipped"][0]["reason"]


@pytest.mark.blender
@pytest.mark.slow
def test_arm_skin_is_the_renderers_reskinning_for_every_mesh(wrist_render, cache_dir):
    """ArmSkin (the reader's) against HandTables.item_base (the renderer's), on the forearm hand:
    one hand (offsets (n, 3)) and one hand per pose ([hand.shape]: offsets (P, n, 3)), a second
    778 mapping (the MANO_LEFT path), the regressed joints."""
    import scipy.sparse as sp

    from datagen.dataset.reader import ArmSkin
    from datagen.poses.tables import ensure_tables
    from datagen.poses.wrist import forearm_rotation

    cfg, _, _ = wrist_render
    ht = ensure_tables(cfg, cache_dir)
    D = sp.csr_matrix((ht.dense_data, ht.dense_indices, ht.dense_indptr), shape=(ht.n_dense, len(ht.rest_base_vertices)))
    rng = np.random.default_rng(0)
    mappings = {}
    for name in ("mano", "mano_left"):  # row-stochastic, wrist region included, like a 778 mapping
        cols = rng.integers(0, ht.n_dense, (778, 3))
        M = sp.csr_matrix((np.full(778 * 3, 1 / 3), (np.repeat(np.arange(778), 3), cols.ravel())), shape=(778, ht.n_dense))
        mappings[name] = (M, rng.random((21, 778)) / 778)
    rows = np.array([0, 700])
    bone = ht.forearm_bone
    one = ArmSkin(ht.arm_rows, ht.arm_weights, ht.rotations[rows, bone], ht.arm_offsets(0), D, mappings)
    # per pose hands: other offsets per pose (as a shaped table has), the renderer reads the same table
    per_pose = np.stack([ht.arm_offsets(0) * s for s in (1.0, 1.1)]).astype(np.float32)
    shaped = ArmSkin(ht.arm_rows, ht.arm_weights, ht.rotations[rows, bone], per_pose, D, mappings)
    table = np.zeros((ht.n_poses, *per_pose.shape[1:]), np.float32)
    table[rows] = per_pose
    for skin, arm_table in ((one, None), (shaped, table)):
        ht.arm_offset_table = arm_table
        for r, p in enumerate(rows):
            w = np.array([-41.5, 13.25])
            base = ht.item_base(int(p), forearm_rotation(*w))
            rot = skin.rotation(w)
            dense_pose = ht.dense_vertices(int(p))
            want = ht.dense(base)
            assert np.abs(skin.dense(r, rot, dense_pose) - want).max() < 1e-6
            assert np.abs(want - dense_pose).max() > 0.01  # the arm moved (centimetres)
            for name, (M, J) in mappings.items():
                V, Jv = skin.mesh(name, r, rot, M @ dense_pose, J @ (M @ dense_pose))
                assert np.abs(V - M @ want).max() < 1e-6 and np.abs(Jv - J @ (M @ want)).max() < 1e-6
    ht.arm_offset_table = None
