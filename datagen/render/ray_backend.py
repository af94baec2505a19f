"""Ray backend of `python -m datagen.render --ray [ADDRESS]`: each block one Ray task.

A task renders its block through a long-lived `blender_scripts/render.py --stdin` process
(datagen.workers.Slot: watchdog, per-item retries, recycling) that it keeps in its Ray worker
process between tasks, so consecutive blocks on a Ray worker reuse the built scene.  The
task asks for `num_cpus` = Cycles threads per worker (and one GPU with a GPU device).

- Failed tasks are retried by Ray (`max_retries` = --retries, exceptions included): a task
  whose Ray worker or node dies is run again; items its first attempt finished are skipped
  (their label JSON exists).  A worker that cannot start because of bad input (status 2 on
  that node: missing cache, HDRI, config) stops the job instead of being retried.
- Results are visible as they finish: the driver waits on the tasks in flight and writes each
  finished block's items to the ledger and the progress bar at once.
- The driver keeps at most a window of tasks in flight, so Ctrl-C stops quickly: the first
  cancels the queued tasks and lets running ones finish their block; the second force-cancels.

Requirements on a cluster: every node has this project installed at the same path (the tasks
import `datagen` and start `blender_scripts/render.py` with the node's Python), and OUT lies
on a file system all nodes mount at the same path.  Each node builds or finds the prepared
cache (--cache, default cache/ in the project).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
import signal
import socket
from pathlib import Path

from datagen.render.jobs import JOB_DIR
from datagen.render.workers import Outcome, Policy, RunStopped, Slot, WorkerSpec, WorkerStartError

_SLOT: Slot | None = None
_SLOT_KEY = None


def connect(address: str, workers: int | None, threads: int, cpus: int, gpu: bool = False) -> dict:
    """ray.init for a cluster (ADDRESS), RAY_ADDRESS, or a local runtime; returns slots and a description."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("--ray needs the ray package: pip install 'ray>=2.9'") from None
    kw = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
              configure_logging=True, logging_level="WARNING")
    local = not address and not os.environ.get("RAY_ADDRESS")
    target = address or os.environ.get("RAY_ADDRESS") or ""
    hostport = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)/?", target.strip())
    if hostport:  # fail fast: ray.init retries an unreachable address for minutes
        try:
            socket.create_connection((hostport.group(1), int(hostport.group(2))), timeout=10).close()
        except OSError as exc:
            raise RuntimeError(f"--ray: cannot start or reach Ray at {target}: {exc.strerror or exc} "
                               f"(is the head node up? `ray start --head` prints its address)") from None
    if address:
        kw["address"] = address
    elif local:
        kw["num_cpus"] = workers * max(threads, 1) if workers else cpus
    try:
        ray.init(**kw)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError, ...
        where = address or os.environ.get("RAY_ADDRESS") or "a local runtime"
        raise RuntimeError(f"--ray: cannot start or reach Ray at {where}: {type(exc).__name__}: {exc}") from None
    res = ray.cluster_resources()
    n_cpu, n_gpu = int(res.get("CPU", 0)), int(res.get("GPU", 0))
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    if gpu and n_gpu == 0:
        ray.shutdown()
        raise RuntimeError("--ray with a GPU --device: the cluster has no GPUs")
    slots = n_gpu if gpu else max(1, n_cpu // max(threads, 1))
    return {"slots": max(1, slots), "local": local,
            "describe": f"Ray {ray.__version__} ({'local runtime' if local else 'cluster'}: {nodes} node(s), "
                        f"{n_cpu} CPUs, {n_gpu} GPUs)"}


def render_block(items, spec: WorkerSpec, policy_kw: dict, log_prefix: str, job_record: str) -> dict:
    """The task body (runs in a Ray worker process): render `items` [(pose, view), ...]."""
    global _SLOT, _SLOT_KEY
    if not Path(job_record).exists():
        return {"fatal": f"{job_record} is not visible on node {socket.gethostname()}: OUT must be on a file system "
                         f"shared by all nodes at the same path", "fatal_input": True}
    key = (spec, tuple(sorted(policy_kw.items())))
    if _SLOT is None or _SLOT_KEY != key:
        if _SLOT is not None:
            _SLOT.close()
        name = f"{log_prefix}ray-{socket.gethostname()}-{os.getpid()}"
        out = Path(spec.out)
        path = out / "logs" / f"{name}.log"
        _SLOT = Slot(name, spec, Policy(**policy_kw), path, str(path.relative_to(out)))
        _SLOT_KEY = key
    events = []
    _SLOT.events = lambda kind, **kw: events.append((kind, kw))
    outcomes = []
    res = {"events": events, "worker": _SLOT.name, "host": socket.gethostname()}
    try:
        for p, v in items:
            outcomes.append(_SLOT.render(int(p), int(v)))
    except RunStopped as exc:  # a full disk: stop the job, keep what this block finished
        outcomes.append(exc.outcome)
        res.update(fatal=f"on node {socket.gethostname()}: {exc}", fatal_input=False)
    except WorkerStartError as exc:
        if exc.fatal:
            res.update(fatal=f"on node {socket.gethostname()}: {exc}", fatal_input=True)
        else:
            raise  # Ray retries the task
    res["outcomes"] = [dataclasses.asdict(o) for o in outcomes]
    return res


def run_ray(blocks, spec: WorkerSpec, policy: Policy, n_slots: int, tracker, out: Path, stop: dict,
            log_prefix: str, job_record: Path, window: int | None = None) -> tuple[str | None, bool]:
    """Submit the blocks as tasks, at most `window` in flight; returns (a fatal error or None,
    whether it is a bad input rather than a stop such as a full disk)."""
    import ray
    from ray.exceptions import RayError, TaskCancelledError

    opts = dict(num_cpus=max(spec.threads, 1), max_retries=policy.retries, retry_exceptions=True)
    if spec.device and spec.device.upper() != "CPU":
        opts["num_gpus"] = 1
    task = ray.remote(**opts)(render_block)
    policy_kw = {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy) if not f.name.startswith("_")}
    window = window or 2 * n_slots
    pending = collections.deque(blocks)
    inflight: dict = {}
    fatal = None
    fatal_input = False

    def on_signal(signum, frame):
        stop["signals"] += 1
        stop["signum"] = stop["signum"] or signum
        force = stop["signals"] > 1
        tracker.say(f"\n{signal.Signals(signum).name}: "
                    + ("force-cancelling the running tasks" if force else
                       "stopping - queued tasks cancelled, running blocks finish (Ctrl-C again to cancel them)"))
        for ref in list(inflight):
            try:
                ray.cancel(ref, force=force)
            except Exception:  # noqa: BLE001 - already finished
                pass

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            while pending and len(inflight) < window and not stop["signals"] and fatal is None:
                b = pending.popleft()
                inflight[task.remote(list(b.items), spec, policy_kw, log_prefix, str(job_record))] = b
            if not inflight:
                break
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
            tracker.refresh()
            for ref in ready:
                b = inflight.pop(ref)
                try:
                    res = ray.get(ref)
                except TaskCancelledError:
                    continue
                except RayError as exc:
                    _block_failed(b, exc, tracker, out)
                    continue
                for kind, kw in res.get("events", []):
                    tracker.event(kind, **kw)
                for o in res.get("outcomes", []):
                    tracker.outcome(Outcome(**o), res["worker"], extra={"host": res["host"]})
                if res.get("fatal"):
                    if fatal is None:
                        fatal, fatal_input = res["fatal"], bool(res.get("fatal_input"))
                    for r in list(inflight):
                        ray.cancel(r, force=False)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        ray.shutdown()
    return fatal, fatal_input


def _block_failed(block, exc, tracker, out: Path) -> None:
    """A task failed after Ray's retries: its unfinished items are failed (with the error)."""
    from datagen.render.layout import is_done

    msg = str(exc).strip().splitlines()
    msg = msg[-1] if msg else type(exc).__name__
    err = f"Ray task for block {block.name} failed after retries: {type(exc).__name__}: {msg}"[:2000]
    tracker.event("task-failed", block=block.name, error=err)
    for p, v in block.items:
        if is_done(out, p, v):
            tracker.outcome(Outcome(p, v, "skipped", 0), "ray")
        else:
            tracker.outcome(Outcome(p, v, "failed", 0, error=err, log=f"{JOB_DIR}/ (Ray task error)"), "ray")

