"""Check a packed dataset: files, checksums, counts, schema and label sanity.

    python -m datagen.verify OUT_DIR [--quick] [--labels N] [--seed S]

Exit status 0 when everything holds, 1 with a report naming each problem (file, shard, row,
item) otherwise.  Checks:
- manifest: present, parseable, known schema version; every listed file present with the
  listed size and SHA-256; no unlisted shards; no half-written (.partial) files;
- schema and counts: every shard has the datasets of its codecs with one row per sample, the
  counts of the manifest, item ids strictly increasing across shards, the sample index of
  tables.h5 pointing at them, known poses and views; the 778-vertex mapping (rows sum to 1,
  faces in range, mapped vertices = matrix @ dense vertices);
- labels (every sample, or N per shard with --labels N; none with --quick): every label pass
  of the shard decodes to its stated shape and passes its own check (datagen.labels.passes:
  silhouette = depth > 0, and whatever a further pass checks); bbox and area agree with the
  silhouette; 2D
  keypoints = projection of the camera-space joints; in_frame = inside the image; visible
  keypoints lie in the image and on the silhouette; at visible surface keypoints (wrist and
  fingertips) nothing lies in front of the keypoint by more than the run's surface tolerance,
  at visible joint centres the skin in front lies within the joint's flesh depth
  (render_run.visibility in the manifest; a pixel of slack); visible surface keypoints within
  their tolerance of the silhouette, joints on it; stored depth gaps agree with the depth map;
  occluders (`check_occluded`): a keypoint flagged occluded_by_object is in frame, not
  visible, and has an object pixel (part_mask 3) within 2 px; a keypoint whose pixel shows an
  object in front of it by more than its depth limit is flagged; part_mask's hand and arm are
  the silhouette and depth > 0 exactly where part_mask > 0.
- the mesh (`check_mesh`, MESH_SAMPLES of the checked samples per shard): the dense mesh the
  reader gives the sample (its pose's, mirrored for a left hand, with per-item wrists its own
  forearm) rasterised with the sample's camera is its silhouette, except where an object
  (part_mask 3) shows: a wrong mesh, camera or handedness shows here;
- per-item wrists (`check_wrist`, every sample, also with --quick): wrist_deg is finite exactly
  when the run's config draws the wrist per item ([hand] wrist_draw = "item"), then within its
  [hand] wrist_flexion_deg / wrist_deviation_deg, and tables.h5 has the `arm/` group the reader
  turns the forearm with (its arrays' shapes agree).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp

from datagen.cameras.jitter import check_item_camera
from datagen.dataset import shards as S
from datagen.dataset.pack import run_jitter, run_wrist
from datagen.geometry.projection import project
from datagen.labels.handedness import handed_points, handedness_name
from datagen.labels.passes import LABEL_PASSES, PART_MASK_OBJECT, ordered
from datagen.labels.visibility import DEPTH_MARGIN_M, visibility_contract
from datagen.poses.wrist import wrist_range_problem

# The visibility contract comes from the render run (manifest render_run.visibility); the
# labeller's own constants (`visibility_contract`) apply when a dataset does not state it.
SLACK_M = 0.002  # depth at a pixel centre vs. at the keypoint's exact ray (one pixel of slope)
SLACK_PX = 1.5  # a keypoint on the silhouette's edge may fall in the next pixel
TOL_2D_PX = 0.02
TOL_GAP_M = 1e-4  # stored depth_gap_m vs. the (decoded) depth map
SHOW = 5  # examples listed per kind of problem
MESH_SAMPLES = 3  # samples per shard whose dense mesh is rasterised against the silhouette (~20 ms each)
MESH_TOL = 1e-3  # share of the silhouette's pixels that may differ (pixel centres on an edge: float32 meshes)


class Report:
    def __init__(self):
        self.problems: dict[str, list[str]] = defaultdict(list)
        self.notes: list[str] = []

    def add(self, kind: str, message: str) -> None:
        self.problems[kind].append(message)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        lines = list(self.notes)
        if self.ok:
            lines.append("OK: no problems found")
            return "\n".join(lines)
        n = sum(map(len, self.problems.values()))
        lines.append(f"FAILED: {n} problem(s) of {len(self.problems)} kind(s)")
        for kind, msgs in self.problems.items():
            lines.append(f"- {kind}: {len(msgs)}")
            lines += [f"    {m}" for m in msgs[:SHOW]]
            if len(msgs) > SHOW:
                lines.append(f"    ... and {len(msgs) - SHOW} more")
        return "\n".join(lines)


def check_files(root: Path, manifest: dict, rep: Report) -> list[str]:
    """Presence, sizes and SHA-256 of the listed files; returns the shard files fit to open."""
    good = []
    entries = [("tables", manifest.get("tables", {}))] + [("shard", s) for s in manifest.get("shards", [])]
    for kind, e in entries:
        name = e.get("file")
        p = root / str(name)
        if not name or not p.exists():
            rep.add("missing file", f"{name}: listed in the manifest but not on disk")
            continue
        size = p.stat().st_size
        if size != e.get("bytes"):
            rep.add("size mismatch", f"{name}: {size} bytes, the manifest says {e.get('bytes')}")
        digest = S.sha256_file(p)
        if digest != e.get("sha256"):
            rep.add("checksum mismatch", f"{name}: SHA-256 {digest[:16]}..., the manifest says "
                                         f"{str(e.get('sha256'))[:16]}... (file damaged or replaced)")
        elif kind == "shard":
            good.append(name)
    listed = {s.get("file") for s in manifest.get("shards", [])}
    for p in sorted(root.glob("shard-*.h5")):
        if p.name not in listed:
            rep.add("unlisted file", f"{p.name}: a shard not in the manifest (left from another pack?)")
    for p in sorted(root.glob("*" + S.PARTIAL)):
        rep.add("unfinished pack", f"{p.name}: a half-written file; the pack was interrupted - run it again")
    return good


def _check_mapping(f: h5py.File, rep: Report, group: str = "mano", table: str = "mano_vertices") -> None:
    """The mapping group (`mano`, or `mano_left` with a MANO_LEFT.pkl) against its per-pose vertices."""
    m = f[group]
    shape = tuple(m["matrix_shape"][()])
    M = sp.csr_matrix((m["matrix_data"][()], m["matrix_indices"][()], m["matrix_indptr"][()]), shape=shape)
    rows = np.asarray(M.sum(axis=1)).ravel()
    if np.abs(rows - 1).max() > 1e-4:
        rep.add("mapping", f"{group}: mapping matrix rows must sum to 1 (worst {rows[np.argmax(np.abs(rows - 1))]:.6f})")
    nv = shape[0]
    faces = m["faces"][()]
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= nv:
        rep.add("mapping", f"{group}: faces {faces.shape} index outside 0..{nv - 1}")
    if m["joint_regressor"].shape != (21, nv):
        rep.add("mapping", f"{group}: joint_regressor is {m['joint_regressor'].shape}, expected (21, {nv})")
    if table not in f["poses"]:
        rep.add("schema", f"{S.TABLES}: poses/{table} missing (the {group} mapping's per-pose vertices)")
        return
    mv = f["poses"][table]
    dv = f["poses/dense_vertices"]
    if mv.shape[1:] != (nv, 3) or dv.shape[1] != shape[1]:
        rep.add("mapping", f"poses/{table} {mv.shape} / dense_vertices {dv.shape} do not fit the "
                           f"{shape} mapping")
        return
    for p in sorted({0, len(mv) // 2, len(mv) - 1}):
        err = np.abs(M @ dv[p].astype(np.float64) - mv[p]).max()
        if err > 1e-5:
            rep.add("mapping", f"pose row {p}: {table} differ from matrix @ dense_vertices by {err * 1e3:.3f} mm")


def _check_arm(f: h5py.File, rep: Report) -> bool:
    """tables.h5 `arm/` (per-item wrists, datagen.dataset.reader.ArmSkin): shapes that fit the
    hand and the pose table; True when they do."""
    g = f["arm"]
    missing = [k for k in ("rows", "weights", "pose_rotation", "offsets") if k not in g]
    if missing:
        rep.add("schema", f"{S.TABLES}: arm/{', arm/'.join(missing)} missing")
        return False
    n, P = g["rows"].shape[0], f["poses/pose_id"].shape[0]
    nb = f["poses/base_vertices"].shape[1]
    rows = g["rows"][()]
    problems = []
    if g["weights"].shape != (n,) or rows.min(initial=0) < 0 or rows.max(initial=0) >= nb:
        problems.append(f"rows {g['rows'].shape} / weights {g['weights'].shape} do not fit {nb} base vertices")
    if g["pose_rotation"].shape != (P, 3, 3):
        problems.append(f"pose_rotation is {g['pose_rotation'].shape}, expected {(P, 3, 3)}")
    if g["offsets"].shape not in ((n, 3), (P, n, 3)):
        problems.append(f"offsets is {g['offsets'].shape}, expected {(n, 3)} or {(P, n, 3)}")
    for m in problems:
        rep.add("schema", f"{S.TABLES}: arm/ {m}")
    return not problems


def check_wrist(r: S.ShardReader, manifest: dict, tables: dict | None, rep: Report) -> None:
    """Every sample's wrist_deg: finite exactly when the run draws the wrist per item, then within
    the config's ranges; per-item wrists need tables.h5 `arm/`."""
    w = run_wrist(manifest.get("config"))
    c = r.columns
    if "wrist_deg" not in c:  # a shard of an older schema: NaN, the pose table's wrist
        if w.per_item:
            rep.add("wrist", f"{r.path.name}: no wrist_deg column but the config draws the wrist per item")
        return
    wd = c["wrist_deg"]
    finite = np.isfinite(wd).all(1)
    bad = ~finite if w.per_item else ~np.isnan(wd).all(1)
    for row in np.nonzero(bad)[0]:
        rep.add("wrist", f"{r.path.name}: {r.where(int(row))}: wrist_deg {wd[row].tolist()} but the config draws the "
                         f"wrist {'per item (finite angles expected)' if w.per_item else 'per pose (NaN expected)'}")
    if not w.per_item:
        return
    for row in np.nonzero(finite)[0]:
        problem = wrist_range_problem(float(wd[row, 0]), float(wd[row, 1]), w.flexion_deg, w.deviation_deg)
        if problem:
            rep.add("wrist", f"{r.path.name}: {r.where(int(row))}: {problem}")
    if tables is not None and not tables.get("arm"):
        rep.add("wrist", f"{S.TABLES}: no (usable) arm/ group, but {r.path.name}'s samples have their own wrists: the "
                         f"reader cannot make their meshes; re-pack the dataset")


def check_tables(root: Path, manifest: dict, rep: Report) -> dict | None:
    try:
        with h5py.File(root / S.TABLES, "r") as f:
            if f.attrs.get("schema_version", -1) not in S.READABLE_SCHEMAS:
                rep.add("schema", f"{S.TABLES}: schema version {f.attrs.get('schema_version')}")
                return None
            for k in ("poses/pose_id", "poses/keypoints", "poses/mano_vertices", "poses/dense_vertices",
                      "poses/base_vertices", "views/K", "views/R", "views/t", "mano/faces", "mano/template",
                      "mano/joint_regressor", "samples/item_id", "samples/shard", "samples/row", "hand/dense_faces"):
                if k not in f:
                    rep.add("schema", f"{S.TABLES}: dataset {k} missing")
            if rep.problems.get("schema"):
                return None
            t = {"samples": {k: f["samples"][k][()] for k in f["samples"]},
                 "pose_ids": f["poses/pose_id"][()], "keypoints": f["poses/keypoints"][()],
                 "K": f["views/K"][()], "R": f["views/R"][()], "t": f["views/t"][()],
                 "height": int(f.attrs["height"]), "width": int(f.attrs["width"])}
            n = len(t["pose_ids"])
            for k in ("keypoints", "mano_vertices", "dense_vertices", "base_vertices", "mano_joints"):
                if f["poses"][k].shape[0] != n:
                    rep.add("schema", f"{S.TABLES}: poses/{k} has {f['poses'][k].shape[0]} rows for {n} poses")
            if S.attr_json(f["mano"], "topology") != manifest.get("topology"):
                rep.add("schema", f"{S.TABLES}: topology {S.attr_json(f['mano'], 'topology')} "
                                  f"but the manifest says {manifest.get('topology')}")
            _check_mapping(f, rep)
            if "mano_left" in f:
                _check_mapping(f, rep, "mano_left", "mano_left_vertices")
            t["arm"] = _check_arm(f, rep) if "arm" in f else None
    except (OSError, KeyError) as exc:
        rep.add("unreadable file", f"{S.TABLES}: {exc}")
        return None
    total = manifest.get("counts", {}).get("samples")
    if len(t["samples"]["item_id"]) != total:
        rep.add("count mismatch", f"{S.TABLES}: sample index has {len(t['samples']['item_id'])} entries, "
                                  f"the manifest counts {total}")
    ids = t["samples"]["item_id"]
    if len(ids) > 1 and (np.diff(ids) <= 0).any():
        rep.add("ids", f"{S.TABLES}: item ids not strictly increasing")
    missing = np.setdiff1d(t["samples"]["pose_id"], t["pose_ids"])
    if missing.size:
        rep.add("ids", f"{S.TABLES}: samples of poses without pose tables: {missing[:10].tolist()}")
    if (t["samples"]["view_id"] >= len(t["R"])).any() or (t["samples"]["view_id"] < 0).any():
        rep.add("ids", f"{S.TABLES}: view ids outside 0..{len(t['R']) - 1}")
    return t


def check_shard_schema(r: S.ShardReader, k: int, entry: dict, tables: dict | None, rep: Report) -> bool:
    name = r.path.name
    n = r.count
    if n != entry.get("samples"):
        rep.add("count mismatch", f"{name}: {n} samples, the manifest says {entry.get('samples')}")
    f = r.f
    ok = True
    for col, (dtype, shape) in S.sample_columns(r.schema_version).items():
        if col not in f and col in S.LATER_COLUMNS:
            continue  # packed before the column existed: read as its default
        if col not in f or f[col].shape != (n, *shape) or f[col].dtype != np.dtype(dtype):
            got = (f[col].shape, str(f[col].dtype)) if col in f else "missing"
            rep.add("schema", f"{name}: column {col} is {got}, expected ({n}, *{shape}) {dtype}")
            ok = False
    for field, c in r.codecs.items():
        if c.kind == "array":
            want = (n, *c.stored_shape(r.height, r.width))
            if r._ds[field].shape != want:
                rep.add("schema", f"{name}: {field} is {r._ds[field].shape}, expected {want}")
                ok = False
        else:
            o = r.blob_offsets[field]
            if len(o) != n + 1 or o[0] != 0 or (np.diff(o) < 0).any() or o[-1] != r._ds[field].shape[0]:
                rep.add("schema", f"{name}: {field} byte offsets inconsistent")
                ok = False
    if tables is not None and ok:
        s = tables["samples"]
        sel = s["shard"] == k
        if not np.array_equal(s["item_id"][sel], r.columns["item_id"]) or \
                not np.array_equal(s["row"][sel], np.arange(n)):
            rep.add("ids", f"{name}: item ids differ from the sample index in {S.TABLES}")
        if not (np.array_equal(r.columns["item_id"], r.columns["pose_id"].astype(np.int64) * len(tables["R"])
                               + r.columns["view_id"])):
            rep.add("ids", f"{name}: item_id != pose_id * n_views + view_id")
    return ok


def check_labels(r: S.ShardReader, rows, tables: dict, rep: Report, contract: dict | None = None) -> None:
    contract = {**visibility_contract(), **(contract or {})}
    name = r.path.name
    H, W = r.height, r.width
    c = r.columns
    passes = ordered(r.codecs)  # every label pass stored in this shard
    pose_row = {int(p): i for i, p in enumerate(tables["pose_ids"])}
    for row in rows:
        where = f"{name} row {row} (item {int(c['item_id'][row])}, pose {int(c['pose_id'][row])}, " \
                f"view {int(c['view_id'][row])})"
        arrays = {}
        try:
            for field in passes:  # writing order: the mask before a depth stored on the silhouette
                arrays[field] = r.read(field, row, mask=arrays.get("mask"))
        except Exception as exc:  # noqa: BLE001 - a damaged chunk must not stop the report
            rep.add("undecodable sample", f"{where}: {exc}")
            continue
        shapes = {f: arrays[f].shape for f in passes}
        if any(shapes[f] != tuple(LABEL_PASSES.get(f).shape(H, W)) for f in passes):
            rep.add("schema", f"{where}: decoded shapes " + ", ".join(f"{f} {v}" for f, v in shapes.items()))
            continue
        problems = [pr for f in passes for pr in LABEL_PASSES.get(f).problems(arrays)]
        for kind, message in problems:
            rep.add(kind, f"{where}: {message}")
        if any(kind == "depth" for kind, _ in problems):
            continue  # the checks below read the depth map
        mask, depth = arrays["mask"], arrays["depth"]
        area = int(mask.sum())
        if area != c["mask_area_px"][row]:
            rep.add("silhouette", f"{where}: silhouette area {area} px, label says {int(c['mask_area_px'][row])}")
        if area == 0:
            rep.add("silhouette", f"{where}: empty silhouette (no hand in the image)")
            continue
        ys, xs = np.nonzero(mask)
        bbox = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        if list(c["bbox_xyxy"][row]) != bbox:
            rep.add("silhouette", f"{where}: bbox {c['bbox_xyxy'][row].tolist()} vs silhouette {bbox}")
        v = int(c["view_id"][row])
        if "K" in c:  # the sample's own camera (schema 2)
            K, R, t = c["K"][row], c["R"][row], c["t"][row]
            jitter = tables.get("jitter")
            problem = None
            if jitter is not None:
                problem = check_item_camera(K, R, t, tables["K"][v], tables["R"][v], tables["t"][v], W, H, jitter)
            elif not all(np.allclose(a, tables[k][v], rtol=1e-6, atol=1e-6) for k, a in (("K", K), ("R", R), ("t", t))):
                problem = f"differs from view {v}'s in {S.TABLES} (the dataset has no [cameras.jitter])"
            if problem:
                rep.add("camera", f"{where}: camera {problem}")
        else:  # schema 1: the view's camera
            K, R, t = tables["K"][v], tables["R"][v], tables["t"][v]
        # the pose table's right hand, mirrored for a left sample (datagen.labels.handedness)
        kp3 = handed_points(tables["keypoints"][pose_row[int(c["pose_id"][row])]].astype(np.float64),
                            handedness_name(c["handedness"][row]))
        cam = kp3 @ R.T + t
        uv = project(cam, K)
        kp = c["keypoints_2d"][row].astype(np.float64)
        err = np.abs(uv - kp).max()
        if err > TOL_2D_PX:
            rep.add("keypoints", f"{where}: 2D keypoints are {err:.3f} px from the projected 3D joints")
        inside = (kp[:, 0] >= 0) & (kp[:, 0] < W) & (kp[:, 1] >= 0) & (kp[:, 1] < H) & (cam[:, 2] > 0)
        if not np.array_equal(inside, c["in_frame"][row]):
            rep.add("keypoints", f"{where}: in_frame flags disagree with the image bounds for keypoints "
                                 f"{np.nonzero(inside != c['in_frame'][row])[0].tolist()}")
        vis = c["visible"][row]
        check_occluded(where, c["occluded_by_object"][row], vis, inside, kp, cam, arrays, contract, rep)
        if (vis & ~inside).any():
            rep.add("visibility", f"{where}: keypoints {np.nonzero(vis & ~inside)[0].tolist()} visible but outside "
                                  "the image")
        px = np.clip(np.floor(kp).astype(int), [0, 0], [W - 1, H - 1])
        dist_to_mask = None
        gap = c["depth_gap_m"][row]

        def gap_at(k, xy):  # keypoint k's depth gap at pixel xy (NaN on background)
            d = depth[xy[1], xy[0]]
            return cam[k, 2] - d if d > 0 else np.nan

        def agrees(k, g):
            return np.isnan(g) == np.isnan(gap[k]) and (np.isnan(g) or abs(g - gap[k]) <= TOL_GAP_M)

        for k in np.nonzero(inside)[0]:
            x, y = px[k]
            # The labeller took the pixel of the float64 projection; the stored float32 one can
            # round across a pixel border (x = 135.999994 -> 136.0): either pixel is its pixel.
            g = gap_at(k, (x, y))
            if not agrees(k, g) and not any(agrees(k, gap_at(k, xy)) for xy in _border_pixels(kp[k], W, H)):
                rep.add("depth vs labels", f"{where}: keypoint {k}: depth map gives gap {g * 1e3:.2f} mm, "
                                           f"label says {gap[k] * 1e3:.2f} mm")
            if not vis[k]:
                continue
            surface = k in contract["surface_keypoints"]
            tol = contract["surface_tolerance_m"] if surface else contract["joint_flesh_m"][k]
            # on the silhouette, or (surface keypoints) within their 3D tolerance of it
            reach = SLACK_PX + (tol * K[0, 0] / cam[k, 2] if surface else 0.0)
            if dist_to_mask is None:
                from scipy.ndimage import distance_transform_edt

                dist_to_mask = distance_transform_edt(~mask)
            if dist_to_mask[y, x] > reach:
                rep.add("visibility", f"{where}: visible keypoint {k} at ({kp[k, 0]:.1f}, {kp[k, 1]:.1f}) is "
                                      f"{dist_to_mask[y, x]:.1f} px off the silhouette (allowed {reach:.1f})")
                continue
            win = depth[max(0, y - 1):y + 2, max(0, x - 1):x + 2]
            g = cam[k, 2] - win[mask[max(0, y - 1):y + 2, max(0, x - 1):x + 2]]  # the hand's own surface
            if g.size == 0:
                continue
            # (a surface keypoint whose own pixel centre misses the hand - a fingertip on the
            # silhouette's edge - may have only another, nearer finger in its window: the label's
            # own depth check is undefined there too)
            if surface and mask[y, x] and g.min() > tol + SLACK_M:
                rep.add("depth vs labels", f"{where}: visible surface keypoint {k}: the surface in front of it is "
                                           f"{g.min() * 1e3:.1f} mm nearer (tolerance {tol * 1e3:.0f} mm)")
            elif not surface and not ((g >= -SLACK_M) & (g <= tol + SLACK_M)).any():
                rep.add("depth vs labels", f"{where}: visible joint {k}: skin in front at {g.min() * 1e3:.1f}.."
                                           f"{g.max() * 1e3:.1f} mm, its flesh is at most {tol * 1e3:.0f} mm")


def check_mesh(r: S.ShardReader, rows, mesh_tables, rep: Report) -> None:
    """The sample's dense mesh (datagen.dataset.reader.Tables.item_dense: with per-item wrists its
    own forearm) rasterised with its camera is its silhouette, wherever no object shows."""
    from datagen.geometry.raster import front_facing, rasterize
    from datagen.labels.handedness import handed_mesh

    c = r.columns
    for row in rows[:MESH_SAMPLES]:
        pose, view = int(c["pose_id"][row]), int(c["view_id"][row])
        where = f"{r.path.name} row {row} (item {int(c['item_id'][row])}, pose {pose}, view {view})"
        if "K" in c:
            K, R, t = c["K"][row], c["R"][row], c["t"][row]
        else:
            K, R, t = (mesh_tables.views[k][view] for k in ("K", "R", "t"))
        wrist = c["wrist_deg"][row] if "wrist_deg" in c else (np.nan, np.nan)
        try:
            dense = mesh_tables.item_dense(pose, wrist).astype(np.float64)
            mask = r.read("mask", row)
            part = r.read("part_mask", row) if "part_mask" in r.codecs else None
        except Exception as exc:  # noqa: BLE001 - reported, the other checks go on
            rep.add("mesh vs silhouette", f"{where}: cannot read the mesh or the silhouette: {exc}")
            continue
        v, f = handed_mesh(dense, mesh_tables.dense_faces, handedness_name(c["handedness"][row]))
        cam = v @ np.asarray(R, np.float64).T + np.asarray(t, np.float64)
        if (cam[:, 2] <= 1e-6).any():
            rep.add("mesh vs silhouette", f"{where}: the mesh reaches behind the camera")
            continue
        drawn = rasterize(cam, f[front_facing(cam, f)], np.asarray(K, np.float64), r.width, r.height).face >= 0
        differ = drawn != mask
        if part is not None:
            differ &= part != PART_MASK_OBJECT
        if differ.sum() > MESH_TOL * max(int(mask.sum()), 1) + 1:
            rep.add("mesh vs silhouette", f"{where}: the sample's mesh covers {int(drawn.sum())} px, the silhouette "
                                          f"{int(mask.sum())} px; {int(differ.sum())} px differ")


OBJECT_REACH_PX = 2  # an object crossing a keypoint's ray shows within this many pixels of it


BORDER_PX = 1e-3  # a float32 pixel coordinate this close to a pixel border may belong to either side


def _border_pixels(uv: np.ndarray, W: int, H: int) -> set[tuple[int, int]]:
    """The pixels (x, y) a continuous pixel coordinate within BORDER_PX of a border may lie in."""
    xs = {int(np.floor(uv[0] + e)) for e in (-BORDER_PX, 0.0, BORDER_PX)}
    ys = {int(np.floor(uv[1] + e)) for e in (-BORDER_PX, 0.0, BORDER_PX)}
    return {(min(max(x, 0), W - 1), min(max(y, 0), H - 1)) for x in xs for y in ys}


def check_occluded(where: str, occ: np.ndarray, vis: np.ndarray, inside: np.ndarray, kp: np.ndarray,
                   cam: np.ndarray, arrays: dict, contract: dict, rep: Report) -> None:
    """The occluded_by_object flags agree with the part mask and the depth map: a flagged
    keypoint is in frame, not visible, and an object shows within OBJECT_REACH_PX of it (its
    ray crosses the object's outline there) or the hand hides it at its pixel (the object lies
    between a nearer part of the hand and the keypoint); a keypoint whose own pixel shows an
    object more than its depth limit + slack in front of it is flagged."""
    if (occ & (vis | ~inside)).any():
        rep.add("occluders", f"{where}: keypoints {np.nonzero(occ & (vis | ~inside))[0].tolist()} are "
                             "occluded_by_object but visible or out of frame")
    part = arrays.get("part_mask")
    if part is None:
        if occ.any():
            rep.add("occluders", f"{where}: keypoints flagged occluded_by_object but the dataset has no part_mask")
        return
    H, W = part.shape
    obj = part == PART_MASK_OBJECT
    depth = arrays["depth"]
    px = np.clip(np.floor(kp).astype(int), [0, 0], [W - 1, H - 1])
    r = OBJECT_REACH_PX
    for k in np.nonzero(inside)[0]:
        x, y = px[k]
        surface = k in contract["surface_keypoints"]
        limit = (contract["surface_tolerance_m"] if surface else contract["joint_flesh_m"][k]) + DEPTH_MARGIN_M
        # an object on the ray shows near the keypoint, unless the hand hides it there too (the
        # object lies between a nearer part of the hand and the keypoint)
        hidden_by_hand = depth[y, x] > 0 and part[y, x] != PART_MASK_OBJECT and cam[k, 2] - depth[y, x] > limit
        if occ[k] and not hidden_by_hand and not obj[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1].any():
            rep.add("occluders", f"{where}: keypoint {k} is occluded_by_object but no object pixel lies within "
                                 f"{r} px of it and the hand does not hide it")
        if obj[y, x] and cam[k, 2] - depth[y, x] > limit + SLACK_M and not occ[k]:
            rep.add("occluders", f"{where}: keypoint {k}'s pixel shows an object "
                                 f"{(cam[k, 2] - depth[y, x]) * 1e3:.1f} mm in front of it, but it is not flagged "
                                 "occluded_by_object")


def verify(root, labels: int | None = None, quick: bool = False, seed: int = 0, progress: bool = False) -> Report:
    """labels: samples checked per shard (None = all)."""
    root = Path(root)
    rep = Report()
    try:
        manifest = json.loads((root / S.MANIFEST).read_text())
    except FileNotFoundError:
        rep.add("missing file", f"{root / S.MANIFEST}: no manifest (not a packed dataset, or the pack did not finish)")
        return rep
    except json.JSONDecodeError as exc:
        rep.add("manifest", f"{S.MANIFEST} is not valid JSON: {exc}")
        return rep
    if manifest.get("schema_version") not in S.READABLE_SCHEMAS:
        rep.add("schema", f"{S.MANIFEST}: schema version {manifest.get('schema_version')}, this tool knows "
                          f"{', '.join(map(str, S.READABLE_SCHEMAS))}")
        return rep
    shards = manifest.get("shards", [])
    if sum(s.get("samples", 0) for s in shards) != manifest.get("counts", {}).get("samples"):
        rep.add("count mismatch", f"{S.MANIFEST}: shard sample counts do not add up to counts.samples")
    rep.notes.append(f"{root}: {manifest['counts'].get('samples')} samples in {len(shards)} shard(s), topology "
                     f"{manifest.get('topology')}, {manifest['counts'].get('skipped', 0)} item(s) skipped at pack time")
    good = set(check_files(root, manifest, rep))
    tables = check_tables(root, manifest, rep) if (root / S.TABLES).exists() else None
    if tables is not None:  # per-sample cameras are checked against the views under the run's jitter
        tables["jitter"] = run_jitter(manifest.get("config"))
    rng = np.random.default_rng(seed)
    checked = 0
    it = list(enumerate(shards))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="verify", unit="shard")
    prev_last = -1
    mesh_tables = None  # the reader's tables (the sample's own mesh), opened for the first mesh check
    for k, e in it:
        if e.get("file") not in good:
            continue
        try:
            r = S.ShardReader(root / e["file"])
        except Exception as exc:  # noqa: BLE001
            rep.add("unreadable file", f"{e['file']}: {exc}")
            continue
        try:
            if not check_shard_schema(r, k, e, tables, rep):
                continue
            ids = r.columns["item_id"]
            if r.count and (ids[0] <= prev_last or (np.diff(ids) <= 0).any()):
                rep.add("ids", f"{e['file']}: item ids not strictly increasing across shards")
            prev_last = int(ids[-1]) if r.count else prev_last
            check_wrist(r, manifest, tables, rep)
            if quick or tables is None:
                continue
            rows = np.arange(r.count) if labels is None or labels >= r.count else \
                np.sort(rng.choice(r.count, labels, replace=False))
            check_labels(r, rows, tables, rep, (manifest.get("render_run") or {}).get("visibility"))
            if mesh_tables is None:
                from datagen.dataset.reader import Tables

                mesh_tables = Tables(root)
            check_mesh(r, rows, mesh_tables, rep)
            checked += len(rows)
        except Exception as exc:  # noqa: BLE001 - report, do not crash, on a damaged shard
            rep.add("unreadable file", f"{e['file']}: {type(exc).__name__}: {exc}")
        finally:
            r.close()
    if not quick:
        rep.notes.append(f"label checks on {checked} sample(s)")
    return rep
