"""The Ray backend on a local Ray runtime with two workers (kept small; bounded by timeouts).

The driver runs as a subprocess (python -m datagen.render --ray) so a Ray problem can never
hang the test session: it is killed after a timeout.  Mid-job, the Ray worker process running
one block is SIGKILLed: Ray retries that task, the retry skips the items already on disk, and
the output equals a run without Ray.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess

import pytest

from support.driver import REPO, driver_cmd, labels, ledger_events, run_driver, wait_for, write_config

pytest.importorskip("ray")
pytestmark = [pytest.mark.blender, pytest.mark.slow]

SEL = ["--poses", "3,800", "--views", "10-19"]  # 20 items, two blocks of 10


def test_ray_local_runtime_two_workers_with_a_killed_task(cache_dir, prepared, tmp_path):
    cfg = write_config(tmp_path / "c.toml")
    ref = tmp_path / "ref"
    assert run_driver(["--config", cfg, "--out", ref, "--cache", cache_dir, "--workers", 1, "--no-progress"] + SEL) == 0
    out = tmp_path / "ray"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update(PYTHONUNBUFFERED="1", RAY_DEDUP_LOGS="0")
    args = ["--config", cfg, "--out", out, "--cache", cache_dir, "--ray", "--workers", 2, "--threads-per-worker", 1,
            "--block-size", 10, "--retries", 2, "--progress-interval", 1] + SEL
    proc = subprocess.Popen(driver_cmd(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=REPO)
    killed = None
    try:
        def busy_ray_worker():
            for log in (out / "logs").glob("ray-*.log") if (out / "logs").is_dir() else []:
                if log.read_text(errors="replace").count(": ok in ") >= 2:
                    return int(re.search(r"-(\d+)\.log$", log.name).group(1))
            return None

        wait_for(lambda: busy_ray_worker() is not None, 180, "a Ray task to render 2 items", proc)
        killed = busy_ray_worker()
        os.kill(killed, signal.SIGKILL)  # the Ray worker process (started by this test's Ray runtime)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "Ray" in err and "local runtime" in err and "2 CPUs" in err
    a, b = labels(ref), labels(out)
    assert len(a) == 20 and a == b  # same labels whichever Ray worker (or retry) rendered an item
    assert not [p for p in out.rglob(".*") if ".tmp-" in p.name]
    ev = ledger_events(out)
    done = [e for e in ev if e["ev"] == "done"]
    assert sorted(e["item"] for e in done) == sorted(p * 216 + v for p in (3, 800) for v in range(10, 20))
    # the killed task was retried: its retry found the items finished before the kill on disk
    assert any(e.get("skipped") for e in done), "no retried task"
    logs = {p.name: p.read_text(errors="replace") for p in (out / "logs").glob("ray-*.log")}
    assert f"ray-{socket.gethostname()}-{killed}.log" in logs
    # ... on another Ray worker (a new one, or the other, idle one), which skipped the finished items
    assert any(": skipped in " in text for name, text in logs.items() if not name.endswith(f"-{killed}.log"))
    assert ev[-1]["ev"] == "end" and ev[-1]["pending"] == 0
    r = subprocess.run(driver_cmd(["--status", out, "--json"]), capture_output=True, text=True, cwd=REPO, timeout=60)
    st = json.loads(r.stdout)
    assert (st["done"], st["failed"], st["pending"]) == (20, 0, 0)


def test_ray_unreachable_address_fails_before_work(cache_dir, prepared, tmp_path):
    cfg = write_config(tmp_path / "c.toml")
    out = tmp_path / "r"
    r = subprocess.run(driver_cmd(["--config", cfg, "--out", out, "--cache", cache_dir, "--ray", "127.0.0.1:1",
                                   "--poses", "0", "--views", "0"]),
                       capture_output=True, text=True, cwd=REPO, timeout=180, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert r.returncode == 2 and "cannot start or reach Ray at 127.0.0.1:1" in r.stderr, r.stderr[-2000:]
    assert not (out / "job").exists() and not (out / "items").exists()

