"""datagen.verify: exit 0 on a good dataset; a readable, non-zero report on damaged ones."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from datagen.dataset.verify import verify
from support.toy_data import REPO, make_render_dir, run_pack
from support.toy_data import rehash_manifest as _rehash


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    render = make_render_dir(root / "render", n_poses=3, n_views=4)
    run_pack(render, root / "ds", shard_size_mb=0.1)
    return root / "ds"


@pytest.fixture
def copy(good, tmp_path):
    dst = tmp_path / "ds"
    shutil.copytree(good, dst)
    return dst


def _cli(path, *extra):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "datagen.verify", str(path), "--no-progress", *extra],
                          capture_output=True, text=True, env=env, cwd=REPO)


def test_good_dataset_passes(good):
    r = _cli(good)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK" in r.stdout and "label checks on 12 sample(s)" in r.stdout


def test_flipped_bytes_fail_checksum(copy):
    shard = sorted(copy.glob("shard-*.h5"))[1]
    data = bytearray(shard.read_bytes())
    for k in range(len(data) // 2, len(data) // 2 + 64):
        data[k] ^= 0xFF
    shard.write_bytes(bytes(data))
    r = _cli(copy)
    assert r.returncode == 1 and "checksum mismatch" in r.stdout and shard.name in r.stdout


def test_deleted_shard_is_named(copy):
    shard = sorted(copy.glob("shard-*.h5"))[0]
    shard.unlink()
    r = _cli(copy, "--quick")
    assert r.returncode == 1 and "missing file" in r.stdout and shard.name in r.stdout


def test_corrupt_keypoint_label(copy):
    shard = sorted(copy.glob("shard-*.h5"))[0]
    with h5py.File(shard, "r+") as f:
        kp = f["keypoints_2d"][()]
        kp[1, 5] += [3.0, -2.0]
        f["keypoints_2d"][...] = kp
    _rehash(copy, shard.name)
    rep = verify(copy)
    assert not rep.ok and "keypoints" in rep.problems
    assert any(f"{shard.name} row 1" in m and "px from the projected" in m for m in rep.problems["keypoints"])
    assert _cli(copy, "--quick").returncode == 0  # schema and checksums are fine: only labels catch it


def test_corrupt_depth_and_visibility(good, tmp_path):
    copy = tmp_path / "f32"
    run_pack(good.parent / "render", copy, shard_size_mb=0.1, codecs={"depth": "f32"})
    shard = sorted(copy.glob("shard-*.h5"))[-1]
    with h5py.File(shard, "r+") as f:
        vis = f["visible"][()]
        row = int(np.argmin(f["mask_area_px"][()]))
        in_frame_hidden = np.nonzero(f["in_frame"][row] & ~vis[row])[0]
        d = f["depth"][0]
        d[d > 0] += 0.005  # 5 mm deeper everywhere on the hand in sample 0
        f["depth"][0] = d
        if in_frame_hidden.size:
            vis[row, in_frame_hidden[0]] = True
        f["visible"][...] = vis
    _rehash(copy, shard.name)
    rep = verify(copy)
    assert "depth vs labels" in rep.problems
    assert any("row 0" in m for m in rep.problems["depth vs labels"])


def test_tables_and_leftovers(copy):
    (copy / "shard-00099.h5").write_bytes(b"x")
    (copy / "shard-00100.h5.partial").write_bytes(b"x")
    with h5py.File(copy / "tables.h5", "r+") as f:
        mv = f["poses/mano_vertices"][()]
        mv[1, 10] += 0.01
        f["poses/mano_vertices"][...] = mv
    _rehash(copy, "tables.h5")
    rep = verify(copy, quick=True)
    assert {"unlisted file", "unfinished pack", "mapping"} <= set(rep.problems)
    assert "no manifest" in verify(copy / "nothing").text()


def test_preview_draws_sheet_and_3d_view(good, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = tmp_path / "p.png"
    r = subprocess.run([sys.executable, "-m", "datagen.preview", str(good), "-o", str(out), "-n", "4"],
                       capture_output=True, text=True, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr
    import cv2

    pic = cv2.imread(str(out))[..., ::-1]
    tile = 64 + 2
    assert pic.shape[1] == 8 * tile + 2 and pic.shape[0] > 2 * tile + 256  # 2 rows of 2 samples + 3D strip
    # the mesh-overlay tile is the image with the mesh blended in: it differs exactly around the hand
    image_tile, mesh_tile = pic[2:66, 2:66], pic[2:66, 2 + 3 * tile:2 + 3 * tile + 64]
    changed = (image_tile != mesh_tile).any(-1)
    assert 0.05 < changed.mean() < 0.6


def test_a_keypoint_on_a_pixel_border_may_take_either_pixel():
    # The labeller floors the float64 projection; the shard stores float32 (135.999994 -> 136.0),
    # so verify accepts both pixels at a border, and only there.
    from datagen.dataset.verify import _border_pixels

    assert _border_pixels(np.array([np.float32(135.999994), 93.2]), 256, 256) == {(135, 93), (136, 93)}
    assert _border_pixels(np.array([135.5, 93.5]), 256, 256) == {(135, 93)}
    assert _border_pixels(np.array([0.0, 255.9999]), 256, 256) == {(0, 255)}  # clipped to the image
