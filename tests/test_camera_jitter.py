"""Camera variety ([cameras.jitter], datagen.cameras.jitter): per-item cameras drawn from the item
seed, fitted to the posed hand; config validation; the framing report over every item; per-sample
cameras through pack, verify, the reader and training; Cycles renders the jittered camera."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest

from datagen.cameras.framing import camera_for_item, hand_vertices, jitter_framing
from datagen.cameras.hemisphere import views_for
from datagen.cameras.jitter import check_item_camera, item_camera, jitter_draws, jitter_on
from datagen.config import CameraJitterConfig, ConfigError, config_from_dict, load_config
from datagen.geometry.projection import project

ON = CameraJitterConfig(distance_scale=(0.85, 1.25), focal_scale=(1.0, 1.4), roll_deg=(-45.0, 45.0), shift=0.15,
                        margin_px=4.0)


@pytest.fixture(scope="module")
def views(config, prepared):
    return views_for(config.cameras, prepared.asset)


def _margin(cam, points, W, H):
    uv = project(points @ cam.R.T + cam.t, cam.K)
    return min(uv[:, 0].min(), W - uv[:, 0].max(), uv[:, 1].min(), H - uv[:, 1].max())


def test_off_is_the_views_camera_bit_for_bit(config, prepared, views):
    assert not jitter_on(config.cameras)
    for p, v in ((0, 0), (700, 123)):
        cam = camera_for_item(config.cameras, views, prepared, 0, p, v)
        assert cam.jitter is None
        assert cam.K is views.K and np.array_equal(cam.R, views.R[v]) and np.array_equal(cam.t, views.t[v])


def test_camera_stream_is_its_own_child_of_the_item_seed():
    """The camera draws come from child 16 of the item seed, no stream make_spec draws from
    (0-5: environment, skin, Cycles, handedness, background, lights)."""
    from datagen.cameras.jitter import STREAM

    kids = np.random.SeedSequence([0, 5, 7]).spawn(STREAM + 1)
    assert np.array_equal(np.random.default_rng(kids[STREAM]).random(5), jitter_draws(0, 5, 7))
    firsts = {float(np.random.default_rng(k).random()) for k in kids[:STREAM]}
    assert float(jitter_draws(0, 5, 7)[0]) not in firsts


def test_jittered_camera_is_deterministic_and_keeps_the_hand_in_frame(config, prepared, views):
    cams = dataclasses.replace(config.cameras, jitter=ON)
    W, H = views.width, views.height
    rng = np.random.default_rng(3)
    rolls, shifts = [], []
    for p, v in zip(rng.integers(0, 1520, 12), rng.integers(0, 216, 12)):
        a = camera_for_item(cams, views, prepared, 0, p, v)
        b = camera_for_item(cams, views, prepared, 0, p, v)
        assert all(np.array_equal(x, y) for x, y in ((a.K, b.K), (a.R, b.R), (a.t, b.t))) and a.jitter == b.jitter
        pts = hand_vertices(prepared, p)
        assert _margin(a, pts, W, H) >= ON.margin_px - 1e-6
        j = a.jitter
        assert 0.85 <= j["distance_scale"] <= 1.25 and -45 <= j["roll_deg"] <= 45
        assert j["focal_scale"] <= 1.4 and max(map(abs, j["shift_px"])) <= 0.15 * W
        assert check_item_camera(a.K, a.R, a.t, views.K, views.R[v], views.t[v], W, H, ON) is None
        # the camera centre is the view's moved along its axis; the palm centre stays on the axis' line
        assert np.allclose(np.cross(a.centre - prepared.asset.palm_centre,
                                    views.centres[v] - prepared.asset.palm_centre), 0, atol=1e-9)
        rolls.append(j["roll_deg"])
        shifts.append(j["shift_px"][0])
    assert np.ptp(rolls) > 20 and np.ptp(shifts) > 5  # the draws vary from item to item
    # another seed, another camera
    c = camera_for_item(cams, views, prepared, 1, 3, 4)
    assert not np.array_equal(c.K, camera_for_item(cams, views, prepared, 0, 3, 4).K)


def test_each_option_keeps_its_own_draw(prepared, views):
    """All five uniforms are drawn whichever options are on: turning roll on does not move the
    distance draw, and so on."""
    pts = hand_vertices(prepared, 40)
    aim = prepared.asset.palm_centre
    only_d = CameraJitterConfig(distance_scale=(0.85, 1.25))
    both = CameraJitterConfig(distance_scale=(0.85, 1.25), roll_deg=(-45.0, 45.0))
    a = item_camera(only_d, views, 9, 0, 40, pts, aim)
    b = item_camera(both, views, 9, 0, 40, pts, aim)
    assert a.jitter["distance_scale"] == b.jitter["distance_scale"] and a.jitter["roll_deg"] == 0.0
    u = jitter_draws(0, 40, 9)
    assert b.jitter["roll_deg"] == pytest.approx(-45 + 90 * u[1])


def test_focal_is_capped_where_the_hand_would_leave_the_frame(prepared, views):
    """A zoom the hand cannot take is capped at the largest that keeps the margin."""
    big = CameraJitterConfig(focal_scale=(1.9, 2.0), margin_px=6.0)
    pts = hand_vertices(prepared, 0)
    cam = item_camera(big, views, 10, 0, 0, pts, prepared.asset.palm_centre)  # the default's tightest view
    assert cam.jitter["focal_scale"] < 1.9 and cam.jitter["focal_scale"] == cam.jitter["focal_cap"]
    assert _margin(cam, pts, views.width, views.height) == pytest.approx(6.0, abs=1e-6)


def test_check_item_camera_names_what_differs(views):
    K, R, t = views.K.copy(), views.R[5], views.t[5]
    assert check_item_camera(K, R, t, views.K, R, t, 256, 256, ON) is None
    tilt = np.array([[1, 0, 0], [0, np.cos(0.1), -np.sin(0.1)], [0, np.sin(0.1), np.cos(0.1)]])
    assert "optical axis" in check_item_camera(K, tilt @ R, tilt @ t, views.K, R, t, 256, 256, ON)
    K2 = K.copy()
    K2[0, 2] += 0.3 * 256
    assert "principal point" in check_item_camera(K2, R, t, views.K, R, t, 256, 256, ON)
    rz = np.radians(60)
    Rz = np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
    assert "roll" in check_item_camera(K, Rz @ R, Rz @ t, views.K, R, t, 256, 256, ON)


@pytest.mark.parametrize("section, words", [
    ({"jitter": 3}, "cameras.jitter must be a table"),
    ({"jitter": {"roll": [0, 1]}}, "cameras.jitter.roll"),
    ({"jitter": {"shift": 0.7}}, "cameras.jitter.shift"),
    ({"jitter": {"distance_scale": [0.5, 1.0]}}, "cameras.jitter.distance_scale[0]"),
    ({"jitter": {"focal_scale": [1.3, 1.1]}}, "cameras.jitter.focal_scale"),
    ({"jitter": {"roll_deg": [-200, 0]}}, "cameras.jitter.roll_deg[0]"),
    ({"jitter": {"margin_px": "4"}}, "cameras.jitter.margin_px"),
])
def test_bad_jitter_config_names_the_key(section, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict({"cameras": section})


def test_camvar_config_loads_and_default_digest_is_unchanged():
    from datagen.config import REPO_ROOT, Config

    cfg = load_config(REPO_ROOT / "configs" / "camvar.toml")
    assert jitter_on(cfg.cameras) and cfg.cameras.jitter.shift == 0.15
    assert Config().digest() == config_from_dict({"cameras": {"jitter": {}}}).digest()
    assert cfg.digest() != Config().digest()


class _Few:
    """The first poses of a prepared table (the framing report's interface)."""

    def __init__(self, prepared, ids):
        self._p, self.ids, self.asset = prepared, np.asarray(ids), prepared.asset

    def dense_vertices(self, i):
        return self._p.dense_vertices(int(self.ids[i]))


def test_framing_report_covers_every_jittered_item(config, prepared, views, capsys):
    from datagen.cameras.__main__ import report_jitter
    from datagen.cameras.framing import framing_margins

    cfg = dataclasses.replace(config, cameras=dataclasses.replace(config.cameras, jitter=ON))
    few = _Few(prepared, [0, 31, 700])
    r = jitter_framing(cfg.cameras, few, views, cfg.seed)
    assert r["margin"].shape == (3, 216) and r["margin"].min() >= ON.margin_px - 1e-6
    assert r["box_frac"].max() <= 1 and np.ptp(r["roll_deg"]) > 60
    # the report's numbers are the items' own cameras: the renderer's camera gives the same margin
    p, v = 1, 77
    cam = camera_for_item(cfg.cameras, views, prepared, cfg.seed, 31, v)
    assert _margin(cam, hand_vertices(prepared, 31), 256, 256) == pytest.approx(r["margin"][p, v], abs=1e-6)
    report_jitter(cfg, few, views, framing_margins(few, views))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("views=216 items=648 jitter=on worst_margin_px=")
    assert float(last.rsplit("=", 1)[1]) == pytest.approx(round(r["margin"].min(), 1))


# ----------------------------------------------------------------------------- shards

@pytest.fixture(scope="module")
def jitter_ds(tmp_path_factory):
    from support.toy_data import make_render_dir, run_pack

    root = tmp_path_factory.mktemp("jit")
    render = make_render_dir(root / "render", n_poses=3, n_views=4, size=64,
                             jitter=dataclasses.replace(ON, margin_px=2.0))
    run_pack(render, root / "ds")
    return root


def test_per_sample_cameras_round_trip_pack_verify_read_train(jitter_ds):
    from datagen.dataset.reader import ShardDataset
    from datagen.dataset.verify import verify
    from train.data import ShardSource

    rep = verify(jitter_ds / "ds")
    assert rep.ok, rep.problems
    ds = ShardDataset(jitter_ds / "ds")
    views = np.load(jitter_ds / "render" / "views.npz")
    src = ShardSource(jitter_ds / "ds", "all")
    differ = 0
    for i in range(len(ds)):
        s = ds.read_sample(i)
        lab = json.loads((jitter_ds / "render" / "items" / f"{s['pose_id']:05d}" /
                          f"v{s['view_id']:03d}.json").read_text())
        assert np.allclose(s["K"], lab["K"], rtol=1e-6) and np.allclose(s["R"], lab["R"], atol=1e-6)
        assert np.allclose(project(s["joints_cam"].astype(np.float64), s["K"]), s["keypoints_2d"], atol=0.02)
        differ += not np.allclose(s["K"], views["K"], atol=1e-3)
        g = src.get(i)  # training's 2D/3D targets use the sample's own camera
        assert np.array_equal(g["K"], s["K"].astype(np.float64))
        assert np.allclose(project(g["joints"], g["K"]), s["keypoints_2d"], atol=0.02)
    assert differ == len(ds)


def test_pack_refuses_an_item_camera_the_jitter_cannot_give(jitter_ds, tmp_path):
    import shutil

    from support.toy_data import run_pack

    render = tmp_path / "render"
    shutil.copytree(jitter_ds / "render", render)
    path = render / "items" / "00001" / "v002.json"
    lab = json.loads(path.read_text())
    tilt = np.array([[1, 0, 0], [0, np.cos(0.1), -np.sin(0.1)], [0, np.sin(0.1), np.cos(0.1)]])
    lab["R"] = (tilt @ np.asarray(lab["R"])).tolist()
    path.write_text(json.dumps(lab))
    with pytest.raises(Exception, match="optical axis"):
        run_pack(render, tmp_path / "ds")


def test_verify_finds_a_per_sample_camera_that_disagrees_with_the_keypoints(jitter_ds, tmp_path):
    import shutil

    from datagen.dataset.verify import verify
    from support.toy_data import rehash_manifest

    ds = tmp_path / "ds"
    shutil.copytree(jitter_ds / "ds", ds)
    with h5py.File(ds / "shard-00000.h5", "r+") as f:
        K = f["K"][()]
        K[3, 0, 2] += 5.0
        f["K"][...] = K
    rehash_manifest(ds, "shard-00000.h5")
    rep = verify(ds)
    assert not rep.ok and any("2D keypoints" in m for m in rep.problems.get("keypoints", []))


def test_schema_1_dataset_without_camera_columns_still_reads(tiny_ds, tmp_path):
    """A dataset packed before per-sample cameras (schema 1) reads with its views' cameras."""
    import shutil

    from datagen.dataset import shards as S
    from datagen.dataset.reader import ShardDataset
    from datagen.dataset.verify import verify
    from support.toy_data import rehash_manifest

    new = ShardDataset(tiny_ds)
    ds = tmp_path / "old"
    shutil.copytree(tiny_ds, ds)
    m = json.loads((ds / S.MANIFEST).read_text())
    for e in m["shards"]:
        with h5py.File(ds / e["file"], "r+") as f:
            for k in ("K", "R", "t"):
                del f[k]
            f.attrs["schema_version"] = 1
    with h5py.File(ds / S.TABLES, "r+") as f:
        f.attrs["schema_version"] = 1
    m["schema_version"] = 1
    (ds / S.MANIFEST).write_text(json.dumps(m))
    for e in m["shards"] + [m["tables"]]:
        rehash_manifest(ds, e["file"])
    old = ShardDataset(ds)
    for i in (0, len(old) - 1):
        a, b = old.read_sample(i), new.read_sample(i)
        for k in ("K", "R", "t", "joints_cam", "vertices_cam"):
            assert np.array_equal(a[k], b[k]), k
    rep = verify(ds, labels=3)
    assert rep.ok, rep.problems


# ----------------------------------------------------------------------------- Cycles

@pytest.mark.blender
@pytest.mark.slow
def test_cycles_renders_the_jittered_camera_exactly(cache_dir, prepared, tmp_path):
    """Cycles' own coverage and depth with an item's jittered camera (focal, roll, off-centre
    principal point, distance) equal the rasterised labels made with that camera."""
    from blender_scripts.scene import SceneRenderer
    from datagen.labels.visibility import compute_labels
    from datagen.poses.tables import ensure_tables
    from datagen.scene.hdri import discover
    from datagen.scene.items import make_spec
    from support.renders import REPO, write_render_config

    path = write_render_config(tmp_path / "small.toml")
    path.write_text(path.read_text().replace(
        "[hdri]", "[cameras.jitter]\ndistance_scale = [0.85, 1.25]\nfocal_scale = [1.0, 1.4]\n"
                  "roll_deg = [-45.0, 45.0]\nshift = 0.15\n[hdri]"))
    cfg = load_config(path)
    tables = ensure_tables(cfg, cache_dir)
    views = views_for(cfg.cameras, tables)
    hdris, _ = discover(cfg.hdri.sources, REPO)
    renderer = SceneRenderer(cfg, tables, views, hdris[:1])
    for pose, view in ((31, 150), (700, 10)):
        spec = make_spec(cfg, 1, pose, view, len(views))
        cam = renderer.item_camera(spec)
        assert cam.jitter is not None and abs(cam.K[0, 2] - views.K[0, 2]) > 0.5
        alpha, cdepth = renderer.cycles_coverage_depth(spec, tmp_path)
        dense, _ = renderer.item_mesh(spec, cam)  # the item's own arm, drawn with its jittered camera
        L = compute_labels(dense, tables.dense_faces, tables.keypoints[pose], cam.K, cam.R,
                           cam.t, views.width, views.height, wrist_joint=tables.wrist_joint)
        cmask = alpha > 0.5
        iou = (cmask & L.mask).sum() / (cmask | L.mask).sum()
        inner = (alpha > 0.999) & L.mask
        diff = np.abs(cdepth[inner] - L.depth[inner])
        assert iou > 0.97 and np.median(diff) < 2e-4, (pose, view, iou, np.median(diff))
        # the view's own camera does not explain this render
        V = compute_labels(tables.dense_vertices(pose), tables.dense_faces, tables.keypoints[pose], views.K,
                           views.R[view], views.t[view], views.width, views.height)
        assert (cmask & V.mask).sum() / (cmask | V.mask).sum() < iou - 0.05
