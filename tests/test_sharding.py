"""Planning, sharding and the job ledger (pure Python, no rendering)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from datagen.render.selection import SelectionError, select
from datagen.render.jobs import (
    Block,
    JobLock,
    Ledger,
    collect_status,
    lock_holder,
    plan_blocks,
    ranges_mask,
    read_ledger,
    resolve_shard,
    shard_items,
    split_even,
    to_ranges,
)

FULL = select(1520, 216)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 64, 100, 1000, 1520, 4096])
def test_shards_cover_every_item_exactly_once(n):
    seen = np.zeros(1520 * 216, np.int32)
    sizes = []
    for k in range(n):
        part = shard_items(FULL, (k, n))
        sizes.append(len(part))
        ids = np.fromiter((p * 216 + v for p, v in part), np.int64, len(part))
        np.add.at(seen, ids, 1)
        assert part == sorted(part)  # pose-major, contiguous slice of the selection
    assert (seen == 1).all()
    assert max(sizes) - min(sizes) <= 1  # balanced to one item
    assert sum(sizes) == len(FULL)


@pytest.mark.parametrize("n", [2, 5, 13, 40])
def test_shards_of_irregular_selections_and_their_blocks(n):
    rng = np.random.default_rng(n)
    sel = sorted({(int(p), int(v)) for p, v in zip(rng.integers(0, 1520, 500), rng.integers(0, 216, 500))})
    all_blocks_items = []
    for k in range(n):
        part = shard_items(sel, (k, n))
        assert shard_items(sel, (k, n)) == part  # deterministic
        blocks = plan_blocks(part, block_size=4, min_blocks=3)
        for b in blocks:
            assert len({p for p, _ in b.items}) == 1 and b.pose_id == b.items[0][0]  # one pose per block
            assert 1 <= len(b) <= 4
        all_blocks_items += [it for b in blocks for it in b.items]
    assert sorted(all_blocks_items) == sel and len(all_blocks_items) == len(sel)


def test_shards_that_get_nothing_are_fine_when_there_are_more_shards_than_items():
    sel = select(1520, 216, "5", "0-2")
    parts = [shard_items(sel, (k, 8)) for k in range(8)]
    assert sorted(it for p in parts for it in p) == sel
    assert sum(1 for p in parts if p) == 3


def test_blocks_keep_a_pose_together_and_split_evenly_when_poses_are_fewer_than_workers():
    items = select(1520, 216, "3,9", "all")
    blocks = plan_blocks(items)
    assert [b.name for b in blocks] == ["p00003", "p00009"] and all(len(b) == 216 for b in blocks)
    blocks = plan_blocks(items, min_blocks=5)  # 2 poses, 5 workers -> 3 parts per pose
    assert len(blocks) == 6 and {len(b) for b in blocks} == {72}
    assert [b.name for b in blocks[:3]] == ["p00003.1of3", "p00003.2of3", "p00003.3of3"]
    one = plan_blocks(select(1520, 216, "7", "0-9"), min_blocks=4)
    assert sorted(len(b) for b in one) == [2, 2, 3, 3]
    assert sorted(it for b in one for it in b.items) == select(1520, 216, "7", "0-9")
    # a block size splits big poses into equal contiguous parts
    assert [len(b) for b in plan_blocks(select(1520, 216, "0", "all"), block_size=54)] == [54] * 4
    assert [len(b) for b in plan_blocks(select(1520, 216, "0", "all"), block_size=50)] == [43, 43, 43, 43, 44]


def test_blocks_follow_the_given_order_inside_a_pose():
    items = select(1520, 216, "1", "0-11")
    def order(it):  # e.g. HDRI index, then view
        return (it[1] % 3, it[1])

    (b,) = plan_blocks(items, order=order)
    assert [v for _, v in b.items] == [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]
    halves = plan_blocks(items, order=order, min_blocks=2)
    assert [v for _, v in halves[0].items] == [0, 3, 6, 9, 1, 4]


def test_split_even():
    assert split_even(list(range(10)), 3) == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    assert split_even([1, 2], 5) == [[1], [2]]


def test_resolve_shard_from_arguments_and_scheduler_environments():
    assert resolve_shard(None) is None and resolve_shard("") is None
    assert resolve_shard("3/8", {}) == (3, 8)
    slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "16"}
    assert resolve_shard("auto", slurm) == (5, 16)
    one_based = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"}
    assert resolve_shard("auto", one_based) == (0, 4)
    stepped = {"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2",
               "SLURM_ARRAY_TASK_COUNT": "5"}
    assert resolve_shard("auto", stepped) == (3, 5)
    assert resolve_shard("auto/16", slurm) == (5, 16)
    k8s = {"JOB_COMPLETION_INDEX": "7"}
    assert resolve_shard("auto/10", k8s) == (7, 10)
    assert resolve_shard("auto", dict(k8s, HANDSYNTH_SHARD_COUNT="8")) == (7, 8)
    assert resolve_shard("AUTO/9", {"AWS_BATCH_JOB_ARRAY_INDEX": "0"}) == (0, 9)
    for text, env, words in [("auto", {}, "no array-job index"), ("auto", k8s, "auto/N"),
                             ("auto/4", k8s, "outside 0..3"), ("auto/8", slurm, "has 16 tasks"),
                             ("5/5", {}, "0 <= k < N"), ("x", {}, "k/N"),
                             ("auto", dict(stepped, SLURM_ARRAY_TASK_ID="5"), "not on the grid")]:
        with pytest.raises(SelectionError, match=words):
            resolve_shard(text, env)


def test_id_ranges_round_trip():
    ids = [0, 1, 2, 5, 7, 8, 215, 216, 217]
    r = to_ranges(ids)
    assert r == [[0, 3], [5, 6], [7, 9], [215, 218]]
    assert np.nonzero(ranges_mask(r, 300))[0].tolist() == ids
    assert to_ranges([]) == [] and to_ranges(range(328320)) == [[0, 328320]]


def test_ledger_survives_a_torn_line(tmp_path):
    p = tmp_path / "l.jsonl"
    led = Ledger(p)
    led.write("done", item=3, s=1.5, cpu=None)
    led.close()
    with open(p, "ab") as f:
        f.write(b'{"t": 1, "ev": "done", "it')  # a writer killed mid-line
    led = Ledger(p)  # terminates the torn line before appending
    led.write("failed", item=4, error="boom")
    led.close()
    events, bad = read_ledger(p)
    assert [(e["ev"], e["item"]) for e in events] == [("done", 3), ("failed", 4)] and bad == 1
    assert "cpu" not in events[0]  # None values are left out


def _fake_render_dir(out, done_ids, n_poses=1520, n_views=216):
    out.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(json.dumps({"n_poses": n_poses, "n_views": n_views}))
    for i in done_ids:
        p, v = divmod(i, n_views)
        d = out / "items" / f"{p:05d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"v{v:03d}.json").write_text("{}")
        (d / f"v{v:03d}.png").write_bytes(b"")
    (out / "items" / "00000" / ".v009.json.tmp-host-1").parent.mkdir(parents=True, exist_ok=True)
    (out / "items" / "00000" / ".v009.json.tmp-host-1").write_text("partial")  # not done


def test_status_is_rebuilt_from_the_directory_with_or_without_the_ledger(tmp_path):
    from datagen.render.jobs import Job

    out = tmp_path / "r"
    _fake_render_dir(out, [0, 1, 2, 216, 217])
    sel = select(1520, 216, "0-1", "0-4")
    job = Job("job-test", out, {"poses": "0-1", "views": "0-4"}, None, sel, 1520, 216, "digest")
    job.write()
    led = Ledger(job.ledger_path)
    led.write("failed", item=3, error="RuntimeError: boom", log="logs/worker-01.log", attempts=3)
    led.write("failed", item=2, error="earlier failure, done since")
    led.close()
    st = collect_status(out)
    assert (st["selected"], st["done"], st["failed"], st["pending"]) == (10, 5, 1, 4)
    assert st["failures"][0]["item"] == 3 and st["failures"][0]["log"] == "logs/worker-01.log"
    assert st["jobs"][0]["state"] == "planned"
    # the renderer's failures.log is a second record; without the ledger, status still knows
    (out / "failures.log").write_text("2025-01-01 10:00:00 pose 0 view 3 (item 3): RuntimeError: boom\n"
                                      "Traceback (most recent call last):\n  ...\n")
    os.unlink(job.ledger_path)
    st2 = collect_status(out)
    assert (st2["selected"], st2["done"], st2["failed"], st2["pending"]) == (10, 5, 1, 4)
    assert st2["failures"][0]["error"] == "RuntimeError: boom"
    # without any job record the reference is the whole dataset
    import shutil

    shutil.rmtree(out / "job")
    st3 = collect_status(out)
    assert st3["selected"] == 1520 * 216 and st3["done"] == 5 and st3["failed"] == 1


def test_job_lock_is_exclusive(tmp_path):
    a, b = JobLock(tmp_path / "j.lock"), JobLock(tmp_path / "j.lock")
    assert a.acquire() is None
    assert lock_holder(tmp_path / "j.lock") and f"pid {os.getpid()}" in lock_holder(tmp_path / "j.lock")
    import subprocess
    import sys

    code = ("import sys; from datagen.render.jobs import JobLock; h = JobLock(__import__('pathlib').Path(sys.argv[1]))"
            ".acquire(); print(h)")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "j.lock")], capture_output=True, text=True)
    assert f"pid {os.getpid()}" in r.stdout  # another process is refused and told who holds it
    a.release()
    assert lock_holder(tmp_path / "j.lock") is None
    assert b.acquire() is None
    b.release()


def test_block_names():
    assert Block(42, ((42, 0),)).name == "p00042"
    assert Block(42, ((42, 0),), (1, 3)).name == "p00042.2of3"
