"""Cost of the training-time image effects per sample (train/augment.py sensor_effects).

    .venv/bin/python benchmarks/augment_bench.py [--data out/demo/dataset] [--samples 64]

Times MixedDataset's __getitem__ (HDF5 read, crop, colour jitter, two views, the effects) on
real shard samples, one process, for the effects off, each effect alone (probability 1) and
all together, and prints milliseconds per sample (median of three passes over the same
samples, seeds fixed).  The last line is ``augment_ms_off=X augment_ms_all=Y``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from train.augment import AugmentParams  # noqa: E402
from train.data import MixedDataset, ShardSource  # noqa: E402

SETTINGS = {
    "off": {},
    "amplitude mix": {"amplitude_mix_prob": 1.0},
    "blur": {"blur_prob": 1.0},
    "noise (shot + read)": {"noise_prob": 1.0, "noise_photons": 400.0},
    "white balance": {"white_balance": 0.1},
    "jpeg": {"jpeg_prob": 1.0},
    "all": {"amplitude_mix_prob": 1.0, "blur_prob": 1.0, "noise_prob": 1.0, "noise_photons": 400.0,
            "white_balance": 0.1, "jpeg_prob": 1.0},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=REPO / "out" / "demo" / "dataset")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--crop", type=int, default=128)
    args = ap.parse_args(argv)
    if not (args.data / "manifest.json").is_file():
        print(f"error: {args.data} is not a packed dataset (manifest.json missing); pass --data", file=sys.stderr)
        return 2
    src = ShardSource(args.data, "all")
    n = min(args.samples, len(src))
    keys = [(0, i % len(src), 1000 + i) for i in range(n)]
    out = {}
    print(f"augment benchmark: {n} samples of {args.data}, crop {args.crop}, two views per sample")
    for name, kw in SETTINGS.items():
        ds = MixedDataset([src], AugmentParams(**kw), args.crop)
        ds[keys[0]]  # warm-up (HDF5 open, caches)
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            for k in keys:
                ds[k]
            runs.append((time.perf_counter() - t0) / n * 1e3)
        out[name] = statistics.median(runs)
        extra = "" if name == "off" else f"  (+{out[name] - out['off']:.2f} ms)"
        print(f"{name:22s} {out[name]:7.2f} ms/sample{extra}", flush=True)
    print(f"augment_ms_off={out['off']:.2f} augment_ms_all={out['all']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
