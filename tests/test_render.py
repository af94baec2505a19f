"""The renderer with real bpy (Cycles on CPU, small images, few samples).

- labels vs. the rendered silhouette and depth, and Cycles' own coverage/depth vs. the labels
  (this is what proves the Blender camera equals K, R, t - also with an off-centre principal
  point);
- determinism, resume after a kill, the stdin worker, the numpy-only Blender path;
- bad inputs fail before anything renders.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support.renders import BLENDER_PATH_CHECK, RENDER, write_render_config as write_config

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.blender, pytest.mark.slow]


def run_main(args) -> int:
    from blender_scripts.render import main

    return main([str(a) for a in args])


def read_rgb(path):
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


@pytest.fixture(scope="module")
def small_cfg(tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("cfg") / "small.toml")


@pytest.fixture(scope="module")
def rendered(small_cfg, cache_dir, prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "r"
    code = run_main(["--config", small_cfg, "--out", out, "--poses", "0,31,700", "--views", "0,100,200",
                     "--cache", cache_dir, "--no-progress"])
    assert code == 0
    return out


def labels_of(out: Path):
    return sorted((out / "items").glob("*/v*.json"))


def test_render_dir_is_complete_and_self_consistent(rendered):
    import scipy.sparse as sp

    from datagen.labels.visibility import compute_labels
    from datagen.poses.wrist import item_base_from_files

    run = json.loads((rendered / "run.json").read_text())
    assert run["format"] == "handsynth-render-dir" and run["n_views"] == 216 and run["n_poses"] == 1520
    assert len(run["hdris"]) == 8 and all(h["licence"] == "CC0-1.0" for h in run["hdris"])
    assert run["hand"]["licence"] and run["versions"]["bpy"].startswith("5.")
    views = np.load(rendered / "views.npz")
    poses = np.load(rendered / "poses.npz")
    hand = np.load(rendered / "hand.npz")
    assert views["R"].shape == (216, 3, 3) and poses["rotations"].shape[0] == 1520
    assert sorted(p.name for p in (rendered / "meshes").iterdir()) == [
        "pose_00000.npz", "pose_00031.npz", "pose_00700.npz"]  # once per pose, not per view
    jsons = labels_of(rendered)
    assert len(jsons) == 9
    for j in jsons:
        rec = json.loads(j.read_text())
        stem = j.name[:-5]
        rgb = read_rgb(j.with_name(stem + ".png"))
        mask = read_rgb(j.with_name(stem + ".mask.png"))
        depth = np.load(j.with_name(stem + ".depth.npy"))
        assert rgb.shape == (96, 96, 3) and rgb.dtype == np.uint8 and rgb.std() > 5
        assert mask.shape == (96, 96) and set(np.unique(mask)) <= {0, 255}
        assert depth.dtype == np.float32 and depth.shape == (96, 96)
        assert np.array_equal(depth > 0, mask > 0)
        # the RENDER_DIR alone reproduces the exact silhouette and depth
        m = np.load(rendered / "meshes" / f"pose_{rec['pose_id']:05d}.npz")
        assert m["dense"].shape == (7230, 3) and m["keypoints"].shape == (21, 3) and m["base"].shape[1] == 3
        v = rec["view_id"]
        # The item's own arm (per-item wrists): the pose's mesh turned by the JSON's wrist angles.
        base = item_base_from_files(m["base"], hand, poses, rec["pose_id"], rec["wrist"])
        D = sp.csr_matrix((hand["dense_data"], hand["dense_indices"], hand["dense_indptr"]),
                          shape=tuple(hand["dense_shape"]))
        dense = np.asarray(D @ base)
        assert np.abs(dense - m["dense"]).max() > 0.01  # the arm moved (the test can fail)
        L = compute_labels(dense, hand["dense_faces"], m["keypoints"].astype(np.float64),
                           views["K"], views["R"][v], views["t"][v], 96, 96, wrist_joint=True)
        assert np.array_equal(L.mask, mask > 0) and np.allclose(L.depth, depth, atol=1e-6)
        assert np.allclose(rec["keypoints_2d"], L.keypoints_2d) and rec["visible"] == L.visible.tolist()
        assert rec["item_id"] == rec["pose_id"] * 216 + v
        assert rec["hdri"]["name"].startswith("builtin/") and rec["skin"]["melanin"] >= 0
        assert rec["render"]["samples"] == 4 and rec["versions"]["anny"]
    assert not [p for p in rendered.rglob(".*") if ".tmp-" in p.name]  # no temporaries left


def test_visible_keypoints_lie_on_the_silhouette_and_agree_with_depth(rendered):
    from scipy.ndimage import binary_dilation

    from datagen.labels.visibility import DEPTH_MARGIN_M, SURFACE_TOLERANCE_M, visibility_contract

    rules = visibility_contract(wrist_joint=True)  # label_version 2: the wrist is a joint (forearm)
    SURFACE_KEYPOINTS, JOINT_FLESH_M = rules["surface_keypoints"], np.asarray(rules["joint_flesh_m"])

    n = 0
    for j in labels_of(rendered):
        rec = json.loads(j.read_text())
        stem = j.name[:-5]
        mask = read_rgb(j.with_name(stem + ".mask.png")) > 0
        depth = np.load(j.with_name(stem + ".depth.npy"))
        near = binary_dilation(mask, iterations=1)
        uv = np.asarray(rec["keypoints_2d"])
        z = np.asarray(rec["keypoints_3d_cam"])[:, 2]
        for k in np.nonzero(rec["visible"])[0]:
            n += 1
            c, r = np.floor(uv[k]).astype(int)
            if k in SURFACE_KEYPOINTS:
                assert near[r, c], (j, k)  # on or at the edge of the silhouette
                if depth[r, c] > 0:
                    assert z[k] - depth[r, c] <= SURFACE_TOLERANCE_M + DEPTH_MARGIN_M
            else:
                assert mask[r, c], (j, k)
                gap = z[k] - depth[r, c]
                assert 0 < gap <= JOINT_FLESH_M[k] + DEPTH_MARGIN_M, (j, k, gap)
                assert np.isclose(gap, rec["depth_gap_m"][k])
    assert n > 60


@pytest.fixture
def scene(small_cfg, cache_dir, prepared):
    """A fresh scene per test: building one resets Blender's data, so none may outlive a test."""
    from blender_scripts.scene import SceneRenderer
    from datagen.cameras.hemisphere import views_for
    from datagen.config import load_config
    from datagen.scene.hdri import discover
    from datagen.poses.tables import ensure_tables

    cfg = load_config(small_cfg)
    tables = ensure_tables(cfg, cache_dir)
    views = views_for(cfg.cameras, tables)
    hdris, _ = discover(cfg.hdri.sources, REPO)
    return cfg, tables, views, hdris, SceneRenderer(cfg, tables, views, hdris[:2])


def _cycles_vs_labels(renderer, cfg, tables, views, pose, view, tmp_path):
    from datagen.cameras.jitter import view_camera
    from datagen.scene.items import make_spec
    from datagen.labels.visibility import compute_labels

    spec = make_spec(cfg, 2, pose, view, len(views))
    alpha, cdepth = renderer.cycles_coverage_depth(spec, tmp_path)
    dense, _ = renderer.item_mesh(spec, view_camera(views, view))  # the item's own arm
    L = compute_labels(dense, tables.dense_faces, tables.keypoints[pose], views.K,
                       views.R[view], views.t[view], views.width, views.height, wrist_joint=tables.wrist_joint)
    cmask = alpha > 0.5
    iou = (cmask & L.mask).sum() / (cmask | L.mask).sum()
    inner = (alpha > 0.999) & L.mask
    diff = np.abs(cdepth[inner] - L.depth[inner])
    return iou, diff, L, alpha, cdepth


@pytest.mark.parametrize("pose, view", [(0, 0), (31, 150), (700, 200)])
def test_cycles_renders_the_labelled_silhouette_and_depth(scene, pose, view, tmp_path):
    cfg, tables, views, _, renderer = scene
    iou, diff, L, alpha, cdepth = _cycles_vs_labels(renderer, cfg, tables, views, pose, view, tmp_path)
    assert iou > 0.97, iou
    assert np.median(diff) < 2e-4 and np.percentile(diff, 90) < 1e-3, (np.median(diff), np.percentile(diff, 90))
    # visible joints: Cycles' own depth at their pixel agrees with the label's depth gap
    ij = np.floor(L.keypoints_2d).astype(int)
    for k in np.nonzero(L.visible & np.isfinite(L.depth_gap))[0]:
        r, c = ij[k, 1], ij[k, 0]
        if alpha[r, c] > 0.999:
            # Cycles averages its samples over the pixel: allow the depth's spread around it
            nb = L.depth[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
            spread = np.ptp(nb[nb > 0])
            assert abs((L.keypoints_cam[k, 2] - cdepth[r, c]) - L.depth_gap[k]) < 1e-3 + spread, k


def test_blender_camera_follows_an_off_centre_principal_point(scene, tmp_path):
    from blender_scripts.scene import SceneRenderer

    cfg, tables, views, hdris, _ = scene
    K = views.K.copy()
    K[0, 2] += 6.3
    K[1, 2] -= 4.1
    shifted = dataclasses.replace(views, K=K)
    renderer = SceneRenderer(cfg, tables, shifted, hdris[:1])
    iou, diff, *_ = _cycles_vs_labels(renderer, cfg, tables, shifted, 5, 40, tmp_path)
    assert iou > 0.97 and np.median(diff) < 2e-4
    # ... and labels made with the centred K do not match that render
    iou_wrong, *_ = _cycles_vs_labels(renderer, cfg, tables, views, 5, 40, tmp_path)
    assert iou_wrong < iou - 0.05


def test_same_seed_same_labels_and_image(rendered, small_cfg, cache_dir, tmp_path):
    out = tmp_path / "again"
    assert run_main(["--config", small_cfg, "--out", out, "--poses", "31", "--views", "100", "--cache", cache_dir,
                     "--no-progress"]) == 0
    a = json.loads((rendered / "items/00031/v100.json").read_text())
    b = json.loads((out / "items/00031/v100.json").read_text())
    assert a == b
    ia = read_rgb(rendered / "items/00031/v100.png").astype(int)
    ib = read_rgb(out / "items/00031/v100.png").astype(int)
    assert np.abs(ia - ib).mean() < 1.0


def test_denoise_quality_reaches_cycles_and_only_changes_pixels(scene, tmp_path):
    """[render] denoise_quality: Cycles denoises with it, the item records it, labels stay."""
    from blender_scripts.scene import SceneRenderer
    from datagen.scene.items import make_spec

    cfg, tables, views, hdris, high = scene
    spec = make_spec(cfg, 2, 31, 100, len(views))
    assert high.scene.cycles.denoising_quality == "HIGH"
    high.render_item(spec, tmp_path / "high")
    fast_cfg = dataclasses.replace(cfg, render=dataclasses.replace(cfg.render, denoise_quality="FAST"))
    fast = SceneRenderer(fast_cfg, tables, views, hdris[:2])  # resets Blender's data: `high` is gone
    assert fast.scene.cycles.denoising_quality == "FAST"
    fast.render_item(spec, tmp_path / "fast")
    a, b = (json.loads((tmp_path / d / "items/00031/v100.json").read_text()) for d in ("high", "fast"))
    assert (a["render"]["denoising_quality"], b["render"]["denoising_quality"]) == ("HIGH", "FAST")
    a.pop("render"), b.pop("render")
    assert a == b
    ia, ib = (read_rgb(tmp_path / d / "items/00031/v100.png").astype(int) for d in ("high", "fast"))
    assert ia.shape == ib.shape and np.abs(ia - ib).max() > 0  # another denoiser network ran


def test_user_hdri_renders_and_its_licence_is_recorded(small_cfg, cache_dir, tmp_path):
    from support.renders import write_hdr

    d = tmp_path / "hdri"
    d.mkdir()
    write_hdr(d / "grey.hdr", 64, 32)
    (d / "grey.hdr.license").write_text("CC0-1.0 (made by the test)\n")
    cfg = write_config(tmp_path / "c.toml", size=64, samples=2, denoise=False, sources=[d])
    out = tmp_path / "r"
    assert run_main(["--config", cfg, "--out", out, "--poses", "3", "--views", "7", "--cache", cache_dir,
                     "--no-progress"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert [h["licence"] for h in run["hdris"]] == ["CC0-1.0 (made by the test)"]
    rec = json.loads((out / "items/00003/v007.json").read_text())
    assert rec["hdri"]["name"].endswith("grey.hdr")
    assert run["hdris"][0]["mean_luminance"] > 0


@pytest.mark.parametrize("args, words", [
    (["--poses", "1520"], ["pose id 1520", "0..1519"]),
    (["--views", "0,216"], ["view id 216"]),
    (["--shard", "4/4"], ["shard"]),
    (["--device", "VULKAN"], ["--device"]),
])
def test_bad_selection_fails_before_rendering(args, words, small_cfg, cache_dir, tmp_path, capsys):
    out = tmp_path / "r"
    code = run_main(["--config", small_cfg, "--out", out, "--cache", cache_dir, "--no-progress"] + args)
    err = capsys.readouterr().err
    assert code == 2 and all(w in err for w in words), err
    assert not (out / "items").exists() and not (out / "run.json").exists()


def test_bad_config_and_output_fail_before_rendering(small_cfg, cache_dir, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[render]\nsamples = 0\n")
    assert run_main(["--config", bad, "--out", tmp_path / "r", "--cache", cache_dir]) == 2
    assert "render.samples" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run_main(["--config", small_cfg, "--out", blocker / "r", "--poses", "0", "--views", "0",
                     "--cache", cache_dir]) == 2
    assert "not writable" in capsys.readouterr().err


def test_resuming_a_render_of_other_pose_tables_is_refused(rendered, small_cfg, cache_dir, tmp_path, capsys):
    out = tmp_path / "old"
    out.mkdir()
    run = json.loads((rendered / "run.json").read_text())
    run["prepared_key"] = "an-older-pose-table"  # as if the hand or pose-space code had changed since
    (out / "run.json").write_text(json.dumps(run))
    code = run_main(["--config", small_cfg, "--out", out, "--poses", "0", "--views", "0", "--cache", cache_dir,
                     "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "an-older-pose-table" in err and "another --out" in err, err
    assert not (out / "items").exists()


def test_hand_asset_of_an_older_version_is_refused_by_name(tmp_path):
    from datagen.hand.asset import HandAsset

    old = tmp_path / "hand.npz"
    np.savez(old, name=np.asarray("hand"))
    with pytest.raises(ValueError, match="hand.npz: not a hand asset of this version"):
        HandAsset.load(old)


@pytest.mark.parametrize("make_bad, where", [
    (lambda src: src.read_bytes()[: 60000], "truncated"),  # caught by the pure-Python header check
    (lambda src: _unknown_compression(src.read_bytes()), "Blender"),  # header parses, Blender cannot load
])
def test_corrupt_hdri_fails_before_rendering_naming_the_file(make_bad, where, cache_dir, tmp_path, capsys):
    from datagen.scene.hdri import builtin_dir

    d = tmp_path / "hdri"
    d.mkdir()
    (d / "good.exr").write_bytes((builtin_dir() / "city.exr").read_bytes())
    (d / "bad.exr").write_bytes(make_bad(builtin_dir() / "city.exr"))
    cfg = write_config(tmp_path / "c.toml", size=64, samples=2, sources=[d])
    out = tmp_path / "r"
    code = run_main(["--config", cfg, "--out", out, "--poses", "0", "--views", "0", "--cache", cache_dir,
                     "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and str(d / "bad.exr") in err and where in err, err
    assert not (out / "items").exists()


def _unknown_compression(data: bytes) -> bytes:
    data = bytearray(data)
    key = b"compression\x00compression\x00"
    i = data.index(key) + len(key) + 4
    data[i] = 12  # a compression code newer than this Blender's OpenEXR
    return bytes(data)


def _env():
    return dict(os.environ, PYTHONUNBUFFERED="1")


def test_resume_after_kill_gives_the_uninterrupted_result(cache_dir, prepared, tmp_path):
    cfg = write_config(tmp_path / "c.toml", size=64, samples=2, denoise=False)
    sel = ["--poses", "0-4", "--views", "0-5", "--cache", cache_dir, "--no-progress"]
    ref = tmp_path / "ref"
    assert run_main(["--config", cfg, "--out", ref] + sel) == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(RENDER), "--config", str(cfg), "--out", str(out)] + [str(a) for a in sel],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(), cwd=REPO)
    t0 = time.time()
    while len(labels_of(out)) < 3 and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.02)
    assert proc.poll() is None, "render finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    done = labels_of(out)
    assert 3 <= len(done) < 30
    # no corrupt file under a final name: every final file reads back whole
    for f in (out / "items").rglob("*"):
        if f.name.startswith("."):
            continue
        if f.name.endswith(".mask.png") or f.name.endswith(".png"):
            assert read_rgb(f).shape[:2] == (64, 64), f
        elif f.suffix == ".npy":
            assert np.load(f).shape == (64, 64), f
        elif f.suffix == ".json":
            json.loads(f.read_text())
    r = subprocess.run([sys.executable, str(RENDER), "--config", str(cfg), "--out", str(out)] + [str(a) for a in sel],
                       capture_output=True, text=True, env=_env(), cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"skipped={len(done)}" in r.stderr and f"rendered={30 - len(done)}" in r.stderr
    assert len(labels_of(out)) == 30
    assert not [p for p in out.rglob(".*") if ".tmp-" in p.name]  # the killed run's temporaries are gone
    for j in labels_of(ref):
        rel = j.relative_to(ref)
        assert json.loads(j.read_text()) == json.loads((out / rel).read_text()), rel
        a = read_rgb(j.with_name(j.name[:-5] + ".png")).astype(int)
        b = read_rgb((out / rel).with_name(j.name[:-5] + ".png")).astype(int)
        assert np.abs(a - b).mean() < 1.0, rel


def test_stdin_worker(cache_dir, prepared, tmp_path):
    cfg = write_config(tmp_path / "c.toml", size=64, samples=1, denoise=False)
    out = tmp_path / "w"
    r = subprocess.run([sys.executable, str(RENDER), "--config", str(cfg), "--out", str(out), "--stdin",
                        "--cache", str(cache_dir)], input="0 1\n# comment\n{\"item_id\": 1}\n0 999\n", text=True,
                       capture_output=True, env=_env(), cwd=REPO, timeout=300)
    msgs = [json.loads(line[len("@@handsynth "):]) for line in r.stdout.splitlines() if line.startswith("@@handsynth ")]
    assert [m["status"] for m in msgs] == ["ready", "ok", "skipped", "error", "done"], r.stdout + r.stderr
    assert msgs[1]["item_id"] == 1 and msgs[1]["timings"]["render_s"] > 0
    assert "view id 999" in msgs[3]["error"]
    assert msgs[-1] == {"status": "done", "rendered": 1, "skipped": 1, "failed": 0}
    assert r.returncode == 0


def test_blender_python_path_needs_numpy_only(cache_dir, prepared, tmp_path):
    """What `blender -b -P render.py -- ...` runs, with torch/anny/scipy/tqdm/cv2 made unimportable."""
    cfg = write_config(tmp_path / "c.toml", size=64, samples=1, denoise=False)
    out = tmp_path / "b"
    args = ["--config", str(cfg), "--out", str(out), "--poses", "2", "--views", "3", "--cache", str(cache_dir)]
    r = subprocess.run([sys.executable, "-c", BLENDER_PATH_CHECK, str(REPO)] + args, capture_output=True, text=True,
                       env=_env(), cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "items/00002/v003.json").exists()
    assert "1/1 items" in r.stderr  # the fallback progress printer
    # without the prepared cache, the message says how to build it
    r = subprocess.run([sys.executable, "-c", BLENDER_PATH_CHECK, str(REPO), "--config", str(cfg), "--out",
                        str(tmp_path / "c"), "--cache", str(tmp_path / "nocache")], capture_output=True, text=True,
                       env=_env(), cwd=REPO, timeout=300)
    assert r.returncode == 2 and "--prepare-only" in r.stderr


def test_environment_orientation_matches_the_recorded_rotation(scene, tmp_path):
    """What Cycles shows behind the hand is the HDRI seen along M @ (camera ray), with M the
    `hdri.hand_to_world` of the label and Blender's equirectangular mapping (datagen.hdri)."""
    import bpy

    from datagen.scene.hdri import hand_to_world

    cfg, tables, views, hdris, renderer = scene
    img = bpy.data.images.load(hdris[0].path, check_existing=True)
    w, h = img.size
    env = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(env)
    env = env.reshape(h, w, 4)[..., :3]  # rows bottom-up, as the mapping expects
    renderer.hand.hide_render = True
    try:
        for view, rot in ((0, 0.0), (100, 77.0), (200, 250.0)):
            renderer.set_view(view, rot)
            renderer.set_environment(0, 1.0)
            px = renderer.render_linear(tmp_path / "env.exr", samples=2)[..., :3]
            H, W = px.shape[:2]
            jj, ii = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
            rays = np.stack([(jj - views.K[0, 2]) / views.K[0, 0], (ii - views.K[1, 2]) / views.K[1, 1],
                             np.ones_like(jj)], axis=-1) @ views.R[view]  # camera -> hand frame
            d = rays @ hand_to_world(rot).T
            d /= np.linalg.norm(d, axis=-1, keepdims=True)
            u = 0.5 - np.arctan2(d[..., 1], d[..., 0]) / (2 * np.pi)
            v = 0.5 + np.arcsin(np.clip(d[..., 2], -1, 1)) / np.pi
            expect = env[np.clip((v * h).astype(int), 0, h - 1), np.clip((u * w).astype(int), 0, w - 1)]
            a = np.log(px.mean(-1) + 1e-3).ravel()
            b = np.log(expect.mean(-1) + 1e-3).ravel()
            assert np.corrcoef(a, b)[0, 1] > 0.95, (view, rot)
            assert np.median(np.abs(px - expect) / (expect + 1e-2)) < 0.1
            # a wrong rotation does not match
            d2 = rays @ hand_to_world(rot + 90).T
            d2 /= np.linalg.norm(d2, axis=-1, keepdims=True)
            u2 = 0.5 - np.arctan2(d2[..., 1], d2[..., 0]) / (2 * np.pi)
            v2 = 0.5 + np.arcsin(np.clip(d2[..., 2], -1, 1)) / np.pi
            wrong = env[np.clip((v2 * h).astype(int), 0, h - 1), np.clip((u2 * w).astype(int), 0, w - 1)]
            assert np.corrcoef(a, np.log(wrong.mean(-1) + 1e-3).ravel())[0, 1] < 0.9
    finally:
        renderer.hand.hide_render = False
