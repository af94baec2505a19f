"""Fault injection: nothing corrupt under a final name, damage caught on read, errors that name
their file (issue 15).

Each fault is injected where a test can do it anywhere (a writer raising ENOSPC, Blender's
PNG cut short, bytes flipped or cut off in a shard or a checkpoint, a fake worker), and for
real where the machine allows it (a 5 MB tmpfs when running as root; skipped otherwise).
Every test asserts the message (one line, naming the file), the exit status, and that no
damaged file sits under a final name.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from datagen import atomic
from datagen.dataset import shards as S

REPO = Path(__file__).resolve().parent.parent
RENDER = REPO / "blender_scripts" / "render.py"


# ----------------------------------------------------------------------------- helpers

def write_config(path: Path, size: int = 32, samples: int = 1, cameras: str = "") -> Path:
    path.write_text(f"[cameras]\nwidth = {size}\nheight = {size}\nfocal_px = {373.3511425 * size / 256}\n{cameras}\n"
                    f"[hdri]\nsources = [\"builtin\"]\n[render]\nsamples = {samples}\ndenoise = false\nthreads = 1\n")
    return path


def render_main(args) -> int:
    from blender_scripts.render import main

    return main([str(a) for a in args])


def driver_main(args) -> int:
    from datagen.render.driver import main

    return main([str(a) for a in args])


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("error:")]


def assert_one_line_error(err: str, *words) -> str:
    assert "Traceback" not in err, err[-3000:]
    lines = error_lines(err)
    assert len(lines) == 1, err[-3000:]
    for w in words:
        assert str(w) in lines[0], (w, lines[0])
    return lines[0]


def assert_nothing_corrupt(root: Path) -> None:
    """Every final file under root reads back whole; no temporary is left behind."""
    root = Path(root)
    temps = [p for p in root.rglob("*") if atomic.TEMP_MARK in p.name or p.name.endswith(".tmp")]
    assert not temps, temps
    for f in root.rglob("*"):
        if not f.is_file() or f.name.startswith("."):
            continue
        if f.suffix == ".png":
            atomic.check_png(f)
        elif f.suffix == ".npy":
            np.load(f)
        elif f.suffix == ".npz":
            with np.load(f) as z:
                [z[k] for k in z.files]
        elif f.suffix == ".json" and f.parent.name != "job":
            json.loads(f.read_text())


def labels_of(out: Path) -> list[Path]:
    return sorted((Path(out) / "items").glob("*/v*.json"))


def _env():
    return dict(os.environ, PYTHONUNBUFFERED="1")


# ----------------------------------------------------------------------------- 1. empty selections

def test_empty_selection_is_an_error():
    from datagen.render.selection import SelectionError, parse_ids, select

    for text in ("", "  ", None):
        with pytest.raises(SelectionError, match="empty"):
            parse_ids(text, 1520, "pose")
    with pytest.raises(SelectionError, match="view ids: the selection is empty"):
        select(1520, 216, "0", "")
    assert select(3, 2, "all", "*") == [(p, v) for p in range(3) for v in range(2)]


@pytest.mark.blender
def test_empty_selection_fails_before_anything_starts(cache_dir, prepared, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.toml")
    for main in (render_main, driver_main):
        for sel in (["--poses", "", "--views", "0"], ["--poses", "0", "--views", " "]):
            out = tmp_path / f"{main.__name__}{len(sel[1])}"
            assert main(["--config", cfg, "--out", out, "--cache", cache_dir, "--no-progress"] + sel) == 2
            assert_one_line_error(capsys.readouterr().err, "empty", "'all'")
            assert not (out / "items").exists() and not (out / "job").exists()


@pytest.mark.blender
def test_acceptance_render_script_with_empty_poses_exits_2(cache_dir, prepared, tmp_path):
    r = subprocess.run([sys.executable, str(RENDER), "--out", str(tmp_path / "x"), "--poses", "", "--views", "0",
                        "--cache", str(cache_dir)], capture_output=True, text=True, cwd=REPO, env=_env(), timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert_one_line_error(r.stderr, "pose ids", "empty")
    assert not (tmp_path / "x" / "items").exists()


# ----------------------------------------------------------------------------- 2. disk full

def test_enospc_while_writing_is_one_line_and_leaves_nothing(tmp_path):
    final = tmp_path / "v000.depth.npy"

    def full(f):
        f.write(b"x" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(atomic.DiskFullError) as e:
        atomic.write_with(final, full)
    msg = str(e.value)
    assert "no space left on device" in msg and str(final) in msg and "\n" not in msg
    assert e.value.__suppress_context__ and e.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_a_png_cut_short_is_never_renamed(tmp_path, monkeypatch):
    import cv2

    img = (np.arange(48 * 40 * 3) % 251).astype(np.uint8).reshape(48, 40, 3)
    ok = tmp_path / "ok.png"
    cv2.imwrite(str(ok), img)  # another encoder than ours (like Blender's)
    atomic.check_png(ok)
    atomic.check_png(atomic.write_png(tmp_path / "mask.png", img[..., 0]))
    data = ok.read_bytes()
    for cut in (len(data) - 12, len(data) // 2, 20, 0):
        final = tmp_path / "v001.png"
        tmp = atomic.temp_path(final)
        tmp.write_bytes(data[:cut])
        with pytest.raises(atomic.WriteError) as e:
            atomic.commit(tmp, final)
        assert str(final) in str(e.value) and not isinstance(e.value, atomic.DiskFullError)
        assert not final.exists()
        monkeypatch.setattr(atomic, "free_bytes", lambda folder: 0)  # the same on a full device
        with pytest.raises(atomic.DiskFullError, match="no space left on device"):
            atomic.commit(tmp, final)
        monkeypatch.undo()
        assert not final.exists()
        tmp.unlink()
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0x40  # a flipped bit: a chunk CRC fails
    with pytest.raises(ValueError, match="CRC"):
        (tmp_path / "bad.png").write_bytes(bytes(bad))
        atomic.check_png(tmp_path / "bad.png")


def _truncating_save(monkeypatch, from_call: int):
    """Blender's save_render on a full disk: from the `from_call`-th image on, the PNG is cut
    short and no error is raised (the device then reports no free space)."""
    from blender_scripts.scene import SceneRenderer

    original = SceneRenderer.render_to
    calls = {"n": 0}

    def render_to(self, path):
        res = original(self, path)
        calls["n"] += 1
        if calls["n"] >= from_call:
            with open(path, "r+b") as f:
                f.truncate(max(1, os.path.getsize(path) // 2))
        return res

    monkeypatch.setattr(SceneRenderer, "render_to", render_to)
    monkeypatch.setattr(atomic, "free_bytes", lambda folder: 0)
    return calls


@pytest.mark.blender
def test_disk_full_stops_the_renderer_in_one_line(cache_dir, prepared, tmp_path, capsys, monkeypatch):
    cfg = write_config(tmp_path / "c.toml")
    out = tmp_path / "r"
    calls = _truncating_save(monkeypatch, from_call=2)
    code = render_main(["--config", cfg, "--out", out, "--poses", "0", "--views", "0-5", "--cache", cache_dir,
                        "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    line = assert_one_line_error(err, "no space left on device", out / "items" / "00000")
    assert ".png" in line and "stopped after 1 item(s)" in err
    assert calls["n"] == 2  # the run stopped at the first item that did not fit
    assert len(labels_of(out)) == 1
    assert len(list((out / "items" / "00000").glob("v*.png"))) == 3  # the done item's image, mask, part mask only
    assert "DiskFullError" in (out / "failures.log").read_text()
    assert_nothing_corrupt(out)


@pytest.mark.blender
def test_disk_full_stops_the_stdin_worker(cache_dir, prepared, tmp_path, capsys, monkeypatch):
    cfg = write_config(tmp_path / "c.toml")
    out = tmp_path / "w"
    _truncating_save(monkeypatch, from_call=2)
    monkeypatch.setattr(sys, "stdin", io.StringIO("0 0\n0 1\n0 2\n"))
    code = render_main(["--config", cfg, "--out", out, "--stdin", "--cache", cache_dir, "--no-progress"])
    cap = capsys.readouterr()
    msgs = [json.loads(ln[len("@@handsynth "):]) for ln in cap.out.splitlines() if ln.startswith("@@handsynth ")]
    assert [m["status"] for m in msgs] == ["ready", "ok", "failed", "done"], cap.out
    assert msgs[2]["stop"] is True and "no space left on device" in msgs[2]["error"]
    assert code == 1
    assert_nothing_corrupt(out)


FAKE_WORKER = r"""
import json, sys
P = "@@handsynth "
mode = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else "{mode}"
def say(o): print(P + json.dumps(o), flush=True)
if mode == "start":
    say({{"status": "error", "fatal": True, "error": "output folder /x: no space left on device (0 bytes free)"}})
    sys.exit(2)
say({{"status": "ready"}})
n = 0
for line in sys.stdin:
    p, v = map(int, line.split())
    n += 1
    ids = {{"pose_id": p, "view_id": v, "item_id": p * 216 + v}}
    if n == 1:
        say(dict(ids, status="ok", timings={{}}))
    else:
        say(dict(ids, status="failed", error="no space left on device: cannot write /x/v.png", stop=True))
        say({{"status": "done"}})
        sys.exit(1)
"""


@pytest.mark.parametrize("mode", ["stop", "start"])
def test_driver_pool_stops_on_a_full_disk(mode, tmp_path, monkeypatch):
    from datagen.render import workers
    from datagen.render.driver import Tracker
    from datagen.render.jobs import Ledger, plan_blocks

    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER.format(mode=mode))
    monkeypatch.setattr(workers, "RENDER_SCRIPT", script)
    out = tmp_path / "out"
    out.mkdir()
    items = [(0, v) for v in range(5)]
    ledger = Ledger(out / "job" / "l.jsonl")
    tracker = Tracker(ledger, 216, len(items), 0, enabled=False, interval=30)
    pool = workers.LocalPool(workers.WorkerSpec(out=str(out)), workers.Policy(retries=2, start_timeout=60), 1,
                             out / "logs", "", out, tracker)
    t0 = time.time()
    pool.run(plan_blocks(items))
    ledger.close()
    assert time.time() - t0 < 30  # no retries, no restarts after the stop
    assert "no space left on device" in pool.fatal
    if mode == "stop":
        assert not pool.fatal_input and (tracker.ok, tracker.failed, tracker.n) == (1, 1, 2)
    else:
        assert pool.fatal_input and "before it was ready" in pool.fatal and tracker.n == 0


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 5 MB tmpfs (root only): a real full disk."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    d = tmp_path / "tiny"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _fill(folder: Path, leave: int) -> Path:
    filler = folder / "filler"
    free = atomic.free_bytes(folder)
    with open(filler, "ab") as f:
        f.write(b"\0" * max(0, free - leave - 8192))
    return filler


@pytest.mark.blender
@pytest.mark.slow
def test_disk_full_on_a_real_tmpfs(tiny_tmpfs, cache_dir, prepared, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.toml")
    out = tiny_tmpfs / "r"
    base = ["--config", cfg, "--out", out, "--cache", cache_dir, "--no-progress", "--poses", "0"]
    assert render_main(base + ["--views", "0"]) == 0  # the run files fit
    capsys.readouterr()
    filler = _fill(tiny_tmpfs, leave=40_000)
    code = render_main(base + ["--views", "0-11"])
    err = capsys.readouterr().err
    assert code == 1
    assert_one_line_error(err, "no space left on device", out)
    assert 1 <= len(labels_of(out)) < 12
    assert_nothing_corrupt(out)
    # the driver on the full disk: refused before any worker starts, no probe file left
    filler.write_bytes(b"")
    _fill(tiny_tmpfs, leave=0)
    assert driver_main(base + ["--views", "0-11", "--workers", "1"]) == 2
    assert_one_line_error(capsys.readouterr().err, "no space left on device", out)
    assert_nothing_corrupt(out)
    # room for a couple of items: the job starts, then stops at the first that does not fit (exit 1)
    filler.unlink()
    _fill(tiny_tmpfs, leave=120_000)
    code = driver_main(base + ["--views", "0-11", "--workers", "1", "--threads-per-worker", "1"])
    err = capsys.readouterr().err
    assert code == 1, err[-3000:]
    assert "no space left on device" in error_lines(err)[-1] and "Traceback" not in err
    assert len(labels_of(out)) < 12
    assert_nothing_corrupt(out)


# ----------------------------------------------------------------------------- 3, 4. damaged shards

@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    from support.toy_data import make_render_dir, run_pack

    root = tmp_path_factory.mktemp("faults-ds")
    render = make_render_dir(root / "render", n_poses=3, n_views=4, size=64)
    run_pack(render, root / "ds")
    return root / "ds"


def _images(ds_dir) -> list:
    from datagen.dataset.reader import ShardDataset

    ds = ShardDataset(ds_dir, fields=("image", "mask", "depth", "ids"))
    return [ds.read_sample(i) for i in range(len(ds))]


def _flip(path: Path, at: float | None = 0.5, n: int = 64, row: int | None = None) -> None:
    """XOR n bytes: in the middle of the file, or inside sample `row`'s image chunk."""
    if row is not None:
        import h5py

        with h5py.File(path, "r") as f:
            info = f["image"].id.get_chunk_info(row)
        k = info.byte_offset + info.size // 2
    else:
        k = int(path.stat().st_size * at)
    b = bytearray(path.read_bytes())
    for i in range(n):
        b[k + i] ^= 0xFF
    path.write_bytes(bytes(b))


def test_bit_flips_in_a_shard_are_reported_with_shard_and_sample(packed, tmp_path):
    from datagen.dataset.reader import ShardDataset

    ref = _images(packed)
    d = shutil.copytree(packed, tmp_path / "ds")
    (shard,) = d.glob("shard-*.h5")
    assert S.ShardReader(shard).checksummed
    _flip(shard)
    ds = ShardDataset(d, fields=("image", "mask", "depth", "ids"))
    caught = 0
    for i in range(len(ds)):
        try:
            s = ds.read_sample(i)
        except S.CorruptShardError as exc:
            msg = str(exc)
            assert str(shard) in msg and "sample" in msg and "item" in msg and "\n" not in msg
            caught += 1
            continue
        for k in ("image", "mask", "depth"):  # never a silently different sample
            assert np.array_equal(s[k], ref[i][k]), (i, k)
    assert caught >= 1


def test_shards_without_checksums_still_read(packed, tmp_path, monkeypatch):
    from support.toy_data import run_pack

    monkeypatch.setattr(S, "CHECKSUM", False)
    run_pack(packed.parent / "render", tmp_path / "old")
    (shard,) = (tmp_path / "old").glob("shard-*.h5")
    assert not S.ShardReader(shard).checksummed
    ref, old = _images(packed), _images(tmp_path / "old")
    for a, b in zip(ref, old):
        assert all(np.array_equal(a[k], b[k]) for k in ("image", "mask", "depth"))


def test_a_truncated_shard_is_named_on_open(packed, tmp_path):
    from datagen.dataset.reader import ShardDataset

    d = shutil.copytree(packed, tmp_path / "ds")
    (shard,) = d.glob("shard-*.h5")
    os.truncate(shard, shard.stat().st_size // 2)
    with pytest.raises(S.DatasetError, match="truncated") as e:
        ShardDataset(d)
    assert str(shard) in str(e.value) and "the manifest says" in str(e.value)
    with pytest.raises(S.DatasetError) as e:  # without a manifest: h5py's complaint, with the file name
        S.ShardReader(shard)
    assert str(shard) in str(e.value) and "truncated" in str(e.value)
    shard.unlink()
    with pytest.raises(S.DatasetError, match="missing"):
        ShardDataset(d)


def test_pack_on_a_full_disk_stops_in_one_line(packed, tmp_path, capsys, monkeypatch):
    import datagen.dataset.pack as P
    from support.toy_data import StubMapping

    def full(self, sample):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(P, "build_mapping_for", lambda *a, **k: StubMapping())
    monkeypatch.setattr(S.ShardWriter, "add", full)
    out = tmp_path / "ds"
    from datagen.pack import main as pack_main

    assert pack_main([str(packed.parent / "render"), str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and "no space left on device" in err and str(out) in err
    assert list(out.iterdir()) == []  # no .partial, no shard


def _train_args(ds, out, *extra):
    return ["--data", str(ds), "--out", str(out), "--encoder", "ghoststack", "--batch-size", "2", "--workers", "0",
            "--split-fractions", "1", "0", "0", "--milestones", "1", "--val-every", "0", "--threads", "1",
            "--no-progress", *extra]


@pytest.mark.slow
def test_training_stops_on_a_damaged_sample_in_one_line(packed, tmp_path, capsys):
    from train.cli import main as train_main

    d = shutil.copytree(packed, tmp_path / "ds")
    (shard,) = d.glob("shard-*.h5")
    _flip(shard, row=5)
    n = len(_images(packed))
    # every sample once, read by a DataLoader worker (its error comes back wrapped)
    code = train_main(_train_args(d, tmp_path / "run", "--workers", "1", "--samples-per-epoch", str(n),
                                  "--epochs", "1"))
    err = capsys.readouterr().err
    assert code == 1
    assert_one_line_error(err, shard, "sample", "item")
    # truncated: refused before training starts (exit 2)
    os.truncate(shard, shard.stat().st_size - 1000)
    assert train_main(_train_args(d, tmp_path / "run2", "--max-steps", "1")) == 2
    assert_one_line_error(capsys.readouterr().err, shard, "truncated")


# ----------------------------------------------------------------------------- 5. checkpoints

@pytest.fixture(scope="module")
def trained(tiny_ds, tmp_path_factory):
    """Two saves (an epoch end, then max-steps): last.pt, last.prev.pt and model.pt."""
    from train.cli import main as train_main

    out = tmp_path_factory.mktemp("faults-train") / "run"
    assert train_main(_train_args(tiny_ds, out, "--samples-per-epoch", "2", "--max-steps", "2")) == 0
    assert {"last.pt", "last.prev.pt", "model.pt"} <= {p.name for p in out.iterdir()}
    return out


@pytest.mark.parametrize("damage, words", [
    ("truncate", ["truncated"]),
    ("empty", ["empty (0 bytes)"]),
    ("random", ["damaged or not a torch checkpoint"]),
    ("model", ["weights only", "OUT/last.pt"]),
    ("missing", ["does not exist"]),
])
def test_a_bad_resume_checkpoint_is_named(damage, words, trained, tiny_ds, tmp_path, capsys):
    from train.cli import main as train_main

    ck = tmp_path / "ck.pt"
    data = (trained / "last.pt").read_bytes()
    if damage == "truncate":
        ck.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        ck.write_bytes(b"")
    elif damage == "random":
        ck.write_bytes(os.urandom(5000))
    elif damage == "model":
        ck = trained / "model.pt"
    code = train_main(_train_args(tiny_ds, tmp_path / "run", "--samples-per-epoch", "2", "--max-steps", "3",
                                  "--resume", str(ck)))
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, ck, *words)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_resume_auto_falls_back_to_the_previous_checkpoint(trained, tiny_ds, tmp_path, capsys):
    import torch

    from train.cli import main as train_main

    out = shutil.copytree(trained, tmp_path / "run")
    prev_step = torch.load(out / "last.prev.pt", weights_only=False)["step"]
    os.truncate(out / "last.pt", 1000)
    args = _train_args(tiny_ds, out, "--samples-per-epoch", "2", "--max-steps", "3", "--resume", "auto")
    assert train_main(args) == 0
    err = capsys.readouterr().err
    assert "last.pt" in err and "truncated" in err and f"resumed {out / 'last.prev.pt'}" in err
    assert f"step {prev_step}" in err and (out / "last.damaged.pt").exists()
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 3
    # both damaged: refused, naming both
    (out / "last.pt").write_bytes(b"")
    (out / "last.prev.pt").write_bytes(b"not a zip")
    assert train_main(args) == 2
    assert_one_line_error(capsys.readouterr().err, out / "last.pt", out / "last.prev.pt")


def test_a_failed_checkpoint_write_keeps_the_old_file(tmp_path, monkeypatch):
    import torch

    from train import model_io

    path = tmp_path / "last.pt"
    model_io.save_atomic({"format": "x", "v": 1}, path)
    before = path.read_bytes()

    def full_save(obj, f):
        f.write(b"PK\x03\x04partial")
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full_save)
    monkeypatch.setattr(atomic, "free_bytes", lambda folder: 0)
    with pytest.raises(model_io.CheckpointWriteError, match="no space left on device") as e:
        model_io.save_atomic({"format": "x", "v": 2}, path, keep_previous=True)
    assert str(path) in str(e.value)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


# ----------------------------------------------------------------------------- 6. MANO files

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind, words", [
    ("random", ["not a MANO model file", "does not unpickle"]),
    ("missing", ["does not exist"]),
    ("dict", ["not a MANO model file, missing", "J_regressor"]),
    ("evil", ["refusing to load", "posix.system"]),
])
def test_mapping_report_with_a_bad_mano_file_is_one_line(kind, words, tmp_path, capsys):
    from datagen.mapping.__main__ import main

    f = tmp_path / f"{kind}.pkl"
    marker = tmp_path / "PWNED"
    if kind == "random":
        f.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "dict":
        f.write_bytes(pickle.dumps({"v_template": np.zeros((778, 3)), "f": np.zeros((10, 3), int)}, protocol=2))
    elif kind == "evil":
        f.write_bytes(pickle.dumps({"v_template": _Evil(marker)}, protocol=2))
    assert main(["--report", "--mano", str(f), "--cache-dir", str(tmp_path / "cache")]) == 2
    assert_one_line_error(capsys.readouterr().err, f, *words)
    assert not marker.exists() and not (tmp_path / "cache").exists()


# ----------------------------------------------------------------------------- 7. predict

def test_predict_refuses_bad_boxes_and_tiny_images_and_downscales_huge_ones(trained, tmp_path, capsys):
    import cv2

    from train.predict import main as predict_main

    ck = str(trained / "model.pt")
    img = tmp_path / "hand.png"
    cv2.imwrite(str(img), np.full((96, 96, 3), 128, np.uint8))
    assert predict_main([str(img), "--checkpoint", ck, "--out", str(tmp_path / "p"), "--box", "10", "10", "5",
                         "5"]) == 2
    assert_one_line_error(capsys.readouterr().err, "--box 10 10 5 5", "X1 > X0")
    assert not (tmp_path / "p").exists()  # refused before anything was loaded or written
    tiny = tmp_path / "one.png"
    cv2.imwrite(str(tiny), np.zeros((1, 1, 3), np.uint8))
    assert predict_main([str(tiny), "--checkpoint", ck, "--out", str(tmp_path / "p")]) == 1
    assert_one_line_error(capsys.readouterr().err, tiny, "1x1", "too small")
    assert not (tmp_path / "p" / "one.json").exists()
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.full((2400, 3000, 3), 90, np.uint8))
    assert predict_main([str(big), "--checkpoint", ck, "--out", str(tmp_path / "p"), "--box", "1000", "600", "2000",
                         "1800"]) == 0
    meta = json.loads((tmp_path / "p" / "big.json").read_text())
    assert meta["image_size"] == [3000, 2400] and meta["processed_size"] == [1024, 819]
    assert cv2.imread(str(tmp_path / "p" / "big_overlay.png")).shape[:2] == (819, 1024)
    assert meta["K"][0][2] == 1500.0 and len(meta["uv_px"]) == 21  # original-image pixels
    assert predict_main([str(tmp_path / "nope.png"), "--checkpoint", ck + ".missing"]) == 2
    assert_one_line_error(capsys.readouterr().err, ck + ".missing", "does not exist")


# ----------------------------------------------------------------------------- 8. silent oddities

@pytest.mark.blender
def test_limit_below_one_is_refused_everywhere(cache_dir, prepared, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.toml")
    for main in (render_main, driver_main):
        for limit in ("-1", "0"):
            out = tmp_path / f"{main.__name__}{limit}"
            code = main(["--config", cfg, "--out", out, "--cache", cache_dir, "--poses", "0", "--views", "0",
                         "--limit", limit, "--no-progress"])
            assert code == 2
            assert_one_line_error(capsys.readouterr().err, f"--limit {limit}", ">= 1")
            assert not (out / "items").exists()


def test_a_camera_ring_at_the_pole_is_refused_naming_the_key(tmp_path):
    from datagen.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=r"cameras\.latitude_step_deg = 18.*the pole.*same view"):
        load_config(write_config(tmp_path / "c.toml", cameras="latitude_step_deg = 18.0"))
    with pytest.raises(ConfigError, match=r"cameras\.longitude_step_deg"):
        load_config(write_config(tmp_path / "d.toml", cameras="longitudes = 37"))
    with pytest.raises(ConfigError, match=r"cameras\.latitude_step_deg = 0"):
        load_config(write_config(tmp_path / "e.toml", cameras="latitude_step_deg = 0.0"))
    load_config(write_config(tmp_path / "f.toml", cameras="latitudes = 1\nlongitudes = 1\nlatitude_start_deg = 90.0"))


@pytest.mark.blender
def test_wrist_ranges_that_leave_the_arm_no_way_out_are_refused_before_rendering(cache_dir, prepared, tmp_path,
                                                                                 capsys):
    # A straight arm only (both ranges [0, 0]): the top ring looks along it, so its items cannot
    # keep the cut end out of frame; both entry points say so, naming the keys, before any work.
    cfg = write_config(tmp_path / "c.toml")
    cfg.write_text(cfg.read_text() + "[hand]\nwrist_flexion_deg = [0.0, 0.0]\nwrist_deviation_deg = [0.0, 0.0]\n")
    sel = ["--config", cfg, "--cache", cache_dir, "--poses", "0", "--views", "0,180", "--no-progress"]
    for main in (render_main, driver_main):
        out = tmp_path / main.__name__
        assert main(sel + ["--out", out]) == 2
        assert_one_line_error(capsys.readouterr().err, "hand.wrist_flexion_deg", "view 180")
        assert not (out / "items").exists()


@pytest.mark.blender
def test_a_radius_that_crops_the_hand_is_refused_before_rendering(cache_dir, prepared, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.toml", cameras="radius_m = 0.15")
    sel = ["--config", cfg, "--cache", cache_dir, "--poses", "0", "--views", "0-1", "--no-progress"]
    for main in (render_main, driver_main):
        out = tmp_path / main.__name__
        assert main(sel + ["--out", out]) == 2
        assert_one_line_error(capsys.readouterr().err, "crops the hand", "cameras.radius_m", "--allow-cropped")
        assert not (out / "items").exists()
    out = tmp_path / "anyway"
    assert render_main(sel + ["--out", out, "--views", "0", "--allow-cropped"]) == 0
    assert "warning: the camera crops the hand" in capsys.readouterr().err
    assert len(labels_of(out)) == 1


def test_running_overlap_only_refuses_a_running_job_with_shared_items(tmp_path):
    from datagen.render.jobs import Job, JobLock, running_overlap

    out = tmp_path / "r"
    a = Job("job-a", out, {}, None, [(0, v) for v in range(8)], 10, 216, "d")
    a.write()
    assert running_overlap(out, "job-b", [(0, 5)], 2160, 216) is None  # recorded, but not running
    lock = JobLock(a.lock_path)
    assert lock.acquire() is None
    try:
        msg = running_overlap(out, "job-b", [(0, v) for v in range(4, 12)], 2160, 216)
        assert "job-a" in msg and "4 of the 8 items" in msg and "pose 0 view 4" in msg
        assert running_overlap(out, "job-b", [(0, v) for v in range(8, 12)], 2160, 216) is None
        assert running_overlap(out, "job-a", [(0, 1)], 2160, 216) is None  # its own record
    finally:
        lock.release()


def _driver(cfg, out, cache_dir, views, *extra):
    return subprocess.Popen([sys.executable, "-m", "datagen.render", "--config", str(cfg), "--out", str(out),
                             "--cache", str(cache_dir), "--poses", "0", "--views", views, "--workers", "1",
                             "--threads-per-worker", "1", "--no-progress", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO, env=_env())


def _wait(cond, timeout, what, proc=None):
    t0 = time.time()
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"driver exited ({proc.returncode}) while waiting for {what}: "
                                 f"{proc.stderr.read()[-2000:]}")
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _ledger_done(out: Path) -> int:
    from datagen.render.jobs import read_ledger

    return sum(e.get("ev") == "done" for p in (out / "job").glob("*.ledger.jsonl") for e in read_ledger(p)[0])


def _worker_pid(out: Path) -> int | None:
    for p in (out / "logs").glob("*.log"):
        for line in p.read_text(errors="replace").splitlines():
            if "[driver] worker" in line and " pid " in line:
                return int(line.rsplit(" pid ", 1)[1].split()[0])
    return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


@pytest.mark.blender
@pytest.mark.slow
def test_a_killed_driver_leaves_no_false_failure(cache_dir, prepared, tmp_path):
    cfg = write_config(tmp_path / "c.toml", size=64, samples=16)
    out = tmp_path / "r"
    proc = _driver(cfg, out, cache_dir, "0-7")
    try:
        _wait(lambda: (out / "job").exists() and _ledger_done(out) >= 1, 300, "a first finished item", proc)
        pid = _worker_pid(out)
        assert pid is not None
        os.kill(proc.pid, signal.SIGKILL)  # mid-item: the worker is rendering the next one
        proc.wait()
        _wait(lambda: not _alive(pid), 120, "the orphaned worker to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    log = "".join(p.read_text(errors="replace") for p in (out / "logs").glob("*.log"))
    assert "driver gone" in log and "Traceback" not in log
    failures = out / "failures.log"
    assert not failures.exists() or "BrokenPipe" not in failures.read_text()
    assert_nothing_corrupt(out)


@pytest.mark.blender
@pytest.mark.slow
def test_overlapping_jobs_do_not_run_together(cache_dir, prepared, tmp_path, capsys):
    from datagen.render.jobs import job_records, lock_holder

    cfg = write_config(tmp_path / "c.toml", size=64, samples=16)
    out = tmp_path / "r"
    first = _driver(cfg, out, cache_dir, "0-29")
    try:
        _wait(lambda: (out / "job").exists() and any(lock_holder(r["_lock"]) for r in job_records(out)), 300,
              "the first job to run", first)
        (rec,) = job_records(out)
        code = driver_main(["--config", cfg, "--out", out, "--cache", cache_dir, "--poses", "0", "--views", "20-39",
                            "--workers", "1", "--no-progress"])
        assert code == 2
        assert_one_line_error(capsys.readouterr().err, rec["key"], "is rendering", "twice")
        assert len(job_records(out)) == 1  # the refused job left no record
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGINT)  # items in flight finish
        first.wait(timeout=300)
        first.stderr.close()
    assert_nothing_corrupt(out)
