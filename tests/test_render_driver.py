"""The render driver (python -m datagen.render) with real bpy workers (tiny images, few samples).

- one uninterrupted reference run (1 worker, whole-pose blocks);
- the same items with 2 workers while one worker is SIGKILLed and the other hangs (SIGSTOP):
  the driver retries, recycles, and the output equals the reference;
- the driver itself SIGKILLed: its workers exit on their own, a re-run completes the job;
- three shards k/3 run one after the other: together exactly the reference;
- bad input fails before anything starts, with a clear message.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from support.driver import alive, driver_cmd, env, labels, ledger_events, run_driver, wait_for, write_config

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.blender, pytest.mark.slow]

SEL = ["--poses", "0,5,700,1519", "--views", "0-9"]  # 40 items in 4 poses
N_ITEMS = 40


def assert_same_as_reference(out: Path, ref: Path) -> None:
    import cv2

    a, b = labels(ref), labels(out)
    assert len(a) == N_ITEMS and sorted(a) == sorted(b)
    for k in a:
        assert a[k] == b[k], k  # identical labels, whatever worker/split/attempt rendered the item
        ia = cv2.imread(str(ref / k.replace(".json", ".png"))).astype(int)
        ib = cv2.imread(str(out / k.replace(".json", ".png"))).astype(int)
        assert np.abs(ia - ib).mean() < 1.0, k
    assert not [p for p in out.rglob(".*") if ".tmp-" in p.name]  # no temporaries left
    for f in (out / "items").rglob("*"):  # and every final file reads back whole
        if f.suffix == ".npy":
            assert np.load(f).shape == (96, 96), f
        elif f.name.endswith(".png"):
            assert cv2.imread(str(f), cv2.IMREAD_UNCHANGED).shape[:2] == (96, 96), f


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("drvcfg") / "c.toml")


@pytest.fixture(scope="module")
def reference(cfg, cache_dir, prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("drv") / "ref"
    code = run_driver(["--config", cfg, "--out", out, "--cache", cache_dir, "--workers", 1, "--no-progress"] + SEL)
    assert code == 0
    assert len(labels(out)) == N_ITEMS
    return out


def test_reference_run_records_a_complete_job(reference, capsys):
    ev = ledger_events(reference)
    assert [e["ev"] for e in ev].count("done") == N_ITEMS and ev[0]["ev"] == "start" and ev[-1]["ev"] == "end"
    assert ev[-1]["rendered"] == N_ITEMS and ev[-1]["pending"] == 0
    assert (reference / "logs" / "worker-00.log").read_text().count(": ok in ") == N_ITEMS
    assert run_driver(["--status", reference, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert (st["selected"], st["done"], st["failed"], st["pending"]) == (N_ITEMS, N_ITEMS, 0, 0)
    assert st["jobs"][0]["state"] == "finished"


def test_worker_killed_and_worker_hung_mid_job(reference, cfg, cache_dir, tmp_path):
    out = tmp_path / "killed"
    args = ["--config", cfg, "--out", out, "--cache", cache_dir, "--workers", 2, "--item-timeout", 3,
            "--recycle-after", 12, "--progress-interval", 1] + SEL
    proc = subprocess.Popen(driver_cmd(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
                            cwd=REPO)
    try:
        def started():
            return [e["pid"] for e in ledger_events(out) if e.get("what") == "started"]

        def n_done():
            return sum(e["ev"] == "done" for e in ledger_events(out))

        wait_for(lambda: len(started()) >= 2 and n_done() >= 3, 120, "two workers and 3 items", proc)
        victim, hung = started()[:2]
        os.kill(victim, signal.SIGKILL)  # a crash (OOM killer, segfault, ...)
        os.kill(hung, signal.SIGSTOP)  # a hung render: the watchdog must kill it
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert not alive(victim) and not alive(hung)
    ev = ledger_events(out)
    what = [e.get("what") for e in ev if e["ev"] == "worker"]
    assert "crash" in what and "timeout" in what and "recycle" in what, what
    retries = [e for e in ev if e["ev"] == "retry"]
    assert len(retries) >= 2 and all(e["log"].startswith("logs/worker-0") for e in retries)
    assert "summary: rendered=" in err and "failed=0 pending=0" in err
    assert_same_as_reference(out, reference)


def test_driver_killed_mid_job_then_resumed(reference, cfg, cache_dir, tmp_path, capsys):
    out = tmp_path / "drvkill"
    args = ["--config", cfg, "--out", out, "--cache", cache_dir, "--workers", 2, "--no-progress"] + SEL
    proc = subprocess.Popen(driver_cmd(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), cwd=REPO)
    try:
        wait_for(lambda: sum(e["ev"] == "done" for e in ledger_events(out)) >= 4, 120, "4 items", proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    workers = [e["pid"] for e in ledger_events(out) if e.get("what") == "started"]
    # orphaned workers see end-of-input, finish their item and exit by themselves
    wait_for(lambda: not any(alive(p) for p in workers), 60, "orphaned workers to exit")
    done_before = len(labels(out))
    assert 4 <= done_before < N_ITEMS
    assert run_driver(["--status", out, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["done"] == done_before and st["pending"] == N_ITEMS - done_before and st["jobs"][0]["state"] == "stopped"
    assert run_driver(args) == 0  # the same command continues the job
    err = capsys.readouterr().err
    assert f"{done_before} done, {N_ITEMS - done_before} to render" in err
    assert [e["ev"] for e in ledger_events(out)].count("start") == 2
    assert_same_as_reference(out, reference)


def test_ctrl_c_lets_the_items_in_flight_finish(cfg, cache_dir, tmp_path):
    out = tmp_path / "sigint"
    args = ["--config", cfg, "--out", out, "--cache", cache_dir, "--workers", 2, "--no-progress"] + SEL
    proc = subprocess.Popen(driver_cmd(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env(),
                            cwd=REPO)
    try:
        wait_for(lambda: sum(e["ev"] == "done" for e in ledger_events(out)) >= 3, 120, "3 items", proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "SIGINT: stopping" in err and "re-run the same command to continue" in err
    ev = ledger_events(out)
    workers = [e["pid"] for e in ev if e.get("what") == "started"]
    assert workers and not any(alive(p) for p in workers)
    n = len(labels(out))
    assert 3 <= n < N_ITEMS and ev[-1]["ev"] == "end" and ev[-1]["signal"] == signal.SIGINT
    assert ev[-1]["pending"] == N_ITEMS - n and sum(e["ev"] == "done" for e in ev) == n  # in flight finished
    assert not [p for p in out.rglob(".*") if ".tmp-" in p.name]  # a graceful stop leaves no temporaries


def test_shards_together_render_exactly_the_reference(reference, cfg, cache_dir, tmp_path, capsys):
    out = tmp_path / "shards"
    owned = []
    for k in range(3):
        code = run_driver(["--config", cfg, "--out", out, "--cache", cache_dir, "--workers", 1, "--no-progress",
                           "--shard", f"{k}/3"] + SEL)
        assert code == 0
        err = capsys.readouterr().err
        assert f"shard {k}/3 owns" in err
        owned.append(int(err.split(f"shard {k}/3 owns ")[1].split(";")[0]))
    assert sorted(owned) == [13, 13, 14] and sum(owned) == N_ITEMS
    ev = ledger_events(out)
    done = [e["item"] for e in ev if e["ev"] == "done"]
    assert len(done) == len(set(done)) == N_ITEMS  # each item rendered once across the shards
    assert len(list((out / "job").glob("*shard-000?-of-0003.json"))) == 3
    assert sorted(p.name for p in (out / "logs").iterdir()) == [f"shard-000{k}-of-0003.worker-00.log" for k in range(3)]
    assert_same_as_reference(out, reference)
    # a re-run of a finished shard has nothing to do and starts no worker
    assert run_driver(["--config", cfg, "--out", out, "--cache", cache_dir, "--no-progress", "--shard", "1/3"] + SEL) == 0
    assert "0 to render" in capsys.readouterr().err


def test_second_driver_on_a_running_job_is_refused(reference, cfg, cache_dir, capsys):
    from datagen.render.jobs import JobLock

    (lock_path,) = (reference / "job").glob("*.lock")
    lock = JobLock(lock_path)
    assert lock.acquire() is None
    try:
        code = run_driver(["--config", cfg, "--out", reference, "--cache", cache_dir, "--no-progress"] + SEL)
    finally:
        lock.release()
    assert code == 2 and "already running" in capsys.readouterr().err


@pytest.mark.parametrize("extra, words", [
    (["--poses", "1520"], ["pose id 1520", "0..1519"]),
    (["--views", "3,216"], ["view id 216"]),
    (["--views", "0", "--shard", "3/3"], ["shard"]),
    (["--views", "0", "--shard", "auto"], ["no array-job index"]),
    (["--views", "0", "--workers", "0"], ["--workers"]),
    (["--views", "0", "--device", "VULKAN"], ["--device"]),
    (["--views", "0", "--item-timeout", "-1"], ["--item-timeout"]),
    (["--items-file", "/nonexistent/items.txt"], ["items file", "/nonexistent/items.txt"]),
])
def test_bad_arguments_fail_before_anything_starts(extra, words, cfg, cache_dir, prepared, tmp_path, capsys,
                                                   monkeypatch):
    for k in ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "HANDSYNTH_SHARD_INDEX"):
        monkeypatch.delenv(k, raising=False)
    out = tmp_path / "r"
    code = run_driver(["--config", cfg, "--out", out, "--cache", cache_dir, "--no-progress"] + extra)
    err = capsys.readouterr().err
    assert code == 2 and all(w in err for w in words), err
    assert not (out / "job").exists() and not (out / "logs").exists() and not (out / "items").exists()


def test_bad_config_output_and_hdris_fail_before_anything_starts(cfg, cache_dir, prepared, tmp_path, capsys):
    sel = ["--cache", cache_dir, "--poses", "0", "--views", "0", "--no-progress"]
    bad = tmp_path / "bad.toml"
    bad.write_text("[render]\nsamples = 0\n")
    assert run_driver(["--config", bad, "--out", tmp_path / "a"] + sel) == 2
    assert "render.samples" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run_driver(["--config", cfg, "--out", blocker / "r"] + sel) == 2
    assert "not writable" in capsys.readouterr().err
    missing = write_config(tmp_path / "m.toml", sources=[tmp_path / "no_such_hdri_dir"])
    assert run_driver(["--config", missing, "--out", tmp_path / "b"] + sel) == 2
    assert "no_such_hdri_dir" in capsys.readouterr().err
    empty = tmp_path / "empty_hdri"
    empty.mkdir()
    assert run_driver(["--config", write_config(tmp_path / "e.toml", sources=[empty]), "--out", tmp_path / "c"] + sel) == 2
    assert "no HDRI found" in capsys.readouterr().err
    for d in ("a", "b", "c"):
        assert not (tmp_path / d / "job").exists()


def test_other_config_into_an_existing_render_is_refused(reference, cache_dir, tmp_path, capsys):
    other = write_config(tmp_path / "o.toml", samples=5)
    assert run_driver(["--config", other, "--out", reference, "--cache", cache_dir, "--no-progress"] + SEL) == 2
    assert "different config" in capsys.readouterr().err


def test_hdri_only_blender_rejects_stops_the_job_with_the_workers_message(cache_dir, prepared, tmp_path, capsys):
    from datagen.scene.hdri import builtin_dir

    d = tmp_path / "hdri"
    d.mkdir()
    data = bytearray((builtin_dir() / "city.exr").read_bytes())
    key = b"compression\x00compression\x00"
    data[data.index(key) + len(key) + 4] = 12  # a compression code this Blender cannot read; the header parses
    (d / "bad.exr").write_bytes(bytes(data))
    cfg = write_config(tmp_path / "c.toml", size=32, samples=1, sources=[d])
    out = tmp_path / "r"
    code = run_driver(["--config", cfg, "--out", out, "--cache", cache_dir, "--poses", "0", "--views", "0-3",
                       "--workers", 2, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "before it was ready" in err and "bad.exr" in err, err[-3000:]
    assert not (out / "items").exists()


def test_help_documents_the_three_modes():
    r = subprocess.run(driver_cmd(["--help"]), capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0
    for words in ("--workers", "--ray [ADDRESS]", "--shard k/N", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX",
                  "--status OUT", "exit status"):
        assert words in r.stdout, words


def test_status_of_a_folder_without_a_render(tmp_path, capsys):
    assert run_driver(["--status", tmp_path]) == 2
    assert "no render" in capsys.readouterr().err


def test_dry_run_plans_without_rendering(cfg, cache_dir, prepared, tmp_path, capsys):
    out = tmp_path / "dry"
    assert run_driver(["--config", cfg, "--out", out, "--cache", cache_dir, "--workers", 3, "--dry-run"] + SEL) == 0
    err = capsys.readouterr().err
    assert "40 to render in 4 blocks" in err and "plan: 4 blocks of 10..10 items" in err
    assert not (out / "job").exists() and not (out / "items").exists()
