"""I/O benchmark: packing, bytes per sample, shard reader vs. the render directory's files.

    python benchmarks/io_bench.py [--render DIR] [--poses 0-3] [--views-step 9] [--repeats 3] [--codecs]

Uses a small real render set (rendered once with blender_scripts/render.py and cached under
out/io_bench/render unless --render names one), packs it with the default encodings, and
measures (median of --repeats runs, every run after a warm-up so all files are in the page
cache for both readers):
- pack throughput: samples/s of `datagen.pack` on the whole set (scan + shards + tables +
  manifest; the 778-vertex mapping comes from its cache);
- bytes per sample by component (image, depth, mask, per-sample labels, tables.h5 share);
- reader throughput: HandShards (default fields) through a DataLoader, batch 32, random order,
  1 and 2 workers;
- the same samples read as individual files from the render directory (cv2 PNG decode of the
  image and the mask, the depth .npy, the label JSON; the pose mesh .npz + the mapping for the
  778 vertices, cached per pose in each worker; with per-item wrists the item's forearm turned
  as the shard reader does it, datagen.dataset.reader.ArmSkin), the same DataLoader settings;
- the read cost of the corruption checks: the same set packed without HDF5's Fletcher32
  checksums, read in one process (shards are checked on every read by default).
--codecs also compares every image/depth/mask encoding (size on disk vs. decode time) on
the same samples.  The last line is machine-readable:
pack_samples_per_s=X read_samples_per_s=Y files_samples_per_s=Z bytes_per_sample=B
read_1proc_samples_per_s=R1 read_1proc_nochecksum_samples_per_s=R0 files_1proc_samples_per_s=F1
checksum_us_per_sample=C (one line; read/files: DataLoader with 2 workers, *_1proc: one process,
no DataLoader; R1 reads with checksums verified).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from datagen.dataset import shards as S  # noqa: E402
from datagen.dataset.reader import HandShards  # noqa: E402
from datagen.dataset.pack import Inputs, arm_tables, load_inputs, pack, run_wrist  # noqa: E402


def ensure_render(render: Path, poses: str, views_step: int) -> Path:
    """Render the benchmark set if it is missing or incomplete (the renderer resumes), afresh when
    it was rendered from other hand/pose tables (an older checkout)."""
    from datagen.config import load_config
    from datagen.poses.tables import ensure_tables

    run = render / "run.json"
    if run.exists() and json.loads(run.read_text()).get("prepared_key") != ensure_tables(load_config(None)).key:
        print(f"render set {render}: made by other hand/pose code - rendering it again", flush=True)
        shutil.rmtree(render)
    views = ",".join(str(v) for v in range(0, 216, views_step))
    lo, _, hi = poses.partition("-")
    expected = (int(hi or lo) - int(lo) + 1) * len(range(0, 216, views_step))
    if len(list(render.glob("items/*/v*.json"))) >= expected:
        return render
    cmd = [sys.executable, str(REPO / "blender_scripts" / "render.py"), "--out", str(render), "--poses", poses,
           "--views", views, "--no-progress"]
    print(f"render set: {render} (poses {poses}, every {views_step}th view)", flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    return render


class FilesDataset(Dataset):
    """The same sample as HandShards' default fields, read from the render directory's files."""

    def __init__(self, inputs: Inputs, items: list[tuple[int, int]], mapping):
        self.root, self.items, self.inputs = inputs.root, items, inputs
        self.mapping = mapping
        self.meshes: dict[int, np.ndarray] = {}
        self.pose_row = {int(p): i for i, p in enumerate(inputs.poses["ids"])}
        self.arm = None
        if run_wrist(inputs.run.get("config")).per_item:  # the reader's re-skinning, from the render's files
            from datagen.dataset.reader import ArmSkin

            self.arm = ArmSkin(**arm_tables(inputs), dense_matrix=inputs.asset.dense_matrix,
                               mappings={"mano": (mapping.matrix, mapping.joint_regressor)})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        import cv2

        pose, view = self.items[i]
        base = self.root / "items" / f"{pose:05d}" / f"v{view:03d}"
        img = cv2.cvtColor(cv2.imread(str(base) + ".png", cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(str(base) + ".mask.png", cv2.IMREAD_UNCHANGED) > 0
        depth = np.load(str(base) + ".depth.npy")
        lab = json.loads(Path(str(base) + ".json").read_text())
        if pose not in self.meshes:  # per-pose mesh read once per worker: the baseline is not handicapped
            with np.load(self.root / "meshes" / f"pose_{pose:05d}.npz") as z:
                self.meshes[pose] = self.mapping.apply(z["dense"].astype(np.float64))
        R, t = np.asarray(lab["R"]), np.asarray(lab["t"])
        verts = self.meshes[pose]
        if self.arm is not None:  # the item's own forearm
            w = lab["wrist"]
            rot = self.arm.rotation((w["flexion_deg"], w["deviation_deg"]))
            verts = self.arm.mesh("mano", self.pose_row[pose], rot, verts, np.zeros((21, 3)))[0]
        verts = verts @ R.T + t
        gap = np.array([np.nan if g is None else g for g in lab["depth_gap_m"]], np.float32)
        return {"image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
                "mask": torch.from_numpy(mask), "depth": torch.from_numpy(depth),
                "keypoints_2d": torch.tensor(lab["keypoints_2d"], dtype=torch.float32),
                "visible": torch.tensor(lab["visible"]), "in_frame": torch.tensor(lab["in_frame"]),
                "depth_gap_m": torch.from_numpy(gap),
                "joints_cam": torch.tensor(lab["keypoints_3d_cam"], dtype=torch.float32),
                "vertices_cam": torch.from_numpy(verts.astype(np.float32)),
                "K": torch.tensor(lab["K"], dtype=torch.float32), "R": torch.from_numpy(R.astype(np.float32)),
                "t": torch.from_numpy(t.astype(np.float32)), "pose_id": torch.tensor(pose),
                "view_id": torch.tensor(view)}


def loader_rate(ds, workers: int, min_samples: int, repeats: int, seed: int = 0) -> float:
    """Median samples/s over `repeats` runs of >= min_samples random-order samples (warm-up first)."""
    def one(n_target):
        g = torch.Generator().manual_seed(seed)
        dl = DataLoader(ds, batch_size=32, shuffle=True, num_workers=workers, generator=g,
                        persistent_workers=True)
        n, t0 = 0, time.perf_counter()
        while n < n_target:
            for b in dl:
                n += len(b["image"])
        return n / (time.perf_counter() - t0)

    one(len(ds))  # warm-up: page cache, imports in workers
    return statistics.median(one(min_samples) for _ in range(repeats))


def inprocess_rate(ds, min_samples: int, repeats: int) -> float:
    """Median samples/s of ds[i] in this process, random order (no DataLoader: the reader alone)."""
    rng = np.random.default_rng(0)
    for i in range(len(ds)):
        ds[i]

    def one():
        n, t0 = 0, time.perf_counter()
        while n < min_samples:
            for i in rng.permutation(len(ds)):
                ds[int(i)]
            n += len(ds)
        return n / (time.perf_counter() - t0)

    return statistics.median(one() for _ in range(repeats))


class ReadyMade(Dataset):
    """The DataLoader's own ceiling: the same sample tensors, already made (copied per call)."""

    def __init__(self, sample: dict, n: int):
        self.sample, self.n = sample, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {k: v.clone() for k, v in self.sample.items()}


def codec_study(render: Path, items: list[tuple[int, int]], repeats: int) -> list[tuple]:
    """Each codec alone: stored bytes/sample and decode CPU ms/sample (random order, ShardReader;
    images decoded to the CHW layout the Dataset returns)."""
    from datagen.dataset.pack import load_item_arrays

    inputs = load_inputs(render)
    arrays = [load_item_arrays(render, p, v, inputs.height, inputs.width) for p, v in items]
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="codecs-", dir=REPO / "out"))
    order = np.random.default_rng(0).permutation(len(arrays))
    try:
        for field, table in (("image", S.IMAGE_CODECS), ("depth", S.DEPTH_CODECS), ("mask", S.MASK_CODECS)):
            for name, c in table.items():
                path = tmp / f"{field}-{name}.h5"
                fields = {field: name, "mask": "bits-gzip"} if c.needs_mask else {field: name}
                w = S.ShardWriter(path, inputs.height, inputs.width, fields, [])
                t0 = time.process_time()
                for a in arrays:
                    w.add({**{k: np.zeros(shape, dtype) for k, (dtype, shape) in S.SAMPLE_COLUMNS.items()},
                           "skin": np.zeros(0, np.float32), **a})
                enc = (time.process_time() - t0) / len(arrays)
                w.close({})
                r = S.ShardReader(path)
                size = r.stored_bytes()[field] / len(arrays)
                times = []
                for _ in range(repeats):
                    t0 = time.process_time()
                    for i in order:  # images in the layout HandShards returns (CHW)
                        out = r.read(field, int(i), chw=True) if field == "image" else r.read(field, int(i))
                    times.append((time.process_time() - t0) / len(arrays))
                ref = arrays[int(order[-1])][field]
                ref = ref.transpose(2, 0, 1) if field == "image" else ref
                err = float(np.abs(out.astype(np.float64) - ref).max())
                r.close()
                rows.append((field, name, size, 1e3 * statistics.median(times), 1e3 * enc, err, c.description))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--render", type=Path, default=None, help="an existing RENDER_DIR (default: render/cache one)")
    ap.add_argument("--poses", default="0-3")
    ap.add_argument("--views-step", type=int, default=9)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-samples", type=int, default=960, help="samples per timed reader run")
    ap.add_argument("--codecs", action="store_true", help="also compare all encodings")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    render = args.render or ensure_render(REPO / "out" / "io_bench" / "render", args.poses, args.views_step)
    inputs = load_inputs(render)
    from datagen.dataset.pack import Scan, build_mapping_for

    mapping = build_mapping_for(inputs, "open778", None, None)  # cached after the first run
    items = Scan(inputs, progress=False).items
    n = len(items)
    print(f"{n} rendered samples in {render}", flush=True)

    # -- pack throughput (median of repeats, each into a fresh folder) --
    pack_rates = []
    ds_dir = REPO / "out" / "io_bench" / "ds"
    for _ in range(args.repeats):
        shutil.rmtree(ds_dir, ignore_errors=True)
        t0 = time.perf_counter()
        manifest = pack(render, ds_dir, mapping=mapping, progress=False, log=lambda *_: None)
        pack_rates.append(manifest["counts"]["samples"] / (time.perf_counter() - t0))
    pack_rate = statistics.median(pack_rates)
    # -- the same set without checksums: what verifying them costs on read --
    plain_dir = REPO / "out" / "io_bench" / "ds-nochecksum"
    shutil.rmtree(plain_dir, ignore_errors=True)
    S.CHECKSUM = False
    try:
        pack(render, plain_dir, mapping=mapping, progress=False, log=lambda *_: None)
    finally:
        S.CHECKSUM = True

    # -- bytes per sample by component --
    comp: dict[str, int] = {}
    for s in manifest["shards"]:
        r = S.ShardReader(ds_dir / s["file"])
        for k, v in r.stored_bytes().items():
            comp[k] = comp.get(k, 0) + v
        r.close()
    shard_bytes = sum(s["bytes"] for s in manifest["shards"])
    comp["hdf5 overhead"] = shard_bytes - sum(comp.values())
    comp["tables.h5 share"] = manifest["tables"]["bytes"]
    total = shard_bytes + manifest["tables"]["bytes"]
    files_bytes = sum(f.stat().st_size for p, v in items
                      for f in (render / "items" / f"{p:05d}").glob(f"v{v:03d}.*"))

    # -- readers --
    shards_ds = HandShards(ds_dir)
    files_ds = FilesDataset(inputs, [(int(p), int(v)) for p, v in zip(shards_ds.tables.samples["pose_id"],
                                                                       shards_ds.tables.samples["view_id"])],
                            mapping)
    if not shards_ds._reader(0).checksummed:
        raise SystemExit(f"{ds_dir} was packed without checksums")
    rates = {("shards", 0): inprocess_rate(shards_ds, args.min_samples, args.repeats),
             ("plain", 0): inprocess_rate(HandShards(plain_dir), args.min_samples, args.repeats),
             ("files", 0): inprocess_rate(files_ds, args.min_samples, args.repeats)}
    ready = ReadyMade(shards_ds[0], len(shards_ds))
    for w in (1, 2):
        rates[("shards", w)] = loader_rate(shards_ds, w, args.min_samples, args.repeats)
        rates[("files", w)] = loader_rate(files_ds, w, args.min_samples, args.repeats)
        rates[("ready", w)] = loader_rate(ready, w, args.min_samples, args.repeats)

    enc = manifest["encodings"]
    print()
    print("| quantity | value |")
    print("|---|---|")
    print(f"| samples (real renders, {inputs.width}x{inputs.height}) | {n} |")
    print(f"| pack throughput (whole pack incl. scan, tables, manifest) | {pack_rate:.1f} samples/s "
          f"(runs: {', '.join(f'{r:.1f}' for r in pack_rates)}) |")
    for k in ("image", "depth", "mask", "labels", "hdf5 overhead", "tables.h5 share"):
        what = f" ({enc[k]['codec']})" if k in enc else ""
        print(f"| bytes/sample: {k}{what} | {comp[k] / n:,.0f} |")
    print(f"| bytes/sample: total on disk | {total / n:,.0f} (render files: {files_bytes / n:,.0f}) |")
    rs, rf, rp = rates[("shards", 0)], rates[("files", 0)], rates[("plain", 0)]
    check_us = 1e6 * (1 / rs - 1 / rp)
    print(f"| read in one process, no DataLoader, random order: shards (checksums verified) | {rs:.0f} samples/s |")
    print(f"| read in one process, no DataLoader, random order: shards packed without checksums | {rp:.0f} "
          f"samples/s (the checks cost {check_us:.0f} us/sample, {100 * (rp / rs - 1):.0f}%) |")
    print(f"| read in one process, no DataLoader, random order: render files | {rf:.0f} samples/s "
          f"(shards {rs / rf:.1f}x faster, with checksums) |")
    for w in (1, 2):
        ls, lf = rates[("shards", w)], rates[("files", w)]
        print(f"| DataLoader, {w} worker(s), random order, batch 32: shards | {ls:.0f} samples/s |")
        print(f"| DataLoader, {w} worker(s), random order, batch 32: render files | {lf:.0f} samples/s "
              f"(shards {ls / lf:.1f}x faster) |")
        print(f"| DataLoader, {w} worker(s): ready-made tensors (its own ceiling here) | "
              f"{rates[('ready', w)]:.0f} samples/s |")

    if args.codecs:
        print()
        print("| field | codec | bytes/sample | decode ms/sample | encode ms/sample | max abs error | notes |")
        print("|---|---|---|---|---|---|---|")
        for field, name, size, dec, encms, err, desc in codec_study(render, items, args.repeats):
            e = f"{err:.2g}" + (" m" if field == "depth" else "")
            print(f"| {field} | {name} | {size:,.0f} | {dec:.3f} | {encms:.2f} | {e} | {desc} |")
    print()
    print(f"pack_samples_per_s={pack_rate:.1f} read_samples_per_s={rates[('shards', 2)]:.1f} "
          f"files_samples_per_s={rates[('files', 2)]:.1f} bytes_per_sample={total / n:.0f} "
          f"read_1proc_samples_per_s={rs:.1f} read_1proc_nochecksum_samples_per_s={rp:.1f} "
          f"files_1proc_samples_per_s={rf:.1f} checksum_us_per_sample={check_us:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
