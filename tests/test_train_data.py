"""train.data / train.augment: real shards (datagen.pack of a toy render dir), crops, labels, plans.

`tiny_ds` (conftest.py) is the packed toy dataset all training tests share.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from train.augment import AugmentParams, make_view
from train.data import MixedDataset, PlanSampler, ShardSource, epoch_plan
from datagen.geometry.projection import project
from train.geometry import apply_affine, crop_affine, warp_crop
from datagen.geometry.raster import rasterize
from train.losses import con2d_loss, con3d_loss

from conftest import TINY_POSES as N_POSES, TINY_SIZE as SIZE, TINY_VIEWS as N_VIEWS


def test_shard_source_reads_consistent_samples(tiny_ds):
    src = ShardSource(tiny_ds, "all")
    assert len(src) == N_POSES * N_VIEWS and src.topology == "open778"
    tpl = src.template()
    assert tpl.vertices.shape == (778, 3) and tpl.regressor.shape == (21, 778) and tpl.faces.shape[1] == 3
    s = src.get(7)
    assert s["image"].shape == (SIZE, SIZE, 3) and s["image"].dtype == np.uint8 and s["mask"].any()
    # labels agree with each other: projected joints land where the packer's 2D labels are
    uv = project(s["joints"], s["K"])
    kp2 = src.ds.read_sample(7)["keypoints_2d"] if "keypoints_2d" in src.ds.fields else None
    assert kp2 is None or np.abs(uv - kp2).max() < 0.05
    # the projected mesh covers the silhouette's box
    pv = project(s["verts"], s["K"])
    ys, xs = np.nonzero(s["mask"])
    assert abs(pv[:, 0].min() - xs.min()) < 2 and abs(pv[:, 1].max() - (ys.max() + 1)) < 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_splits_are_the_datasets_pose_group_splits(tiny_ds, seed):
    from datagen.dataset.reader import ShardDataset

    fr = (0.5, 0.25, 0.25)
    parts = [ShardSource(tiny_ds, s, "pose", fr, seed) for s in ("train", "val", "test")]
    # nothing thrown away: the three splits partition the samples ...
    rows = np.concatenate([p.ds.indices for p in parts])
    assert len(rows) == N_POSES * N_VIEWS and len(set(rows.tolist())) == len(rows)
    # ... exactly as datagen's reader splits them (its pose groups) ...
    for p, name in zip(parts, ("train", "val", "test")):
        assert np.array_equal(p.ds.indices, ShardDataset(tiny_ds, split=name, fractions=fr, split_seed=seed).indices)
    # ... and no pose group (the toy table repeats pose 1 as pose 2) is in two splits
    groups = [set(p.pose_groups.tolist()) for p in parts]
    assert not groups[0] & groups[1] and not groups[0] & groups[2] and not groups[1] & groups[2]
    both = [p for p in parts if {1, 2} & set(p.pose_ids.tolist())]
    assert len(both) == 1 and {1, 2} <= set(both[0].pose_ids.tolist())


def _pose_table(bases):
    """Pose provenance as datagen builds it (ids, pose_a, pose_b, t) for the bases and their chains,
    with datagen's pose groups."""
    from datagen.dataset.pack import pose_groups
    from datagen.poses.construction import pair_list

    pairs = pair_list()
    ids, pa, pb, t = [], [], [], []
    for m in range(32):
        ids.append(m), pa.append(m), pb.append(m), t.append(0.0)
    for k, (a, b) in enumerate(pairs):
        for s in range(3):
            ids.append(32 + 3 * k + s), pa.append(a), pb.append(b), t.append((s + 1) / 4)
    table = {k: np.asarray(v) for k, v in (("pose_id", ids), ("pose_a", pa), ("pose_b", pb), ("t", t))}
    keep = np.isin(table["pose_a"], bases) & np.isin(table["pose_b"], bases)
    table = {k: v[keep] for k, v in table.items()}
    groups = pose_groups({"ids": table["pose_id"], "pose_a": table["pose_a"], "pose_b": table["pose_b"],
                          "t": table["t"]})
    return table, groups


@pytest.mark.parametrize("bases", [tuple(range(32)), (0, 31, 1, 2, 6, 12, 24, 25, 29, 30, 16, 7)])
def test_chain_split_holds_out_whole_chains_and_keeps_pose_groups(bases):
    from datagen.dataset.reader import select_split
    from train.data import split_keys

    table, groups = _pose_table(bases)
    n_views = 2
    pid = np.repeat(table["pose_id"], n_views)
    grp = np.repeat(groups, n_views)
    view = np.tile(np.arange(n_views), len(table["pose_id"]))
    keys = split_keys(pid, grp, table, "chain")
    assert np.array_equal(split_keys(pid, grp, table, "pose"), grp)
    fr = (0.7, 0.0, 0.3)
    for seed in range(3):
        split = np.full(len(pid), -1)
        for s, name in enumerate(("train", "val", "test")):
            rows = select_split(keys, view, name, "pose", fr, seed)
            assert (split[rows] == -1).all()
            split[rows] = s
        assert (split >= 0).all()  # every sample in exactly one split: nothing thrown away
        assert 0.1 < (split == 2).mean() < 0.5
        of_group, of_chain = {}, {}
        for g, s, a, b in zip(grp, split, np.repeat(table["pose_a"], n_views), np.repeat(table["pose_b"], n_views)):
            assert of_group.setdefault(int(g), s) == s  # identical poses never straddle splits: no leak
            if a != b:
                assert of_chain.setdefault((int(a), int(b)), s) == s  # a chain is held out whole
    # chains meeting in an identical midpoint (0 -> 31 and 6 -> 25: every finger half bent) share a key
    pairs = {(int(a), int(b)): k for a, b, k in zip(np.repeat(table["pose_a"], n_views),
                                                    np.repeat(table["pose_b"], n_views), keys)}
    assert pairs[(0, 31)] == pairs[(6, 25)] != pairs[(0, 1)]
    if len(bases) == 32:
        assert len(set(np.asarray(keys)[grp < 32].tolist())) == 32  # base poses keep their own keys
        # 496 chains merge into 211 components, one per distinct midpoint
        assert len({k for k, a, b in zip(keys, np.repeat(table["pose_a"], n_views),
                                         np.repeat(table["pose_b"], n_views)) if a != b}) == 211


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_augmented_labels_stay_consistent(tiny_ds, seed):
    src = ShardSource(tiny_ds, "all")
    raw = src.get(seed * 5)
    p = AugmentParams(rotation_prob=1.0)  # always rotate: the hardest case
    rng = np.random.default_rng(seed)
    v = make_view(raw, rng, p, 128)
    # 3D targets re-projected through the crop intrinsics give the 2D targets
    joints_cam = v["joints"].astype(np.float64) * 0.2 + v["root"]
    np.testing.assert_allclose(project(joints_cam, v["K_crop"].astype(np.float64)), v["uv"] * 128, atol=2e-3)
    verts_cam = v["verts"].astype(np.float64) * 0.2 + v["root"]
    # the rotation is about the camera axis: depths are unchanged, lengths are unchanged
    np.testing.assert_allclose(np.sort(verts_cam[:, 2]), np.sort(raw["verts"][:, 2]), atol=1e-5)
    assert v["joints"][0] == pytest.approx(np.zeros(3), abs=1e-7)
    # the image moved with the labels: the crop's silhouette is where the projected mesh is
    m = warp_crop(raw["mask"].astype(np.uint8) * 255, v["A"].astype(np.float64), 128) > 127
    r = rasterize(verts_cam, src.template().faces, v["K_crop"].astype(np.float64), 128, 128).mask
    assert (m & r).sum() / (m | r).sum() > 0.9
    assert v["img"].shape == (3, 128, 128) and -1.0 <= v["img"].min() and v["img"].max() <= 1.0


def test_warp_uses_continuous_pixel_centres():
    h, w = 40, 60
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx + 0.5, yy + 0.5, np.zeros_like(xx)], -1)  # value = continuous coordinate of the centre
    A = crop_affine((30.0, 20.0), 16.0, 0.3, 32)
    out = warp_crop(img, A, 32)
    q = np.array([[16.5, 16.5], [10.5, 20.5]])  # crop pixel centres
    p = apply_affine(np.linalg.inv(A), q)
    for (qx, qy), (px, py) in zip(q, p):
        # cv2 interpolates with 1/32-pixel fixed-point weights; a half-pixel convention error would be 0.5
        assert out[int(qy), int(qx), 0] == pytest.approx(px, abs=0.05)
        assert out[int(qy), int(qx), 1] == pytest.approx(py, abs=0.05)


def test_two_views_consistency_identities(tiny_ds):
    """On the true labels con3D and con2D are 0: V2 = R12 V1 and uv2 = T12 uv1 exactly."""
    src = ShardSource(tiny_ds, "all")
    ds = MixedDataset([src], AugmentParams(rotation_prob=1.0), 128, views=2)
    b = torch.utils.data.default_collate([ds[(0, i, 100 + i)] for i in range(4)])
    Rz, A = b["Rz"].double(), b["A"].double()
    R12 = Rz[:, 1] @ Rz[:, 0].transpose(1, 2)
    T12 = A[:, 1] @ torch.linalg.inv(A[:, 0])
    assert float(con3d_loss(b["verts"][:, 0].double(), b["verts"][:, 1].double(), R12)) < 1e-6
    assert float(con2d_loss(b["uv"][:, 0].double(), b["uv"][:, 1].double(), T12, 128)) < 1e-6
    # and the views really differ
    assert float((b["uv"][:, 0] - b["uv"][:, 1]).abs().mean()) > 0.01


def test_plan_is_deterministic_mixed_and_sharded():
    a = epoch_plan([10, 4], [1.0, 1.0], 20, seed=3, epoch=2)
    assert np.array_equal(a, epoch_plan([10, 4], [1.0, 1.0], 20, seed=3, epoch=2))
    assert not np.array_equal(a, epoch_plan([10, 4], [1.0, 1.0], 20, seed=3, epoch=3))
    assert (a[:, 0] == 0).sum() == 10 and (a[:, 0] == 1).sum() == 10  # 1:1 although sizes are 10:4
    assert sorted(a[a[:, 0] == 0, 1]) == list(range(10))  # no repeats while a source has enough
    assert np.bincount(a[a[:, 0] == 1, 1]).min() >= 2  # the small source repeats
    c = epoch_plan([10, 4], [], 0, seed=3, epoch=0)  # concatenation: each sample once
    assert len(c) == 14 and (c[:, 0] == 1).sum() == 4
    # two ranks split an epoch into disjoint halves; a resumed sampler continues where it stopped
    r0 = list(PlanSampler([10, 4], [], 0, 3, batch_size=3, rank=0, world_size=2))
    r1 = list(PlanSampler([10, 4], [], 0, 3, batch_size=3, rank=1, world_size=2))
    assert len(r0) == len(r1) == 6 and not set(r0) & set(r1)
    s = PlanSampler([10, 4], [], 0, 3, batch_size=3)
    s.set_epoch(0, start_batch=2)
    assert list(s) == list(PlanSampler([10, 4], [], 0, 3, batch_size=3))[6:]
