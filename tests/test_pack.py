"""datagen.pack / datagen.shards: a small render directory in the documented format -> shards.

The toy render directory (`make_render_dir`) is written the way docs/ARCHITECTURE.md describes
RENDER_DIR, with exact silhouettes and depth from datagen.raster, so the packed labels are
mutually consistent and datagen.verify can check them.  `StubMapping` stands in for
datagen.mapping: a permutation of the toy mesh's 778 vertices, so a test can tell that the
matrix was applied.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from datagen.dataset import shards as S
from datagen.dataset.pack import PackError, pack
from support.toy_data import REPO, StubMapping, make_render_dir, run_pack


@pytest.fixture(scope="module")
def render_dir(tmp_path_factory):
    return make_render_dir(tmp_path_factory.mktemp("render"))


def test_pack_contents_roundtrip(render_dir, tmp_path):
    m = run_pack(render_dir, tmp_path / "ds", shard_size_mb=0.02)
    assert m["counts"]["samples"] == 12 and m["counts"]["shards"] >= 3
    assert sum(s["samples"] for s in m["shards"]) == 12
    assert m["topology"] == "open778" and m["licences"]["hand"]["licence"] == "CC0-1.0"
    assert {h["name"] for h in m["licences"]["hdris"]} == {"studio", "forest"}
    assert m["constant_labels"] == {"render": {"samples": 16}, "versions": {"bpy": "toy"}}
    for s in m["shards"]:
        assert S.sha256_file(tmp_path / "ds" / s["file"]) == s["sha256"]
    # every sample comes back: lossless image, exact mask, depth within the codec's 5 um
    import cv2

    seen = set()
    for s in m["shards"]:
        r = S.ShardReader(tmp_path / "ds" / s["file"])
        for row in range(r.count):
            p, v = int(r.columns["pose_id"][row]), int(r.columns["view_id"][row])
            seen.add((p, v))
            base = f"{render_dir}/items/{p:05d}/v{v:03d}"
            img = cv2.imread(base + ".png")[..., ::-1]
            assert np.array_equal(r.read("image", row), img)
            assert np.array_equal(r.read("mask", row), cv2.imread(base + ".mask.png", 0) > 0)
            depth = np.load(base + ".depth.npy")
            got = r.read("depth", row)
            assert np.abs(got - depth).max() <= 5.01e-6 and np.array_equal(got > 0, depth > 0)
            lab = json.loads(Path(base + ".json").read_text())
            assert np.allclose(r.columns["keypoints_2d"][row], lab["keypoints_2d"], atol=1e-4)
            assert list(r.columns["visible"][row]) == lab["visible"]
            assert r.columns["item_id"][row] == lab["item_id"]
        r.close()
    assert seen == {(p, v) for p in range(3) for v in range(4)}
    with h5py.File(tmp_path / "ds" / "tables.h5") as f:
        mv, dv = f["poses/mano_vertices"][()], f["poses/dense_vertices"][()]
        assert np.array_equal(mv, dv[:, StubMapping().perm])  # the mapping matrix was applied
        assert f["mano/faces"].shape[1] == 3 and f["mano/joint_regressor"].shape == (21, 778)
        assert list(f["samples/item_id"][()]) == list(range(12))


@pytest.mark.parametrize("codecs", [{"image": "png", "depth": "f32-gzip", "mask": "u8-gzip"},
                                    {"image": "jpeg95", "depth": "u16-png", "mask": "bits"},
                                    {"image": "raw", "depth": "f16-gzip"},
                                    {"image": "webp", "depth": "f32-masked-zlib"},
                                    {"image": "gzip1", "depth": "f32-masked"}])
def test_other_codecs_roundtrip(render_dir, tmp_path, codecs):
    m = run_pack(render_dir, tmp_path / "ds", codecs=codecs)
    r = S.ShardReader(tmp_path / "ds" / m["shards"][0]["file"])
    p, v = int(r.columns["pose_id"][5]), int(r.columns["view_id"][5])
    base = f"{render_dir}/items/{p:05d}/v{v:03d}"
    import cv2

    img, depth = cv2.imread(base + ".png")[..., ::-1], np.load(base + ".depth.npy")
    got = r.read("image", 5)
    err = np.abs(got.astype(int) - img).mean()
    assert err == 0 if S.IMAGE_CODECS[codecs["image"]].lossless else 0 < err < 3
    tol = {"f32-gzip": 0, "u16-png": 5.01e-6, "f16-gzip": 2.5e-4, "f32-masked-zlib": 0, "f32-masked": 0}[codecs["depth"]]
    assert np.abs(r.read("depth", 5) - depth).max() <= tol
    assert np.array_equal(r.read("mask", 5), depth > 0)


def test_deterministic_bytes(render_dir, tmp_path):
    a = run_pack(render_dir, tmp_path / "a", shard_size_mb=0.05)
    b = run_pack(render_dir, tmp_path / "b", shard_size_mb=0.05)
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]
    assert a["tables"]["sha256"] == b["tables"]["sha256"]
    assert (tmp_path / "a/manifest.json").read_bytes() == (tmp_path / "b/manifest.json").read_bytes()


def test_resume_keeps_finished_shards(render_dir, tmp_path, monkeypatch):
    ref = run_pack(render_dir, tmp_path / "ref", shard_size_mb=0.02)
    out = tmp_path / "ds"
    import datagen.dataset.pack as P

    calls = {"n": 0}
    real = P.load_item_arrays

    def dying(*a, **k):  # the 8th read kills the run, like a Ctrl-C
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(P, "load_item_arrays", dying)
    with pytest.raises(KeyboardInterrupt):
        run_pack(render_dir, out, shard_size_mb=0.02, workers=1)
    done = sorted(p.name for p in out.glob("shard-*.h5"))
    assert done and not list(out.glob("*.partial")) and not (out / "manifest.json").exists()
    mtimes = {n: (out / n).stat().st_mtime_ns for n in done}
    monkeypatch.setattr(P, "load_item_arrays", real)
    calls["n"] = 0
    counting = lambda *a, **k: (calls.__setitem__("n", calls["n"] + 1), real(*a, **k))[1]  # noqa: E731
    monkeypatch.setattr(P, "load_item_arrays", counting)
    m = run_pack(render_dir, out, shard_size_mb=0.02, workers=1)
    assert calls["n"] < 12  # finished shards were not redone
    assert all((out / n).stat().st_mtime_ns == mtimes[n] for n in done)
    assert [s["sha256"] for s in m["shards"]] == [s["sha256"] for s in ref["shards"]]
    # other options in the same OUT_DIR are refused rather than mixed
    with pytest.raises(PackError, match="other inputs or options"):
        run_pack(render_dir, out, shard_size_mb=0.02, codecs={"image": "png"})


def test_bad_items_stop_or_are_skipped_and_recorded(tmp_path):
    render = make_render_dir(tmp_path / "render", n_poses=2, n_views=3)
    (render / "items/00001/v002.png").write_bytes(b"not a png")  # corrupt image: found when read
    with pytest.raises(PackError) as e:
        run_pack(render, tmp_path / "a")
    assert "items/00001/v002" in str(e.value) and "decoded" in str(e.value)
    assert not list((tmp_path / "a").glob("shard-*.h5.partial"))

    good = (render / "items/00000/v001.json").read_text()
    (render / "items/00000/v001.json").unlink()  # killed before its labels were written
    lab = json.loads((render / "items/00001/v000.json").read_text())
    lab["keypoints_2d"][3][0] += 2.0  # a label that disagrees with the mesh
    (render / "items/00001/v000.json").write_text(json.dumps(lab))
    with pytest.raises(PackError) as e:
        run_pack(render, tmp_path / "b")
    msg = str(e.value)
    assert "items/00000/v001" in msg and "JSON" in msg and "items/00001/v000" in msg and "keypoints_2d" in msg
    assert "Nothing was written" in msg and not list((tmp_path / "b").glob("*.h5"))

    m = run_pack(render, tmp_path / "c", skip_bad=True)
    skipped = {(d["pose_id"], d["view_id"]): d["reason"] for d in m["skipped"]}
    assert set(skipped) == {(0, 1), (1, 0), (1, 2)}
    assert "decoded" in skipped[(1, 2)] and m["counts"]["samples"] == 3 and m["counts"]["skipped"] == 3
    with h5py.File(tmp_path / "c" / "tables.h5") as f:
        assert sorted(f["samples/item_id"][()]) == [0, 2, 4]
    (render / "items/00000/v001.json").write_text(good)


def test_cli_runs_and_reports(render_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    bad = subprocess.run([sys.executable, "-m", "datagen.pack", str(tmp_path / "nothing"), str(tmp_path / "o")],
                         capture_output=True, text=True, env=env, cwd=REPO)
    assert bad.returncode == 2 and "not a directory" in bad.stderr


def test_render_dir_that_grew_resumes_and_matches_a_fresh_pack(tmp_path):
    render = make_render_dir(tmp_path / "render", n_poses=2, n_views=4)
    out = tmp_path / "ds"
    first = run_pack(render, out, shard_size_mb=0.02)
    kept = {s["file"]: (out / s["file"]).stat().st_mtime_ns for s in first["shards"][:-1]}
    make_render_dir(tmp_path / "render", n_poses=3, n_views=4)  # the renderer went on with pose 2
    grown = run_pack(render, out, shard_size_mb=0.02)
    assert all((out / f).stat().st_mtime_ns == t for f, t in kept.items())  # full shards were kept
    fresh = run_pack(render, tmp_path / "fresh", shard_size_mb=0.02)
    assert grown["counts"]["samples"] == 12
    assert [s["sha256"] for s in grown["shards"]] == [s["sha256"] for s in fresh["shards"]]


@pytest.mark.blender
@pytest.mark.slow
def test_real_render_packs_verifies_and_reads(tmp_path, prepared, cache_dir):
    """Two items rendered by blender_scripts/render.py -> pack (real open778 mapping) -> verify -> read."""
    render = tmp_path / "render"
    r = subprocess.run([sys.executable, str(REPO / "blender_scripts" / "render.py"), "--out", str(render),
                        "--poses", "33", "--views", "3,100", "--cache", str(cache_dir), "--threads", "2",
                        "--no-progress"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    m = pack(render, tmp_path / "ds", cache_dir=cache_dir, progress=False, log=lambda *_: None)
    assert m["counts"]["samples"] == 2 and m["topology"] == "open778"
    assert m["licences"]["hdris"] and all(h.get("licence") for h in m["licences"]["hdris"])
    from datagen.dataset.reader import HandShards
    from datagen.dataset.verify import verify

    rep = verify(tmp_path / "ds")
    assert rep.ok, rep.text()
    ds = HandShards(tmp_path / "ds")
    for i in range(2):
        s = ds.read_sample(i)
        lab = json.loads((render / f"items/00033/v{s['view_id']:03d}.json").read_text())
        assert np.abs(s["joints_cam"] - np.asarray(lab["keypoints_3d_cam"])).max() < 2e-5
        import cv2

        png = cv2.imread(str(render / f"items/00033/v{s['view_id']:03d}.png"))[..., ::-1]
        assert np.array_equal(s["image"].transpose(1, 2, 0), png)
        assert np.array_equal(s["depth"], np.load(render / f"items/00033/v{s['view_id']:03d}.depth.npy"))
        # the mapped mesh sits on the hand: its vertices project onto the silhouette
        v = s["vertices_cam"].astype(np.float64)
        uv = v[:, :2] / v[:, 2:] * s["K"][0, 0] + s["K"][:2, 2]
        px = np.clip(np.floor(uv).astype(int), 0, 255)
        from scipy.ndimage import binary_dilation

        assert binary_dilation(s["mask"], iterations=2)[px[:, 1], px[:, 0]].mean() > 0.99
