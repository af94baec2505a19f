"""python -m pretrain: heatmap targets, real pretraining steps, encoder checkpoint -> training init."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pretrain.cli import main as pretrain_main
from pretrain.cli import pretrain_loss
from train.augment import AugmentParams
from train.config import load_config
from train.data import MixedDataset, ShardSource
from train.losses import gaussian_heatmaps
from train.model_io import Encoder2D, build_model, load_pretrained_encoder
from train.schema import PRETRAIN_SCHEMA


def test_gaussian_heatmap_peaks_at_the_joint():
    uv = torch.tensor([[[0.5, 0.5], [3.5 / 16, 10.5 / 16], [0.0, 1.0]]])
    h = gaussian_heatmaps(uv, 16, 1.0)
    assert h.shape == (1, 3, 16, 16)
    # a joint at a cell centre: peak 1 in that cell (row = v, column = u)
    assert h[0, 1, 10, 3] == pytest.approx(1.0) and h[0, 1].argmax() == 10 * 16 + 3
    # a joint on the corner between 4 cells: the 4 share the maximum exp(-0.25)
    top = torch.topk(h[0, 0].flatten(), 4).values
    np.testing.assert_allclose(top.numpy(), np.exp(-0.25), rtol=1e-6)
    assert h[0, 0, 7, 7] == pytest.approx(np.exp(-0.25))
    assert h[0, 2, 15, 0] == pytest.approx(np.exp(-0.25))  # bottom-left corner of the crop


def test_pretraining_steps_reduce_the_loss(tiny_ds):
    torch.manual_seed(0)
    cfg = load_config(PRETRAIN_SCHEMA)
    src = ShardSource(tiny_ds, "all")
    ds = MixedDataset([src], AugmentParams.from_config(cfg["augment"]), 128, views=1)
    batch = torch.utils.data.default_collate([ds[(0, i, i)] for i in range(4)])
    model = Encoder2D("ghoststack").train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    fn = pretrain_loss(cfg)
    losses = []
    for _ in range(8):
        loss, terms = fn(model, batch, 0, "cpu")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert set(terms) == {"heatmap", "pose2d"} and terms["heatmap"] > 0
    assert losses[-1] < 0.7 * losses[0], losses


def test_pretrain_cli_writes_an_encoder_training_starts_from(tiny_ds, tmp_path):
    out = tmp_path / "pre"
    assert pretrain_main(["--data", str(tiny_ds), "--out", str(out), "--encoder", "ghoststack", "--batch-size", "2",
                          "--workers", "0", "--epochs", "1", "--samples-per-epoch", "4", "--val-max", "4",
                          "--split-fractions", "0.7", "0.3", "0", "--threads", "1", "--no-progress"]) == 0
    assert (out / "encoder.pt").exists() and (out / "metrics.jsonl").exists()
    ck = torch.load(out / "encoder.pt", weights_only=False)
    assert ck["encoder"] == "ghoststack" and ck["config"]["optim"]["milestones"] == [20, 40, 60]
    model = build_model(ShardSource(tiny_ds, "all").template(), "ghoststack")
    keys = load_pretrained_encoder(model, out / "encoder.pt", load_mapreg=True, encoder="ghoststack")
    own = model.state_dict()
    assert any(k.startswith("mapreg.") for k in keys) and len(keys) > 100
    assert all(torch.equal(own[k], ck["state"][k]) for k in keys)
    with pytest.raises(ValueError, match="pretrained a ghoststack encoder"):
        load_pretrained_encoder(build_model(ShardSource(tiny_ds, "all").template(), "densestack"), out / "encoder.pt",
                                encoder="densestack")
