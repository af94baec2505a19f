"""Render jobs: planning (blocks, shards), the job ledger, and job status.

Pure Python (numpy): the driver (`python -m datagen.render`) and `--status` use it; nothing
here imports bpy.

Planning
    A job renders a selection of items (pose-major, see datagen/items.py).  It is cut into
    *blocks*: the items of one pose (so a worker builds the pose's mesh once), ordered inside
    the pose by (HDRI, view) so Cycles switches environments as rarely as possible.  A pose's
    group is split into equal contiguous parts when it exceeds the block size, or when there
    are fewer poses than workers.

Shards (array jobs: SLURM, Kubernetes indexed jobs, ...)
    Shard k of N owns the items [k*T//N, (k+1)*T//N) of the ordered selection (T items): the
    same slices as `blender_scripts/render.py --shard k/N`.  The N slices partition the
    selection exactly (every item in exactly one shard), are balanced to one item, and depend
    only on the selection - not on the machine, worker count or order of execution.  Only a
    pose at one of the N-1 cut points is shared by two shards (both build its mesh; its mesh
    file is written atomically by whichever is first).  Blocks are then planned per shard.

Ledger (OUT/job/)
    ``<key>.json``          the job: selection (as item-id ranges), shard, config digest,
                            command; rewritten atomically by every run of the job.
    ``<key>.ledger.jsonl``  append-only events, one JSON object a line: run start/end,
                            item done (worker, seconds), retry, failed (error, log path),
                            worker start/recycle/crash/timeout.
    ``<key>.lock``          held (flock) by the driver running the job.
    ``start-lock``          held for a moment by a starting driver: it takes its job lock,
                            refuses to run if a running job (lock held) overlaps its pending
                            items, and writes its record - so two jobs never render one item
                            at the same time.
    The item's label JSON (written last by the renderer) is the only truth of "done"; the
    ledger adds timings and failures.  Status is rebuilt from the directory: done from the
    label JSONs, failures from the ledgers or, without them, from OUT/failures.log (written by
    the renderer), pending = selected - done - failed.  A torn last line (a kill during a
    write) is skipped when reading and terminated before the next append.
"""

from __future__ import annotations

import logging
import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datagen import atomic
from datagen.render.selection import SelectionError, parse_shard, shard_slice

log = logging.getLogger(__name__)

JOB_DIR = "job"
LOG_DIR = "logs"
FAILURES_LOG = "failures.log"
START_LOCK = "start-lock"  # not *.lock: those are the jobs' own locks


# ----------------------------------------------------------------------------- blocks

@dataclass(frozen=True)
class Block:
    """Items of one pose (all or a contiguous part of the pose's selected views)."""

    pose_id: int
    items: tuple[tuple[int, int], ...]
    part: tuple[int, int] = (0, 1)  # (index, count) of this pose's parts

    def __len__(self) -> int:
        return len(self.items)

    @property
    def name(self) -> str:
        p = f"p{self.pose_id:05d}"
        return p if self.part[1] == 1 else f"{p}.{self.part[0] + 1}of{self.part[1]}"


def split_even(seq: list, parts: int) -> list[list]:
    """`parts` contiguous pieces whose lengths differ by at most one (no empty piece)."""
    parts = max(1, min(parts, len(seq)))
    n = len(seq)
    return [seq[i * n // parts:(i + 1) * n // parts] for i in range(parts)]


def plan_blocks(items: list[tuple[int, int]], block_size: int = 0, min_blocks: int = 1,
                order=None) -> list[Block]:
    """Group pose-major items into per-pose blocks.

    `order(item) -> key` sorts the items inside a pose (default: by view).  A pose's group is
    split into ceil(len / block_size) equal parts (block_size 0 = no limit), and every group
    into ceil(min_blocks / n_poses) parts when there are fewer poses than `min_blocks`
    (e.g. workers), so all workers get work.
    """
    groups: dict[int, list[tuple[int, int]]] = {}
    for p, v in items:
        groups.setdefault(int(p), []).append((int(p), int(v)))
    if not groups:
        return []
    spread = -(-int(min_blocks) // len(groups)) if min_blocks > len(groups) else 1
    blocks = []
    for p in sorted(groups):
        g = sorted(set(groups[p]), key=order or (lambda it: it[1]))
        parts = spread
        if block_size and block_size > 0:
            parts = max(parts, -(-len(g) // block_size))
        pieces = split_even(g, parts)
        for i, piece in enumerate(pieces):
            blocks.append(Block(p, tuple(piece), (i, len(pieces))))
    return blocks


# ----------------------------------------------------------------------------- shards

def resolve_shard(text: str | None, env: dict | None = None) -> tuple[int, int] | None:
    """`k/N`, `auto` or `auto/N` -> (k, N); None when not sharded.

    `auto` reads the array index (and count) the scheduler sets:
      SLURM     SLURM_ARRAY_TASK_ID, _MIN, _STEP, _COUNT  (k = (ID - MIN) / STEP, N = COUNT)
      Kubernetes indexed Job: JOB_COMPLETION_INDEX (N from `auto/N` or HANDSYNTH_SHARD_COUNT)
      AWS Batch AWS_BATCH_JOB_ARRAY_INDEX (N likewise)
      any       HANDSYNTH_SHARD_INDEX and HANDSYNTH_SHARD_COUNT
    """
    if text is None or str(text).strip() == "":
        return None
    env = os.environ if env is None else env
    text = str(text).strip()
    m = re.fullmatch(r"auto(?:\s*/\s*(\d+))?", text, flags=re.IGNORECASE)
    if not m:
        return parse_shard(text)
    n_given = int(m.group(1)) if m.group(1) else None

    def as_int(name):
        try:
            return int(env[name])
        except (KeyError, ValueError):
            return None

    k = n = None
    source = None
    if as_int("SLURM_ARRAY_TASK_ID") is not None:
        tid = as_int("SLURM_ARRAY_TASK_ID")
        tmin = as_int("SLURM_ARRAY_TASK_MIN") or 0
        step = as_int("SLURM_ARRAY_TASK_STEP") or 1
        if (tid - tmin) % step:
            raise SelectionError(f"--shard {text}: SLURM array task {tid} is not on the grid MIN={tmin} STEP={step}; "
                                 f"use a contiguous array (--array=0-{{N-1}}) or --shard k/N")
        k, n, source = (tid - tmin) // step, as_int("SLURM_ARRAY_TASK_COUNT"), "SLURM_ARRAY_TASK_ID"
    else:
        for name in ("JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "HANDSYNTH_SHARD_INDEX"):
            if as_int(name) is not None:
                k, source = as_int(name), name
                break
        n = as_int("HANDSYNTH_SHARD_COUNT")
    if k is None:
        raise SelectionError(f"--shard {text}: no array-job index in the environment (looked for "
                             f"SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX, "
                             f"HANDSYNTH_SHARD_INDEX); use --shard k/N")
    if n_given is not None:
        if n is not None and n != n_given and source == "SLURM_ARRAY_TASK_ID":
            raise SelectionError(f"--shard {text}: the SLURM array has {n} tasks, not {n_given}")
        n = n_given
    if n is None:
        raise SelectionError(f"--shard {text}: {source}={k} gives the index but not the number of shards; "
                             f"use --shard auto/N or set HANDSYNTH_SHARD_COUNT")
    if n < 1 or not 0 <= k < n:
        raise SelectionError(f"--shard {text}: index {k} from {source} is outside 0..{n - 1}")
    return k, n


def shard_items(items: list, shard: tuple[int, int] | None) -> list:
    """The shard's contiguous, balanced slice of the ordered selection (all items if None)."""
    items = items if isinstance(items, list) else list(items)
    return list(items) if shard is None else shard_slice(items, *shard)


def shard_tag(shard: tuple[int, int] | None) -> str:
    return "" if shard is None else f"shard-{shard[0]:04d}-of-{shard[1]:04d}"


# ----------------------------------------------------------------------------- item-id ranges

def to_ranges(ids) -> list[list[int]]:
    """Sorted unique ids -> [[start, stop), ...] runs (compact for pose x view selections)."""
    a = np.unique(np.asarray(list(ids), dtype=np.int64))
    if a.size == 0:
        return []
    cut = np.nonzero(np.diff(a) != 1)[0] + 1
    starts = np.concatenate([[0], cut])
    stops = np.concatenate([cut, [a.size]])
    return [[int(a[s]), int(a[e - 1]) + 1] for s, e in zip(starts, stops)]


def ranges_mask(ranges, n: int) -> np.ndarray:
    m = np.zeros(n, bool)
    for a, b in ranges:
        m[max(0, a):min(n, b)] = True
    return m


# ----------------------------------------------------------------------------- job record

@dataclass
class Job:
    key: str
    out: Path
    selection: dict  # how the items were chosen (poses/views/items_file/limit), for people
    shard: tuple[int, int] | None
    items: list[tuple[int, int]]  # this job's items (after the shard), pose-major
    n_poses: int
    n_views: int
    config_digest: str
    extra: dict = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.out / JOB_DIR

    @property
    def record_path(self) -> Path:
        return self.dir / f"{self.key}.json"

    @property
    def ledger_path(self) -> Path:
        return self.dir / f"{self.key}.ledger.jsonl"

    @property
    def lock_path(self) -> Path:
        return self.dir / f"{self.key}.lock"

    def item_ids(self) -> list[int]:
        return [p * self.n_views + v for p, v in self.items]

    def write(self, argv: list[str] | None = None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        created = time.time()
        if self.record_path.exists():
            try:
                created = json.loads(self.record_path.read_text()).get("created", created)
            except ValueError:
                pass
        atomic.write_json(self.record_path, {
            "key": self.key, "created": created, "updated": time.time(), "selection": self.selection,
            "shard": list(self.shard) if self.shard else None, "n_items": len(self.items),
            "n_poses": self.n_poses, "n_views": self.n_views, "config_digest": self.config_digest,
            "items": to_ranges(self.item_ids()), "host": socket.gethostname(), "argv": argv or [],
            **self.extra}, indent=1)


def job_key(selected_ids, shard: tuple[int, int] | None, config_digest: str) -> str:
    """Stable name of a job: the same selection, shard and config give the same key, so
    re-running a command continues its job (ledger, logs)."""
    h = hashlib.sha1(json.dumps([to_ranges(selected_ids), config_digest]).encode()).hexdigest()[:10]
    tag = shard_tag(shard)
    return f"job-{h}" + (f"-{tag}" if tag else "")


class JobLock:
    """An advisory lock (flock) on OUT/job/<key>.lock while a driver runs the job."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = None

    def acquire(self) -> str | None:
        """Take the lock; returns None, or who holds it (a message) if another process does."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            return holder or "another process"
        except OSError:  # a file system without locks (some NFS set-ups): run unlocked
            pass
        try:  # who holds it, for the message of a refused second driver (best effort: a full disk)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"host {socket.gethostname()} pid {os.getpid()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        except OSError:
            pass
        self.fd = fd
        return None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    @contextlib.contextmanager
    def hold(self):
        """Hold the lock (waiting for it) for the duration of a `with` block."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:  # a file system without locks: proceed unlocked
                pass
            yield
        finally:
            os.close(fd)


def running_overlap(out: Path, key: str, todo, n_items: int, n_views: int) -> str | None:
    """Why this job must not start: another job in OUT is running (its lock is held) and its
    selection contains items this one would render.  None when there is no such job."""
    ids = np.asarray([p * n_views + v for p, v in todo], np.int64)
    if not len(ids):
        return None
    for rec in job_records(out):
        if rec.get("key") == key:
            continue
        holder = lock_holder(rec["_lock"])
        if not holder:
            continue
        both = ids[ranges_mask(rec.get("items", []), n_items)[ids]]
        if len(both):
            i = int(both[0])
            return (f"job {rec['key']} ({holder}) is rendering {len(both)} of the {len(ids)} items this job would "
                    f"render in {out} (e.g. item {i}: pose {i // n_views} view {i % n_views}); two jobs would render "
                    f"them twice - wait for it to finish, or select items outside it (--status {out} shows it)")
    return None


def lock_holder(path: Path) -> str | None:
    """Who holds a job lock now (None if nobody)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "a running driver"
    except OSError:
        return None
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- ledger

class Ledger:
    """Append-only JSON lines; one write(2) per event on an O_APPEND descriptor.

    A failed write (a full disk) never stops the job - the label JSONs are the truth - but is
    reported once on stderr and remembered in `write_error`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.lock = threading.Lock()
        self.write_error: str | None = None
        size = os.fstat(self.fd).st_size
        if size:
            with open(self.path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":  # a torn line from a killed writer: terminate it
                    self._append(b"\n")

    def _append(self, data: bytes) -> None:
        try:
            n = os.write(self.fd, data)
            if n != len(data):
                raise OSError(28, f"short write ({n} of {len(data)} bytes)")
        except OSError as exc:
            if self.write_error is None:
                self.write_error = f"cannot append to {self.path}: {exc.strerror or exc}"
                log.warning("warning: %s (the ledger misses events from now on; the items' label files still "
                            "record what is done)", self.write_error)

    def write(self, ev: str, **fields) -> None:
        rec = {"t": round(time.time(), 3), "ev": ev}
        rec.update({k: v for k, v in fields.items() if v is not None})
        line = (json.dumps(rec, separators=(",", ":"), default=str) + "\n").encode()
        with self.lock:
            if self.fd is not None:
                self._append(line)

    def close(self) -> None:
        with self.lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


def read_ledger(path: Path) -> tuple[list[dict], int]:
    """(events, number of unreadable lines) - a torn line is skipped, never fatal."""
    events, bad = [], 0
    try:
        with open(path, "rb") as f:
            for raw in f:
                try:
                    rec = json.loads(raw)
                    if isinstance(rec, dict) and "ev" in rec:
                        events.append(rec)
                    else:
                        bad += 1
                except ValueError:
                    bad += raw.strip() != b""
    except OSError:
        pass
    return events, bad


# ----------------------------------------------------------------------------- directory scan

def scan_done(out: Path, n_views: int) -> np.ndarray:
    """Item ids whose label JSON exists (the renderer writes it last)."""
    ids = []
    items = Path(out) / "items"
    if not items.is_dir():
        return np.zeros(0, np.int64)
    with os.scandir(items) as it:
        pose_dirs = [(e.name, e.path) for e in it if e.is_dir() and e.name.isdigit()]
    for name, path in pose_dirs:
        base = int(name) * n_views
        with os.scandir(path) as it:
            for e in it:
                n = e.name
                if n.startswith("v") and n.endswith(".json") and n[1:-5].isdigit():
                    ids.append(base + int(n[1:-5]))
    return np.asarray(sorted(ids), np.int64)


_FAILURE_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d pose (\d+) view (\d+) \(item (\d+)\): (.*)$")


def read_failures_log(out: Path) -> dict[int, dict]:
    """item id -> {"error", "t"} from the renderer's OUT/failures.log (the last entry wins)."""
    res: dict[int, dict] = {}
    try:
        lines = (Path(out) / FAILURES_LOG).read_text(errors="replace").splitlines()
    except OSError:
        return res
    for line in lines:
        m = _FAILURE_LINE.match(line)
        if m:
            try:
                t = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
            except ValueError:
                t = 0.0
            res[int(m.group(3))] = {"error": m.group(4), "t": t, "log": FAILURES_LOG}
    return res


def job_records(out: Path) -> list[dict]:
    recs = []
    d = Path(out) / JOB_DIR
    if not d.is_dir():
        return recs
    for p in sorted(d.glob("job-*.json")):
        try:
            rec = json.loads(p.read_text())
            rec["_ledger"] = p.with_name(p.name[:-5] + ".ledger.jsonl")
            rec["_lock"] = p.with_name(p.name[:-5] + ".lock")
            recs.append(rec)
        except (OSError, ValueError):
            continue
    return recs


def collect_status(out: Path, recent_s: float = 600.0) -> dict:
    """done / failed / pending per job and overall, rebuilt from the directory."""
    out = Path(out)
    run_path = out / "run.json"
    n_poses = n_views = None
    if run_path.exists():
        try:
            run = json.loads(run_path.read_text())
            n_poses, n_views = int(run["n_poses"]), int(run["n_views"])
        except (OSError, ValueError, KeyError):
            pass
    recs = job_records(out)
    if n_views is None and recs:
        n_poses, n_views = int(recs[0]["n_poses"]), int(recs[0]["n_views"])
    if n_views is None:
        raise FileNotFoundError(f"{out} holds no render (no run.json and no job records)")
    n = n_poses * n_views
    done = np.zeros(n, bool)
    ids = scan_done(out, n_views)
    done[ids[ids < n]] = True
    # failures: ledgers first (error + log + attempts), else the renderer's failures.log
    failed: dict[int, dict] = {}
    now = time.time()
    recent_done = 0
    first_recent = None
    ledger_bad = 0
    for rec in recs:
        events, bad = read_ledger(rec["_ledger"])
        ledger_bad += bad
        rec["_events"] = events
        for e in events:
            ev = e.get("ev")
            if ev == "done":
                failed.pop(e.get("item"), None)
                if now - e["t"] <= recent_s:
                    recent_done += 1
                    first_recent = e["t"] if first_recent is None else min(first_recent, e["t"])
            elif ev == "failed":
                failed[int(e["item"])] = {"error": e.get("error", ""), "log": e.get("log"), "t": e["t"],
                                          "attempts": e.get("attempts"), "job": rec["key"]}
    from_log = {i: f for i, f in read_failures_log(out).items() if i not in failed}
    for i, f in from_log.items():
        failed[i] = dict(f, job=None)
    failed_mask = np.zeros(n, bool)
    for i in failed:
        if 0 <= i < n and not done[i]:
            failed_mask[i] = True
    failed = {i: f for i, f in failed.items() if 0 <= i < n and failed_mask[i]}
    union = np.zeros(n, bool)
    jobs = []
    for rec in recs:
        sel = ranges_mask(rec.get("items", []), n)
        union |= sel
        events = rec["_events"]
        starts = [e for e in events if e.get("ev") == "start"]
        ends = [e for e in events if e.get("ev") == "end"]
        holder = lock_holder(rec["_lock"])
        state = "running" if holder else ("finished" if ends and (not starts or ends[-1]["t"] >= starts[-1]["t"])
                                          else "stopped" if starts else "planned")
        jobs.append({
            "key": rec["key"], "shard": rec.get("shard"), "selection": rec.get("selection"),
            "selected": int(sel.sum()), "done": int((sel & done).sum()), "failed": int((sel & failed_mask).sum()),
            "pending": int((sel & ~done & ~failed_mask).sum()), "state": state, "holder": holder,
            "last_event": events[-1]["t"] if events else None, "runs": len(starts),
        })
    if not recs:  # rendered without the driver, or job/ removed: the whole dataset is the reference
        union[:] = True
    rate = None
    if recent_done >= 2 and first_recent is not None:
        rate = recent_done / max(now - first_recent, 1e-9)
    pending = int((union & ~done & ~failed_mask).sum())
    return {
        "out": str(out), "n_poses": n_poses, "n_views": n_views, "jobs": jobs,
        "selected": int(union.sum()), "done": int((union & done).sum()), "failed": int((union & failed_mask).sum()),
        "pending": pending, "done_outside_jobs": int((done & ~union).sum()), "done_total": int(done.sum()),
        "failures": [dict(item=i, pose=i // n_views, view=i % n_views, **f) for i, f in sorted(failed.items())],
        "rate_items_per_s": rate, "eta_s": pending / rate if rate else None, "unreadable_ledger_lines": ledger_bad,
        "reference": "jobs" if recs else "full dataset (no job records)",
    }


def hms(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h{s % 3600 // 60:02d}m"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"
    return f"{s // 60}m{s % 60:02d}s"


def format_status(st: dict, max_failures: int = 20, max_jobs: int = 30) -> str:
    lines = [f"RENDER_DIR {st['out']}  ({st['n_poses']} poses x {st['n_views']} views; "
             f"reference: {st['reference']})"]
    if st["jobs"]:
        lines.append(f"{'job':<44s} {'selected':>9s} {'done':>9s} {'failed':>7s} {'pending':>9s}  state")
        now = time.time()
        shown = st["jobs"]
        if len(shown) > max_jobs:  # many shards: the unfinished ones, and counts by state
            states: dict[str, int] = {}
            for j in shown:
                states[j["state"]] = states.get(j["state"], 0) + 1
            lines.append(f"({len(shown)} jobs: " + ", ".join(f"{v} {k}" for k, v in sorted(states.items()))
                         + f"; showing up to {max_jobs} not finished, --json lists all)")
            shown = [j for j in shown if j["state"] != "finished" or j["failed"] or j["pending"]][:max_jobs]
        for j in shown:
            ago = f", last event {hms(now - j['last_event'])} ago" if j["last_event"] else ""
            who = f" ({j['holder']})" if j["holder"] else ""
            lines.append(f"{j['key']:<44s} {j['selected']:9d} {j['done']:9d} {j['failed']:7d} {j['pending']:9d}  "
                         f"{j['state']}{who}{ago}")
    lines.append(f"{'total':<44s} {st['selected']:9d} {st['done']:9d} {st['failed']:7d} {st['pending']:9d}")
    if st["done_outside_jobs"]:
        lines.append(f"({st['done_outside_jobs']} more items are done outside these jobs)")
    if st["rate_items_per_s"] and st["pending"]:
        lines.append(f"recent rate {st['rate_items_per_s']:.2f} items/s -> ETA {hms(st['eta_s'])} for "
                     f"{st['pending']} pending")
    if st["failures"]:
        lines.append(f"failed items ({len(st['failures'])}; re-running the job retries them):")
        for f in st["failures"][:max_failures]:
            log = f" [log: {f['log']}]" if f.get("log") else ""
            lines.append(f"  item {f['item']} (pose {f['pose']} view {f['view']}): {f['error']}{log}")
        if len(st["failures"]) > max_failures:
            lines.append(f"  ... and {len(st['failures']) - max_failures} more (--json lists all)")
    if st["unreadable_ledger_lines"]:
        lines.append(f"note: skipped {st['unreadable_ledger_lines']} unreadable ledger line(s) (torn by a kill)")
    return "\n".join(lines)
