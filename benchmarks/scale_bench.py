"""Scaling benchmark: a fresh render process per image vs. long-lived workers (1 and 2).

    .venv/bin/python benchmarks/scale_bench.py                 # 16 items, 3 repetitions (~6-8 min on 2 cores)
    .venv/bin/python benchmarks/scale_bench.py --items 24 --reps 5

The same items (256x256, default settings: configs/default.toml) are rendered
  (a) baseline: one fresh process per image - `blender_scripts/render.py --poses P --views V`
      with all cores (Cycles threads = auto), as a per-image script does: every image pays the
      interpreter + bpy import, HDRI loading, scene construction and Cycles' first render;
  (b) `python -m datagen.render --workers 1 --threads-per-worker <all cores>`;
  (c) `python -m datagen.render --workers 2 --threads-per-worker <cores / 2>` (both use all cores).
Each timing is end to end (process start to last file written, including the driver and worker
start-up); the modes run interleaved, `--reps` times, and the table gives medians (with the
range).  CPU time is that of all our processes (getrusage of the children); the load of other
processes during a run is measured from /proc/stat (busy CPU time minus ours) and printed, so a
shared machine shows up in the numbers instead of hiding in them.  All three modes must give
identical labels (checked).

Full-dataset estimate (1520 poses x 216 views = 328,320 images), from the measured per-image
cost of the cheaper worker layout (1 or 2 workers, fewer CPU seconds per image) in steady state:
CPU seconds per image (worker start-ups removed, measured separately) x images, plus one worker
start-up per --recycle-after (200) images.  Wall time on this machine uses that layout's steady
throughput; on C cores it is core-hours / C (the
renders are independent; assumes the shared file system keeps up).  The GPU-hours figure is an
ESTIMATE under a stated assumption (no GPU here): per image, the measured time outside Cycles'
render call (scene update, labels, PNG, files) plus an assumed Cycles time on one GPU
(--gpu-cycles-s, default 0.15 s for 256x256 at 16 samples with OIDN on a current mid-range GPU).

Last line (machine-readable):
    baseline_img_per_s=X workers1_img_per_s=Y workers2_img_per_s=Z full_dataset_core_hours=H
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

RENDER = REPO / "blender_scripts" / "render.py"
FULL_IMAGES = 1520 * 216
CLK_TCK = os.sysconf("SC_CLK_TCK")


def pick_items(n: int, seed: int = 11, per_pose: int = 4) -> list[tuple[int, int]]:
    """n items, `per_pose` views each of n/per_pose random poses (deterministic), pose-major."""
    rng = np.random.default_rng(seed)
    poses = rng.choice(1520, size=-(-n // per_pose), replace=False)
    items = []
    for p in poses:
        items += [(int(p), int(v)) for v in rng.choice(216, size=per_pose, replace=False)]
    return sorted(items[:n])


def busy_cpu_s() -> float:
    """CPU seconds all processes of the machine have been busy (from /proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (f + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def wait_idle(limit_s: float, max_other: float = 0.3) -> float:
    """Wait (up to limit_s) until other processes use < max_other cores over 5 s; returns the wait."""
    t0 = time.time()
    while True:
        b0 = busy_cpu_s()
        time.sleep(5.0)
        busy = (busy_cpu_s() - b0) / 5.0
        if busy < max_other or time.time() - t0 >= limit_s:
            return time.time() - t0


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measured(fn) -> dict:
    t0, c0, b0 = time.perf_counter(), children_cpu_s(), busy_cpu_s()
    l0 = os.getloadavg()[0]
    fn()
    wall = time.perf_counter() - t0
    cpu = children_cpu_s() - c0
    busy = busy_cpu_s() - b0
    return {"wall": wall, "cpu": cpu, "other_cores": max(0.0, (busy - cpu) / wall), "load0": l0}


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], cwd=REPO, text=True, capture_output=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"command failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stderr[-3000:]}")
    return r


def baseline(items, out: Path, cfg_args) -> None:
    for p, v in items:  # a fresh process per image, all cores
        run([sys.executable, RENDER, "--out", out, "--poses", p, "--views", v, "--threads", 0, "--no-progress"]
            + cfg_args)


def driver(items_file: Path, out: Path, workers: int, threads: int, cfg_args) -> None:
    run([sys.executable, "-m", "datagen.render", "--out", out, "--items-file", items_file, "--workers", workers,
         "--threads-per-worker", threads, "--no-progress"] + cfg_args)


def ledger_done(out: Path) -> list[dict]:
    from datagen.render.jobs import read_ledger

    ev = []
    for p in (out / "job").glob("*.ledger.jsonl"):
        ev += [e for e in read_ledger(p)[0] if e["ev"] == "done" and not e.get("skipped")]
    return sorted(ev, key=lambda e: e["t"])


def startup_cost(out: Path, threads: int, cfg_args) -> dict:
    """One worker that starts, reports ready and exits (no item): its start-up cost."""
    return measured(lambda: run([sys.executable, RENDER, "--stdin", "--out", out, "--threads", threads,
                                 "--no-progress"] + cfg_args, input=""))


def labels(out: Path) -> dict:
    return {str(p.relative_to(out)): json.loads(p.read_text()) for p in sorted((out / "items").glob("*/v*.json"))}


def med(xs):
    return statistics.median(xs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=16, help="images per mode (default 16)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions, interleaved (default 3)")
    ap.add_argument("--config", default=None, help="dataset config (default configs/default.toml: 256x256)")
    ap.add_argument("--out", default=str(REPO / "out" / "scale_bench"))
    ap.add_argument("--recycle-after", type=int, default=200, help="worker recycling assumed for the full run "
                                                                   "(the driver's default)")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                    help="before each run, wait up to S seconds for other processes to use < 0.3 cores "
                         "(a shared machine; the load during each run is measured and printed either way)")
    ap.add_argument("--gpu-cycles-s", type=float, default=0.15,
                    help="ASSUMED seconds of Cycles' render call per image on one GPU (not measured)")
    args = ap.parse_args(argv)

    cores = len(os.sched_getaffinity(0))
    t1, t2 = cores, max(1, cores // 2)
    cfg_args = ["--config", str(Path(args.config).absolute())] if args.config else []
    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    items = pick_items(args.items)
    items_file = root / "items.txt"
    items_file.write_text("".join(f"{p} {v}\n" for p, v in items))
    print(f"{len(items)} items ({len(items) // 4} poses x 4 views), {cores} cores, {args.reps} repetitions; "
          f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
    # warm the prepared cache and the OS file cache once (not timed)
    run([sys.executable, RENDER, "--prepare-only"] + cfg_args)
    modes = {
        "baseline": (f"baseline: process per image ({t1} thr)", lambda o: baseline(items, o, cfg_args)),
        "workers1": (f"1 worker x {t1} threads", lambda o: driver(items_file, o, 1, t1, cfg_args)),
        "workers2": (f"2 workers x {t2} thread{'s' if t2 > 1 else ''}", lambda o: driver(items_file, o, 2, t2, cfg_args)),
    }
    res = {m: [] for m in modes}
    steady = {"workers1": [], "workers2": []}  # steady-state CPU-s per image (start-ups removed)
    starts = []
    ref_labels = None
    for rep in range(args.reps):
        order = list(modes)[rep % 3:] + list(modes)[:rep % 3]  # rotate which mode goes first
        for m in order:
            out = root / f"{m}_{rep}"
            waited = wait_idle(args.wait_idle) if args.wait_idle > 0 else 0.0
            r = measured(lambda: modes[m][1](out))
            r["img_s"] = len(items) / r["wall"]
            if m != "baseline":
                done = ledger_done(out)
                r["item_cpu"] = med([e["cpu"] for e in done])
                r["item_s"] = med([e["s"] for e in done])
                r["outside_cycles_s"] = med([e["s"] - e["cycles"] for e in done])
            res[m].append(r)
            lab = labels(out)
            if ref_labels is None:
                ref_labels = lab
            elif lab != ref_labels:
                raise SystemExit(f"labels of {m} (rep {rep}) differ from the first run - determinism broken")
            print(f"rep {rep} {m:9s} {r['wall']:7.1f} s  {r['img_s']:.3f} img/s  CPU {r['cpu']:.1f} s  "
                  f"other load {r['other_cores']:.2f} cores{f' (waited {waited:.0f} s for idle)' if waited > 6 else ''}",
                  flush=True)
        s = startup_cost(root / f"startup_{rep}", t2, cfg_args)
        starts.append(s)
        for m, n_workers in (("workers1", 1), ("workers2", 2)):
            steady[m].append((res[m][-1]["cpu"] - n_workers * s["cpu"]) / len(items))
    for d in root.glob("*_*"):
        if d.is_dir():
            shutil.rmtree(d)

    base = med([r["img_s"] for r in res["baseline"]])
    print()
    print(f"{'mode':<34s} {'img/s':>7s} {'(range)':>15s} {'s/img':>7s} {'speed-up':>9s} {'CPU-s/img':>10s} "
          f"{'other load':>11s}")
    summary = {}
    for m, (label, _) in modes.items():
        rs = res[m]
        ips = [r["img_s"] for r in rs]
        v = med(ips)
        summary[m] = v
        print(f"{label:<34s} {v:7.3f} {f'{min(ips):.3f}-{max(ips):.3f}':>15s} {1 / v:7.2f} {v / base:8.2f}x "
              f"{med([r['cpu'] for r in rs]) / len(items):10.2f} {med([r['other_cores'] for r in rs]):8.2f} cores")
    print("(end to end for the same items: process start-ups and the driver included; medians of "
          f"{args.reps} interleaved runs; 'other load' = CPU used by other processes meanwhile)")

    w1, w2 = res["workers1"], res["workers2"]
    start_cpu = med([s["cpu"] for s in starts])
    start_wall = med([s["wall"] for s in starts])
    print()
    for m in ("workers1", "workers2"):
        print(f"per image, {modes[m][0]}, steady state: {med(steady[m]):.2f} CPU-s (driver included, worker "
              f"start-ups removed); {med([r['item_s'] for r in res[m]]):.2f} s wall per item per worker")
    # the estimate uses the layout that costs fewer CPU-seconds per image here
    best = min(steady, key=lambda m: med(steady[m]))
    n_best = 1 if best == "workers1" else 2
    cpu_img = med(steady[best])
    core_h = (FULL_IMAGES * cpu_img + FULL_IMAGES / max(args.recycle_after, 1) * start_cpu) / 3600
    steady_ips = n_best / med([r["item_s"] for r in res[best]])  # each worker: one image per item_s
    outside = med([r["outside_cycles_s"] for r in w1 + w2])
    gpu_h = FULL_IMAGES * (outside + args.gpu_cycles_s) / 3600
    print(f"outside Cycles' render call: {outside:.3f} s per image; the estimate below uses {modes[best][0]} "
          "(fewer CPU-s per image)")
    print(f"worker start-up: {start_wall:.1f} s wall, {start_cpu:.1f} CPU-s (bpy import, HDRIs, scene); "
          f"once per {args.recycle_after} images with recycling")
    print(f"full dataset ({FULL_IMAGES:,} images at these settings):")
    print(f"  CPU: {core_h:,.0f} core-hours; on this machine ({cores} cores, {modes[best][0]}) "
          f"{FULL_IMAGES / steady_ips / 86400:.1f} days at {steady_ips:.2f} img/s; "
          f"on 64 cores {core_h / 64:.1f} h, on 512 cores {core_h / 512:.1f} h (core-hours / cores)")
    print(f"  baseline (process per image) would need {FULL_IMAGES / base / 86400:.1f} days here "
          f"({FULL_IMAGES * med([r['cpu'] for r in res['baseline']]) / len(items) / 3600:,.0f} core-hours)")
    print(f"  GPU (ESTIMATE, not measured: assumes {args.gpu_cycles_s:.2f} s of Cycles per image on one GPU "
          f"with --device OPTIX/CUDA, plus the measured {outside:.3f} s outside Cycles): "
          f"~{gpu_h:,.0f} GPU-hours with one worker per GPU")
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    print(f"baseline_img_per_s={summary['baseline']:.3f} workers1_img_per_s={summary['workers1']:.3f} "
          f"workers2_img_per_s={summary['workers2']:.3f} full_dataset_core_hours={core_h:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
