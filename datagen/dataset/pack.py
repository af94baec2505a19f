"""Pack a render directory into HDF5 shards + tables + manifest (docs/DATASET.md).

    python -m datagen.pack RENDER_DIR OUT_DIR [--shard-size-mb 1024] [--topology open778|mano --mano PATH]
                                              [--skip-bad] [--image-codec ...] [--depth-codec ...]
                                              [--codec PASS=CODEC ...]

Steps:
1. Load the run-wide inputs (run.json, hand.npz, poses.npz, views.npz) and scan items/: every
   item must have the file of each of the run's label passes (datagen.labels.passes: image,
   mask, depth, labels and any the run's config added) and labels that agree with the pose and
   view tables.  Every
   problem is listed; packing stops before writing anything unless --skip-bad is given, in
   which case the bad items are left out and recorded in the manifest.
2. Pack the good items in item-id order into shards of about --shard-size-mb each.  A shard is
   written as `shard-NNNNN.h5.partial` and renamed when complete; a re-run keeps the complete
   shards that match the same inputs and options and continues after them.
3. Write tables.h5 (per-pose meshes incl. the 778-vertex mapped mesh, per-view cameras, the
   mapping, the global sample index) and manifest.json (with every file's SHA-256).

The same inputs and options give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from datagen.cameras.jitter import check_item_camera
from datagen.dataset import shards as S
from datagen.geometry.projection import project
from datagen.hand.asset import HandAsset
from datagen.hand.base import KEYPOINT_NAMES
from datagen.labels.handedness import HANDEDNESS, handed_points, handedness_code
from datagen.labels.passes import LabelPass, PassError, passes_for, run_passes
from datagen.poses.wrist import arm_offsets, wrist_range_problem
from datagen.registry import UnknownName

# An item's files: v<view><suffix>, one suffix per label pass of the run.
ITEM_NAME = re.compile(r"^v(\d+)(\..+)$")
# Item JSON keys that become columns or are checked against the tables; any other key is kept
# verbatim: in the manifest when every item has the same value, else per sample (extra_json).
PARSED_KEYS = {"pose_id", "view_id", "item_id", "seed", "keypoints_2d", "keypoints_3d_cam", "visible", "in_frame",
               "depth_gap_m", "crossings", "skin_distance_m", "bbox_xyxy", "mask_area_px", "image_size", "K", "R", "t",
               "hdri", "skin", "handedness", "occluded_by_object", "shape", "wrist"}
TOL_CAM = 1e-6  # K, R, t in an item vs. views.npz (relative)
TOL_3D_M = 2e-5  # keypoints_3d_cam vs. R @ pose keypoints + t
TOL_2D_PX = 2e-2  # keypoints_2d vs. projection


def run_jitter(run_config: dict | None):
    """`[cameras.jitter]` of a resolved config dict (run.json's) as CameraJitterConfig, or None
    when it is off or predates the key (every item then has its view's camera)."""
    from datagen.cameras.jitter import jitter_active
    from datagen.config import CameraJitterConfig

    raw = ((run_config or {}).get("cameras") or {}).get("jitter") or {}
    j = CameraJitterConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    return j if jitter_active(j) else None


@dataclass(frozen=True)
class RunWrist:
    """The wrist of a run's config (run.json): drawn per pose (the pose table) or per item."""

    per_item: bool
    flexion_deg: tuple[float, float]
    deviation_deg: tuple[float, float]


def run_wrist(run_config: dict | None) -> RunWrist:
    """`[hand]` wrist_draw and the wrist ranges of a resolved config dict (run.json's; a config
    from before the keys draws per pose)."""
    from datagen.config import HandConfig

    h = (run_config or {}).get("hand") or {}
    d = HandConfig()
    return RunWrist(bool(h.get("forearm", False)) and h.get("wrist_draw", "pose") == "item",
                    tuple(h.get("wrist_flexion_deg", d.wrist_flexion_deg)),
                    tuple(h.get("wrist_deviation_deg", d.wrist_deviation_deg)))


class PackError(RuntimeError):
    """Packing cannot go on; the message says why and what to do."""


@dataclass
class Problem:
    where: str  # path relative to RENDER_DIR
    reason: str
    item_id: int | None = None
    pose_id: int | None = None
    view_id: int | None = None

    def as_dict(self) -> dict:
        return {"item_id": self.item_id, "pose_id": self.pose_id, "view_id": self.view_id, "where": self.where,
                "reason": self.reason}


@dataclass
class Inputs:
    root: Path
    run: dict
    asset: HandAsset
    poses: dict
    views: dict
    width: int
    height: int
    hdris: list[dict]
    digests: dict = field(default_factory=dict)
    passes: list[LabelPass] = field(default_factory=passes_for)  # the run's label passes, writing order

    @property
    def n_views(self) -> int:
        return len(self.views["R"])

    @property
    def array_passes(self) -> list[LabelPass]:
        """The passes stored as encoded arrays in the shards (all but the labels JSON)."""
        return [p for p in self.passes if p.kind == "array"]


def _load_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise PackError(f"{path} is missing: not a complete render directory") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise PackError(f"{path} cannot be read: {exc}") from None


def hdri_records(run: dict) -> list[dict]:
    """The HDRI list of run.json: [{name, file, licence, ...}] (key 'hdris' or 'hdri')."""
    recs = run.get("hdris", run.get("hdri", []))
    if isinstance(recs, dict):
        recs = recs.get("list", recs.get("files", []))
    return [r if isinstance(r, dict) else {"name": str(r)} for r in recs]


def has_occluders(run: dict) -> bool:
    """The run renders occluders ([occluders] share > 0 in its run.json config)."""
    return float((((run.get("config") or {}).get("occluders")) or {}).get("share", 0.0) or 0.0) > 0


def load_inputs(render_dir: Path) -> Inputs:
    root = Path(render_dir)
    if not root.is_dir():
        raise PackError(f"{root} is not a directory")
    try:
        run = json.loads((root / "run.json").read_text())
    except FileNotFoundError:
        raise PackError(f"{root / 'run.json'} is missing: not a render directory (or the render never started)") \
            from None
    except json.JSONDecodeError as exc:
        raise PackError(f"{root / 'run.json'} is not valid JSON: {exc}") from None
    try:
        asset = HandAsset.load(root / "hand.npz")
    except FileNotFoundError:
        raise PackError(f"{root / 'hand.npz'} is missing") from None
    poses = _load_npz(root / "poses.npz")
    views = _load_npz(root / "views.npz")
    cams = (run.get("config") or {}).get("cameras", {})
    width, height = int(cams.get("width", 0)), int(cams.get("height", 0))
    if not (width and height):
        raise PackError("run.json has no config.cameras.width/height")
    if views["K"].ndim == 2:
        views["K"] = np.broadcast_to(views["K"], (len(views["R"]), 3, 3)).copy()
    digests = {name: S.sha256_file(root / name) for name in ("run.json", "hand.npz", "poses.npz", "views.npz")}
    try:
        passes = run_passes(run)
    except UnknownName as exc:
        raise PackError(f"{root / 'run.json'} lists a label pass this process does not know: {exc}") from None
    return Inputs(root, run, asset, poses, views, width, height, hdri_records(run), digests, passes)


# ---------------------------------------------------------------------------------------------
# Scanning and label checks
# ---------------------------------------------------------------------------------------------


class ItemError(PassError):
    """An item's files or labels are unusable (a label pass's PassError counts the same)."""


def _arr(labels: dict, key: str, shape, dtype=np.float64) -> np.ndarray:
    if key not in labels:
        raise ItemError(f"labels lack '{key}'")
    v = labels[key]
    if dtype is bool:
        a = np.asarray(v)
        if a.dtype != bool:
            raise ItemError(f"'{key}' must be a list of true/false")
    else:
        a = np.asarray([np.nan if x is None else x for x in np.ravel(np.asarray(v, dtype=object))], dtype=dtype)
        a = a.reshape(np.shape(v)) if np.shape(v) else a.reshape(())
    if a.shape != tuple(shape):
        raise ItemError(f"'{key}' has shape {a.shape}, expected {tuple(shape)}")
    return a


class Scan:
    """The items of a render directory: complete ones with parsed labels, and the problems."""

    def __init__(self, inputs: Inputs, progress: bool = True):
        self.inputs = inputs
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.pose_keypoints: dict[int, np.ndarray] = {}
        self.hdri_index = {str(h.get("name")): i for i, h in enumerate(inputs.hdris)}
        # background images ([backgrounds]): run.json's list (with licences) and the ones items show
        self.background_index = {str(b.get("name")): i for i, b in enumerate(inputs.run.get("backgrounds") or [])}
        self.backgrounds_used: set[int] = set()
        # [cameras.jitter] of the run: items then carry their own cameras (datagen.cameras.jitter)
        self.jitter = run_jitter(inputs.run.get("config"))
        # [hand] wrist_draw = "item": every item carries its own wrist angles (the JSON's `wrist`)
        self.wrist = run_wrist(inputs.run.get("config"))
        self.skin_names: list[str] | None = None
        self.constant: dict = {}  # unparsed label keys with the same value in every item
        self.varying_keys: list[str] = []  # unparsed label keys kept per sample (extra_json)
        self.items = self._list(progress)

    def _problem(self, where, reason, pose=None, view=None):
        item = None if pose is None or view is None else pose * self.inputs.n_views + view
        self.problems.append(Problem(str(where), reason, item, pose, view))

    def _list(self, progress: bool) -> list[tuple[int, int]]:
        inp = self.inputs
        items_dir = inp.root / "items"
        if not items_dir.is_dir():
            raise PackError(f"{items_dir} is missing: nothing has been rendered")
        found: list[tuple[int, int]] = []
        pose_ids = set(int(p) for p in inp.poses["ids"])
        suffixes = [p.suffix for p in inp.passes]
        record = next(p.suffix for p in inp.passes if p.kind == "record")
        for d in sorted(items_dir.iterdir()):
            if d.name.startswith("."):
                continue
            if not (d.is_dir() and d.name.isdigit()):
                self.warnings.append(f"items/{d.name}: not a pose folder, ignored")
                continue
            pose = int(d.name)
            files: dict[int, set[str]] = {}
            for e in os.scandir(d):
                m = ITEM_NAME.match(e.name)
                if m and m.group(2) in suffixes:
                    files.setdefault(int(m.group(1)), set()).add(m.group(2))
                elif S.PARTIAL in e.name or ".tmp" in e.name:
                    self.warnings.append(f"items/{d.name}/{e.name}: temporary file left by a killed writer")
                else:
                    self.warnings.append(f"items/{d.name}/{e.name}: unknown file, ignored")
            for view in sorted(files):
                rel = f"items/{d.name}/v{view:03d}"
                if pose not in pose_ids:
                    self._problem(rel, f"pose {pose} is not in poses.npz", pose, view)
                elif view >= inp.n_views:
                    self._problem(rel, f"view {view} is not in views.npz ({inp.n_views} views)", pose, view)
                elif missing := [k for k in suffixes if k not in files[view]]:
                    what = "labels (JSON) missing: render interrupted" if record in missing else "missing"
                    self._problem(rel, f"incomplete: {what}: " + ", ".join(f"v{view:03d}{k}" for k in missing),
                                  pose, view)
                else:
                    found.append((pose, view))
        self.labels = self._parse(found, progress)
        return [it for it, ok in zip(found, self.labels.pop("_ok")) if ok]

    def _pose_keypoints(self, pose: int) -> np.ndarray:
        if pose not in self.pose_keypoints:
            path = self.inputs.root / "meshes" / f"pose_{pose:05d}.npz"
            try:
                with np.load(path, allow_pickle=False) as z:
                    kp = np.asarray(z["keypoints"], np.float64)
                    nd, nb = z["dense"].shape, z["base"].shape
            except Exception as exc:  # noqa: BLE001
                self.pose_keypoints[pose] = ItemError(f"pose mesh meshes/{path.name} unreadable: {exc}")
            else:
                a = self.inputs.asset
                if kp.shape != (21, 3) or nd != (a.n_dense, 3) or nb != (a.n_base, 3):
                    self.pose_keypoints[pose] = ItemError(f"pose mesh meshes/{path.name} has wrong shapes "
                                                          f"{kp.shape}, {nd}, {nb}")
                else:
                    self.pose_keypoints[pose] = kp
        kp = self.pose_keypoints[pose]
        if isinstance(kp, Exception):
            raise kp
        return kp

    def _parse(self, found, progress):
        n = len(found)
        cols = {k: np.zeros((n, *shape), dtype) for k, (dtype, shape) in S.SAMPLE_COLUMNS.items()}
        cols["_ok"] = np.zeros(n, bool)
        skins: list = [None] * n
        extras: list = [None] * n  # canonical JSON text of each item's unparsed keys
        first: dict[str, str] = {}  # unparsed key -> JSON of its first value
        seen: dict[str, int] = {}  # unparsed key -> items holding it
        varying: set[str] = set()
        it = range(n)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="scan labels", unit="item", mininterval=1.0, smoothing=0.05)
        for i in it:
            pose, view = found[i]
            rel = f"items/{pose:05d}/v{view:03d}.json"
            try:
                labels = json.loads((self.inputs.root / rel).read_bytes())
                row, skin, extra = self._check_labels(labels, pose, view)
            except (ItemError, json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
                self._problem(rel, f"bad labels: {exc}", pose, view)
                continue
            for k, v in row.items():
                cols[k][i] = v
            cols["_ok"][i] = True
            skins[i] = skin
            for k, v in extra.items():
                text = json.dumps(v, sort_keys=True)
                if first.setdefault(k, text) != text:
                    varying.add(k)
                seen[k] = seen.get(k, 0) + 1
            extras[i] = json.dumps(extra, sort_keys=True)
        keep = cols["_ok"]
        n_ok = int(keep.sum())
        varying |= {k for k, c in seen.items() if c != n_ok}
        # Unparsed keys with one value in every item go to the manifest, the rest per sample.
        self.constant = {k: json.loads(first[k]) for k in sorted(first) if k not in varying}
        self.skin_names = self.skin_names or []
        self.skin = np.array([[sk.get(k, np.nan) for k in self.skin_names] for sk, ok in zip(skins, keep) if ok],
                             np.float32).reshape(-1, len(self.skin_names))
        self.extra_json = None
        if varying:
            self.extra_json = []
            for e, ok in zip(extras, keep):
                if ok:
                    e = json.loads(e)
                    self.extra_json.append(json.dumps({k: e[k] for k in sorted(varying) if k in e}, sort_keys=True))
        self.varying_keys = sorted(varying)
        return {k: (v if k == "_ok" else v[keep]) for k, v in cols.items()}

    def _check_shape(self, shape, pose: int) -> None:
        """The item's `shape` record (datagen.hand.shape) against poses.npz's per-pose shape."""
        poses = self.inputs.poses
        if "shape_values" not in poses:
            if shape is not None:
                raise ItemError("the labels have a 'shape' record but poses.npz has no shapes")
            return
        if not isinstance(shape, dict) or not isinstance(shape.get("phenotype"), dict):
            raise ItemError("'shape' missing or without a phenotype table (poses.npz has shapes)")
        row = self._pose_row(pose)
        names = [str(n) for n in poses["shape_names"]]
        got = shape["phenotype"]
        if list(got) != names:
            raise ItemError(f"shape phenotypes {list(got)} differ from poses.npz's {names}")
        if not np.allclose([float(got[n]) for n in names], poses["shape_values"][row], atol=1e-5):
            raise ItemError(f"shape phenotype values differ from poses.npz pose {pose}")
        from datagen.hand.shape import shape_band

        length = dict(zip((str(n) for n in poses["shape_measure_names"]), poses["shape_measures"][row]))["hand_length_m"]
        if shape.get("band") != shape_band(length):
            raise ItemError(f"shape band {shape.get('band')!r} but pose {pose}'s hand length "
                            f"{length * 1e3:.1f} mm is band {shape_band(length)!r}")

    def _check_wrist(self, wrist) -> tuple[np.ndarray, dict | None]:
        """The item's `wrist` block (datagen.scene.arm.ItemArm.record) as the wrist_deg column
        [flexion, deviation] (NaN, NaN without one) and what the manifest keeps of the rest."""
        if not self.wrist.per_item:
            if wrist is not None:
                raise ItemError("the labels have a 'wrist' block but run.json's config draws the wrist per pose "
                                "([hand] wrist_draw)")
            return np.full(2, np.nan, np.float32), None
        if not isinstance(wrist, dict):
            raise ItemError("'wrist' missing or not a table (run.json's config draws the wrist per item)")
        angles = []
        for key in ("flexion_deg", "deviation_deg"):
            v = wrist.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                raise ItemError(f"'wrist.{key}' missing or not a finite number ({v!r})")
            angles.append(float(v))
        problem = wrist_range_problem(*angles, self.wrist.flexion_deg, self.wrist.deviation_deg)
        if problem:
            raise ItemError(f"wrist: {problem} (run.json's config)")
        if wrist.get("draw") != "item":
            raise ItemError(f"'wrist.draw' is {wrist.get('draw')!r}, expected 'item'")
        draws = wrist.get("draws")
        if isinstance(draws, bool) or not isinstance(draws, int) or draws < 0:
            raise ItemError(f"'wrist.draws' {draws!r} is not a count (an integer >= 0)")
        return np.asarray(angles, np.float32), {k: v for k, v in wrist.items() if k not in ("flexion_deg", "deviation_deg")}

    def _pose_row(self, pose: int) -> int:
        if getattr(self, "_rows", None) is None:
            self._rows = {int(p): i for i, p in enumerate(self.inputs.poses["ids"])}
        return self._rows[int(pose)]

    def _check_labels(self, lab: dict, pose: int, view: int):
        inp = self.inputs
        V = inp.n_views
        for key in ("pose_id", "view_id", "item_id"):
            if not isinstance(lab.get(key), int):
                raise ItemError(f"'{key}' missing or not an integer")
        if (lab["pose_id"], lab["view_id"], lab["item_id"]) != (pose, view, pose * V + view):
            raise ItemError(f"ids pose {lab['pose_id']} view {lab['view_id']} item {lab['item_id']} do not match "
                            f"the file's place (pose {pose}, view {view}, item {pose * V + view})")
        K, R, t = _arr(lab, "K", (3, 3)), _arr(lab, "R", (3, 3)), _arr(lab, "t", (3,))
        if self.jitter is not None:  # the item's own camera: one its view's can become under the run's jitter
            problem = check_item_camera(K, R, t, inp.views["K"][view], inp.views["R"][view], inp.views["t"][view],
                                        inp.width, inp.height, self.jitter)
            if problem:
                raise ItemError(f"camera: {problem} (view {view}, [cameras.jitter] of run.json)")
        else:
            for name, a, b in (("K", K, inp.views["K"][view]), ("R", R, inp.views["R"][view]),
                               ("t", t, inp.views["t"][view])):
                if not np.allclose(a, b, rtol=TOL_CAM, atol=TOL_CAM):
                    raise ItemError(f"camera {name} differs from views.npz view {view}")
        kp2 = _arr(lab, "keypoints_2d", (21, 2))
        kp3 = _arr(lab, "keypoints_3d_cam", (21, 3))
        vis = _arr(lab, "visible", (21,), bool)
        inf = _arr(lab, "in_frame", (21,), bool)
        gap = _arr(lab, "depth_gap_m", (21,))
        if not (np.isfinite(kp2).all() and np.isfinite(kp3).all()):
            raise ItemError("keypoints contain NaN/inf")
        if (vis & ~inf).any():
            raise ItemError("a keypoint is visible but not in frame")
        occ = _arr(lab, "occluded_by_object", (21,), bool) if "occluded_by_object" in lab else np.zeros(21, bool)
        if (occ & vis).any() or (occ & ~inf).any():
            raise ItemError(f"keypoints {np.nonzero(occ & (vis | ~inf))[0].tolist()} are occluded_by_object but "
                            "visible or out of frame")
        handedness = lab.get("handedness", "right")  # items rendered before left hands: right
        if handedness not in HANDEDNESS:
            raise ItemError(f"handedness {handedness!r}: must be 'right' or 'left'")
        # a left item's 3D labels are those of the mirrored hand (datagen.labels.handedness)
        expect3 = handed_points(self._pose_keypoints(pose), handedness) @ R.T + t
        err3 = np.abs(kp3 - expect3).max()
        if err3 > TOL_3D_M:
            raise ItemError(f"keypoints_3d_cam differ from meshes/pose_{pose:05d}.npz keypoints ({handedness} hand) by "
                            f"{err3 * 1e3:.3f} mm")
        proj = project(expect3, K)
        err2 = np.abs(kp2 - proj).max()
        if err2 > TOL_2D_PX:
            raise ItemError(f"keypoints_2d differ from the projection of the 3D keypoints by {err2:.3f} px")
        hdri = lab.get("hdri")
        if not isinstance(hdri, dict) or "name" not in hdri:
            raise ItemError("'hdri' missing or without a name")
        if str(hdri["name"]) not in self.hdri_index:
            raise ItemError(f"HDRI {hdri['name']!r} is not in run.json's HDRI list (licence unknown)")
        hdri_index = self.hdri_index[str(hdri["name"])]
        if "index" in hdri and hdri["index"] != hdri_index:
            raise ItemError(f"HDRI index {hdri['index']} but {hdri['name']!r} is number {hdri_index} in run.json")
        skin = lab.get("skin")
        if not isinstance(skin, dict):
            raise ItemError("'skin' missing or not a table")
        skin, skin_other = _numbers(skin)
        if self.skin_names is None:
            self.skin_names = list(skin)
        elif list(skin) != self.skin_names:
            raise ItemError(f"skin parameters {list(skin)} differ from other items' {self.skin_names}")
        seed = lab.get("seed")
        if isinstance(seed, list) and len(seed) == 3 and seed[1:] == [pose, view]:
            seed = seed[0]  # SeedSequence([config seed, pose_id, view_id]): the config seed is the column
        if not isinstance(seed, int) or seed < 0:
            raise ItemError(f"'seed' {seed!r} is neither an integer nor [seed, pose_id, view_id]")
        if "image_size" in lab and list(lab["image_size"]) != [inp.width, inp.height]:
            raise ItemError(f"image_size {lab['image_size']} differs from the config's {[inp.width, inp.height]}")
        crossings = _arr(lab, "crossings", (21,)) if "crossings" in lab else np.full(21, -1)
        skin_dist = _arr(lab, "skin_distance_m", (21,)) if "skin_distance_m" in lab else np.full(21, np.nan)
        # bbox/area are compared with the silhouette when it is read: -1s = empty, -2 = not given
        if "bbox_xyxy" not in lab:
            bbox = np.full(4, -2)
        else:
            bbox = np.full(4, -1) if lab["bbox_xyxy"] is None else _arr(lab, "bbox_xyxy", (4,))
        area = lab.get("mask_area_px", -2)
        background = lab.get("background")
        if background is not None:
            if not isinstance(background, dict) or str(background.get("name")) not in self.background_index:
                raise ItemError(f"background {background!r} is not in run.json's background list (licence unknown)")
            self.backgrounds_used.add(self.background_index[str(background["name"])])
        self._check_shape(lab.get("shape"), pose)
        wrist_deg, wrist_rest = self._check_wrist(lab.get("wrist"))
        extra = {k: v for k, v in lab.items() if k not in PARSED_KEYS}
        if wrist_rest:  # the draw's record (draws tried) stays with the sample
            extra["wrist"] = wrist_rest
        rec = self.inputs.hdris[hdri_index]
        rest = {k: v for k, v in hdri.items() if k not in ("name", "index", "rotation_deg", "strength")
                and not (k in rec and rec[k] == v)}  # what run.json already says about this HDRI is not repeated
        if rest:
            extra["hdri"] = rest
        if skin_other:
            extra["skin"] = skin_other
        row = {"item_id": pose * V + view, "pose_id": pose, "view_id": view, "seed": seed % (1 << 63),
               "keypoints_2d": kp2, "visible": vis, "in_frame": inf, "depth_gap_m": gap, "crossings": crossings,
               "skin_distance_m": skin_dist, "bbox_xyxy": bbox, "mask_area_px": area, "hdri_index": hdri_index,
               "occluded_by_object": occ,
               "hdri_rotation_deg": float(hdri.get("rotation_deg", np.nan)),
               "hdri_strength": float(hdri.get("strength", np.nan)), "handedness": handedness_code(handedness),
               "K": K, "R": R, "t": t, "wrist_deg": wrist_deg}
        return row, skin, extra


def _numbers(d: dict) -> tuple[dict, dict]:
    """Split a parameter table into numbers ({name: float}, lists as name[i]) and everything else."""
    num, other = {}, {}
    for k in sorted(d):
        v = d[k]
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            num[k] = float(v)
        elif isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            num.update({f"{k}[{i}]": float(x) for i, x in enumerate(v)})
        else:
            other[k] = v
    return num, other


# ---------------------------------------------------------------------------------------------
# Reading one item's arrays (deep checks: decodable, right shapes, mask = depth > 0)
# ---------------------------------------------------------------------------------------------


def load_item_arrays(root: Path, pose: int, view: int, height: int, width: int,
                     passes: list[LabelPass] | None = None) -> dict:
    """The arrays of an item's array passes (default: image, mask, depth), each file read and
    checked by its pass, then every pass's check of the whole sample (mask = depth > 0, ...)."""
    passes = [p for p in (passes or passes_for()) if p.kind == "array"]
    out: dict = {}
    for p in passes:
        out.update(p.load_arrays(p.path(root, pose, view), height, width))
    for p in passes:
        problems = p.problems(out)
        if problems:
            raise ItemError(problems[0][1])
    return out


# ---------------------------------------------------------------------------------------------
# Packing
# ---------------------------------------------------------------------------------------------


def mask_stats(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """([x0, y0, x1, y1) of the silhouette or [-1] * 4 when empty, its area in pixels)."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return np.full(4, -1, np.int32), 0
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.int32), int(xs.size)


def mask_stats_agree(arrays: dict, bbox_label: np.ndarray, area_label: int) -> dict:
    """The item's bbox/area (-2 = not given) must be the silhouette's; the columns take the silhouette's."""
    bbox, area = mask_stats(arrays["mask"])
    if bbox_label[0] != -2 and not np.array_equal(bbox, bbox_label):
        raise ItemError(f"bbox_xyxy {bbox_label.tolist()} differs from the silhouette's {bbox.tolist()}")
    if area_label != -2 and area != area_label:
        raise ItemError(f"mask_area_px {area_label} differs from the silhouette's {area}")
    return dict(arrays, bbox_xyxy=bbox, mask_area_px=area)


def _report(problems: list[Problem], out_dir: Path | None, limit: int = 40) -> str:
    lines = [f"{len(problems)} render item(s) cannot be packed:"]
    lines += [f"  {p.where}: {p.reason}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            full = out_dir / "pack-problems.txt"
            full.write_text("\n".join(f"{p.where}: {p.reason}" for p in problems) + "\n")
            lines.append(f"  (full list: {full})")
    return "\n".join(lines)


def _packer_versions() -> dict:
    import cv2
    import h5py

    try:
        import importlib.metadata

        project = importlib.metadata.version("handsynth")
    except Exception:  # noqa: BLE001
        project = "unknown"
    return {"handsynth": project, "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version,
            "numpy": np.__version__, "opencv": cv2.__version__}


def _shard_index(out_dir: Path) -> list[Path]:
    return sorted(p for p in out_dir.glob("shard-*.h5") if re.fullmatch(r"shard-\d{5}\.h5", p.name))


def pack(render_dir, out_dir, shard_size_mb: float = 1024, topology: str = "open778", mano_path=None,
         skip_bad: bool = False, codecs: dict | None = None, mapping=None, progress: bool = True,
         workers: int = 2, cache_dir=None, log=print, mano_left_path=None, mapping_left=None) -> dict:
    """Pack RENDER_DIR into OUT_DIR; returns the manifest.  `mapping` overrides build_mapping().

    `mano_left_path` (topology "mano"): the user's MANO_LEFT.pkl; left samples then get the
    left model's vertices (tables.h5 `mano_left`, `poses/mano_left_vertices`); without it they
    get the right mapping applied to the mirrored mesh.  `mapping_left` overrides its build."""
    out_dir = Path(out_dir)
    given = dict(codecs or {})
    codecs = {**S.DEFAULT_CODECS, **given}
    for f, n in codecs.items():
        try:
            S.codec(f, n)
        except ValueError as exc:  # an unknown pass (UnknownName) or codec
            raise PackError(str(exc)) from None
    inputs = load_inputs(Path(render_dir))
    if has_occluders(inputs.run) and S.codec("depth", codecs["depth"]).needs_mask:
        # The depth map also covers the objects, beyond the (visible-hand) silhouette.
        if "depth" in given:
            raise PackError(f"depth codec {codecs['depth']!r} stores values on the silhouette only, but {inputs.root}"
                            f" has occluders (its depth covers the objects too): use {S.OCCLUDER_DEPTH_CODEC} or "
                            f"another codec that needs no mask")
        codecs["depth"] = S.OCCLUDER_DEPTH_CODEC
    # Passes the run added beyond image/mask/depth take their registered default codec.
    codecs.update({p.name: p.default_codec for p in inputs.array_passes if p.name not in codecs})
    stray = sorted(set(codecs) - {p.name for p in inputs.array_passes})
    if stray:
        raise PackError(f"codec given for {', '.join(stray)}, which {inputs.root} does not hold (its label passes: "
                        f"{', '.join(p.name for p in inputs.passes)})")
    scan = Scan(inputs, progress=progress)
    for w in scan.warnings[:20]:
        log(f"warning: {w}")
    if len(scan.warnings) > 20:
        log(f"warning: ... and {len(scan.warnings) - 20} more")
    if scan.problems and not skip_bad:
        raise PackError(_report(scan.problems, out_dir) +
                        "\nNothing was written. Re-render these items (the renderer resumes), or pass --skip-bad "
                        "to pack without them (they are then listed in the manifest).")
    if not scan.items:
        raise PackError(f"no complete render items in {inputs.root / 'items'}")
    if mapping is None:
        mapping = build_mapping_for(inputs, topology, mano_path, cache_dir)
    if mano_left_path is not None and mapping_left is None:
        if topology != "mano":
            raise PackError("--mano-left needs --topology mano (and --mano for the right hand)")
        mapping_left = build_mapping_for(inputs, "mano", mano_left_path, cache_dir, side="left")
    arm = arm_tables(inputs, cache_dir) if scan.wrist.per_item else None

    out_dir.mkdir(parents=True, exist_ok=True)
    for p in out_dir.glob("*" + S.PARTIAL):
        p.unlink()
    plan = [p * inputs.n_views + v for p, v in scan.items]
    options = {"schema_version": S.SCHEMA_VERSION, "codecs": codecs, "shard_size_mb": shard_size_mb,
               "topology": mapping.topology, "inputs": inputs.digests}
    if mapping_left is not None:
        options["mapping_left"] = mapping_left.key
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()

    shard_infos, pos = _resume(out_dir, plan, digest, log)
    target = int(shard_size_mb * 1024 * 1024)
    labels = scan.labels

    def load(i):
        pose, view = scan.items[i]
        try:
            arrays = load_item_arrays(inputs.root, pose, view, inputs.height, inputs.width, inputs.passes)
            return mask_stats_agree(arrays, labels["bbox_xyxy"][i], labels["mask_area_px"][i])
        except (PassError, OSError) as exc:  # a pass file unreadable or inconsistent
            return exc

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan), initial=pos, desc="pack", unit="sample", smoothing=0.05, mininterval=1.0)
    writer, first, shard_skipped = None, pos, []
    try:
        for i, arrays in _prefetched(load, range(pos, len(plan)), workers):
            pose, view = scan.items[i]
            if writer is None:
                writer = S.ShardWriter(out_dir / S.SHARD_PATTERN.format(len(shard_infos)), inputs.height,
                                       inputs.width, codecs, scan.skin_names, extra=scan.extra_json is not None)
                first, shard_skipped = i, []
            if isinstance(arrays, Exception):
                prob = Problem(f"items/{pose:05d}/v{view:03d}", f"corrupt: {arrays}", plan[i], pose, view)
                if not skip_bad:
                    raise PackError(_report([prob], None) + "\nThe shards finished so far are kept; fix or "
                                    "re-render the item and run the same command again, or pass --skip-bad.")
                shard_skipped.append(prob.as_dict())
            else:
                sample = {k: labels[k][i] for k in S.SAMPLE_COLUMNS}
                sample["skin"] = scan.skin[i]
                if scan.extra_json is not None:
                    sample["extra_json"] = scan.extra_json[i]
                writer.add({**sample, **arrays})
            if bar is not None:
                bar.update(1)
            full = writer.n > 0 and writer.size() >= target
            if full or i == len(plan) - 1:
                path = writer.close({"options_digest": digest, "first_item": plan[first], "last_item": plan[i],
                                     "plan_start": first, "plan_stop": i + 1, "full": bool(full),
                                     "skipped": shard_skipped})
                shard_infos.append({"file": path.name, "plan_start": first, "plan_stop": i + 1,
                                    "skipped": shard_skipped})
                writer = None
                if bar is not None:
                    bar.set_postfix_str(f"shard {len(shard_infos)}")
    finally:
        if writer is not None:
            writer.abort()
        if bar is not None:
            bar.close()

    manifest = finalize(out_dir, inputs, scan, mapping, shard_infos, options, digest, progress, mapping_left, arm)
    n_skipped = manifest["counts"]["skipped"]
    log(f"packed {manifest['counts']['samples']} samples into {len(shard_infos)} shard(s) in {out_dir}"
        + (f"; skipped {n_skipped} bad item(s) (listed in the manifest)" if n_skipped else ""))
    return manifest


def _prefetched(fn, indices, workers: int, depth: int = 8):
    """(i, fn(i)) in order, with up to `depth` calls running ahead in a thread pool (file reads
    and PNG decoding release the GIL)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        window: deque = deque()
        for i in indices:
            window.append((i, pool.submit(fn, i)))
            if len(window) > depth:
                j, fut = window.popleft()
                yield j, fut.result()
        while window:
            j, fut = window.popleft()
            yield j, fut.result()


def _resume(out_dir: Path, plan: list[int], digest: str, log) -> tuple[list[dict], int]:
    """Complete shards from an earlier run with the same inputs and options: keep and skip them."""
    infos, pos = [], 0
    existing = _shard_index(out_dir)
    for k, path in enumerate(existing):
        if path.name != S.SHARD_PATTERN.format(k):
            break
        try:
            a = S.read_shard_attrs(path)
        except OSError:
            log(f"{path.name}: unreadable, packing it again")
            break
        if a.get("options_digest") != digest:
            raise PackError(f"{out_dir} holds shards packed from other inputs or options ({path.name}); "
                            "use a new OUT_DIR or delete the old shards")
        start, stop = int(a["plan_start"]), int(a["plan_stop"])
        with h5py.File(path, "r") as f:
            held = sorted(f["item_id"][()].tolist() + [d["item_id"] for d in a["skipped"]])
        if start != pos or held != plan[start:stop]:  # the render directory changed here: redo from it
            break
        if not a["full"] and stop < len(plan):
            break
        infos.append({"file": path.name, "plan_start": start, "plan_stop": stop, "skipped": a["skipped"]})
        pos = stop
    for path in existing[len(infos):]:
        path.unlink()
    if infos:
        log(f"resuming: {len(infos)} complete shard(s) kept, {len(plan) - pos} sample(s) to go")
    return infos, pos


def prepared_for(inputs: Inputs, cache_dir=None):
    """The prepared hand + pose table the render used (run.json's prepared_key): from the cache,
    else rebuilt from run.json's config; refused if it is not the hand in RENDER_DIR/hand.npz."""
    from datagen.config import config_from_run
    from datagen.poses.prepared import default_cache_dir, load_prepared_files, prepare_poses, prepared_paths

    key = inputs.run.get("prepared_key")
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    hand_file, poses_file = prepared_paths(cache, key) if key else (None, None)
    if key and hand_file.exists() and poses_file.exists():
        prep = load_prepared_files(hand_file, poses_file, key)
    else:
        try:
            cfg = config_from_run(inputs.run["config"])
        except Exception as exc:  # noqa: BLE001
            raise PackError(f"run.json's config cannot be loaded ({exc}); cannot rebuild the pose table") from None
        prep = prepare_poses(cfg, cache_dir=cache, progress=True)
    a, b = prep.asset, inputs.asset
    if a.dense_faces.shape != b.dense_faces.shape or not np.array_equal(a.dense_faces, b.dense_faces) or \
            (a.dense_matrix != b.dense_matrix).nnz or not np.allclose(a.rest_base_vertices, b.rest_base_vertices):
        raise PackError(f"the prepared hand (key {prep.key}) is not the hand in {inputs.root / 'hand.npz'}; "
                        "pass --cache pointing at the cache the renderer used")
    return prep


def build_mapping_for(inputs: Inputs, topology: str, mano_path, cache_dir, side: str = "right"):
    try:
        from datagen.mapping.dense_to_778 import build_mapping
    except ImportError as exc:
        raise PackError(f"datagen.mapping is not available ({exc}); cannot make the 778-vertex mesh") from None
    if topology == "mano" and not mano_path:
        raise PackError("--topology mano needs --mano PATH (your MANO_RIGHT.pkl)")
    try:
        return build_mapping(prepared_for(inputs, cache_dir), topology=topology, mano_path=mano_path,
                             cache_dir=cache_dir, progress=True, side=side)
    except (ValueError, OSError) as exc:
        raise PackError(f"cannot build the {topology} mapping{' (left hand)' if side == 'left' else ''}: "
                        f"{exc}") from None


def arm_tables(inputs: Inputs, cache_dir=None) -> dict:
    """What a reader needs to turn the forearm per item (tables.h5 `arm/`, datagen.dataset.reader.
    ArmSkin), per row of poses.npz: the forearm-weighted base rows and weights, the forearm
    bone's rotation in each pose, the rows' rest offsets from the bone's head - one (n, 3) array,
    or (P, n, 3) with [hand.shape] (each pose its own hand: poses.npz `arm_offsets`, else the
    prepared table the render used)."""
    a = inputs.asset
    if not len(a.arm_rows) or "forearm.R" not in a.bone_names:
        raise PackError(f"{inputs.root / 'hand.npz'} holds no forearm weights (arm_rows), but run.json's config "
                        f"draws the wrist per item: it was rendered by an older handsynth; render it again")
    bone = a.bone_names.index("forearm.R")
    n_poses = len(inputs.poses["ids"])
    if "shape_values" in inputs.poses:
        offsets = inputs.poses.get("arm_offsets")
        if offsets is None:  # a render directory from before poses.npz carried them
            offsets = prepared_for(inputs, cache_dir).arm_offsets
        offsets = np.asarray(offsets, np.float32)
        if offsets.shape != (n_poses, len(a.arm_rows), 3):
            raise PackError(f"the per-pose forearm offsets have shape {offsets.shape}, expected "
                            f"{(n_poses, len(a.arm_rows), 3)} (poses.npz of {inputs.root})")
    else:
        offsets = arm_offsets(a.rest_base_vertices, a.rest_heads, a.bone_names, a.arm_rows)
    return {"rows": np.asarray(a.arm_rows, np.int32), "weights": np.asarray(a.arm_weights, np.float64),
            "pose_rotation": np.asarray(inputs.poses["rotations"][:, bone], np.float64), "offsets": offsets}


def _csr_parts(m):
    import scipy.sparse as sp

    m = sp.csr_matrix(m)
    m.sort_indices()
    return m.data.astype(np.float32), m.indices.astype(np.int32), m.indptr.astype(np.int64), np.asarray(m.shape)


def write_tables(out_dir: Path, inputs: Inputs, scan: Scan, mapping, shard_infos: list[dict], progress=True,
                 mapping_left=None, arm: dict | None = None) -> Path:
    """tables.h5: per-pose meshes and keypoints, per-view cameras, hand, mapping, HDRIs, sample index;
    with `mapping_left` (a MANO_LEFT.pkl's) also the left model's group and per-pose vertices;
    with `arm` (arm_tables: per-item wrists) the `arm/` group."""
    a = inputs.asset
    used_poses = np.unique([p for p, _ in scan.items])
    pose_row = {int(p): i for i, p in enumerate(inputs.poses["ids"])}
    final = out_dir / S.TABLES
    tmp = final.with_name(final.name + S.PARTIAL)
    f = S.create_file(tmp)
    try:
        g = f.create_group("poses")
        S.write_array(g, "pose_id", used_poses.astype(np.int32))
        rows = np.asarray([pose_row[int(p)] for p in used_poses])
        group = pose_groups(inputs.poses)
        S.write_array(g, "pose_group", group[rows].astype(np.int32),
                      attrs={"definition": "smallest pose id with identical finger states (datagen.poses.canonical_ids)"})
        for k in ("pose_a", "pose_b", "t", "rotations"):
            if k in inputs.poses:
                v = inputs.poses[k][rows]
                S.write_array(g, k, v.astype(np.float32) if v.dtype.kind == "f" else v)
        if "shape_values" in inputs.poses:  # [hand.shape]: each pose's hand (datagen.hand.shape)
            from datagen.hand.shape import BAND_NAMES, shape_band

            mnames = [str(n) for n in inputs.poses["shape_measure_names"]]
            measures = inputs.poses["shape_measures"][rows]
            S.write_array(g, "shape_values", inputs.poses["shape_values"][rows].astype(np.float32),
                          attrs={"names": [str(n) for n in inputs.poses["shape_names"]],
                                 "definition": "the hand model's phenotypes drawn for the pose ([hand.shape])"})
            S.write_array(g, "shape_measures", measures.astype(np.float32),
                          attrs={"names": mnames, "units": "m, the pose's hand open (datagen.hand.shape)"})
            length = measures[:, mnames.index("hand_length_m")]
            S.write_array(g, "shape_band", np.asarray([BAND_NAMES.index(shape_band(x)) for x in length], np.int8),
                          attrs={"names": list(BAND_NAMES), "definition": "hand length band (datagen.hand.shape)"})
        n, nd, nb = len(used_poses), a.n_dense, a.n_base
        dsets = {}
        meshes = [("dense_vertices", nd), ("base_vertices", nb), ("mano_vertices", mapping.matrix.shape[0])]
        if mapping_left is not None:
            meshes.append(("mano_left_vertices", mapping_left.matrix.shape[0]))
        for k, nv in meshes:
            dsets[k] = g.create_dataset(k, shape=(n, nv, 3), dtype="float32", chunks=(1, nv, 3), compression="gzip",
                                        compression_opts=4, shuffle=True, fletcher32=S.CHECKSUM,
                                        track_times=False)
        kps = np.zeros((n, 21, 3), np.float32)
        mano_joints = np.zeros((n, 21, 3), np.float32)
        left_joints = np.zeros((n, 21, 3), np.float32)
        it = range(n)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="tables", unit="pose", mininterval=1.0)
        for i in it:
            with np.load(inputs.root / "meshes" / f"pose_{int(used_poses[i]):05d}.npz", allow_pickle=False) as z:
                dense, base, kps[i] = z["dense"], z["base"], z["keypoints"]
            mv = np.asarray(mapping.apply(np.asarray(dense, np.float64)), np.float32)
            dsets["dense_vertices"][i] = dense
            dsets["base_vertices"][i] = base
            dsets["mano_vertices"][i] = mv
            mano_joints[i] = np.asarray(mapping.joint_regressor) @ mv
            if mapping_left is not None:  # the left model's vertices, mirrored into this (right) frame
                lv = np.asarray(mapping_left.apply(np.asarray(dense, np.float64)), np.float32)
                dsets["mano_left_vertices"][i] = lv
                left_joints[i] = np.asarray(mapping_left.joint_regressor) @ lv
        S.write_array(g, "keypoints", kps, attrs={"names": list(KEYPOINT_NAMES), "units": "m, hand frame"})
        S.write_array(g, "mano_joints", mano_joints, attrs={"definition": "joint_regressor @ mano_vertices"})
        if mapping_left is not None:
            S.write_array(g, "mano_left_joints", left_joints, attrs={
                "definition": "mano_left/joint_regressor @ mano_left_vertices; both are the left model's, mirrored "
                              "into the right hand's frame (x -> -x gives the left hand)"})

        g = f.create_group("views")
        S.write_array(g, "view_id", np.arange(inputs.n_views, dtype=np.int32))
        for k in ("K", "R", "t", "centres"):
            if k in inputs.views:
                S.write_array(g, k, np.asarray(inputs.views[k], np.float64))
        for k, v in view_columns(inputs.views).items():  # the camera sampler's per-view metadata
            S.write_array(g, k, np.asarray(v, np.float64) if v.dtype.kind == "f" else v)

        g = f.create_group("hand")
        S.write_array(g, "dense_faces", a.dense_faces.astype(np.int32))
        S.write_array(g, "base_faces", a.base_faces.astype(np.int32))
        S.write_array(g, "dense_part", a.dense_part.astype(np.int8))
        S.write_array(g, "rest_dense_vertices", a.dense(a.rest_base_vertices).astype(np.float32))
        for k, v in zip(("dense_matrix_data", "dense_matrix_indices", "dense_matrix_indptr", "dense_matrix_shape"),
                        _csr_parts(a.dense_matrix)):
            S.write_array(g, k, v)
        S.write_array(g, "keypoint_names", np.asarray(KEYPOINT_NAMES, dtype=object))

        g = f.create_group("mano")
        rest = np.asarray(mapping.apply(a.dense(a.rest_base_vertices)), np.float32)
        S.write_array(g, "template", rest)
        S.write_array(g, "faces", np.asarray(mapping.faces, np.int32))
        S.write_array(g, "joint_regressor", np.asarray(mapping.joint_regressor, np.float32))
        for k, v in zip(("matrix_data", "matrix_indices", "matrix_indptr", "matrix_shape"), _csr_parts(mapping.matrix)):
            S.write_array(g, k, v)
        S.set_attrs(g, {"topology": mapping.topology, "quality": _jsonable(mapping.quality),
                            "source": _jsonable(mapping.source)})
        if mapping_left is not None:
            from datagen.geometry.mirror import mirror_points, reverse_winding

            g = f.create_group("mano_left")  # the left hand's own: template, outward faces, regressor, matrix
            S.write_array(g, "template", mirror_points(np.asarray(mapping_left.apply(a.dense(a.rest_base_vertices)),
                                                                  np.float32)))
            S.write_array(g, "faces", np.asarray(reverse_winding(mapping_left.faces), np.int32))
            S.write_array(g, "joint_regressor", np.asarray(mapping_left.joint_regressor, np.float32))
            for k, v in zip(("matrix_data", "matrix_indices", "matrix_indptr", "matrix_shape"),
                            _csr_parts(mapping_left.matrix)):
                S.write_array(g, k, v)
            S.set_attrs(g, {"topology": "mano", "side": "left", "quality": _jsonable(mapping_left.quality),
                            "source": _jsonable(mapping_left.source),
                            "definition": "left vertices = mirror(matrix @ dense) = matrix @ mirror(dense)"})

        if arm is not None:  # [hand] wrist_draw = "item" (datagen.dataset.reader.ArmSkin)
            g = f.create_group("arm")
            S.write_array(g, "rows", arm["rows"], attrs={"definition": "base vertex ids the forearm bone weighs"})
            S.write_array(g, "weights", arm["weights"], attrs={"definition": "their forearm skinning weights"})
            S.write_array(g, "pose_rotation", arm["pose_rotation"][rows], attrs={
                "definition": "per pose (poses/pose_id order): the forearm bone's rotation in the pose table"})
            off = arm["offsets"]
            S.write_array(g, "offsets", off if off.ndim == 2 else off[rows], attrs={
                "definition": "rest positions of the rows minus the forearm bone's head (the wrist joint centre), "
                              "m, hand frame: (n, 3), or (P, n, 3) per pose with [hand.shape]"})
            S.set_attrs(g, {"bone": "forearm.R", "definition": "a sample with finite wrist_deg [f, d]: base rows += "
                            "weights * offsets @ (forearm_rotation(f, d) - pose_rotation).T (datagen.poses.wrist)"})

        g = f.create_group("hdri")
        S.write_array(g, "name", np.asarray([str(h.get("name")) for h in inputs.hdris] or [""], dtype=object))

        g = f.create_group("samples")
        idx = {k: [] for k in ("item_id", "pose_id", "view_id", "shard", "row", "pose_group")}
        for s, info in enumerate(shard_infos):
            bad = {d["item_id"] for d in info["skipped"]}
            for r, i in enumerate(i for i in range(info["plan_start"], info["plan_stop"])
                                  if int(scan.labels["item_id"][i]) not in bad):
                idx["item_id"].append(scan.labels["item_id"][i])
                idx["pose_id"].append(scan.labels["pose_id"][i])
                idx["view_id"].append(scan.labels["view_id"][i])
                idx["pose_group"].append(group[pose_row[int(scan.labels["pose_id"][i])]])
                idx["shard"].append(s)
                idx["row"].append(r)
        for k, dt in (("item_id", np.int64), ("pose_id", np.int32), ("view_id", np.int32), ("shard", np.int32),
                      ("row", np.int32), ("pose_group", np.int32)):
            S.write_array(g, k, np.asarray(idx[k], dt))
        S.set_attrs(f, {"schema_version": S.SCHEMA_VERSION, "kind": "tables", "height": inputs.height,
                            "width": inputs.width, "n_views": inputs.n_views})
        f.close()
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise
    S.fsync_rename(tmp, final)
    return final


def view_columns(views: dict) -> dict[str, np.ndarray]:
    """views.npz's per-view metadata columns (the camera sampler's: longitude_deg, ...), in file order."""
    n = len(views["R"])
    return {k: np.asarray(v) for k, v in views.items()
            if k not in ("K", "R", "t", "centres", "width", "height") and np.ndim(v) >= 1 and len(v) == n}


def pose_groups(poses: dict) -> np.ndarray:
    """Per row of poses.npz, the id of the first pose with identical finger states: the pose
    table repeats some poses under other ids (datagen.poses.canonical_ids), and splits by pose
    must keep identical poses together.  Without pose_a/pose_b/t every pose is its own group."""
    ids = np.asarray(poses["ids"], np.int64)
    if not {"pose_a", "pose_b", "t"} <= set(poses):
        return ids
    from datagen.poses.construction import canonical_ids, finger_states

    state = finger_states(np.asarray(poses["pose_a"], np.int64), np.asarray(poses["pose_b"], np.int64),
                          np.asarray(poses["t"], np.float64))
    return ids[canonical_ids(state)]


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def finalize(out_dir: Path, inputs: Inputs, scan: Scan, mapping, shard_infos, options, digest, progress,
             mapping_left=None, arm: dict | None = None) -> dict:
    tables = write_tables(out_dir, inputs, scan, mapping, shard_infos, progress, mapping_left, arm)
    shards = []
    for info in shard_infos:
        p = out_dir / info["file"]
        a = S.read_shard_attrs(p)
        shards.append({"file": info["file"], "samples": int(a["count"]), "sha256": S.sha256_file(p),
                       "bytes": p.stat().st_size, "first_item": int(a["first_item"]),
                       "last_item": int(a["last_item"]), "skipped": info["skipped"]})
    run = inputs.run
    used_hdri = sorted(set(int(i) for i in scan.labels["hdri_index"]))
    skipped = [p.as_dict() for p in scan.problems] + [d for s in shard_infos for d in s["skipped"]]
    codecs = {f: S.codec(f, n) for f, n in options["codecs"].items()}
    manifest = {
        "format": "handsynth-shards",
        "schema_version": S.SCHEMA_VERSION,
        "topology": mapping.topology,
        "counts": {"samples": sum(s["samples"] for s in shards), "shards": len(shards),
                   "poses": int(len(np.unique(scan.labels["pose_id"]))), "views": inputs.n_views,
                   "skipped": len(skipped)},
        "image": {"height": inputs.height, "width": inputs.width},
        "encodings": {f: {"codec": c.name, "description": c.description, "lossless": c.lossless}
                      for f, c in codecs.items()},
        "config": run.get("config"),
        "seed": run.get("seed", (run.get("config") or {}).get("seed")),
        "versions": {"render": run.get("versions"), "pack": _packer_versions()},
        "licences": {"hand": inputs.asset.licence or (run.get("hand") or {}).get("licence"),
                     "hdris": [inputs.hdris[i] for i in used_hdri],
                     "mapping": _jsonable(mapping.source),
                     **({"backgrounds": [run["backgrounds"][i] for i in sorted(scan.backgrounds_used)]}
                        if run.get("backgrounds") else {})},
        "mapping": {"topology": mapping.topology, "n_vertices": int(mapping.matrix.shape[0]),
                    "quality": _jsonable(mapping.quality), "source": _jsonable(mapping.source),
                    **({"left": {"source": _jsonable(mapping_left.source), "quality": _jsonable(mapping_left.quality)}}
                       if mapping_left is not None else {})},
        "skin_parameters": scan.skin_names,
        "constant_labels": scan.constant,
        "extra_json_keys": scan.varying_keys,
        "render_run": {k: v for k, v in run.items() if k not in ("config", "seed", "versions", "hdris", "hand",
                                                                  "backgrounds")},
        "tables": {"file": tables.name, "sha256": S.sha256_file(tables), "bytes": tables.stat().st_size},
        "shards": shards,
        "skipped": skipped,
        "pack_options": {k: v for k, v in options.items() if k != "inputs"},
        "inputs": inputs.digests,
        "options_digest": digest,
    }
    text = json.dumps(manifest, indent=1, sort_keys=False, allow_nan=False) + "\n"
    tmp = out_dir / (S.MANIFEST + S.PARTIAL)
    tmp.write_text(text)
    S.fsync_rename(tmp, out_dir / S.MANIFEST)
    return manifest
