"""python -m train / train.evaluate / train.predict on a real tiny packed dataset (real torch steps)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from train.augment import AugmentParams
from train.cli import main as train_main
from train.cli import train_loss
from train.data import MixedDataset, ShardSource
from train.model_io import build_model, model_from_checkpoint
from train.schema import TRAIN_SCHEMA
from train.config import load_config

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def _args(ds, out, *extra):
    return ["--data", str(ds), "--out", str(out), "--encoder", "ghoststack", "--batch-size", "2", "--workers", "0",
            "--split-fractions", "0.7", "0.3", "0", "--samples-per-epoch", "6", "--milestones", "1",
            "--consistency-from-epoch", "1", "--val-every", "0", "--threads", "1", "--no-progress", *extra]


def test_training_steps_reduce_the_loss(tiny_ds):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    src = ShardSource(tiny_ds, "train", fractions=(0.7, 0.3, 0.0))
    cfg = load_config(TRAIN_SCHEMA)
    ds = MixedDataset([src], AugmentParams.from_config(cfg["augment"]), 128, views=2)
    batch = torch.utils.data.default_collate([ds[(0, i, i)] for i in range(4)])
    model = build_model(src.template(), "ghoststack").train()
    loss_fn = train_loss(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss, terms = loss_fn(model, batch, 5, "cpu")  # epoch 5: consistency terms on
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert {"mesh", "pose2d", "normal", "edge", "con3d", "con2d"} <= set(terms)
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses


def test_resume_is_bit_identical(tiny_ds, tmp_path):
    # 5 steps straight (crosses an epoch end, the LR milestone and the consistency switch) ...
    assert train_main(_args(tiny_ds, tmp_path / "a", "--max-steps", "5")) == 0
    # ... or 2 steps, stop, resume from last.pt and go on to 5
    assert train_main(_args(tiny_ds, tmp_path / "b", "--max-steps", "2")) == 0
    ck = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert (ck["epoch"], ck["batch"], ck["step"]) == (0, 2, 2)
    assert train_main(_args(tiny_ds, tmp_path / "b", "--max-steps", "5", "--resume", "auto")) == 0
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert a["step"] == b["step"] == 5 and a["epoch"] == b["epoch"] == 1
    assert a["scheduler"]["last_epoch"] == 1 and a["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-4)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    # a different seed gives a different model (the comparison above can fail)
    assert train_main(_args(tiny_ds, tmp_path / "c", "--max-steps", "2", "--seed", "1")) == 0
    c = torch.load(tmp_path / "c" / "last.pt", weights_only=False)
    ck2 = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert any(not torch.equal(c["model"][k], ck2["model"][k]) for k in c["model"])
    assert (tmp_path / "a" / "config.toml").exists() and any((tmp_path / "a" / "tb").iterdir())


def test_ddp_two_gloo_processes(tiny_ds, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "train",
           *_args(tiny_ds, out, "--max-steps", "2", "--samples-per-epoch", "8")]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["world_size"] == 2 and ck["step"] == 2
    assert (out / "model.pt").exists()


def test_evaluate_and_predict_cli(tiny_ds, tmp_path):
    out = tmp_path / "run"
    assert train_main(_args(tiny_ds, out, "--epochs", "1", "--val-every", "1", "--val-max", "4")) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert "pa_mpjpe_mm" in json.loads(lines[-1])
    from train.evaluate import main as eval_main

    fj = tmp_path / "pred.json"
    assert eval_main(["--checkpoint", str(out / "model.pt"), "--split", "val", "--out", str(tmp_path / "m.json"),
                      "--freihand-json", str(fj), "--no-progress", "--batch-size", "4"]) == 0
    rep = json.loads((tmp_path / "m.json").read_text())
    (name, m), = rep["sources"].items()
    for k in ("mpjpe_mm", "pa_mpjpe_mm", "pa_mpvpe_mm", "f_at_5mm", "f_at_15mm", "auc_3d_pa_0_50mm",
              "auc_2d_0_30px", "root_error_mm"):
        assert np.isfinite(m[k]), k
    xyz, verts = json.loads(fj.read_text())
    assert len(xyz) == m["samples"] and np.asarray(xyz).shape[1:] == (21, 3) and np.asarray(verts).shape[1:] == (778, 3)
    # predict on an image of the dataset: mesh, overlay and JSON; the mesh re-projects onto the 2D joints
    import cv2

    src = ShardSource(tiny_ds, "all")
    img_path = tmp_path / "hand.png"
    cv2.imwrite(str(img_path), src.get(3)["image"][..., ::-1])
    from train.predict import main as predict_main

    assert predict_main([str(img_path), "--checkpoint", str(out / "model.pt"), "--out", str(tmp_path / "p"),
                         "--format", "both", "--box", "20", "20", "70", "80"]) == 0
    for suffix in (".ply", ".obj", ".json", "_overlay.png"):
        assert (tmp_path / "p" / f"hand{suffix}").exists(), suffix
    ply = (tmp_path / "p" / "hand.ply").read_text().splitlines()
    assert "element vertex 778" in ply
    meta = json.loads((tmp_path / "p" / "hand.json").read_text())
    assert np.isfinite(meta["reprojection_px"]) and len(meta["joints_cam_m"]) == 21
    ov = cv2.imread(str(tmp_path / "p" / "hand_overlay.png"))
    assert ov.shape[:2] == (96, 96)
    model, tpl, _ = model_from_checkpoint(out / "model.pt")
    assert tpl.topology == "open778" and not model.training


@pytest.mark.parametrize("entry", ["pretrain", "train", "train.evaluate", "train.predict"])
def test_cli_help_documents_every_option(entry):
    r = subprocess.run([PY, "-m", entry, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "usage:" in r.stdout
    if entry in ("train", "pretrain"):
        from train.schema import PRETRAIN_SCHEMA

        schema = TRAIN_SCHEMA if entry == "train" else PRETRAIN_SCHEMA
        for o in schema:
            assert o.cli in r.stdout and o.name in r.stdout, o.name


def test_config_errors_name_the_key(tmp_path):
    from train.config import ConfigError

    bad = tmp_path / "bad.toml"
    bad.write_text("[optim]\nlr = 'fast'\n")
    with pytest.raises(ConfigError, match="optim.lr must be a number"):
        load_config(TRAIN_SCHEMA, bad)
    bad.write_text("[optim]\nlearning_rate = 0.1\n")
    with pytest.raises(ConfigError, match="unknown key optim.learning_rate"):
        load_config(TRAIN_SCHEMA, bad)
    with pytest.raises(ConfigError, match="split_fractions"):
        load_config(TRAIN_SCHEMA, None, {"data": {"split_fractions": [0.5, 0.6, 0.1]}})
    cfg = load_config(TRAIN_SCHEMA, REPO / "configs" / "train.toml")
    assert cfg == load_config(TRAIN_SCHEMA)  # the shipped file states the defaults
    assert cfg["optim"]["milestones"] == [30] and cfg["optim"]["epochs"] == 38 and cfg["optim"]["batch_size"] == 32


def test_template_offset_is_a_config_value_that_trains_and_reloads(tiny_ds, tmp_path):
    from train.evaluate import main as eval_main

    out = tmp_path / "to"
    assert train_main(_args(tiny_ds, out, "--max-steps", "2", "--template-offset")) == 0
    model, tpl, ck = model_from_checkpoint(out / "model.pt")
    assert ck["config"]["model"]["template_offset"] is True and model.template_offset
    last = torch.load(out / "last.pt", weights_only=False)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in last["model"].items())
    # the default (the paper's decoder) stays off
    assert load_config(TRAIN_SCHEMA)["model"]["template_offset"] is False

    def evaluate(*flags):
        f = tmp_path / f"m{len(list(tmp_path.iterdir()))}.json"
        assert eval_main(["--checkpoint", str(out / "model.pt"), "--split", "all", "--split-by", "pose", "--out", str(f),
                          "--no-progress", "--no-chains", *flags]) == 0
        (m,) = json.loads(f.read_text())["sources"].values()
        return m

    rest, untrained = evaluate("--baseline", "rest-template"), evaluate("--untrained")
    assert "uv_error_px" not in rest and "uv_error_px" in untrained  # a constant mesh has no 2D joints
    # an untrained network with the offset outputs (nearly) the rest template: its random offsets are
    # tiny (the decoder's initial output is a collapsed mesh, see below) ...
    assert abs(untrained["pa_mpjpe_mm"] - rest["pa_mpjpe_mm"]) < 0.05 * rest["pa_mpjpe_mm"]
    # ... while the paper's decoder, untrained, starts from a collapsed mesh, far from any hand
    torch.manual_seed(0)
    bare = build_model(tpl, "ghoststack").eval()
    with torch.no_grad():
        v = bare(torch.zeros(2, 3, 128, 128))["verts"]
    spread = float((v - v.mean(1, keepdim=True)).norm(dim=-1).mean()) * 200  # mm
    rest_spread = float(np.linalg.norm(tpl.vertices - tpl.vertices.mean(0), axis=1).mean()) * 1000
    assert spread < 0.2 * rest_spread


def test_mean_train_pose_baseline_is_the_mean_hand_frame_mesh(tiny_ds):
    from train.evaluate import ConstantMesh, mean_train_mesh, rest_template_mesh

    fr = (0.5, 0.0, 0.5)
    src = ShardSource(tiny_ds, "train", "pose", fr)
    got = mean_train_mesh([src])
    # independently: each training sample's camera-space mesh taken back to the hand frame, root-relative
    acc = []
    for i in range(len(src)):
        s = src.ds.read_sample(i)
        R = src.ds.tables.R32[s["view_id"]].astype(np.float64)
        acc.append((s["vertices_cam"].astype(np.float64) - s["joints_cam"][0]) @ R)
    np.testing.assert_allclose(got, np.mean(acc, 0) / 0.2, atol=1e-5)
    tpl = src.template()
    rest = rest_template_mesh(tpl)
    assert np.abs(tpl.regressor[0] @ rest).max() < 1e-9  # root-relative
    m = ConstantMesh(rest, tpl.regressor)
    o = m(torch.zeros(3, 3, 128, 128))
    assert o["verts"].shape == (3, 778, 3) and torch.allclose(o["verts"][2], torch.as_tensor(rest, dtype=torch.float32))


def test_without_bars_training_prints_progress_lines(tiny_ds, tmp_path, capfd):
    """The demo runs training with --no-progress: it must still say how far it is (issue 11)."""
    assert train_main(_args(tiny_ds, tmp_path / "p", "--max-steps", "3", "--progress-every-s", "1e-9")) == 0
    err = capfd.readouterr().err
    assert "step 1/" in err and "steps/s, ETA" in err
    assert train_main(_args(tiny_ds, tmp_path / "q", "--max-steps", "2", "--progress-every-s", "0")) == 0
    assert "steps/s, ETA" not in capfd.readouterr().err
