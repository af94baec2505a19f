"""Training throughput on CPU (both encoders) and whether the data loader keeps up.

    python benchmarks/train_bench.py [--data out/demo/dataset] [--batch-size 16] [--steps 6] [--threads 2]

For each encoder (DenseStack, GhostStack; DSConv decoder) it times full training steps
(two augmented views per image, all six losses, backward, Adam) on real shard samples and
reports images/s ("samples": one sample = one image = two views, as in training).  Then it
times the data pipeline alone - the same DataLoader (HDF5 read, crop, colour jitter, two views,
collate) with 0 workers (one core's worth) and with --workers - and compares: the loader is
not the bottleneck when it delivers more samples/s than a step consumes.  Per-step times are
medians after warm-up (the machine may be shared).

Without --data (or if it does not exist) it packs a small toy dataset (the test suite's
render-directory generator) into a temporary folder.  The last line is
``train_samples_per_s=X loader_samples_per_s=Y`` (DenseStack steps; loader with --workers).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from train.augment import AugmentParams  # noqa: E402
from train.cli import train_loss  # noqa: E402
from train.config import load_config  # noqa: E402
from train.data import MixedDataset, PlanSampler, ShardSource  # noqa: E402
from train.model_io import build_model  # noqa: E402
from train.schema import TRAIN_SCHEMA  # noqa: E402


def toy_dataset(tmp: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from test_pack import make_render_dir, run_pack

    render = make_render_dir(tmp / "render", n_poses=8, n_views=8, size=256)
    run_pack(render, tmp / "ds")
    return tmp / "ds"


def loader_for(ds, batch_size, workers, seed=0):
    sampler = PlanSampler([len(ds)], [], max(len(ds), batch_size * 64), seed, batch_size)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                       drop_last=True, prefetch_factor=4 if workers else None,
                                       persistent_workers=False)


def time_loader(ds, batch_size, workers, batches) -> float:
    it = iter(loader_for(ds, batch_size, workers))
    next(it)  # start-up (worker fork, first HDF5 open) is not throughput
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - t)


def time_steps(ds, template, encoder, batch_size, steps, cfg) -> tuple[float, float]:
    torch.manual_seed(0)
    model = build_model(template, encoder).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = train_loss(cfg)
    batches = [torch.utils.data.default_collate([ds[(0, (k * batch_size + i) % len(ds), i)] for i in range(batch_size)])
               for k in range(2)]
    times = []
    for s in range(steps + 2):
        t = time.perf_counter()
        loss, _ = loss_fn(model, batches[s % 2], 10, "cpu")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if s >= 2:
            times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return med, batch_size / med


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO / "out" / "demo" / "dataset"), help="a packed dataset")
    ap.add_argument("--batch-size", type=int, default=16, help="images per step (x2 views)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per encoder (after 2 warm-up steps)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the training steps")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers for the loader measurement")
    ap.add_argument("--loader-batches", type=int, default=12, help="batches timed per loader setting")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    tmp = None
    if not (data / "manifest.json").exists():
        tmp = tempfile.TemporaryDirectory()
        print(f"{data} is not a packed dataset; packing a toy one (256x256) for the benchmark", file=sys.stderr)
        data = toy_dataset(Path(tmp.name))
    src = ShardSource(data, "all")
    cfg = load_config(TRAIN_SCHEMA)
    ds = MixedDataset([src], AugmentParams.from_config(cfg["augment"]), 128, views=2)
    tpl = src.template()
    h, w = src.get(0)["image"].shape[:2]
    load0 = os.getloadavg()
    print(f"data: {data} ({len(src)} samples, {w}x{h}); batch {args.batch_size} images x 2 views; "
          f"{args.threads} torch threads; torch {torch.__version__}; load average at start "
          f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} on {os.cpu_count()} CPUs")
    rows = []
    for enc in ("densestack", "ghoststack"):
        step, sps = time_steps(ds, tpl, enc, args.batch_size, args.steps, cfg)
        rows.append((enc, step, sps))
    l0 = time_loader(ds, args.batch_size, 0, args.loader_batches)
    lw = time_loader(ds, args.batch_size, args.workers, args.loader_batches)
    print()
    print(f"| {'encoder':10s} | {'step (s)':>8s} | {'train samples/s':>15s} | {'views/s':>8s} |")
    print(f"|{'-' * 12}|{'-' * 10}|{'-' * 17}|{'-' * 10}|")
    for enc, step, sps in rows:
        print(f"| {enc:10s} | {step:8.3f} | {sps:15.2f} | {2 * sps:8.2f} |")
    print()
    print(f"| {'data loader':30s} | {'samples/s':>9s} | {'x DenseStack step':>17s} | {'x GhostStack step':>17s} |")
    print(f"|{'-' * 32}|{'-' * 11}|{'-' * 19}|{'-' * 19}|")
    for name, v in (("0 workers (in the main process)", l0), (f"{args.workers} workers", lw)):
        print(f"| {name:30s} | {v:9.1f} | {v / rows[0][2]:17.1f} | {v / rows[1][2]:17.1f} |")
    ok = lw > max(r[2] for r in rows)
    print(f"\nloader {'is not' if ok else 'IS'} the bottleneck: it delivers {lw / rows[0][2]:.1f}x what a DenseStack step "
          f"and {lw / rows[1][2]:.1f}x what a GhostStack step consumes (one core alone: {l0:.1f} samples/s)")
    load1 = os.getloadavg()
    print(f"load average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} (this benchmark itself keeps "
          f"~{args.threads} cores busy; more means other processes shared the machine)")
    print(f"train_samples_per_s={rows[0][2]:.2f} loader_samples_per_s={lw:.1f}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
