"""Long-lived render worker processes and the local worker pool.

A worker is one `blender_scripts/render.py --stdin` process (the venv's bpy module, or a
`blender -b -P` binary): it builds the scene once, then renders one item per stdin line and
answers each with one ``@@handsynth {json}`` line on stdout (status ready / ok / skipped /
failed / error / done).  Its stderr and any other stdout line go to its log file.

`Slot` owns one worker at a time and renders items through it with
- a watchdog: an item without an answer within the timeout (fixed, or "auto": 20x the median
  item time seen so far, at least 60 s; 900 s before the first answer) gets the worker killed
  (SIGKILL) and the item retried on a fresh one;
- bounded retries (crash, timeout, or an item the renderer reports failed);
- recycling: the worker is replaced after N items, or when its resident memory exceeds a limit,
  between items (stdin closed: it finishes, answers "done" and exits);
- start-up checks: a worker that exits with status 2 before it is ready hit a bad input
  (config, HDRI, cache, no space) - that is fatal for the job, not retried; the worker also
  sends its error on the protocol, so the message arrives even when its log cannot be written;
- exit checks: a worker that ends without its "done" line failed, whatever its exit status
  (Blender exits 0 after a script's uncaught exception); the local pool then reports the job
  as failed (exit status 1) even if every item was answered;
- a stop: an item answered "failed" with "stop": true (the disk is full) ends the job
  (`RunStopped`) instead of failing every remaining item in turn.

`LocalPool` runs one `Slot` per worker thread over a shared `BlockQueue`: a slot takes a whole
block (the items of one pose), and when no block is left it takes the second half of the
largest remainder another slot still has (so the last pose does not run on one worker while
the others idle).  Workers run in their own session: Ctrl-C reaches only the driver, which
stops handing out items and lets the items in flight finish (a second Ctrl-C kills them).
If the driver itself dies, each worker sees end-of-file on stdin, finishes its item and exits.

The Ray backend (datagen/ray_backend.py) uses the same `Slot` inside its tasks.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from datagen.config import REPO_ROOT
from datagen.render.layout import PROTOCOL_PREFIX

RENDER_SCRIPT = REPO_ROOT / "blender_scripts" / "render.py"


class WorkerCrashed(RuntimeError):
    """The worker process ended while an item was in flight (or before it was ready)."""


class WorkerTimeout(RuntimeError):
    """No answer within the timeout; the worker was killed."""


class RunStopped(RuntimeError):
    """A worker reported an error that every further item would hit too (a full disk): the
    job stops.  `outcome` is the failed item."""

    def __init__(self, msg: str, outcome: Outcome):
        super().__init__(msg)
        self.outcome = outcome


class WorkerStartError(RuntimeError):
    """A worker could not start.  `fatal` when it exited with status 2 (bad input)."""

    def __init__(self, msg: str, fatal: bool):
        super().__init__(msg)
        self.fatal = fatal


# ----------------------------------------------------------------------------- worker spec

@dataclass(frozen=True)
class WorkerSpec:
    """How to start a render worker (picklable: Ray tasks receive it)."""

    out: str
    config: str | None = None
    cache: str | None = None
    threads: int = 1
    device: str | None = None
    blender: str | None = None  # path of a Blender binary; None = this Python's bpy module
    python: str | None = None  # None: the interpreter of the process that starts the worker
    fsync: bool = False
    allow_cropped: bool = False
    extra_env: tuple[tuple[str, str], ...] = ()

    def command(self) -> list[str]:
        args = ["--stdin", "--out", str(self.out), "--threads", str(self.threads), "--no-progress"]
        if self.config:
            args += ["--config", str(self.config)]
        if self.cache:
            args += ["--cache", str(self.cache)]
        if self.device:
            args += ["--device", self.device]
        if self.fsync:
            args.append("--fsync")
        if self.allow_cropped:
            args.append("--allow-cropped")
        if self.blender:
            # render.py exits with its own status; --python-exit-code covers a script that cannot
            # even start (Blender otherwise exits 0 after printing the error).
            return [self.blender, "-b", "--factory-startup", "-noaudio", "--python-exit-code", "1",
                    "-P", str(RENDER_SCRIPT), "--"] + args
        return [self.python or sys.executable, "-u", str(RENDER_SCRIPT)] + args

    def environment(self) -> dict:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.threads > 0:  # numpy/BLAS inside the worker: no more threads than Cycles gets
            for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[k] = str(self.threads)
        env.update(dict(self.extra_env))
        return env


@dataclass
class Policy:
    """Retries, watchdog and recycling (shared by all slots of a pool)."""

    retries: int = 2
    item_timeout: float | None = None  # None = auto
    start_timeout: float = 600.0
    recycle_after: int = 200
    max_rss_mb: float = 2048.0  # 0 = no memory limit
    stop_grace: float = 60.0
    _times: collections.deque = field(default_factory=lambda: collections.deque(maxlen=200), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._times.append(seconds)

    def timeout(self) -> float:
        if self.item_timeout:
            return float(self.item_timeout)
        with self._lock:
            if not self._times:
                return 900.0
            return max(60.0, 20.0 * statistics.median(self._times))


# ----------------------------------------------------------------------------- one process

class WorkerProcess:
    """One render.py --stdin process; messages arrive on a private queue via a reader thread."""

    def __init__(self, name: str, spec: WorkerSpec, log_path: Path):
        self.name = name
        self.spec = spec
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None
        self.q: queue.Queue = queue.Queue()
        self.items = 0
        self.ready = False
        self.kill_reason: str | None = None
        self._log_offset = 0
        self._log = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def log(self, msg: str) -> None:
        if self._log is not None:
            try:
                self._log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [driver] {msg}\n")
                self._log.flush()
            except (OSError, ValueError):
                pass

    def start(self, timeout: float) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "a", buffering=1)
        self._log_offset = self._log.tell()
        cmd = self.spec.command()
        self.log(f"starting worker {self.name}: {' '.join(cmd)}")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     cwd=str(REPO_ROOT), env=self.spec.environment(), text=True, bufsize=1,
                                     start_new_session=True)
        self.log(f"worker {self.name} pid {self.proc.pid}")
        threading.Thread(target=self._reader, args=(self.proc, self.q), daemon=True,
                         name=f"reader-{self.name}").start()
        deadline = time.monotonic() + timeout
        said = None  # the worker's own start-up error, sent on the protocol
        while True:
            got = self._next(deadline)
            if got is None:
                self.kill(f"no ready line within {timeout:.0f} s")
                self._wait_exit(10)
                raise WorkerStartError(f"worker {self.name} did not become ready within {timeout:.0f} s "
                                       f"(log: {self.log_path})", fatal=False)
            kind, msg = got
            if kind == "msg" and msg.get("status") == "ready":
                self.log(f"worker {self.name} ready")
                self.ready = True
                return
            if kind == "msg" and msg.get("status") == "error":
                said = msg.get("error")
                continue
            if kind == "exit":
                code = msg
                if said:
                    raise WorkerStartError(f"worker {self.name} exited with status {code} before it was ready: "
                                           f"{said} (log: {self.log_path})", fatal=code == 2)
                tail = self.log_tail()
                raise WorkerStartError(f"worker {self.name} exited with status {code} before it was ready "
                                       f"(log: {self.log_path}):\n{tail}", fatal=code == 2)

    def _next(self, deadline: float):
        """The next (kind, message) from the reader thread, or None at the deadline."""
        while True:
            try:
                return self.q.get(timeout=max(0.05, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    return None

    def _reader(self, proc: subprocess.Popen, q: queue.Queue) -> None:
        try:
            for line in proc.stdout:
                if line.startswith(PROTOCOL_PREFIX):
                    try:
                        q.put(("msg", json.loads(line[len(PROTOCOL_PREFIX):])))
                        continue
                    except ValueError:
                        pass
                if line.strip() and self._log is not None:
                    try:
                        self._log.write(line if line.endswith("\n") else line + "\n")
                    except (OSError, ValueError):
                        pass
        except (OSError, ValueError):
            pass
        code = proc.wait()
        q.put(("exit", code))

    def log_tail(self, n: int = 15) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        lines = [ln for ln in lines if "[driver]" not in ln]
        return "\n".join("    " + ln for ln in lines[-n:])

    def render(self, pose: int, view: int, timeout: float) -> dict:
        """Send one item; return its answer (status ok / skipped / failed / error)."""
        if self.proc is None or self.proc.poll() is not None:
            raise WorkerCrashed(f"worker {self.name} is not running")
        try:
            self.proc.stdin.write(f"{pose} {view}\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            code = self._wait_exit(10)
            raise WorkerCrashed(f"worker {self.name} exited ({describe_exit(code)})") from None
        deadline = time.monotonic() + timeout
        while True:
            got = self._next(deadline)
            if got is None:
                self.kill(f"item pose {pose} view {view}: no answer within {timeout:.0f} s")
                self._wait_exit(30)
                raise WorkerTimeout(f"no answer within {timeout:.0f} s; worker {self.name} killed")
            kind, msg = got
            if kind == "exit":
                reason = f", {self.kill_reason}" if self.kill_reason else ""
                raise WorkerCrashed(f"worker {self.name} (pid {self.pid}) died: {describe_exit(msg)}{reason}")
            if msg.get("status") in ("ok", "skipped", "failed") and (msg.get("pose_id"), msg.get("view_id")) != (pose, view):
                continue  # not ours (cannot happen with one item in flight; be strict anyway)
            if msg.get("status") in ("ok", "skipped", "failed", "error"):
                self.items += 1
                return msg

    def rss_mb(self) -> float:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024.0
        except (OSError, ValueError, TypeError):
            pass
        return 0.0

    def kill(self, reason: str) -> None:
        self.kill_reason = reason
        self.log(f"killing worker {self.name} (pid {self.pid}): {reason}")
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _wait_exit(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 60.0) -> str | None:
        """Close stdin (the worker answers "done" and exits); kill it after `grace` seconds.

        Returns None when the worker ended properly - its "done" line, then exit status 0 or 1
        (1: some item failed, already reported) - or never became ready (start() reported
        that), else what went wrong.  A worker that exits without "done" failed, whatever its
        status: Blender exits 0 after an uncaught Python exception, so the status alone proves
        nothing.
        """
        if self.proc is None:
            return None
        try:
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass
        if self._wait_exit(grace) is None:
            self.kill(f"did not exit within {grace:.0f} s of end-of-input")
            self._wait_exit(10)
        code = self.proc.returncode
        done = None
        deadline = time.monotonic() + (5.0 if self.ready else 0.0)  # the reader posts ("exit", code) last
        while True:
            got = self._next(deadline)
            if got is None or got[0] == "exit":
                break
            if got[1].get("status") == "done":
                done = got[1]
        self.log(f"worker {self.name} stopped ({describe_exit(code)}) after {self.items} items")
        self.close_log()
        if (done is not None and code in (0, 1)) or not self.ready:
            return None
        why = "without its \"done\" line" if done is None else "after its \"done\" line"
        reason = f", {self.kill_reason}" if self.kill_reason else ""
        return f"worker {self.name} (pid {self.pid}) exited {why} ({describe_exit(code)}{reason}; log: {self.log_path})"

    def close_log(self) -> None:
        if self._log is not None:
            try:
                self._log.close()
            except OSError:
                pass
            self._log = None


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


# ----------------------------------------------------------------------------- slot

@dataclass
class Outcome:
    pose: int
    view: int
    status: str  # "ok" | "skipped" | "failed" | "interrupted"
    attempts: int
    seconds: float = 0.0
    cpu_s: float | None = None
    cycles_s: float | None = None  # wall seconds of Cycles' render call (the rest is scene, labels, files)
    error: str | None = None
    log: str | None = None


class Slot:
    """Renders items one at a time through a (re)started WorkerProcess.

    `events(kind, **fields)` receives "worker" (start/recycle/crash/timeout) and "retry"
    notifications; `stopping()` tells the slot not to retry or restart any more.
    """

    MAX_START_FAILURES = 3

    def __init__(self, name: str, spec: WorkerSpec, policy: Policy, log_path: Path, log_rel: str,
                 events=None, stopping=None):
        self.name = name
        self.spec = spec
        self.policy = policy
        self.log_path = Path(log_path)
        self.log_rel = log_rel
        self.events = events or (lambda kind, **kw: None)
        self.stopping = stopping or (lambda: False)
        self.worker: WorkerProcess | None = None
        self.starts = 0
        self.bad_exits: list[str] = []  # workers that ended without their "done" line
        self.restarts = collections.Counter()

    def _ensure_worker(self) -> WorkerProcess:
        if self.worker is not None and self.worker.proc is not None:
            if self.worker.proc.poll() is None:
                return self.worker
            code = self.worker.proc.returncode  # died between items
            self.restarts["crash"] += 1
            self.events("worker", worker=self.name, what="crash", pid=self.worker.pid,
                        error=f"worker {self.name} (pid {self.worker.pid}) died while idle: {describe_exit(code)}")
            self.worker.close_log()
            self.worker = None
        failures = 0
        while True:
            w = WorkerProcess(self.name, self.spec, self.log_path)
            self.worker = w
            try:
                t0 = time.monotonic()
                w.start(self.policy.start_timeout)
                self.starts += 1
                self.events("worker", worker=self.name, what="started", pid=w.pid,
                            start_s=round(time.monotonic() - t0, 2), log=self.log_rel)
                return w
            except WorkerStartError as exc:
                w.close_log()
                failures += 1
                self.events("worker", worker=self.name, what="start-failed", pid=w.pid, error=str(exc).splitlines()[0],
                            log=self.log_rel, fatal=exc.fatal)
                if exc.fatal or failures >= self.MAX_START_FAILURES or self.stopping():
                    raise WorkerStartError(str(exc), fatal=exc.fatal or failures >= self.MAX_START_FAILURES) from None
                time.sleep(min(30.0, 2.0 ** failures))

    def _retire(self, why: str) -> None:
        if self.worker is not None:
            self.restarts[why] += 1
            self.events("worker", worker=self.name, what=why, pid=self.worker.pid, items=self.worker.items,
                        rss_mb=round(self.worker.rss_mb(), 1) if why == "recycle" else None)
            self._stop_worker()

    def _stop_worker(self) -> None:
        w, self.worker = self.worker, None
        error = w.stop(self.policy.stop_grace)
        if error is not None:
            self.bad_exits.append(error)
            self.events("worker", worker=self.name, what="bad-exit", pid=w.pid, error=error, log=self.log_rel)

    def render(self, pose: int, view: int) -> Outcome:
        attempts = 0
        error = None
        while attempts <= self.policy.retries:
            if self.stopping() and attempts > 0:
                return Outcome(pose, view, "interrupted", attempts, error=error, log=self.log_rel)
            w = self._ensure_worker()
            attempts += 1
            timeout = self.policy.timeout()
            t0 = time.monotonic()
            try:
                msg = w.render(pose, view, timeout)
            except WorkerTimeout as exc:
                error = f"timeout: {exc}"
                self.restarts["timeout"] += 1
                self.events("worker", worker=self.name, what="timeout", pid=w.pid, item=[pose, view], log=self.log_rel,
                            timeout_s=round(timeout, 1))
                w.close_log()
                self.worker = None
            except WorkerCrashed as exc:
                error = f"crash: {exc}"
                if self.stopping():
                    w.close_log()
                    self.worker = None
                    return Outcome(pose, view, "interrupted", attempts, error=error, log=self.log_rel)
                self.restarts["crash"] += 1
                self.events("worker", worker=self.name, what="crash", pid=w.pid, item=[pose, view], error=str(exc),
                            log=self.log_rel)
                w.log(str(exc))
                w.close_log()
                self.worker = None
            else:
                dt = time.monotonic() - t0
                st = msg.get("status")
                if st in ("ok", "skipped"):
                    if st == "ok":
                        self.policy.observe(dt)
                    t = msg.get("timings") or {}
                    w.log(f"item pose {pose} view {view}: {st} in {dt:.2f} s (worker RSS {w.rss_mb():.0f} MB)")
                    self._maybe_recycle()
                    return Outcome(pose, view, st, attempts, dt, t.get("total_cpu_s"), t.get("render_s"),
                                   log=self.log_rel)
                error = msg.get("error") or f"worker answered {msg}"
                w.log(f"item pose {pose} view {view}: {st}: {error}")
                if msg.get("stop"):  # every further item would fail the same way (a full disk)
                    self._retire("stopped")
                    raise RunStopped(error, Outcome(pose, view, "failed", attempts, error=error, log=self.log_rel))
                # a renderer exception may leave Blender in an odd state: continue on a fresh worker
                self._retire("restart-after-failure")
            if attempts <= self.policy.retries and not self.stopping():
                self.events("retry", item=[pose, view], attempt=attempts, error=error, log=self.log_rel)
        return Outcome(pose, view, "failed", attempts, error=error, log=self.log_rel)

    def _maybe_recycle(self) -> None:
        w = self.worker
        if w is None:
            return
        if self.policy.recycle_after and w.items >= self.policy.recycle_after:
            self._retire("recycle")
        elif self.policy.max_rss_mb and w.rss_mb() > self.policy.max_rss_mb:
            self._retire("recycle")

    def close(self) -> None:
        if self.worker is not None:
            self._stop_worker()

    def kill(self, reason: str) -> None:
        w = self.worker
        if w is not None:
            w.kill(reason)


# ----------------------------------------------------------------------------- local pool

class BlockQueue:
    """Blocks handed out whole; at the end, idle slots split the largest remainder."""

    def __init__(self, blocks):
        self.pending = collections.deque(blocks)
        self.active: dict[str, collections.deque] = {}
        self.lock = threading.Lock()
        self.closed = False
        self.steals = 0

    def next(self, slot: str) -> tuple[int, int] | None:
        with self.lock:
            if self.closed:
                return None
            cur = self.active.get(slot)
            if cur:
                return cur.popleft()
            if self.pending:
                self.active[slot] = collections.deque(self.pending.popleft().items)
                return self.active[slot].popleft()
            victim = max(self.active.values(), key=len, default=None)
            if victim is not None and len(victim) >= 2:
                take = len(victim) // 2
                stolen = [victim.pop() for _ in range(take)][::-1]
                self.active[slot] = collections.deque(stolen)
                self.steals += 1
                return self.active[slot].popleft()
            return None

    def close(self) -> None:
        with self.lock:
            self.closed = True

    def remaining(self) -> int:
        with self.lock:
            return sum(len(b) for b in self.pending) + sum(len(d) for d in self.active.values())


class LocalPool:
    """N worker slots on this machine; see the module docstring."""

    def __init__(self, spec: WorkerSpec, policy: Policy, n_workers: int, log_dir: Path, log_prefix: str,
                 out: Path, tracker, slot_specs: list[WorkerSpec] | None = None):
        """`slot_specs`: one spec per worker (e.g. each pinned to its own GPU); default `spec` for all."""
        if slot_specs is not None and len(slot_specs) != n_workers:
            raise ValueError(f"{len(slot_specs)} worker specs for {n_workers} workers")
        self.spec = spec
        self.policy = policy
        self.n = n_workers
        self.tracker = tracker
        self.out = Path(out)
        self.slots = []
        for i in range(n_workers):
            name = f"{log_prefix}worker-{i:02d}"
            path = Path(log_dir) / f"{name}.log"
            self.slots.append(Slot(name, slot_specs[i] if slot_specs else spec, policy, path, str(path.relative_to(self.out)),
                                   events=tracker.event, stopping=self.is_stopping))
        self._stop = threading.Event()
        self.fatal: str | None = None
        self.fatal_input = False  # the fatal error is a bad input (a worker exited 2 before it was ready)
        self.queue: BlockQueue | None = None

    def is_stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Hand out no more items; items in flight finish."""
        self._stop.set()
        if self.queue is not None:
            self.queue.close()

    def abort(self) -> None:
        """Kill the workers now (their items in flight are lost and stay pending)."""
        self.stop()
        for s in self.slots:
            s.kill("driver aborted")

    def _run_slot(self, slot: Slot) -> None:
        try:
            while not self._stop.is_set():
                item = self.queue.next(slot.name)
                if item is None:
                    break
                outcome = slot.render(*item)
                self.tracker.outcome(outcome, slot.name)
        except RunStopped as exc:
            self.tracker.outcome(exc.outcome, slot.name)
            if self.fatal is None:
                self.fatal = str(exc)
            self.stop()
        except WorkerStartError as exc:
            if exc.fatal:
                if self.fatal is None:
                    self.fatal, self.fatal_input = str(exc), True
                self.stop()
            else:  # this slot cannot start workers; the others carry on
                self.tracker.event("worker", worker=slot.name, what="slot-gave-up", error=str(exc).splitlines()[0])
        except Exception as exc:  # noqa: BLE001 - a driver bug must not hang the pool
            self.fatal = f"{type(exc).__name__}: {exc}"
            self.stop()
        finally:
            slot.close()
            if slot.bad_exits and self.fatal is None and not self._stop.is_set():
                self.fatal = slot.bad_exits[0]  # the job must not report success

    def run(self, blocks, wait=None) -> None:
        """Render all blocks; returns when done or stopped.  `wait(threads)` is the main
        thread's loop (progress refresh, signal handling); default: join."""
        self.queue = BlockQueue(blocks)
        threads = [threading.Thread(target=self._run_slot, args=(s,), name=s.name, daemon=True) for s in self.slots]
        for t in threads:
            t.start()
        if wait is not None:
            wait(threads)
        for t in threads:
            t.join()
        if self.fatal is None and not self._stop.is_set() and self.queue.remaining():
            self.fatal = (f"all {self.n} workers gave up with {self.queue.remaining()} items left "
                          f"(see the worker logs)")
