"""FreiHAND in its official layout: loading, crops, topology checks, mixing, prediction JSON.

The fixture writes a tiny FreiHAND-layout folder (real JPEGs and JSON files, the toy 778-vertex
mesh of the packer tests placed in front of the camera) - the real data is not redistributable.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from datagen.geometry.raster import rasterize
from support.toy_data import StubMapping, make_render_dir, run_pack, toy_mesh
from train.augment import AugmentParams, make_view
from train.data import FreiHANDSource, TopologyError, build_sources, epoch_plan, template_of
from train.evaluate import write_freihand_json
from datagen.geometry.projection import project
from train.schema import TRAIN_SCHEMA
from train.config import load_config

N_TRAIN, N_EVAL, SIZE = 5, 3, 224


def _sample(rng):
    v, f = toy_mesh()
    ang = rng.uniform(-0.6, 0.6, 3)
    from scipy.spatial.transform import Rotation

    R = Rotation.from_rotvec(ang).as_matrix()
    verts = v @ R.T + np.array([rng.uniform(-0.02, 0.02), rng.uniform(-0.06, -0.02), 0.55])
    joints = verts[np.linspace(0, 777, 21).astype(int)]
    K = np.array([[480.0 + rng.uniform(-30, 30), 0, 112.0], [0, 480.0, 112.0], [0, 0, 1]])
    return verts, joints, K, f


def make_freihand(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n, versions in (("training", N_TRAIN, 4), ("evaluation", N_EVAL, 1)):
        (root / split / "rgb").mkdir(parents=True, exist_ok=True)
        if split == "training":
            (root / split / "mask").mkdir(parents=True, exist_ok=True)
        Ks, xyz, vs, mano, scale = [], [], [], [], []
        for i in range(n):
            verts, joints, K, faces = _sample(rng)
            mask = rasterize(verts, faces, K, SIZE, SIZE).mask
            for v in range(versions):
                bg = rng.integers(0, 255, size=3) * (0.5 + 0.5 * rng.random((SIZE, SIZE, 1)))
                img = np.where(mask[..., None], np.array([200, 160, 140]), bg).astype(np.uint8)
                cv2.imwrite(str(root / split / "rgb" / f"{v * n + i:08d}.jpg"), img[..., ::-1])
            if split == "training":
                cv2.imwrite(str(root / split / "mask" / f"{i:08d}.jpg"), mask.astype(np.uint8) * 255)
            Ks.append(K.tolist())
            xyz.append(joints.tolist())
            vs.append(verts.tolist())
            mano.append([[0.0] * 61])
            scale.append(float(np.linalg.norm(joints[9] - joints[10])))
        for name, data in (("K", Ks), ("xyz", xyz), ("verts", vs), ("mano", mano), ("scale", scale)):
            (root / f"{split}_{name}.json").write_text(json.dumps(data))
    return root


@pytest.fixture(scope="module")
def freihand(tmp_path_factory):
    return make_freihand(tmp_path_factory.mktemp("freihand"))


@pytest.fixture(scope="module")
def mano_ds(tmp_path_factory):
    """Our toy data packed as if with --topology mano (a stub mapping that says 'mano')."""
    root = tmp_path_factory.mktemp("mano")
    render = make_render_dir(root / "render", n_poses=4, n_views=4, size=96)
    stub = StubMapping()
    stub.topology = "mano"
    run_pack(render, root / "ds", mapping=stub)
    return root / "ds"


def test_training_layout_versions_and_labels(freihand, monkeypatch, tmp_path):
    monkeypatch.setenv("HANDSYNTH_CACHE", str(tmp_path))
    src = FreiHANDSource(freihand, "training")
    assert len(src) == 4 * N_TRAIN and src.topology == "mano"
    K = json.loads((freihand / "training_K.json").read_text())
    for j in (0, N_TRAIN + 2, 3 * N_TRAIN + 4):
        s = src.get(j)
        i = j % N_TRAIN
        np.testing.assert_allclose(s["K"], K[i])
        assert s["image"].shape == (SIZE, SIZE, 3) and s["item_id"] == j
        assert s["mask"] is not None and s["mask"].any()
        # the mask of sample i is where its mesh projects
        uv = project(s["verts"], s["K"])
        inside = s["mask"][np.clip(uv[:, 1].astype(int), 0, SIZE - 1), np.clip(uv[:, 0].astype(int), 0, SIZE - 1)]
        assert inside.mean() > 0.8
    # the JSON arrays were cached as .npy for the next start
    assert list(tmp_path.glob("freihand/training_verts-*.npy"))
    sub = FreiHANDSource(freihand, "training", versions=(0, 2))
    assert len(sub) == 2 * N_TRAIN and sub.get(N_TRAIN)["item_id"] == 2 * N_TRAIN


def test_crop_labels_consistent_on_freihand(freihand):
    src = FreiHANDSource(freihand, "training")
    rng = np.random.default_rng(0)
    for j in range(4):
        v = make_view(src.get(j), rng, AugmentParams(rotation_prob=1.0), 128)
        cam = v["joints"].astype(np.float64) * 0.2 + v["root"]
        np.testing.assert_allclose(project(cam, v["K_crop"].astype(np.float64)), v["uv"] * 128, atol=2e-3)


def test_evaluation_split_without_masks_crops_from_the_mesh(freihand):
    ev = FreiHANDSource(freihand, "evaluation")
    assert len(ev) == N_EVAL and ev.has_gt
    s = ev.get(1)
    assert s["mask"] is None
    v = make_view(s, None, AugmentParams(), 128)
    assert (v["uv"] > 0).all() and (v["uv"] < 1).all()  # the hand is inside the crop


def test_mixing_open778_with_freihand_is_refused(tiny_ds, freihand):
    cfg = load_config(TRAIN_SCHEMA, None, {"data": {"datasets": [str(tiny_ds)], "freihand": str(freihand)}})
    sources = build_sources(cfg, "train")
    with pytest.raises(TopologyError, match="--topology mano"):
        template_of(sources)
    with pytest.raises(TopologyError, match="no packed dataset"):
        template_of([FreiHANDSource(freihand)])


def test_train_on_mano_pack_mixed_with_freihand(mano_ds, freihand, tmp_path):
    from train.cli import main as train_main
    from train.evaluate import main as eval_main

    out = tmp_path / "run"
    args = ["--data", str(mano_ds), "--freihand", str(freihand), "--weights", "1", "3", "--samples-per-epoch", "8",
            "--out", str(out), "--encoder", "ghoststack", "--batch-size", "2", "--workers", "0", "--epochs", "1",
            "--max-steps", "2", "--split-fractions", "0.5", "0.5", "0", "--val-every", "0", "--threads", "1",
            "--no-progress"]
    assert train_main(args) == 0
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["template"]["topology"] == "mano" and ck["step"] == 2
    plan = epoch_plan([6, 4 * N_TRAIN], [1, 3], 8, 0, 0)
    assert (plan[:, 0] == 0).sum() == 2 and (plan[:, 0] == 1).sum() == 6  # 1 : 3
    fj = tmp_path / "pred.json"
    assert eval_main(["--checkpoint", str(out / "model.pt"), "--split", "val", "--freihand", str(freihand),
                      "--freihand-json", str(fj), "--out", str(tmp_path / "m.json"), "--no-progress",
                      "--no-chains"]) == 0
    rep = json.loads((tmp_path / "m.json").read_text())
    assert rep["sources"]["freihand:evaluation"]["samples"] == N_EVAL
    xyz, verts = json.loads(fj.read_text())
    assert np.asarray(xyz).shape == (N_EVAL, 21, 3) and np.asarray(verts).shape == (N_EVAL, 778, 3)


def test_freihand_json_writer_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    j, v = rng.normal(size=(2, 21, 3)), rng.normal(size=(2, 778, 3))
    write_freihand_json(tmp_path / "p.json", j, v)
    xyz, verts = json.loads((tmp_path / "p.json").read_text())
    np.testing.assert_allclose(xyz, j, atol=1e-6)
    np.testing.assert_allclose(verts, v, atol=1e-6)
