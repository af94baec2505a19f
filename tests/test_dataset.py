"""datagen.dataset: random access, camera-space labels, splits, multi-worker DataLoader."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datagen.dataset.reader import HandShards, select_split
from support.toy_data import StubMapping, make_render_dir, run_pack


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsroot")
    render = make_render_dir(root / "render", n_poses=3, n_views=4)
    run_pack(render, root / "ds", shard_size_mb=0.03)
    return render, root / "ds"


def test_samples_match_render_files_and_geometry(packed):
    render, out = packed
    ds = HandShards(out)
    assert len(ds) == 12
    perm = StubMapping().perm
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].dtype == torch.uint8 and s["image"].shape == (3, 64, 64)
        assert s["mask"].dtype == torch.bool and s["depth"].dtype == torch.float32
        p, v = int(s["pose_id"]), int(s["view_id"])
        lab = json.loads((render / f"items/{p:05d}/v{v:03d}.json").read_text())
        assert int(s["item_id"]) == lab["item_id"]
        # camera-space joints derived on read = the renderer's own camera-space keypoints
        assert np.abs(s["joints_cam"].numpy() - np.asarray(lab["keypoints_3d_cam"])).max() < 1e-5
        K = s["K"].numpy().astype(np.float64)
        j = s["joints_cam"].numpy().astype(np.float64)
        uv = j[:, :2] / j[:, 2:] * K[[0, 1], [0, 1]] + K[:2, 2]
        assert np.abs(uv - s["keypoints_2d"].numpy()).max() < 1e-3
        with np.load(render / f"meshes/pose_{p:05d}.npz") as z:
            R, t = np.asarray(lab["R"]), np.asarray(lab["t"])
            want = z["dense"].astype(np.float64)[perm] @ R.T + t
        assert np.abs(s["vertices_cam"].numpy() - want).max() < 1e-6
        d = s["depth"].numpy()
        assert np.array_equal(d > 0, s["mask"].numpy())
        assert ds.hdri_names[int(s["hdri_index"])] == lab["hdri"]["name"]
        assert np.allclose(s["skin"].numpy(), [lab["skin"][k] for k in ds.skin_names])
    f = HandShards(out, fields=("image", "dense_vertices_cam"), image_float=True)[3]
    assert set(f) == {"image", "dense_vertices_cam"} and f["image"].dtype == torch.float32
    assert float(f["image"].max()) <= 1.0 and f["dense_vertices_cam"].shape == (778, 3)


def test_splits_are_disjoint_deterministic_and_stable():
    pose = np.repeat(np.arange(1520), 6)
    view = np.tile(np.arange(6), 1520) * 36
    parts = [select_split(pose, view, s, "pose") for s in ("train", "val", "test")]
    assert sum(map(len, parts)) == len(pose) and len(np.unique(np.concatenate(parts))) == len(pose)
    poses = [set(pose[p]) for p in parts]
    assert not (poses[0] & poses[1] or poses[0] & poses[2] or poses[1] & poses[2])
    assert abs(len(poses[0]) / 1520 - 0.8) < 0.04 and len(poses[1]) > 100 and len(poses[2]) > 100
    assert np.array_equal(parts[1], select_split(pose, view, "val", "pose"))
    assert not np.array_equal(parts[1], select_split(pose, view, "val", "pose", seed=1))
    # a pose keeps its split when the dataset holds fewer poses (hash, not a permutation)
    sub = pose < 700
    sub_val = select_split(pose[sub], view[sub], "val", "pose")
    assert set(pose[sub][sub_val]) == {p for p in poses[1] if p < 700}
    vparts = [select_split(pose, view, s, "view") for s in ("train", "val", "test")]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert not set(view[vparts[a]]) & set(view[vparts[b]])
    both = select_split(pose, view, "test", "both")
    assert set(both) <= set(parts[2]) and set(both) <= set(vparts[2])


def test_dataloader_two_workers_random_order(packed):
    _, out = packed
    ds = HandShards(out, fields=("image", "depth", "ids", "vertices_cam"))
    ref = {int(ds[i]["index"]): ds[i] for i in range(len(ds))}  # opens shards in the parent first
    loader = DataLoader(ds, batch_size=5, shuffle=True, num_workers=2, generator=torch.Generator().manual_seed(0))
    seen = []
    for b in loader:
        for k in range(len(b["index"])):
            i = int(b["index"][k])
            seen.append(i)
            assert torch.equal(b["image"][k], ref[i]["image"]) and torch.equal(b["depth"][k], ref[i]["depth"])
            assert torch.equal(b["vertices_cam"][k], ref[i]["vertices_cam"])
    assert sorted(seen) == list(range(len(ds)))
    clone = pickle.loads(pickle.dumps(ds))  # spawn-style workers pickle the dataset
    assert torch.equal(clone[7]["image"], ref[7]["image"])


def test_split_datasets_partition_the_samples(packed):
    _, out = packed
    ds = HandShards(out)
    smp = ds.tables.samples
    assert set(smp["pose_group"][smp["pose_id"] == 2]) == {1}  # pose 2 repeats pose 1
    for seed in range(8):  # identical poses never straddle splits
        where = {}
        for s in ("train", "val", "test"):
            for i in HandShards(out, split=s, split_seed=seed, fields=("ids",)).indices:
                where.setdefault(int(smp["pose_id"][i]), set()).add(s)
        assert where[1] == where[2] and all(len(v) == 1 for v in where.values())
    n = [len(HandShards(out, split=s, fractions=(0.34, 0.33, 0.33))) for s in ("train", "val", "test")]
    assert sum(n) == 12 and all(k % 4 == 0 for k in n)  # whole poses (4 views each)
    with pytest.raises(ValueError, match="split"):
        HandShards(out, split="holdout")
