"""``python -m train``: full MobRecon training (paper Sec. 3.4 / 4.1) on our shards (+ FreiHAND).

Losses per view: mesh L1, 2D pose L1, normal, edge length; between two augmentations of the
same image: con3D and con2D (from ``loss.consistency_from_epoch``).  Defaults are the paper's
(configs/train.toml); see docs/TRAINING.md.  Outputs in ``run.out``: last.pt (exact resume),
model.pt (inference: train.evaluate / train.predict), config.toml, metrics.jsonl, tb/.

Multi-process: ``torchrun --nproc_per_node 2 -m train ...`` (DDP; gloo on CPU, NCCL on GPU).
"""
from __future__ import annotations

import argparse
import sys

import torch

from datagen.config import REPO_ROOT

from .augment import AugmentParams
from .config import add_config_args, parse_cli
from .data import MixedDataset, TopologyError, build_sources, template_of
from .engine import Task, dist_info, fit_command
from .losses import con2d_loss, con3d_loss, edge_length_loss, mesh_l1, normal_loss, pose2d_l1
from .model_io import (FORMAT, build_from_config, load_pretrained_encoder,
                       save_atomic, unwrap)
from .schema import TRAIN_SCHEMA

DEFAULT_CONFIG = "configs/train.toml"


def train_loss(cfg: dict):
    L = cfg["loss"]

    def loss(model, batch, epoch, device):
        bare = unwrap(model)
        img = batch["img"].to(device, non_blocking=True)
        B, V = img.shape[:2]
        out = model(img.flatten(0, 1))
        pv = out["verts"]
        puv = out["uv"]
        gv = batch["verts"].to(device).flatten(0, 1)
        guv = batch["uv"].to(device).flatten(0, 1)
        faces = bare.faces
        two = V == 2
        terms = {"mesh": mesh_l1(pv, gv), "pose2d": pose2d_l1(puv, guv), "normal": normal_loss(pv, gv, faces),
                 "edge": edge_length_loss(pv, gv, faces)}
        w = {"mesh": L["mesh"], "pose2d": L["pose2d"], "normal": L["normal"] if two else L["normal_one_view"],
             "edge": L["edge"] if two else L["edge_one_view"]}
        total = sum(V * w[k] * terms[k] for k in terms)  # per-view weights, summed over the views
        if two and epoch >= L["consistency_from_epoch"]:
            Rz = batch["Rz"].to(device)
            A = batch["A"].to(device)
            R12 = Rz[:, 1] @ Rz[:, 0].transpose(1, 2)
            T12 = A[:, 1] @ torch.linalg.inv(A[:, 0])
            v = pv.view(B, V, *pv.shape[1:])
            uv = puv.view(B, V, *puv.shape[1:])
            terms["con3d"] = con3d_loss(v[:, 0], v[:, 1], R12)
            terms["con2d"] = con2d_loss(uv[:, 0], uv[:, 1], T12, img.shape[-1])
            total = total + L["con3d"] * terms["con3d"] + L["con2d"] * terms["con2d"]
        return total, {k: float(t.detach()) for k, t in terms.items()}

    return loss


def make_task(cfg: dict, template, val_sources=None, val_full=None) -> Task:
    m = cfg["model"]

    def build():
        model = build_from_config(template, m)
        if m["pretrained"]:
            keys = load_pretrained_encoder(model, m["pretrained"], m["load_mapreg"], m["encoder"])
            if dist_info()[0] == 0:
                print(f"initialised {len(keys)} encoder/MapReg tensors from {m['pretrained']}", file=sys.stderr)
        return model

    validate = None
    if val_sources:
        from .evaluate import evaluate_sources

        aug = AugmentParams.from_config(cfg["augment"])

        def validate(model, device):
            res = evaluate_sources(model, val_sources, aug, cfg["data"]["crop_size"], 32, device,
                                   cfg["run"]["val_max"], chains=val_full is not None, full_sources=val_full,
                                   fscore=True)
            flat = {}
            for name, met in res.items():
                met.pop("_predictions", None)
                pre = "" if len(res) == 1 else name.replace(":", "_") + "/"
                by_hand = met.pop("by_handedness", None) or {}  # both hands in the data: each one's metrics too
                flat.update({pre + k: v for k, v in met.items()})
                flat.update({f"{pre}{hand}/{k}": v for hand, hm in by_hand.items() for k, v in hm.items()})
            return flat

    extra = {"template": template.to_dict()}

    def finalize(model, out_dir):
        save_atomic({"format": FORMAT, "model": model.state_dict(), "config": cfg, **extra}, out_dir / "model.pt")
        print(f"wrote {out_dir / 'model.pt'}", file=sys.stderr)

    return Task(FORMAT, build, train_loss(cfg), validate, finalize, extra)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m train",
        description="Train MobRecon (2D encoder + MapReg + pose pooling + PVL + DSConv decoder) on packed datasets "
                    "(python -m datagen.pack) and optionally FreiHAND. Every option is a config key; values come from "
                    "the schema default, then --config, then the flags given. Multi-process: torchrun "
                    "--nproc_per_node N -m train ... . Outputs: OUT/last.pt (exact resume), OUT/model.pt, "
                    "OUT/config.toml, OUT/metrics.jsonl, OUT/tb (TensorBoard).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(ap, TRAIN_SCHEMA, str(REPO_ROOT / DEFAULT_CONFIG) if (REPO_ROOT / DEFAULT_CONFIG).exists() else None)
    return ap


def main(argv=None) -> int:
    cfg = parse_cli(build_parser(), TRAIN_SCHEMA, argv)
    if cfg is None:
        return 0
    d = cfg["data"]
    try:
        sources = build_sources(cfg, d["train_split"])
        template = template_of(sources)
    except (TopologyError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    val_sources = val_full = None
    if cfg["run"]["val_every"]:
        from .data import ShardSource, flip_mode

        val_sources = [ShardSource(p, d["val_split"], d["split_by"], d["split_fractions"], d["split_seed"],
                                   flip_mode(d)) for p in d["datasets"]]
        keep = [i for i, s in enumerate(val_sources) if len(s)]
        val_sources = [val_sources[i] for i in keep] or None
        if val_sources:
            val_full = [ShardSource(d["datasets"][i], "all", d["split_by"], d["split_fractions"], d["split_seed"],
                                    flip_mode(d)) for i in keep]
    aug = AugmentParams.from_config(cfg["augment"])
    views = 2 if cfg["loss"]["consistency"] else 1
    dataset = MixedDataset(sources, aug, d["crop_size"], views=views, train=True)
    rank = dist_info()[0]
    if rank == 0:
        desc = ", ".join(f"{s.name} ({len(s)})" for s in sources)
        print(f"train on {desc}; template {template.name} ({template.topology}); {views} view(s) per image",
              file=sys.stderr)
    return fit_command(cfg, make_task(cfg, template, val_sources, val_full), dataset, [len(s) for s in sources])


if __name__ == "__main__":
    sys.exit(main())
