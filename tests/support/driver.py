"""Helpers for tests that run the render job driver (`python -m datagen.render`) as a subprocess.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from support.renders import write_render_config

REPO = Path(__file__).resolve().parent.parent.parent


def write_config(path: Path, size=96, samples=4, sources=("builtin",)) -> Path:
    return write_render_config(path, size=size, samples=samples, denoise=False, sources=sources, threads=1)


def run_driver(args) -> int:
    from datagen.render.driver import main

    return main([str(a) for a in args])


def driver_cmd(args) -> list[str]:
    return [sys.executable, "-m", "datagen.render"] + [str(a) for a in args]


def env():
    return dict(os.environ, PYTHONUNBUFFERED="1")


def labels(out: Path) -> dict:
    return {str(p.relative_to(out)): json.loads(p.read_text()) for p in sorted((out / "items").glob("*/v*.json"))}


def ledger_events(out: Path) -> list[dict]:
    from datagen.render.jobs import read_ledger

    ev = []
    for p in sorted((out / "job").glob("*.ledger.jsonl")):
        ev += read_ledger(p)[0]
    return ev


def wait_for(cond, timeout, what, proc=None):
    t0 = time.time()
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"driver exited ({proc.returncode}) while waiting for {what}")
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False
