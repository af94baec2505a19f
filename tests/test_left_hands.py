"""Left hands ([hand] left_share): the mirrored right hand, rendered and labelled.

- the draw: a new child stream of the item seed, every other draw unchanged, none at share 0;
- the geometry: mirror + reversed winding keeps normals outward (kernel), labels of a left
  item are the mirror of the right item's 3D labels seen by the same camera;
- Cycles (one tiny scene): a left item's coverage and depth equal the labels rasterised from
  the mirrored mesh, and Cycles sees the mirrored mesh's front faces (not its inside).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from support.renders import write_render_config

REPO = Path(__file__).resolve().parent.parent


def _cfg(share: float):
    from datagen.config import Config, HandConfig

    return Config(hand=HandConfig(left_share=share))


def test_handedness_draw_leaves_every_other_draw_unchanged():
    from datagen.scene.items import make_spec

    off, half, all_left = _cfg(0.0), _cfg(0.5), _cfg(1.0)
    specs = [(make_spec(off, 9, p, v, 216), make_spec(half, 9, p, v, 216), make_spec(all_left, 9, p, v, 216))
             for p in range(0, 1520, 97) for v in range(0, 216, 23)]
    for a, b, c in specs:
        assert a.handedness == "right" and c.handedness == "left"
        assert dataclasses.replace(b, handedness="right") == a == dataclasses.replace(c, handedness="right")
    share = np.mean([b.left for _, b, _ in specs])
    assert 0.35 < share < 0.65, share
    assert make_spec(half, 9, 5, 7, 216) == make_spec(half, 9, 5, 7, 216)


def test_left_share_is_a_later_key_and_validated(tmp_path):
    from datagen.config import ConfigError, load_config, tables_config

    off, on = _cfg(0.0), _cfg(0.5)
    assert "left_share" not in str(off.digest()) and off.digest() == load_config(None).digest()
    assert on.digest() != off.digest()
    assert tables_config(on).digest("hand", "poses") == off.digest("hand", "poses")
    bad = tmp_path / "bad.toml"
    for value in ("1.5", "-0.1", '"half"'):
        bad.write_text(f"[hand]\nleft_share = {value}\n")
        with pytest.raises(ConfigError, match="left_share"):
            load_config(bad)


def test_mirrored_mesh_keeps_outward_normals_and_mirrors_the_labels(prepared, cache_dir):
    from datagen.cameras.hemisphere import views_for
    from datagen.config import load_config
    from datagen.geometry.mirror import mirror_points
    from datagen.geometry.normals import vertex_normals
    from datagen.labels.handedness import handed_mesh, handed_points
    from datagen.labels.visibility import compute_labels
    from datagen.poses.tables import ensure_tables

    cfg = load_config(None)
    tables = ensure_tables(cfg, cache_dir)
    views = views_for(cfg.cameras, tables)
    dense = tables.dense_vertices(700)
    vl, fl = handed_mesh(dense, tables.dense_faces, "left")
    # outward: the mirrored normals of the right mesh, per vertex
    assert np.allclose(vertex_normals(vl, fl), mirror_points(vertex_normals(dense, tables.dense_faces)), atol=1e-9)
    # signed volume keeps its sign (a mesh turned inside out would flip it)
    def volume(v, f):
        t = v[f]
        return np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6
    assert volume(vl, fl) == pytest.approx(volume(dense, tables.dense_faces), rel=1e-9) and volume(vl, fl) > 0
    kp = tables.keypoints[700]
    v = 100
    L = compute_labels(vl, fl, handed_points(kp, "left"), views.K, views.R[v], views.t[v], views.width, views.height)
    assert np.allclose(L.keypoints_cam, (kp * [-1, 1, 1]) @ views.R[v].T + views.t[v])
    assert L.mask.sum() > 500 and L.visible.sum() >= 5
    # the same camera sees another side of the mirrored hand: the thumb changes sides in the image
    R = compute_labels(dense, tables.dense_faces, kp, views.K, views.R[v], views.t[v], views.width, views.height)
    assert not np.allclose(L.keypoints_2d, R.keypoints_2d, atol=1.0)


@pytest.mark.blender
@pytest.mark.slow
def test_cycles_renders_the_mirrored_labels(tmp_path, cache_dir, prepared):
    """One tiny scene: a left item's Cycles coverage/depth vs the labels of the mirrored mesh,
    and Cycles' own front/back test on the hand's visible pixels, left and right."""
    import bpy

    from blender_scripts.scene import SceneRenderer
    from datagen.cameras.hemisphere import views_for
    from datagen.cameras.jitter import view_camera
    from datagen.config import load_config
    from datagen.labels.handedness import handed_mesh, handed_points
    from datagen.labels.visibility import compute_labels
    from datagen.poses.tables import ensure_tables
    from datagen.scene.hdri import discover
    from datagen.scene.items import make_spec

    cfg = load_config(write_render_config(tmp_path / "c.toml", size=96))
    tables = ensure_tables(cfg, cache_dir)
    views = views_for(cfg.cameras, tables)
    hdris, _ = discover(cfg.hdri.sources, REPO)
    renderer = SceneRenderer(cfg, tables, views, hdris[:1])
    mat = bpy.data.materials.new("backfacing")
    nt = SceneRenderer._node_tree(mat)
    out, em, geo = (nt.nodes.new(n) for n in ("ShaderNodeOutputMaterial", "ShaderNodeEmission", "ShaderNodeNewGeometry"))
    nt.links.new(geo.outputs["Backfacing"], em.inputs["Color"])
    nt.links.new(em.outputs["Emission"], out.inputs["Surface"])
    pose, view = 700, 150
    for hand in ("left", "right"):
        spec = dataclasses.replace(make_spec(cfg, 1, pose, view, len(views)), handedness=hand)
        alpha, cdepth = renderer.cycles_coverage_depth(spec, tmp_path)
        right, _ = renderer.item_mesh(spec, view_camera(views, view))  # the item's own arm
        dense, faces = handed_mesh(right, tables.dense_faces, hand)
        L = compute_labels(dense, faces, handed_points(tables.keypoints[pose], hand), views.K, views.R[view],
                           views.t[view], views.width, views.height, wrist_joint=tables.wrist_joint)
        cmask = alpha > 0.5
        iou = (cmask & L.mask).sum() / (cmask | L.mask).sum()
        inner = (alpha > 0.999) & L.mask
        diff = np.abs(cdepth[inner] - L.depth[inner])
        assert iou > 0.97, (hand, iou)
        assert np.median(diff) < 2e-4 and np.percentile(diff, 90) < 1e-3, hand
        back = renderer.render_linear(tmp_path / f"back_{hand}.exr", transparent=True, material=mat)
        seen = back[..., 3] > 0.999
        assert seen.sum() > 200
        # Cycles' Backfacing is 0 on every visible pixel (1 everywhere with the winding wrong)
        assert back[..., 0][seen].mean() < 0.01, (hand, back[..., 0][seen].mean())
        assert (renderer.hand.matrix_world.determinant() < 0) == (hand == "left")


def test_left_items_round_trip_json_shards_reader_verify(tmp_path):
    """JSON -> shards -> reader with left items: the reader's 3D labels are the mirrored hand's,
    they project to the stored 2D keypoints, verify passes and catches a wrong handedness."""
    import h5py

    from datagen.dataset import shards as S
    from datagen.dataset.reader import ShardDataset
    from datagen.dataset.verify import verify
    from datagen.geometry.projection import project
    from support.toy_data import make_render_dir, rehash_manifest, run_pack

    left = {(0, 1), (1, 0), (1, 3), (2, 2)}
    render = make_render_dir(tmp_path / "render", n_poses=3, n_views=4, left=left)
    out = tmp_path / "ds"
    run_pack(render, out)
    ds = ShardDataset(out, fields=("keypoints_2d", "joints_cam", "dense_vertices_cam", "K", "ids"))
    assert len(ds) == 12
    for i in range(len(ds)):
        s = ds.read_sample(i)
        lab = json.loads((render / "items" / f"{s['pose_id']:05d}" / f"v{s['view_id']:03d}.json").read_text())
        assert s["handedness"] == int((s["pose_id"], s["view_id"]) in left) == int(lab["handedness"] == "left")
        assert np.allclose(s["joints_cam"], lab["keypoints_3d_cam"], atol=2e-6)
        assert np.allclose(project(s["joints_cam"], s["K"]), s["keypoints_2d"], atol=1e-3)
    ds.close()
    from datagen.inspect.contact_sheet import make_sheet
    from datagen.inspect.preview import preview

    sheet, n = make_sheet(render, max_items=12)
    assert n == 12 and sheet.ndim == 3
    assert preview(out, tmp_path / "preview.png", n=4, index=4).exists()  # sample 4 = item (1, 0): left
    rep = verify(out)
    assert rep.ok, rep.text()
    # a shard that says "right" for a left item: the labels no longer match its 3D hand
    shard = out / "shard-00000.h5"
    with h5py.File(shard, "r+") as f:
        col = f["handedness"][()]
        del f["handedness"]
        f.create_dataset("handedness", data=np.zeros_like(col), fletcher32=True)
    rehash_manifest(out, shard.name)
    rep = verify(out)
    assert not rep.ok and "projected 3D joints" in rep.text()
    # a shard packed before the column existed reads as right hands (and verifies for right items)
    right = tmp_path / "ds_right"
    run_pack(make_render_dir(tmp_path / "render_r", n_poses=2, n_views=2), right)
    with h5py.File(right / "shard-00000.h5", "r+") as f:
        del f["handedness"]
    rehash_manifest(right, "shard-00000.h5")
    assert verify(right).ok
    old = ShardDataset(right)
    assert {old.read_sample(i)["handedness"] for i in range(4)} == {0}
    old.close()
    assert "handedness" in S.LATER_COLUMNS


@pytest.fixture(scope="module")
def left_ds(tmp_path_factory):
    """A real packed dataset of the toy hand with left and right items (6 poses x 6 views)."""
    from support.toy_data import make_render_dir, run_pack

    root = tmp_path_factory.mktemp("leftds")
    left = [(p, v) for p in range(6) for v in range(6) if (p + v) % 2]
    run_pack(make_render_dir(root / "render", n_poses=6, n_views=6, size=96, left=left), root / "ds")
    return root / "ds"


def _rotation_residual(a: np.ndarray, b: np.ndarray) -> float:
    """Largest residual (m) of the best proper similarity (no reflection) taking b onto a."""
    from datagen.geometry.alignment import umeyama

    s, R, t = umeyama(b, a)
    assert np.linalg.det(R) > 0 and abs(float(s) - 1) < 1e-3 or float(np.abs(float(s) * b @ R.T + t - a).max()) > 1e-3
    return float(np.abs(float(s) * b @ R.T + t - a).max())


def test_training_flips_left_samples_into_right_hands(left_ds):
    """data.left_hands = "flip": a left sample reaches the network as a right hand (its joints are
    the table's right hand under a proper rigid motion, and project onto the flipped image's
    keypoints); "keep" leaves it a left hand (only a reflection maps it to the table)."""
    from datagen.geometry.projection import project
    from train.data import ShardSource, flip_mode, flip_sample

    flip, keep = ShardSource(left_ds, "all", flip="left"), ShardSource(left_ds, "all", flip="none")
    assert flip_mode({"left_hands": "flip"}) == "left" and flip_mode({}) == "left"
    assert flip_mode({"left_hands": "keep"}) == "none"
    table = flip.ds.tables
    n_left = 0
    for i in range(len(flip)):
        a, b = flip.get(i), keep.get(i)
        right_kp = table.keypoints[table.pose_row[a["pose_id"]]].astype(np.float64)
        assert _rotation_residual(a["joints"], right_kp) < 1e-5
        if b["handedness"] == 1:
            n_left += 1
            assert a["flipped"] and not b["flipped"]
            assert _rotation_residual(b["joints"], right_kp) > 1e-3  # a left hand is no rotated right hand
            assert np.array_equal(a["image"], b["image"][:, ::-1]) and np.array_equal(a["mask"], b["mask"][:, ::-1])
            W = b["image"].shape[1]
            assert np.allclose(project(a["joints"], a["K"]), np.c_[W - project(b["joints"], b["K"])[:, 0],
                                                                   project(b["joints"], b["K"])[:, 1]], atol=1e-6)
            back = flip_sample(a)
            assert np.array_equal(back["image"], b["image"]) and np.allclose(back["joints"], b["joints"])
            assert np.allclose(back["K"], b["K"]) and not back["flipped"]
        else:
            assert not a["flipped"] and np.array_equal(a["image"], b["image"])
    assert n_left == 18


def test_evaluate_and_predict_take_left_hands(left_ds, tmp_path):
    """A model trained with flipped left hands: evaluate --hand auto returns left results for left
    samples in their own frame (metrics per handedness), and predict --hand left on a flipped
    image gives exactly the mirror of predict on the original."""
    import cv2

    from datagen.geometry.mirror import flip_image
    from train.cli import main as train_main
    from train.data import ShardSource
    from train.evaluate import main as eval_main
    from train.predict import main as predict_main

    out = tmp_path / "run"
    assert train_main(["--data", str(left_ds), "--out", str(out), "--encoder", "ghoststack", "--batch-size", "2",
                       "--workers", "0", "--split-fractions", "0.7", "0.3", "0", "--samples-per-epoch", "6",
                       "--milestones", "1", "--consistency-from-epoch", "1", "--val-every", "1", "--val-max", "8",
                       "--threads", "1", "--no-progress", "--epochs", "1"]) == 0
    assert 'left_hands = "flip"' in (out / "config.toml").read_text()
    val = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(val["left/pa_mpjpe_mm"]) and np.isfinite(val["right/pa_mpjpe_mm"])  # per hand
    ck = str(out / "model.pt")
    reports = {}
    for hand in ("auto", "right"):
        path = tmp_path / f"m_{hand}.json"
        assert eval_main(["--checkpoint", ck, "--split", "all", "--out", str(path), "--no-progress", "--no-chains",
                          "--batch-size", "6", "--hand", hand]) == 0
        reports[hand] = json.loads(path.read_text())
    auto = next(iter(reports["auto"]["sources"].values()))
    assert reports["auto"]["flip"] == "left" and reports["right"]["flip"] == "none"
    assert set(auto["by_handedness"]) == {"right", "left"}
    assert auto["by_handedness"]["left"]["samples"] + auto["by_handedness"]["right"]["samples"] == auto["samples"]
    # predictions in the image's own frame: auto == predicting each left sample's flip, flipped back
    import torch

    from train.augment import AugmentParams
    from train.data import MixedDataset
    from train.evaluate import predict_dataset
    from train.model_io import model_from_checkpoint

    model, _, ckd = model_from_checkpoint(ck)
    aug = AugmentParams.from_config(ckd["config"]["augment"])
    torch.manual_seed(0)
    pa = predict_dataset(model, MixedDataset([ShardSource(left_ds, "all", flip="left")], aug, 128, train=False))
    pn = predict_dataset(model, MixedDataset([ShardSource(left_ds, "all", flip="none")], aug, 128, train=False))
    left = pa["handedness"] == 1
    assert pa["flipped"][left].all() and not pa["flipped"][~left].any()
    assert np.allclose(pa["gt_joints"], pn["gt_joints"], atol=1e-6)  # the truth is back in the image's frame
    assert np.allclose(pa["gt_uv"], pn["gt_uv"], atol=1e-4)
    assert np.allclose(pa["pred_joints"][~left], pn["pred_joints"][~left])
    # predict: --hand left on the flipped image = the mirror of --hand right on the original
    src = ShardSource(left_ds, "all", flip="none")
    img = src.get(0)["image"]
    cv2.imwrite(str(tmp_path / "orig.png"), img[..., ::-1])
    cv2.imwrite(str(tmp_path / "flip.png"), flip_image(img)[..., ::-1])
    W = img.shape[1]
    assert predict_main([str(tmp_path / "orig.png"), "--checkpoint", ck, "--out", str(tmp_path / "p"),
                         "--box", "20", "18", "70", "80"]) == 0
    assert predict_main([str(tmp_path / "flip.png"), "--checkpoint", ck, "--out", str(tmp_path / "p"),
                         "--box", str(W - 70), "18", str(W - 20), "80", "--hand", "left"]) == 0
    a = json.loads((tmp_path / "p" / "orig.json").read_text())
    b = json.loads((tmp_path / "p" / "flip.json").read_text())
    assert b["hand"] == "left" and b["flipped"] and not a["flipped"]
    ja, jb = np.asarray(a["joints_cam_m"]), np.asarray(b["joints_cam_m"])
    assert np.allclose(jb, ja * [-1, 1, 1], atol=1e-6)
    ua, ub = np.asarray(a["uv_px"]), np.asarray(b["uv_px"])
    assert np.allclose(ub[:, 0], W - ua[:, 0], atol=1e-4) and np.allclose(ub[:, 1], ua[:, 1], atol=1e-4)
    # the left mesh file has the template's faces reversed (outward normals of a mirrored mesh)
    fa = [ln for ln in (tmp_path / "p" / "orig.ply").read_text().splitlines() if ln.startswith("3 ")]
    fb = [ln for ln in (tmp_path / "p" / "flip.ply").read_text().splitlines() if ln.startswith("3 ")]
    assert fb[0].split()[1:] == fa[0].split()[1:][::-1]


def test_mirrored_mano_model_poses_into_the_mirror_image(tmp_path):
    """mirror_mano: the mirrored model posed with the mirrored pose (and any shape) is the
    reflection of the original posed with the original pose - vertices and joints - and
    mirroring twice gives the model back."""
    import torch

    from datagen.mapping import mano
    from support.toy_data import synthetic_mano_arrays

    arrays = synthetic_mano_arrays(3)
    arrays["posedirs"] *= 0.01
    mano.write_standin(tmp_path / "m.pkl", arrays)
    m = mano.load_mano(tmp_path / "m.pkl")
    mm = mano.mirror_mano(m)
    rng = np.random.default_rng(1)
    orient, pose, betas = rng.normal(scale=0.5, size=3), rng.normal(scale=0.4, size=45), rng.normal(size=10)
    t = lambda a: torch.tensor(a[None], dtype=torch.float64)  # noqa: E731
    a = mano.mano_layer(m)(betas=t(betas), global_orient=t(orient), hand_pose=t(pose), transl=t(np.zeros(3)))
    b = mano.mano_layer(mm)(betas=t(betas), global_orient=t(mano.mirror_pose(orient)),
                            hand_pose=t(mano.mirror_pose(pose)), transl=t(np.zeros(3)))
    va, vb = a.vertices[0].numpy(), b.vertices[0].numpy()
    assert np.abs(va).max() > 0.01 and not np.allclose(vb, va, atol=1e-3)
    np.testing.assert_allclose(vb, va * [-1, 1, 1], atol=1e-6)  # smplx keeps some arrays in float32
    np.testing.assert_allclose(b.joints[0].numpy(), a.joints[0].numpy() * [-1, 1, 1], atol=1e-6)
    back = mano.mirror_mano(mm)
    for k in ("v_template", "shapedirs", "posedirs", "hands_components", "hands_mean"):
        np.testing.assert_allclose(getattr(back, k), getattr(m, k), atol=0, err_msg=k)
    assert mm.extra["mirrored"] and mano.mirror_pose(mano.mirror_pose(pose)).tolist() == pose.tolist()


def test_pack_with_a_left_mapping_gives_left_samples_the_left_models_vertices(tmp_path):
    """pack(mapping_left=...): tables.h5 holds the left model's group and per-pose vertices; the
    reader gives left samples the left model's mesh (mirrored), right samples the right one's;
    verify checks both mappings."""
    from datagen.dataset.reader import ShardDataset
    from datagen.dataset.verify import verify
    from datagen.geometry.mirror import reverse_winding
    from support.toy_data import StubMapping, make_render_dir, run_pack

    render = make_render_dir(tmp_path / "render", n_poses=2, n_views=3, left={(0, 1), (1, 2)})
    right, left = StubMapping(seed=1), StubMapping(seed=2)
    left.key = "stub-left"
    run_pack(render, tmp_path / "ds", mapping=right, mapping_left=left)
    ds = ShardDataset(tmp_path / "ds", fields=("vertices_cam", "dense_vertices_cam", "R", "t", "ids"))
    assert np.array_equal(ds.tables.mano_left["faces"], reverse_winding(left.faces))
    for i in range(len(ds)):
        s = ds.read_sample(i)
        mapping = left if s["handedness"] else right
        assert np.allclose(s["vertices_cam"], mapping.apply(s["dense_vertices_cam"]), atol=1e-6)
    assert sum(ds.read_sample(i)["handedness"] for i in range(len(ds))) == 2
    ds.close()
    assert verify(tmp_path / "ds").ok
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["mapping"]["left"]["source"] == left.source and manifest["pack_options"]["mapping_left"] == "stub-left"


@pytest.mark.slow
def test_left_mano_file_is_registered_mirrored(prepared, cache_dir, tmp_path):
    """A MANO_LEFT.pkl-format stand-in (the mirror of the right stand-in made from our hand):
    mirrored, it registers to our right hand as well as the right stand-in does, with the right
    stand-in's connectivity; the mapping records the side."""
    from datagen.mapping import mano
    from datagen.mapping.dense_to_778 import build_mapping
    from datagen.mapping.surface import rest_geometry

    m = build_mapping(prepared, cache_dir=cache_dir)  # open778 (cached)
    rest = rest_geometry(prepared)
    arrays = mano.standin_arrays(m.apply(rest["vertices"]), m.faces, rest["keypoints"],
                                 prepared.asset.dense_part[m.matrix.indices])
    left = mano.mirror_arrays(arrays)
    mano.write_standin(tmp_path / "MANO_LEFT.pkl", left)
    with pytest.raises(ValueError, match="topology 'mano'"):
        build_mapping(prepared, "open778", cache_dir=cache_dir, side="left")
    ml = build_mapping(prepared, "mano", tmp_path / "MANO_LEFT.pkl", cache_dir=cache_dir, side="left")
    q = ml.quality["registration"]
    assert q["to_dense"]["mean_mm"] < 0.5 and q["from_dense"]["mean_mm"] < 0.5 and q["to_dense"]["max_mm"] < 3.0
    assert ml.quality["registration_params"]["scale"] == pytest.approx(1 / 0.93, rel=0.02)
    assert ml.source["side"] == "left" and not ml.source["faces_reoriented"]
    assert np.array_equal(ml.faces, np.asarray(arrays["f"], np.int64))  # the right stand-in's faces
    assert ml.quality["flipped_faces"] == 0
