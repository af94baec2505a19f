"""The end-to-end demo (``make demo``): render -> contact sheet -> pack -> pretrain -> train ->
evaluate (untrained vs trained, held-out pose chains) -> a picture of predictions.

Everything goes to ``out/demo/``.  Each stage prints the command it runs, so you can learn the
CLIs, and is skipped when its output already exists (a re-run is fast; delete a stage's
output, or use ``--fresh``, to redo it).  The demo is small so it runs in ~10-15 minutes on 2
CPU cores: 5 base poses and the 30 poses interpolated between them (10 chains base a ->
t = 1/4, 1/2, 3/4 -> base b) from 3 viewpoints = 105 items at 256x256, rendered with 1 path
sample + denoising; whole chains are held out (``--split-by chain``) so that the evaluation is
on unseen poses and the acceleration error has natural 5-frame sequences.  The training
schedule is cut to a few minutes, so expect a clear but modest improvement, not the paper's
numbers (docs/TRAINING.md says what the full schedule costs).

The last line printed is ``demo pa_mpjpe_mm_untrained=X pa_mpjpe_mm_trained=Y``.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
BASES = (0, 31, 6, 25, 12)  # open hand, fist, index+middle bent, thumb+ring+little bent, middle+ring bent
VIEWS = (0, 75, 147)  # (latitude, longitude) steps (0,0), (2,3), (4,3): spread over the hemisphere
STAGE_TIMES: list[tuple[str, float, str]] = []


def pose_ids(bases=BASES) -> list[int]:
    from itertools import combinations

    pairs = list(combinations(range(32), 2))
    ids = set(bases)
    for a, b in combinations(sorted(bases), 2):
        p = pairs.index((a, b))
        ids.update(32 + 3 * p + s for s in range(3))
    return sorted(ids)


def run(cmd: list[str], log: Path | None = None) -> None:
    print("\n$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if log is None:
        r = subprocess.run(cmd, cwd=REPO, env=env)
        if r.returncode != 0:
            raise SystemExit(f"demo: the command above failed (exit {r.returncode}); fix it and re-run "
                             "(finished stages are skipped)")
        return
    with open(log, "w") as fh:
        r = subprocess.run(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        print(log.read_text()[-4000:], file=sys.stderr)
        raise SystemExit(f"demo: stage failed (exit {r.returncode}); full log in {log}")


def stage(name: str, done: bool, fn) -> None:
    t = time.time()
    if done:
        print(f"\n== {name}: output exists, skipped", flush=True)
        STAGE_TIMES.append((name, 0.0, "skipped"))
        return
    print(f"\n== {name}", flush=True)
    fn()
    STAGE_TIMES.append((name, time.time() - t, "ran"))


def choose_split_seed(dataset: Path, fractions) -> int:
    """First split seed whose test split holds >= 2 chains and whose train split >= 5 chains."""
    from train.data import ShardSource

    for seed in range(200):
        te = ShardSource(dataset, "test", "chain", fractions, seed)
        tr = ShardSource(dataset, "train", "chain", fractions, seed)
        chains_te = {int(p) for p in te.pose_ids if p >= 32}
        chains_tr = {int(p) for p in tr.pose_ids if p >= 32}
        if len(chains_te) >= 6 and len(chains_tr) >= 15:  # >= 2 and >= 5 chains of 3 interior poses
            return seed
    return 0


def picture(ckpt: Path, dataset: Path, split_seed: int, fractions, out_png: Path, n: int = 6) -> None:
    """Test images: input | truth (mesh + skeleton) | prediction, one row each."""
    import cv2
    import numpy as np
    import torch

    from train.augment import AugmentParams, crop_box
    from train.data import ShardSource
    from train.model_io import model_from_checkpoint
    from train.predict import draw_overlay, predict_image

    model, tpl, ck = model_from_checkpoint(ckpt)
    src = ShardSource(dataset, "test", "chain", fractions, split_seed)
    rows = []
    pick = np.linspace(0, len(src) - 1, min(n, len(src))).astype(int)
    scale = AugmentParams.from_config(ck["config"]["augment"]).scale
    for i in pick:
        s = src.get(int(i))
        c, side = crop_box(s)
        box = (c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2)
        with torch.no_grad():
            r = predict_image(model, s["image"], s["K"], box, scale, ck["config"]["data"]["crop_size"])
        uv_gt = s["joints"] @ s["K"].T
        uv_gt = uv_gt[:, :2] / uv_gt[:, 2:]
        gt = draw_overlay(s["image"], uv_gt, s["verts"], tpl.faces, s["K"])
        pr = draw_overlay(s["image"], r["uv"], r["verts_cam"], tpl.faces, s["K"])
        rows.append(np.hstack([s["image"], gt, pr]))
    img = np.vstack(rows)
    head = np.full((28, img.shape[1], 3), 255, np.uint8)
    for k, t in enumerate(("input (held-out pose)", "ground truth", "prediction")):
        cv2.putText(head, t, (8 + k * img.shape[1] // 3, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(out_png), np.vstack([head, img])[..., ::-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "out" / "demo"), help="output folder (default out/demo)")
    ap.add_argument("--fresh", action="store_true", help="delete the output folder first")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for rendering and training")
    ap.add_argument("--encoder", default="ghoststack", choices=("densestack", "ghoststack"),
                    help="GhostStack (MobRecon's lightest encoder) trains ~1.7x faster on CPU than DenseStack")
    ap.add_argument("--pretrain-epochs", type=int, default=4)
    ap.add_argument("--train-epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=8, help="images per step (pretraining: 2x this)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    render, dataset = out / "render", out / "dataset"
    poses = pose_ids()
    fractions = (0.7, 0.0, 0.3)
    print(f"demo: {len(poses)} poses x {len(VIEWS)} views = {len(poses) * len(VIEWS)} items -> {out}")

    render_cfg = out / "render.toml"
    render_cfg.write_text("# the demo's render settings on top of configs/default.toml\n"
                          "[render]\nsamples = 1          # + denoising: fast, and fine at 256x256\ndenoise = true\n")
    stage("render (Blender Cycles, CPU)", (render / ".demo-complete").exists(), lambda: (
        run([PY, "blender_scripts/render.py", "--config", str(render_cfg), "--out", str(render),
             "--poses", ",".join(map(str, poses)), "--views", ",".join(map(str, VIEWS)),
             "--threads", str(args.threads)]),
        (render / ".demo-complete").write_text("ok\n")))

    sheet = out / "contact_sheet.png"

    def contact():
        import importlib.util

        if importlib.util.find_spec("datagen.contact_sheet") is None:
            print("(datagen.contact_sheet is not available in this checkout; skipped)")
            return
        helptext = subprocess.run([PY, "-m", "datagen.contact_sheet", "--help"], cwd=REPO, capture_output=True,
                                  text=True).stdout
        extra = ["--out", str(sheet)] if "--out" in helptext else []
        run([PY, "-m", "datagen.contact_sheet", str(render), *extra])
        if not sheet.exists():  # the tool chose its own file name: remember that the stage ran
            (out / ".contact-sheet-done").write_text("see the command's output above\n")

    stage("contact sheet", sheet.exists() or (out / ".contact-sheet-done").exists(), contact)
    stage("pack into HDF5 shards", (dataset / "manifest.json").exists(),
          lambda: run([PY, "-m", "datagen.pack", str(render), str(dataset)]))

    split_seed = choose_split_seed(dataset, fractions)
    common = ["--data", str(dataset), "--split-by", "chain", "--split-fractions", *map(str, fractions),
              "--split-seed", str(split_seed), "--threads", str(args.threads), "--workers", "1",
              "--encoder", args.encoder]
    pre = out / "pretrain"
    E1 = args.pretrain_epochs
    stage("pretrain the 2D encoder (heatmap + position)", (pre / "encoder.pt").exists(), lambda: run(
        [PY, "-m", "pretrain", *common, "--out", str(pre), "--epochs", str(E1), "--batch-size", str(2 * args.batch_size),
         "--milestones", str(int(E1 * 0.75)), "--val-every", "0"]))
    tr = out / "train"
    E2 = args.train_epochs
    stage("train MobRecon (two-view consistency)", (tr / "model.pt").exists(), lambda: run(
        [PY, "-m", "train", *common, "--out", str(tr), "--pretrained", str(pre / "encoder.pt"),
         "--epochs", str(E2), "--batch-size", str(args.batch_size), "--milestones", str(int(E2 * 0.8)),
         "--consistency-from-epoch", "1", "--val-every", "0", "--checkpoint-every", "0"]))
    ev = ["--checkpoint", str(tr / "model.pt"), "--split", "test", "--threads", str(args.threads)]
    stage("evaluate the untrained network (same architecture, random weights)",
          (out / "eval_untrained.json").exists(),
          lambda: run([PY, "-m", "train.evaluate", *ev, "--untrained", "--out", str(out / "eval_untrained.json")]))
    stage("evaluate the trained network on held-out pose chains", (out / "eval_trained.json").exists(),
          lambda: run([PY, "-m", "train.evaluate", *ev, "--out", str(out / "eval_trained.json"),
                       "--freihand-json", str(out / "pred_freihand_format.json")]))

    def pics():
        picture(tr / "model.pt", dataset, split_seed, fractions, out / "predictions.png")
        from train.data import ShardSource

        s = ShardSource(dataset, "test", "chain", fractions, split_seed).get(0)
        import cv2

        cv2.imwrite(str(out / "test_image.png"), s["image"][..., ::-1])
        run([PY, "-m", "train.predict", str(out / "test_image.png"), "--checkpoint", str(tr / "model.pt"),
             "--out", str(out / "predict"), "--focal", str(float(s["K"][0, 0]))])
        print(f"wrote {out / 'predictions.png'}")

    stage("pictures of predictions", (out / "predictions.png").exists(), pics)

    def load(name):
        rep = json.loads((out / name).read_text())
        (m,) = rep["sources"].values()
        return m

    u, t = load("eval_untrained.json"), load("eval_trained.json")
    print("\n== results on held-out poses (test split: whole interpolation chains never seen in training)")
    keys = ("samples", "pa_mpjpe_mm", "pa_mpvpe_mm", "mpjpe_mm", "f_at_5mm", "f_at_15mm", "auc_3d_pa_0_50mm",
            "auc_2d_0_30px", "uv_error_px", "root_error_mm", "accel_error_3d_mm_per_frame2",
            "accel_error_2d_px_per_frame2")
    print(f"{'metric':32s} {'untrained':>12s} {'trained':>12s}")
    for k in keys:
        if k in u or k in t:
            f = lambda v: f"{v:12.4g}" if isinstance(v, (int, float)) else f"{'-':>12s}"  # noqa: E731
            print(f"{k:32s} {f(u.get(k))} {f(t.get(k))}")
    print("\n== stage wall times")
    for name, sec, how in STAGE_TIMES:
        print(f"{name:70s} {sec:8.1f} s  {how}")
    print(f"{'total':70s} {time.time() - t0:8.1f} s")
    print(f"outputs: {out} (contact_sheet.png, predictions.png, predict/, eval_*.json, train/tb for TensorBoard)")
    print(f"demo pa_mpjpe_mm_untrained={u['pa_mpjpe_mm']:.2f} pa_mpjpe_mm_trained={t['pa_mpjpe_mm']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
