"""Evaluate a trained MobRecon: ``python -m train.evaluate --checkpoint OUT/model.pt``.

On held-out data of our packed datasets (split by pose, view or both - see docs/TRAINING.md)
and/or FreiHAND's evaluation set, it reports (mm, px):

* MPJPE / MPVPE (root-aligned), PA-MPJPE / PA-MPVPE, F@5 mm / F@15 mm (PA-aligned meshes),
  3D AUC 0-50 mm (PA-aligned joints, FreiHAND convention; also root-aligned), 2D AUC 0-30 px
  and mean 2D error in original-image pixels;
* camera-space root recovery: the wrist translation solved from the predicted 2D joints, the
  crop intrinsics and the predicted root-relative 3D joints (linear least squares,
  :func:`train.geometry.recover_root`) - its error and the camera-space MPJPE;
* acceleration error on pose sequences: our interpolated pose chains (base a -> t = 1/4,
  1/2, 3/4 -> base b, one view) are natural 5-frame sequences; 3D in mm/frame^2
  (root-relative joints), 2D in px/frame^2.  The chains whose interior poses are in the
  evaluated split are used; their end frames (base poses) are read from the whole dataset.

It writes ``metrics.json`` and, with ``--freihand-json``, the predictions in FreiHAND's
submission format (``[xyz_list, verts_list]``, metres, camera space, joints in FreiHAND order).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from datagen.geometry.mirror import flip_uv, mirror_points

from .augment import ROOT_SCALE_M, AugmentParams
from .data import FreiHANDSource, MixedDataset, ShardSource, flip_mode
from .geometry import apply_affine, recover_root
from .metrics import accel_error, summarise

__all__ = ["predict_dataset", "evaluate_sources", "pose_chains", "write_freihand_json", "ConstantMesh",
           "rest_template_mesh", "mean_train_mesh", "BASELINE_ONLY_3D", "main"]

# metrics that mean nothing for a constant-mesh baseline: it predicts no 2D joints (hence no root) and no
# orientation (its mesh is in the hand frame), so only the aligned 3D metrics (and the acceleration of a
# still hand) are reported
BASELINE_ONLY_3D = ("auc_2d_0_30px", "uv_error_px", "root_error_mm", "mpjpe_cam_mm", "accel_error_2d_px_per_frame2",
                    "accel_2d_pred_px_per_frame2", "mpjpe_mm", "mpvpe_mm", "auc_3d_0_50mm")


class ConstantMesh(torch.nn.Module):
    """A baseline 'network': the same root-relative mesh (units of 0.2 m) for every image.

    Its uv output is the crop centre (it predicts no 2D joints); evaluations drop the 2D and
    camera-space metrics (:data:`BASELINE_ONLY_3D`).  Compared after Procrustes alignment
    (PA-MPJPE, PA-MPVPE, F-scores) it says what knowing only the hand's shape is worth.
    """

    predicts_2d = False

    def __init__(self, verts_rel: np.ndarray, joint_regressor: np.ndarray):
        super().__init__()
        self.register_buffer("verts", torch.as_tensor(np.asarray(verts_rel), dtype=torch.float32))
        self.register_buffer("joint_regressor", torch.as_tensor(np.asarray(joint_regressor), dtype=torch.float32))

    def forward(self, img):
        B = img.shape[0]
        return {"verts": self.verts.expand(B, -1, -1), "uv": torch.full((B, self.joint_regressor.shape[0], 2), 0.5)}


def rest_template_mesh(tpl) -> np.ndarray:
    """The template's rest vertices, root-relative (root = joint 0 through the regressor), 0.2 m units."""
    V = np.asarray(tpl.vertices, np.float64)
    return (V - tpl.regressor[0] @ V) / ROOT_SCALE_M


def mean_train_mesh(sources: list) -> np.ndarray:
    """The mean root-relative mesh of the training samples (hand frame, 0.2 m units), over all
    given (training-split) sources, one term per sample (its own mesh: with per-item wrists,
    its forearm turned, datagen.dataset.reader.Tables.item_mano)."""
    acc, n = 0.0, 0
    for src in sources:
        tb = src.ds.tables
        rows = tb.pose_row[src.pose_ids]
        V = tb.mano_vertices[rows].astype(np.float64)
        if tb.arm is not None:
            wrist = src.ds.column("wrist_deg")
            for k in np.nonzero(np.isfinite(wrist).all(1))[0]:
                V[k] = tb.item_mano(rows[k], wrist[k])[0]
        root = tb.keypoints[rows][:, 0].astype(np.float64)
        acc = acc + (V - root[:, None]).sum(0)
        n += len(rows)
    if n == 0:
        raise ValueError("no training samples for the mean-pose baseline")
    return acc / n / ROOT_SCALE_M


@torch.no_grad()
def predict_dataset(model, dataset: MixedDataset, indices=None, batch_size: int = 32, device="cpu",
                    progress: bool = False, desc: str = "eval") -> dict:
    """Run the model on ``dataset`` (train=False) and collect numpy arrays per sample.

    Keys: pred_verts, pred_joints (camera space, metres, root recovered), pred_verts_rel,
    pred_joints_rel (root-relative, metres), pred_uv (original image px), pred_root, and the
    truth: gt_verts, gt_joints (camera space), gt_uv (px), plus pose_id, view_id, source, index,
    handedness (0 right, 1 left) and flipped.  Everything is in the image's own frame: a sample
    the source flipped (a left hand shown to the network as a right one, train.data.flip_sample)
    has its predictions and truth flipped back (x -> -x, u -> W - u), so a left image gets a
    left hand.
    """
    model.eval()
    idx = np.arange(len(dataset)) if indices is None else np.asarray(indices)
    sub = torch.utils.data.Subset(dataset, idx.tolist())
    loader = torch.utils.data.DataLoader(sub, batch_size=batch_size, shuffle=False, num_workers=0)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc=desc, unit="batch", file=sys.stderr, mininterval=1.0)
    reg = model.joint_regressor
    cols: dict[str, list] = {}
    crop = dataset.out
    for batch in loader:
        img = batch["img"][:, 0].to(device)
        out = model(img)
        verts = (out["verts"].float() * ROOT_SCALE_M).cpu()
        joints = torch.einsum("jv,bvc->bjc", reg.cpu(), verts)
        uv_crop = out["uv"].float().cpu().numpy() * crop
        A = batch["A"][:, 0].double().numpy()
        Kc = batch["K_crop"][:, 0].double().numpy()
        uv_img = apply_affine(np.linalg.inv(A), uv_crop)
        if getattr(model, "predicts_2d", True):
            T = recover_root(uv_crop, Kc, joints.double().numpy())
        else:  # a constant-mesh baseline: no 2D joints, no root
            T = np.full((len(uv_crop), 3), np.nan)
        K = batch["K"].double().numpy()
        gt_j = batch["joints_cam"].double().numpy()
        gt_uv = gt_j @ np.swapaxes(K, 1, 2)
        gt_uv = gt_uv[..., :2] / gt_uv[..., 2:]
        add = {"pred_verts_rel": verts.numpy(), "pred_joints_rel": joints.numpy(), "pred_uv": uv_img,
               "pred_root": T, "pred_verts": verts.numpy() + T[:, None], "pred_joints": joints.numpy() + T[:, None],
               "gt_joints": gt_j, "gt_verts": batch["verts_cam"].double().numpy(), "gt_uv": gt_uv,
               "pose_id": batch["pose_id"].numpy(), "view_id": batch["view_id"].numpy(),
               "source": batch["source"].numpy(), "index": batch["index"].numpy(),
               "handedness": batch["handedness"].numpy(), "flipped": batch["flipped"].numpy().astype(bool)}
        unflip(add, batch["image_width"].numpy())
        for k, v in add.items():
            cols.setdefault(k, []).append(np.asarray(v))
    if not cols:
        raise ValueError("nothing to evaluate: the split has no samples")
    return {k: np.concatenate(v) for k, v in cols.items()}


def pose_chains(pose_table: dict) -> list[list[int]]:
    """[[a, p(1/4), p(1/2), p(3/4), b], ...]: pose ids of each interpolated chain, in t order."""
    pid, pa, pb, t = (np.asarray(pose_table[k]) for k in ("pose_id", "pose_a", "pose_b", "t"))
    chains: dict[tuple[int, int], list] = {}
    base = {int(a): int(p) for p, a, b, tt in zip(pid, pa, pb, t) if a == b and tt == 0}
    for p, a, b, tt in zip(pid, pa, pb, t):
        if a != b:
            chains.setdefault((int(a), int(b)), []).append((float(tt), int(p)))
    out = []
    for (a, b), inner in sorted(chains.items()):
        if a in base and b in base:
            out.append([base[a]] + [p for _, p in sorted(inner)] + [base[b]])
    return out


def _chain_sequences(src: ShardSource, full: ShardSource, model, aug, crop, batch_size, device, progress):
    """Predicted/true sequences of root-relative joints (mm) and 2D joints (px) along pose chains."""
    chains = pose_chains(full.pose_table)
    held = set(zip(src.pose_ids.tolist(), src.view_ids.tolist()))
    where = {(int(p), int(v)): i for i, (p, v) in enumerate(zip(full.pose_ids, full.view_ids))}
    seqs = []
    views = sorted(set(src.view_ids.tolist()))
    for ch in chains:
        for v in views:
            if all((p, v) in held for p in ch[1:-1]) and all((p, v) in where for p in ch):
                seqs.append([where[(p, v)] for p in ch])
    if not seqs:
        return None
    need = sorted({i for s in seqs for i in s})
    ds = MixedDataset([full], aug, crop, train=False)
    pr = predict_dataset(model, ds, need, batch_size, device, progress, desc="chains")
    row = {i: r for r, i in enumerate(need)}
    # Handedness is drawn per item, so a chain's frames may show different hands: such a chain is no
    # motion sequence (a left frame is the mirrored hand, seen from the other side) and is skipped.
    hands = pr["handedness"]
    mixed = [s for s in seqs if len({int(hands[row[i]]) for i in s}) > 1]
    seqs = [s for s in seqs if len({int(hands[row[i]]) for i in s}) == 1]
    if not seqs:
        return {"sequences": 0, "mixed_hand_sequences_skipped": len(mixed)}
    P3, G3, P2, G2 = [], [], [], []
    for s in seqs:
        r = [row[i] for i in s]
        P3.append(1000 * (pr["pred_joints_rel"][r] - pr["pred_joints_rel"][r][:, :1]))
        G3.append(1000 * (pr["gt_joints"][r] - pr["gt_joints"][r][:, :1]))
        P2.append(pr["pred_uv"][r])
        G2.append(pr["gt_uv"][r])
    return {"sequences": len(seqs), "mixed_hand_sequences_skipped": len(mixed), "frames_per_sequence": len(seqs[0]),
            "accel_error_3d_mm_per_frame2": accel_error(P3, G3), "accel_3d_pred_mm_per_frame2": accel_error(P3),
            "accel_error_2d_px_per_frame2": accel_error(P2, G2), "accel_2d_pred_px_per_frame2": accel_error(P2)}


CAMERA_KEYS = ("pred_verts_rel", "pred_joints_rel", "pred_root", "pred_verts", "pred_joints", "gt_joints", "gt_verts")
UV_KEYS = ("pred_uv", "gt_uv")


def unflip(pr: dict, image_width: np.ndarray) -> None:
    """Flip the rows of `pr` whose ``flipped`` is set back into their image's frame (in place):
    camera-space arrays x -> -x, pixel coordinates u -> W - u (datagen.geometry.mirror)."""
    f = np.asarray(pr["flipped"], bool)
    if not f.any():
        return
    w = np.asarray(image_width, np.float64)
    for k in CAMERA_KEYS + UV_KEYS:
        a = np.asarray(pr[k])
        back = mirror_points(a) if k in CAMERA_KEYS else flip_uv(a, w.reshape(-1, *[1] * (a.ndim - 2)))
        pr[k] = np.where(f.reshape(-1, *[1] * (a.ndim - 1)), back, a)


def metrics_of(pr: dict, fscore: bool = True) -> dict:
    m = summarise(pr["pred_joints_rel"], pr["gt_joints"], pr["pred_verts_rel"], pr["gt_verts"], pr["pred_uv"],
                  pr["gt_uv"], fscore=fscore)
    gt_root = pr["gt_joints"][:, 0]
    m["root_error_mm"] = 1000 * float(np.linalg.norm(pr["pred_root"] - gt_root, axis=-1).mean())
    m["mpjpe_cam_mm"] = 1000 * float(np.linalg.norm(pr["pred_joints"] - pr["gt_joints"], axis=-1).mean())
    return m


def evaluate_sources(model, sources: list, aug: AugmentParams, crop: int = 128, batch_size: int = 32, device="cpu",
                     max_samples: int = 0, chains: bool = True, full_sources: list | None = None,
                     progress: bool = False, fscore: bool = True, seed: int = 0) -> dict:
    """Metrics per source (and the acceleration error on pose chains for our datasets)."""
    res = {}
    for k, src in enumerate(sources):
        ds = MixedDataset([src], aug, crop, train=False)
        idx = np.arange(len(ds))
        if max_samples and len(idx) > max_samples:
            idx = np.sort(np.random.default_rng(seed).choice(len(idx), max_samples, replace=False))
        pr = predict_dataset(model, ds, idx, batch_size, device, progress, desc=src.name)
        m = metrics_of(pr, fscore)
        hands = np.asarray(pr["handedness"])
        if len(np.unique(hands)) > 1:  # both hands: the metrics of each too
            m["by_handedness"] = {name: metrics_of({k: np.asarray(v)[hands == code] for k, v in pr.items()}, fscore)
                                  for code, name in ((0, "right"), (1, "left"))}
        if chains and isinstance(src, ShardSource) and full_sources is not None and full_sources[k] is not None:
            acc = _chain_sequences(src, full_sources[k], model, aug, crop, batch_size, device, progress)
            if acc:
                m.update(acc)
        res[src.name] = m
        res[src.name]["_predictions"] = pr
    return res


def write_freihand_json(path, pred_joints: np.ndarray, pred_verts: np.ndarray) -> None:
    """FreiHAND submission format: [[xyz (21x3) per sample], [verts (778x3) per sample]], metres."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [np.round(np.asarray(pred_joints, np.float64), 6).tolist(), np.round(np.asarray(pred_verts, np.float64), 6).tolist()]
    path.write_text(json.dumps(data))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m train.evaluate",
        description="Evaluate a MobRecon checkpoint on held-out data: MPJPE, PA-MPJPE, PA-MPVPE, F@5/F@15, 3D AUC "
                    "(0-50 mm), 2D AUC (0-30 px), camera-space root recovery and acceleration error on pose chains. "
                    "Writes OUT/metrics.json (and FreiHAND-format predictions with --freihand-json).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--checkpoint", required=True, metavar="CKPT", help="OUT/model.pt or OUT/last.pt of python -m train")
    ap.add_argument("--data", nargs="*", default=None, metavar="DIR",
                    help="packed datasets to evaluate on (default: the checkpoint's training datasets)")
    ap.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                    help="split of our datasets (held-out poses/views per --split-by)")
    ap.add_argument("--split-by", default=None, choices=("pose", "view", "both", "chain"),
                    help="how the split is made (default: as in training)")
    ap.add_argument("--split-fractions", type=float, nargs=3, default=None, metavar="F",
                    help="train/val/test fractions (default: as in training)")
    ap.add_argument("--split-seed", type=int, default=None, help="split seed (default: as in training)")
    ap.add_argument("--freihand", default=None, metavar="DIR",
                    help="also evaluate on FreiHAND's evaluation set in this root (needs evaluation_xyz/verts.json "
                         "for metrics; predictions are written either way with --freihand-json)")
    ap.add_argument("--freihand-json", default=None, metavar="FILE",
                    help="write FreiHAND-format predictions (camera space, root recovered) of the FreiHAND "
                         "evaluation set here (or, without --freihand, of the first evaluated dataset)")
    ap.add_argument("--hand", default="auto", choices=("auto", "left", "right"),
                    help="which images show left hands: auto = each sample's handedness in the dataset; left / "
                         "right = all of them. A model trained with data.left_hands = flip gets left images "
                         "flipped and its results flipped back: predictions are in each image's own frame")
    ap.add_argument("--max-samples", type=int, default=0, help="evaluate at most this many samples per source (0 = all)")
    ap.add_argument("--no-chains", action="store_true", help="skip the acceleration error on pose chains")
    ap.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    ap.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--out", default=None, metavar="FILE",
                    help="metrics JSON to write (default: metrics.json next to the checkpoint)")
    ap.add_argument("--untrained", action="store_true",
                    help="evaluate the checkpoint's architecture with freshly initialised weights (seed --seed): "
                         "the baseline a trained model must beat")
    ap.add_argument("--baseline", default=None, choices=("rest-template", "mean-train-pose"),
                    help="evaluate a constant-mesh baseline instead of the network: the rest template, or the mean "
                         "root-relative mesh of the checkpoint's training split (3D metrics after alignment only)")
    ap.add_argument("--seed", type=int, default=0, help="seed for --untrained and for --max-samples subsets")
    ap.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="show progress bars")
    return ap


def main(argv=None) -> int:
    """Exit 0; 2 for a bad checkpoint or dataset (named, one line); 1 when a sample is damaged."""
    from datagen.dataset.shards import CorruptShardError, DatasetError

    from .engine import error_line
    from .model_io import CheckpointError

    try:
        return _main(argv)
    except CorruptShardError as exc:
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 1
    except (CheckpointError, DatasetError) as exc:
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 2


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .model_io import build_from_config, model_from_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tpl, ck = model_from_checkpoint(args.checkpoint, args.device)
    cfg = ck["config"]
    if args.untrained:
        torch.manual_seed(args.seed)
        model = build_from_config(tpl, cfg["model"]).to(args.device).eval()
    d = cfg["data"]
    split_by = args.split_by or d["split_by"]
    fr = tuple(args.split_fractions or d["split_fractions"])
    sseed = d["split_seed"] if args.split_seed is None else args.split_seed
    if args.untrained and args.baseline:
        raise SystemExit("error: --untrained and --baseline exclude each other")
    if args.baseline == "rest-template":
        model = ConstantMesh(rest_template_mesh(tpl), tpl.regressor).to(args.device).eval()
    elif args.baseline == "mean-train-pose":
        train_srcs = [ShardSource(p, d["train_split"], d["split_by"], tuple(d["split_fractions"]), d["split_seed"],
                                  flip_mode(d)) for p in d["datasets"]]
        model = ConstantMesh(mean_train_mesh(train_srcs), tpl.regressor).to(args.device).eval()
    datasets = d["datasets"] if args.data is None else args.data
    # --hand: which images are left hands (auto: each sample's handedness in the shards).  A model
    # trained with data.left_hands = "flip" (the default; runs before the key) sees right hands
    # only: left images are flipped for it and its outputs flipped back.  "keep": nothing flipped.
    flip = {"auto": "left", "left": "all", "right": "none"}[args.hand] if flip_mode(d) == "left" else "none"
    sources, fulls = [], []
    for p in datasets:
        s = ShardSource(p, args.split, split_by, fr, sseed, flip)
        if s.topology != tpl.topology:
            raise SystemExit(f"error: {p} has topology {s.topology!r}, the model predicts {tpl.topology!r}")
        if len(s) == 0:
            print(f"warning: {p} has no samples in split {args.split!r}", file=sys.stderr)
            continue
        sources.append(s)
        fulls.append(ShardSource(p, "all", split_by, fr, sseed, flip) if not args.no_chains else None)
    fh_src = None
    if args.freihand:
        if tpl.topology != "mano":
            raise SystemExit(f"error: FreiHAND is MANO topology but the model predicts {tpl.topology!r} meshes")
        fh_src = FreiHANDSource(args.freihand, "evaluation")
    aug = AugmentParams.from_config(cfg["augment"])
    crop = d["crop_size"]
    t0 = time.time()
    res = evaluate_sources(model, sources, aug, crop, args.batch_size, args.device, args.max_samples,
                           not args.no_chains, fulls, args.progress, seed=args.seed)
    json_pred = None
    if fh_src is not None:
        if fh_src.has_gt:
            res.update(evaluate_sources(model, [fh_src], aug, crop, args.batch_size, args.device, args.max_samples,
                                        False, None, args.progress))
            json_pred = res[fh_src.name]["_predictions"]
        else:
            json_pred = _predict_no_gt(model, fh_src, aug, crop, args.batch_size, args.device)
    elif sources:
        json_pred = res[sources[0].name]["_predictions"]
    if args.freihand_json and json_pred is not None:
        write_freihand_json(args.freihand_json, json_pred["pred_joints"], json_pred["pred_verts"])
        print(f"wrote {args.freihand_json} ({len(json_pred['pred_joints'])} samples)", file=sys.stderr)
    for v in res.values():
        v.pop("_predictions", None)
        if args.baseline:
            for k in BASELINE_ONLY_3D:
                v.pop(k, None)
    report = {"checkpoint": str(args.checkpoint), "untrained": args.untrained, "baseline": args.baseline,
              "split": args.split, "hand": args.hand, "flip": flip,
              "split_by": split_by, "seconds": round(time.time() - t0, 2), "sources": res}
    out = Path(args.out) if args.out else Path(args.checkpoint).with_name("metrics.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    for name, m in res.items():
        print(f"[{name}] " + _line(m))
        for hand, hm in (m.get("by_handedness") or {}).items():
            print(f"[{name} {hand}] " + _line(hm))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _line(m: dict) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items() if not isinstance(v, dict))


@torch.no_grad()
def _predict_no_gt(model, src: FreiHANDSource, aug, crop, batch_size, device) -> dict:
    """FreiHAND evaluation images without labels: crop = the whole (centred) image."""
    from .augment import normalise
    from .geometry import crop_affine, warp_crop

    reg = model.joint_regressor.cpu()
    PJ, PV = [], []
    for s in range(0, len(src), batch_size):
        imgs, As, Ks = [], [], []
        for i in range(s, min(len(src), s + batch_size)):
            r = src.get(i)
            h, w = r["image"].shape[:2]
            A = crop_affine((w / 2, h / 2), min(h, w), 0.0, crop)
            imgs.append(normalise(warp_crop(r["image"], A, crop)))
            As.append(A)
            Ks.append(A @ r["K"])
        out = model(torch.from_numpy(np.stack(imgs)).to(device))
        verts = out["verts"].float().cpu() * ROOT_SCALE_M
        joints = torch.einsum("jv,bvc->bjc", reg, verts).double().numpy()
        T = recover_root(out["uv"].float().cpu().numpy() * crop, np.stack(Ks), joints)
        PJ.append(joints + T[:, None])
        PV.append(verts.double().numpy() + T[:, None])
    return {"pred_joints": np.concatenate(PJ), "pred_verts": np.concatenate(PV)}


if __name__ == "__main__":
    sys.exit(main())
