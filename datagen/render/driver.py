"""Render the dataset (or any selection of it) with many workers, on one machine or many.

    python -m datagen.render --out OUT [--poses ...] [--views ...]              # local workers
    python -m datagen.render --out OUT --ray [ADDRESS]                          # Ray cluster
    python -m datagen.render --out OUT --shard k/N | auto | auto/N              # array jobs
    python -m datagen.render --status OUT                                       # done/failed/pending

One driver plans the job as blocks of items (the views of one pose belong together, so a
worker builds the pose's mesh once) and runs them on long-lived render processes
(blender_scripts/render.py --stdin).  Every item's random draws come from its own seed
(config seed, pose, view), so how the work is split never changes an image or a label.
The item's label JSON (written last, atomically) marks it done: re-running the same command
continues the job, and killing a worker or the driver loses at most the items in flight.
See docs/SCALING.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import signal
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

from datagen import atomic
from datagen.config import DEVICES, REPO_ROOT
from datagen.render.jobs import (
    Job,
    START_LOCK,
    JobLock,
    Ledger,
    collect_status,
    format_status,
    hms,
    job_key,
    plan_blocks,
    resolve_shard,
    running_overlap,
    scan_done,
    shard_items,
    shard_tag,
)
from datagen.render.gpus import GPU_DEVICES, GpuError, assign, parse_gpus, visible_gpus
from datagen.render.layout import RenderDirError, check_writable
from datagen.render.resume import run_conflict
from datagen.render.workers import Outcome, Policy, WorkerSpec

BYTES_PER_ITEM_256 = 360_000  # measured at 256x256: PNG ~80 kB, depth 262 kB, JSON 6 kB, mask 1 kB

EPILOG = """\
modes:
  local (default)  --workers N long-lived render processes on this machine, each with
                   --threads-per-worker Cycles threads; blocks are handed to idle workers and
                   the last pose is split between workers that run dry.
  Ray              --ray [ADDRESS]: each block is a Ray task (num_cpus = threads per worker,
                   num_gpus = 1 with a GPU --device) running a long-lived render process on
                   its node; failed tasks are retried (--retries); ledger and progress update
                   as each block finishes.  ADDRESS: a cluster (head:6379, ray://head:10001);
                   without it, RAY_ADDRESS if set, else a local Ray runtime.  OUT must be on a
                   file system every node mounts at the same path.
  GPUs             --device CUDA|OPTIX|HIP|ONEAPI|METAL: one worker per GPU, each seeing only its
                   own device (CUDA_VISIBLE_DEVICES etc.), the CPUs shared between them; --gpus
                   0,1,... picks the GPUs (default: all visible).
  array jobs       --shard k/N renders the k-th of N disjoint, balanced, contiguous slices of
                   the selection; the N shards render every item exactly once.  --shard auto
                   takes k and N from SLURM_ARRAY_TASK_ID/_COUNT (or JOB_COMPLETION_INDEX of a
                   Kubernetes indexed Job with --shard auto/N).  Works with either mode above.

examples:
  python -m datagen.render --out out/render                        # the full dataset here
  python -m datagen.render --out out/render --poses 0-31 --workers 2 --threads-per-worker 1
  python -m datagen.render --out out/render --device OPTIX --gpus 0,1   # two GPUs, a worker each
  python -m datagen.render --out /shared/render --ray head:6379
  sbatch --array=0-63 --wrap "python -m datagen.render --out /shared/render --shard auto"
  python -m datagen.render --status out/render

a re-run of the same command continues the job (done items are skipped, failed ones retried);
the job's ledger lives in OUT/job/, worker logs in OUT/logs/.  Jobs whose selections overlap
do not run at the same time in one OUT (the second is refused while the first runs); a camera
that crops the hand is refused before anything renders (--allow-cropped overrides); a full disk
stops the job at the first item that does not fit.

exit status: 0 every selected item is done; 1 some items failed or the job stopped (see
--status); 2 bad input (nothing rendered); 130 interrupted (143 on SIGTERM).
"""


CPU_THREADS_PER_WORKER = 2  # docs/SCALING.md: fewer CPU-s per image than 1-thread workers


class UsageError(Exception):
    """Bad arguments or inputs: one message, exit status 2, nothing rendered."""


def available_cpus() -> int:
    """CPUs this process may use: affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def build_parser() -> argparse.ArgumentParser:
    usage = ("\n  python -m datagen.render --out OUT [selection] [--workers N] [options]   (local workers)\n"
             "  python -m datagen.render --out OUT --ray [ADDRESS] [options]             (Ray cluster or local Ray)\n"
             "  python -m datagen.render --out OUT --shard k/N|auto|auto/N [options]     (array jobs: SLURM, k8s)\n"
             "  python -m datagen.render --status OUT [--json]")
    ap = argparse.ArgumentParser(prog="python -m datagen.render", usage=usage, description=__doc__.split("\n\n")[2],
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_argument_group("what to render")
    g.add_argument("--out", help="output RENDER_DIR (docs/ARCHITECTURE.md)")
    g.add_argument("--config", default=None, help="dataset config TOML (default configs/default.toml)")
    g.add_argument("--poses", default="all", help="pose ids: all | N | A-B | lists, e.g. 0-31,700 (default all)")
    g.add_argument("--views", default="all", help="view ids, same syntax (default all)")
    g.add_argument("--items-file", default=None, help="file of items (ids, 'pose view' or JSON lines) instead of "
                                                      "--poses/--views")
    g.add_argument("--shard", default=None, metavar="k/N|auto|auto/N",
                   help="render only the k-th of N slices of the selection (array jobs)")
    g.add_argument("--limit", type=int, default=None, help="render at most this many (unfinished) items")
    g.add_argument("--skip-failed", action="store_true", help="do not retry items a previous run of this job "
                                                              "gave up on")
    g.add_argument("--allow-cropped", action="store_true",
                   help="render even where the camera crops the hand (default: refuse before rendering)")
    g = ap.add_argument_group("where to render")
    g.add_argument("--workers", default="auto", help="local: worker processes; Ray: concurrent tasks "
                                                     "(default: CPUs // threads per worker)")
    g.add_argument("--threads-per-worker", type=int, default=None,
                   help="Cycles threads per worker (default 2 on CPU: measured ~20%% fewer CPU-s per image than "
                        "1-thread workers, docs/SCALING.md; with GPUs the CPUs shared evenly between the GPU workers)")
    g.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run the blocks as Ray tasks (no ADDRESS: RAY_ADDRESS or a local Ray runtime)")
    g.add_argument("--device", default=None, help=f"Cycles device: {', '.join(DEVICES)} (default from config)")
    g.add_argument("--gpus", default=None, metavar="IDS",
                   help="with a GPU --device: the GPU ids to use, e.g. 0,1,3 - one worker per GPU, each seeing only "
                        "its own device (default: all visible - CUDA_VISIBLE_DEVICES/HIP_VISIBLE_DEVICES if set, "
                        "else nvidia-smi); CPU threads are shared evenly between the GPU workers")
    g.add_argument("--blender", default=None, metavar="PATH",
                   help="run workers in this Blender binary (blender -b -P) instead of the venv's bpy")
    g.add_argument("--cache", default=None, help="prepared-cache folder (default cache/)")
    g = ap.add_argument_group("robustness")
    g.add_argument("--retries", type=int, default=2, help="retries per item after a crash, hang or failure "
                                                          "(and per Ray task); default 2")
    g.add_argument("--item-timeout", default="auto",
                   help="seconds without an answer before a worker is killed and the item retried "
                        "(auto: 20x the median item time, >= 60 s; 900 s until the first answer)")
    g.add_argument("--start-timeout", type=float, default=600.0, help="seconds for a worker to start (default 600)")
    g.add_argument("--recycle-after", type=int, default=200,
                   help="replace a worker after this many items (caps memory growth, measured ~3.6 MB per item "
                        "in bpy 5.0.1; 0 = never; default 200)")
    g.add_argument("--max-worker-memory", type=float, default=2048.0, metavar="MB",
                   help="also replace a worker whose resident memory exceeds MB (0 = off; default 2048)")
    g.add_argument("--block-size", type=int, default=0,
                   help="max items per block (default: a whole pose locally, 54 with --ray)")
    g.add_argument("--fsync", action="store_true", help="flush every file to disk (survives power loss)")
    g = ap.add_argument_group("output")
    g.add_argument("--status", default=None, metavar="OUT", help="print done/failed/pending of OUT and exit")
    g.add_argument("--json", action="store_true", help="with --status: machine-readable")
    g.add_argument("--dry-run", action="store_true", help="check everything and print the plan; render nothing")
    g.add_argument("--no-progress", action="store_true", help="no progress bar / progress lines")
    g.add_argument("--progress-interval", type=float, default=30.0,
                   help="seconds between progress lines when stderr is not a terminal (default 30)")
    return ap


# ----------------------------------------------------------------------------- checks and plan

class Plan:
    """Everything the run needs, all checked before any work starts."""


def prepare(args) -> Plan:
    from datagen.cameras import views_for
    from datagen.config import ConfigError, load_config
    from datagen.scene.hdri import HdriError, discover
    from datagen.poses.tables import PreparedMissing, ensure_tables
    from datagen.render.selection import SelectionError, read_items_file, select
    from datagen.scene.items import make_spec

    P = Plan()
    if not args.out:
        raise UsageError("--out RENDER_DIR is required (or --status OUT)")
    if args.threads_per_worker is not None and args.threads_per_worker < 0:
        raise UsageError("--threads-per-worker must be >= 0 (0 = all cores for each worker)")
    for name in ("retries", "recycle_after", "block_size"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit {args.limit}: must be >= 1 (omit it to render every selected item)")
    if args.start_timeout <= 0 or args.max_worker_memory < 0:
        raise UsageError("--start-timeout must be > 0 and --max-worker-memory >= 0")
    if str(args.item_timeout).lower() == "auto":
        P.item_timeout = None
    else:
        try:
            P.item_timeout = float(args.item_timeout)
        except ValueError:
            P.item_timeout = float("nan")
        if not P.item_timeout > 0:
            raise UsageError(f"--item-timeout {args.item_timeout!r}: seconds > 0 or 'auto'")
    P.device = args.device.upper() if args.device else None
    if P.device and P.device not in DEVICES:
        raise UsageError(f"--device {args.device!r}: use one of {', '.join(DEVICES)}")
    if args.blender and not (os.path.isfile(args.blender) and os.access(args.blender, os.X_OK)):
        raise UsageError(f"--blender {args.blender}: not an executable file")
    if args.config and not Path(args.config).is_file():
        raise UsageError(f"--config {args.config}: no such file")
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        raise UsageError(f"config: {exc}") from None
    P.cfg = cfg
    P.device = P.device or cfg.render.device.upper()
    P.gpu_slots = None
    if args.gpus and P.device == "CPU":
        raise UsageError(f"--gpus {args.gpus}: needs a GPU --device ({', '.join(GPU_DEVICES)})")
    threads = CPU_THREADS_PER_WORKER if args.threads_per_worker is None else args.threads_per_worker
    cpus = available_cpus()
    if str(args.workers).lower() == "auto":
        P.workers = None  # decided per backend
    else:
        try:
            P.workers = int(args.workers)
        except ValueError:
            P.workers = 0
        if P.workers < 1:
            raise UsageError(f"--workers {args.workers!r}: a whole number >= 1 or 'auto'")
    P.threads = threads
    P.cpus = cpus
    if P.device != "CPU" and args.ray is None:
        try:
            gpus = parse_gpus(args.gpus) if args.gpus else visible_gpus(P.device, dict(os.environ))
            P.gpu_slots = assign(P.device, gpus, cpus, args.threads_per_worker)
        except GpuError as exc:
            raise UsageError(str(exc)) from None
        if P.workers is not None and P.workers != len(P.gpu_slots):
            raise UsageError(f"--workers {P.workers} with {len(P.gpu_slots)} GPUs: a GPU job runs one worker per GPU "
                             f"(choose the GPUs with --gpus)")
    elif args.gpus:
        raise UsageError("--gpus is for local workers; with --ray each task asks Ray for one GPU (num_gpus=1)")
    try:
        P.shard = resolve_shard(args.shard)
    except SelectionError as exc:
        raise UsageError(str(exc)) from None
    try:
        tables = ensure_tables(cfg, args.cache, can_build=True, config_arg=args.config or "configs/default.toml")
    except PreparedMissing as exc:
        raise UsageError(str(exc)) from None
    views = views_for(cfg.cameras, tables)
    P.n_poses, P.n_views = int(tables.n_poses), len(views)
    P.image_size = (views.width, views.height)
    try:
        if args.items_file:
            if args.poses != "all" or args.views != "all":
                raise UsageError("--items-file replaces --poses/--views; give one or the other")
            selected = read_items_file(args.items_file, P.n_poses, P.n_views)
        else:
            selected = select(P.n_poses, P.n_views, args.poses, args.views)
    except SelectionError as exc:
        raise UsageError(str(exc)) from None
    try:
        hdris, warnings = discover(cfg.hdri.sources, REPO_ROOT)
    except HdriError as exc:
        raise UsageError(str(exc)) from None
    P.hdri_warnings = warnings
    background_names = None
    if cfg.backgrounds.share > 0:  # decoded here too: a bad image stops the job before any worker starts
        from datagen.scene.backgrounds import BackgroundError
        from datagen.scene.backgrounds import discover as discover_backgrounds

        try:
            background_names = [b.name for b in discover_backgrounds(cfg.backgrounds.sources, REPO_ROOT)[0]]
        except BackgroundError as exc:
            raise UsageError(str(exc)) from None
    out = Path(args.out).absolute()
    P.out = out
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} exists and is not a folder")
    try:
        check_writable(out)
    except RenderDirError as exc:
        raise UsageError(str(exc)) from None
    conflict = run_conflict(out, cfg.to_dict(), [h.name for h in hdris], tables.key, background_names)
    if conflict:
        raise UsageError(conflict)
    if args.cache:
        cache = Path(args.cache).absolute()
    else:
        cache = None
    P.config_path = str(Path(args.config).absolute()) if args.config else None
    P.cache = str(cache) if cache else None
    P.selection = {"poses": args.poses, "views": args.views,
                   "items_file": str(Path(args.items_file).absolute()) if args.items_file else None}
    P.selected = selected
    P.items = shard_items(selected, P.shard)
    P.key = job_key([p * P.n_views + v for p, v in selected], P.shard, cfg.digest())
    P.job = Job(P.key, out, P.selection, P.shard, P.items, P.n_poses, P.n_views, cfg.digest())
    # what is left: not done, and (with --skip-failed) not given up on before
    todo = _not_done(out, P.items, P.n_views)
    P.already_done = len(P.items) - len(todo)
    P.skipped_failed = 0
    if args.skip_failed and todo:
        st_failed = _failed_items(P.job)
        keep = [(p, v) for p, v in todo if p * P.n_views + v not in st_failed]
        P.skipped_failed = len(todo) - len(keep)
        todo = keep
    if args.limit is not None:
        todo = todo[:args.limit]
    P.todo = todo
    from datagen.cameras.framing import framing_problem

    from datagen.scene.arm import arm_problem

    stuck = arm_problem(cfg, tables, views, todo)  # items no wrist angles can render: refused
    if stuck:
        raise UsageError(stuck)
    problem = framing_problem(tables, views, todo, cfg.cameras.sampler)
    P.framing_warning = None
    if problem and not args.allow_cropped:
        raise UsageError(problem + "; or pass --allow-cropped to render them anyway")
    P.framing_warning = problem
    n_hdris, n_backgrounds = len(hdris), len(background_names or [])

    def order(item):  # inside a pose: group by HDRI (an environment switch costs Cycles a map rebuild)
        return (make_spec(cfg, n_hdris, item[0], item[1], P.n_views, n_backgrounds).hdri_index, item[1])

    P.order = order
    P.free_bytes = atomic.free_bytes(out) or shutil.disk_usage(out).free
    P.item_bytes = BYTES_PER_ITEM_256 * (views.width * views.height) / 256 ** 2
    P.need_bytes = len(todo) * P.item_bytes
    if todo and P.free_bytes < 2 * P.item_bytes:
        raise UsageError(f"{out}: no space left on device ({atomic.human_bytes(P.free_bytes)} free, an item needs "
                         f"about {atomic.human_bytes(int(P.item_bytes))}); free some space or use another --out")
    return P


def _not_done(out: Path, items, n_views: int) -> list[tuple[int, int]]:
    """Items without a label JSON (one directory listing per pose: fast on network file systems)."""
    done = set(scan_done(out, n_views).tolist())
    return [(p, v) for p, v in items if p * n_views + v not in done]


def _failed_items(job: Job) -> set[int]:
    from datagen.render.jobs import read_ledger

    events, _ = read_ledger(job.ledger_path)
    failed: set[int] = set()
    for e in events:
        if e.get("ev") == "failed":
            failed.add(int(e["item"]))
        elif e.get("ev") == "done":
            failed.discard(e.get("item"))
    return failed


# ----------------------------------------------------------------------------- progress, ledger, summary

class Tracker:
    """Ledger events, one aggregated progress display, and the numbers for the summary."""

    def __init__(self, ledger: Ledger, n_views: int, total: int, initial: int, enabled: bool, interval: float):
        self.ledger = ledger
        self.n_views = n_views
        self.total, self.initial = total, initial
        self.lock = threading.Lock()
        self.t0 = time.time()
        self.n = 0
        self.ok = self.skipped = self.failed = self.interrupted = self.retries = 0
        self.restarts: dict[str, int] = {}
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.failures: list[Outcome] = []
        self.interval = interval
        self.last_line = time.time()
        self.bar = None
        self.lines = False
        if enabled and total > initial:
            if sys.stderr.isatty():
                try:
                    from tqdm import tqdm

                    self.bar = tqdm(total=total, initial=initial, unit="img", desc="render", file=sys.stderr,
                                    smoothing=0.05, dynamic_ncols=True)
                except ImportError:
                    self.lines = True
            else:
                self.lines = True

    def say(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def event(self, kind: str, **kw) -> None:
        kw = {k: v for k, v in kw.items() if v is not None}
        self.ledger.write(kind, **kw)
        with self.lock:
            if kind == "retry":
                self.retries += 1
            if kind == "worker":
                what = kw.get("what")
                if what not in ("started",):
                    self.restarts[what] = self.restarts.get(what, 0) + 1
                if what in ("crash", "timeout", "start-failed", "slot-gave-up"):
                    detail = kw.get("error") or (f"item {kw.get('item')}, limit {kw.get('timeout_s')} s"
                                                 if what == "timeout" else "")
                    log = f" (log: {kw['log']})" if kw.get("log") and "(log:" not in detail else ""
                    then = "" if kw.get("fatal") or what == "slot-gave-up" else "; retrying"
                    self.say(f"{kw.get('worker')}: {what}{': ' + str(detail) if detail else ''}{log}{then}")

    def outcome(self, o: Outcome, worker: str, extra: dict | None = None) -> None:
        item = o.pose * self.n_views + o.view
        base = dict(item=item, pose=o.pose, view=o.view, worker=worker, attempt=o.attempts, **(extra or {}))
        if o.status in ("ok", "skipped"):
            r3 = lambda x: round(x, 3) if x is not None else None  # noqa: E731
            self.ledger.write("done", s=r3(o.seconds), cpu=r3(o.cpu_s), cycles=r3(o.cycles_s),
                              skipped=o.status == "skipped" or None, **base)
        elif o.status == "failed":
            self.ledger.write("failed", error=o.error, log=o.log, attempts=o.attempts, **base)
        else:
            self.ledger.write("interrupted", **base)
        with self.lock:
            if o.status == "ok":
                self.ok += 1
                self.wall.append(o.seconds)
                if o.cpu_s is not None:
                    self.cpu.append(o.cpu_s)
            elif o.status == "skipped":
                self.skipped += 1
            elif o.status == "failed":
                self.failed += 1
                self.failures.append(o)
            else:
                self.interrupted += 1
                return
            self.n += 1
        if o.status == "failed":
            self.say(f"item {item} (pose {o.pose} view {o.view}) failed after {o.attempts} attempts: {o.error} "
                     f"(log: {o.log})")
        self._progress(1)

    def _progress(self, k: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"failed={self.failed} retries={self.retries}", refresh=False)
            self.bar.update(k)
        elif self.lines:
            self.refresh()

    def refresh(self, force: bool = False) -> None:
        if not self.lines:
            return
        now = time.time()
        if not force and now - self.last_line < self.interval:
            return
        self.last_line = now
        done = self.initial + self.n
        rate = self.n / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else None
        print(f"[render] {done}/{self.total} items ({100.0 * done / max(self.total, 1):.1f}%)  {rate:.2f} img/s  "
              f"ETA {hms(eta)}  failed={self.failed} retries={self.retries}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def summary(self) -> dict:
        dt = time.time() - self.t0
        return {"rendered": self.ok, "skipped": self.skipped, "failed": self.failed,
                "interrupted": self.interrupted, "retries": self.retries, "worker_events": dict(self.restarts),
                "seconds": round(dt, 2), "img_per_s": round(self.ok / dt, 4) if dt > 0 else None,
                "median_item_s": round(statistics.median(self.wall), 3) if self.wall else None,
                "median_item_cpu_s": round(statistics.median(self.cpu), 3) if self.cpu else None}


# ----------------------------------------------------------------------------- run

def run_job(args, P: Plan) -> int:
    ray_mode = args.ray is not None
    threads = P.threads
    block_size = args.block_size or (54 if ray_mode else 0)
    if ray_mode:
        from datagen.render.ray_backend import connect

        try:
            ray_info = connect(args.ray, P.workers, threads, P.cpus, gpu=P.device != "CPU")
        except RuntimeError as exc:
            raise UsageError(str(exc)) from None
        n_workers = P.workers or ray_info["slots"]
    elif P.gpu_slots:
        n_workers = len(P.gpu_slots)
        threads = P.gpu_slots[0].threads
    else:
        n_workers = P.workers or max(1, P.cpus // max(threads, 1))
    blocks = plan_blocks(P.todo, block_size=block_size, min_blocks=n_workers, order=P.order)
    mode = "ray" if ray_mode else "local"
    print(f"job {P.key}: {len(P.selected)} items selected"
          f"{f', shard {P.shard[0]}/{P.shard[1]} owns {len(P.items)}' if P.shard else ''}; {P.already_done} done, "
          f"{len(P.todo)} to render in {len(blocks)} blocks"
          f"{f' ({P.skipped_failed} failed items skipped)' if P.skipped_failed else ''} -> {P.out}", file=sys.stderr)
    print(f"{mode}: {n_workers} workers x {threads or 'all'} Cycles threads"
          f"{' on ' + ray_info['describe'] if ray_mode else ''}"
          f"{', device ' + P.device if P.device != 'CPU' else ''}"
          f"{' (GPUs ' + ', '.join(str(g.gpu) for g in P.gpu_slots) + ', one per worker)' if P.gpu_slots else ''}"
          f"; {P.cpus} CPUs here", file=sys.stderr)
    if P.need_bytes > P.free_bytes:
        print(f"warning: {P.out} has {atomic.human_bytes(P.free_bytes)} free; the {len(P.todo)} items need about "
              f"{atomic.human_bytes(int(P.need_bytes))} - the job stops when the disk is full", file=sys.stderr)
    if P.framing_warning:
        print(f"warning: {P.framing_warning} (rendering anyway: --allow-cropped)", file=sys.stderr)
    for w in P.hdri_warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.dry_run:
        for g in P.gpu_slots or ():
            env = " ".join(f"{k}={v}" for k, v in g.env) or "(default device)"
            print(f"plan: worker-{g.index:02d} GPU {g.gpu}: {env}, {g.threads} CPU threads", file=sys.stderr)
        sizes = [len(b) for b in blocks]
        if sizes:
            print(f"plan: {len(blocks)} blocks of {min(sizes)}..{max(sizes)} items; first {blocks[0].name}, "
                  f"last {blocks[-1].name}", file=sys.stderr)
        return 0
    lock = JobLock(P.job.lock_path)
    with JobLock(P.job.dir / START_LOCK).hold():  # one driver at a time between lock and record
        holder = lock.acquire()
        if holder:
            raise UsageError(f"job {P.key} is already running ({holder}); see --status {P.out}")
        clash = running_overlap(P.out, P.key, P.items, P.n_poses * P.n_views, P.n_views)
        if clash:
            lock.release()
            raise UsageError(clash)
        try:
            P.job.write(argv=sys.argv)
        except atomic.WriteError as exc:  # a full disk: nothing can be rendered here
            lock.release()
            raise UsageError(str(exc)) from None
    ledger = Ledger(P.job.ledger_path)
    ledger.write("start", host=socket.gethostname(), pid=os.getpid(), backend=mode, workers=n_workers,
                 threads=threads, device=P.device, selected=len(P.selected), owned=len(P.items),
                 done=P.already_done, todo=len(P.todo), blocks=len(blocks), shard=list(P.shard) if P.shard else None)
    tracker = Tracker(ledger, P.n_views, len(P.items), P.already_done, not args.no_progress, args.progress_interval)
    spec = WorkerSpec(out=str(P.out), config=P.config_path, cache=P.cache, threads=threads, device=args.device,
                      blender=args.blender, fsync=args.fsync, allow_cropped=args.allow_cropped)
    policy = Policy(retries=args.retries, item_timeout=P.item_timeout, start_timeout=args.start_timeout,
                    recycle_after=args.recycle_after, max_rss_mb=args.max_worker_memory)
    tag = shard_tag(P.shard)
    log_prefix = f"{tag}." if tag else ""
    stop = {"signals": 0, "signum": None}
    fatal = None
    fatal_input = False
    try:
        if not blocks:
            pass
        elif ray_mode:
            from datagen.render.ray_backend import run_ray

            fatal, fatal_input = run_ray(blocks, spec, policy, n_workers, tracker, P.out, stop, log_prefix,
                                         P.job.record_path, window=n_workers if P.workers else None)
        else:
            from datagen.render.workers import LocalPool

            slot_specs = None
            if P.gpu_slots:
                slot_specs = [dataclasses.replace(spec, threads=g.threads, extra_env=spec.extra_env + g.env)
                              for g in P.gpu_slots]
            pool = LocalPool(spec, policy, n_workers, P.out / "logs", log_prefix, P.out, tracker, slot_specs)

            def on_signal(signum, frame):
                stop["signals"] += 1
                stop["signum"] = stop["signum"] or signum
                if stop["signals"] == 1:
                    tracker.say(f"\n{signal.Signals(signum).name}: stopping - the items in flight finish "
                                f"(Ctrl-C again to kill them)")
                    pool.stop()
                else:
                    tracker.say("killing the workers; their items in flight stay pending")
                    pool.abort()

            def wait(threads_):
                while any(t.is_alive() for t in threads_):
                    for t in threads_:
                        t.join(0.25)
                    tracker.refresh()

            old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                pool.run(blocks, wait=wait)
            finally:
                for s, h in old.items():
                    signal.signal(s, h)
            fatal = pool.fatal
            fatal_input = pool.fatal_input
    finally:
        if tracker.n:
            tracker.refresh(force=True)
        tracker.close()
        summ = tracker.summary()
        pending = len(_not_done(P.out, P.items, P.n_views))
        ledger.write("end", pending=pending, signal=stop["signum"], fatal=fatal, **summ)
        ledger.close()
        lock.release()
    print_summary(P, summ, pending, fatal, stop)
    if fatal and fatal_input and summ["rendered"] == 0:
        return 2
    if stop["signals"]:
        return 128 + int(stop["signum"] or signal.SIGINT)
    if fatal or summ["failed"] or pending:
        return 1
    return 0


def print_summary(P: Plan, s: dict, pending: int, fatal: str | None, stop: dict) -> None:
    rate = f"{s['img_per_s']:.3f} img/s" if s["img_per_s"] else "-"
    per = (f", {s['median_item_s']:.2f} s/item per worker, {s['median_item_cpu_s']:.2f} CPU-s/item (medians)"
           if s["median_item_s"] else "")
    ev = ", ".join(f"{k} {v}" for k, v in sorted(s["worker_events"].items())) or "none"
    print(f"summary: rendered={s['rendered']} skipped={s['skipped']} failed={s['failed']} pending={pending} "
          f"(of {len(P.items)}; {P.already_done} were done before) in {hms(s['seconds'])} ({rate}{per}); "
          f"retries {s['retries']}; worker events: {ev}", file=sys.stderr)
    if stop["signals"]:
        print(f"interrupted: re-run the same command to continue ({pending} items pending)", file=sys.stderr)
    if fatal:
        print(f"error: {fatal}", file=sys.stderr)
    if s["failed"]:
        print(f"failed items are listed by: python -m datagen.render --status {P.out} "
              f"(errors in {P.job.ledger_path.relative_to(P.out)}, tracebacks in failures.log)", file=sys.stderr)


def status_main(args) -> int:
    out = Path(args.status)
    try:
        st = collect_status(out)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(st, indent=1))
    else:
        print(format_status(st))
    return 0


def main(argv: list[str] | None = None) -> int:
    from datagen.console import setup_logging

    setup_logging()
    args = build_parser().parse_args(argv)
    if args.status:
        return status_main(args)
    try:
        P = prepare(args)
        return run_job(args, P)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
