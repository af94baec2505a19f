"""``python -m pretrain``: heatmap + position pretraining of the 2D encoder (supplement Fig. 14).

Network: DenseStack/GhostStack + MapReg (no lifting, no decoder).  Loss:
``heatmap * sum_map (maps - G)^2 + pose2d * |uv - uv*|_1`` with ``G`` a Gaussian (sigma in
16x16-map cells) at each joint and uv in crop pixels / crop size.  Data, augmentation, crop and
normalisation as in training (one view).  Defaults: the paper's (80 epochs, batch 128, Adam
1e-3 divided by 10 at epochs 20, 40, 60, 128x128 crops) in configs/pretrain.toml.
Outputs in ``run.out``: last.pt (exact resume), encoder.pt (for ``python -m train --pretrained``),
config.toml, metrics.jsonl, tb/.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from datagen.config import REPO_ROOT
from train.augment import AugmentParams
from train.config import add_config_args, parse_cli
from train.data import MixedDataset, ShardSource, build_sources, flip_mode
from train.engine import Task, dist_info, fit_command
from train.geometry import apply_affine
from train.losses import gaussian_heatmaps, heatmap_loss, pose2d_l1
from train.metrics import auc
from train.model_io import ENCODER_FORMAT, Encoder2D, save_atomic
from train.schema import PRETRAIN_SCHEMA

DEFAULT_CONFIG = "configs/pretrain.toml"
PRETRAIN_FORMAT = "handsynth-pretrain"


def pretrain_loss(cfg: dict):
    L = cfg["loss"]

    def loss(model, batch, epoch, device):
        img = batch["img"][:, 0].to(device, non_blocking=True)
        uv = batch["uv"][:, 0].to(device)
        out = model(img)
        maps = out["maps"]
        target = gaussian_heatmaps(uv, maps.shape[-1], L["heatmap_sigma"])
        terms = {"heatmap": heatmap_loss(maps, target), "pose2d": pose2d_l1(out["uv"], uv)}
        total = L["heatmap"] * terms["heatmap"] + L["pose2d"] * terms["pose2d"]
        return total, {k: float(v.detach()) for k, v in terms.items()}

    return loss


@torch.no_grad()
def evaluate_2d(model, sources, aug, crop: int, max_samples: int = 0, device="cpu", batch_size: int = 64) -> dict:
    """Mean 2D error and 2D AUC (0-30 px) in original-image pixels, per source."""
    model.eval()
    res = {}
    for src in sources:
        ds = MixedDataset([src], aug, crop, train=False)
        idx = np.arange(len(ds))
        if max_samples and len(idx) > max_samples:
            idx = np.sort(np.random.default_rng(0).choice(len(idx), max_samples, replace=False))
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, idx.tolist()), batch_size=batch_size)
        errs = []
        for b in loader:
            uv = model(b["img"][:, 0].to(device))["uv"].float().cpu().numpy() * crop
            A = b["A"][:, 0].double().numpy()
            pred = apply_affine(np.linalg.inv(A), uv)
            gt = apply_affine(np.linalg.inv(A), b["uv"][:, 0].double().numpy() * crop)
            errs.append(np.linalg.norm(pred - gt, axis=-1))
        e = np.concatenate(errs)
        res[src.name] = {"uv_error_px": float(e.mean()), "auc_2d_0_30px": auc(e, 0, 30, 100), "samples": len(e)}
    return res


def make_task(cfg: dict, val_sources=None) -> Task:
    enc = cfg["model"]["encoder"]
    aug = AugmentParams.from_config(cfg["augment"])
    validate = None
    if val_sources:
        def validate(model, device):
            res = evaluate_2d(model, val_sources, aug, cfg["data"]["crop_size"], cfg["run"]["val_max"], device)
            flat = {}
            for name, m in res.items():
                pre = "" if len(res) == 1 else name.replace(":", "_") + "/"
                flat.update({pre + k: v for k, v in m.items()})
            return flat

    def finalize(model, out_dir):
        save_atomic({"format": ENCODER_FORMAT, "encoder": enc, "state": model.state_dict(), "config": cfg},
                    out_dir / "encoder.pt")
        print(f"wrote {out_dir / 'encoder.pt'} (use: python -m train --pretrained {out_dir / 'encoder.pt'})",
              file=sys.stderr)

    return Task(PRETRAIN_FORMAT, lambda: Encoder2D(enc), pretrain_loss(cfg), validate, finalize, {"encoder": enc},
                find_unused=True)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m pretrain",
        description="2D pose pretraining of MobRecon's encoder with heatmap (MapReg's maps) and position (MapReg's "
                    "regression) supervision, on packed datasets (python -m datagen.pack) and optionally FreiHAND. "
                    "Every option is a config key: schema default, then --config, then the flags given. "
                    "Multi-process: torchrun --nproc_per_node N -m pretrain ... . Writes OUT/encoder.pt for "
                    "python -m train --pretrained, OUT/last.pt (exact resume), OUT/config.toml, OUT/metrics.jsonl, "
                    "OUT/tb.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(ap, PRETRAIN_SCHEMA, str(REPO_ROOT / DEFAULT_CONFIG) if (REPO_ROOT / DEFAULT_CONFIG).exists() else None)
    return ap


def main(argv=None) -> int:
    cfg = parse_cli(build_parser(), PRETRAIN_SCHEMA, argv)
    if cfg is None:
        return 0
    d = cfg["data"]
    try:
        sources = build_sources(cfg, d["train_split"])
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    val_sources = None
    if cfg["run"]["val_every"]:
        val_sources = [s for s in (ShardSource(p, d["val_split"], d["split_by"], d["split_fractions"], d["split_seed"],
                                               flip_mode(d)) for p in d["datasets"]) if len(s)] or None
    aug = AugmentParams.from_config(cfg["augment"])
    dataset = MixedDataset(sources, aug, d["crop_size"], views=1, train=True)
    if dist_info()[0] == 0:
        print("pretrain on " + ", ".join(f"{s.name} ({len(s)})" for s in sources), file=sys.stderr)
    return fit_command(cfg, make_task(cfg, val_sources), dataset, [len(s) for s in sources])


if __name__ == "__main__":
    sys.exit(main())
