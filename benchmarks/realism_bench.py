"""Realism benchmark: does an off-the-shelf hand detector (MediaPipe Hands) agree with our labels?

    .venv/bin/python benchmarks/realism_bench.py                      # 240 items, seed 0 (~10-15 min cold)
    .venv/bin/python benchmarks/realism_bench.py --sample 60 --seed 3 --config configs/x.toml --out out/realism/x

A seeded random sample of items, spread uniformly over all poses and views, is rendered with
the renderer's command line (`blender_scripts/render.py --items-file`) into OUT/renders (items
already rendered there are reused, so a re-run only evaluates).  MediaPipe Hands (legacy
`mp.solutions.hands`, mediapipe==0.10.14, static_image_mode, one hand, min detection
confidence 0.5) runs on every image in its own venv (`.venv-mediapipe/` at the repo root,
created on first use: mediapipe brings its own OpenCV and pins protobuf<5, which clash with the
project's venv) through benchmarks/mediapipe_detect.py; its answers are cached in
OUT/detections.json by image path, size and mtime.

Measures (docs/REALISM.md):
- detection rate: share of items where MediaPipe reports a hand;
- PCK@0.1: a keypoint is correct when the detector's landmark lies within 0.1 x the larger side
  of the label's 2D keypoint box (all 21 keypoints_2d) of our label; only keypoints our labels
  mark `visible` count; pooled over keypoints of the detected items (`pck01`) and, with every
  keypoint of a missed item counted wrong, over all items (`pck01_all`).
Groups: overall; per keypoint (21, FreiHAND order); latitude ring (lat_index = view_id //
longitudes); view side (palm / side / back, from the cosine between the hand frame's +z = palm
normal and the unit vector from the wrist - the hand frame's origin and the camera sphere's
centre - to the camera: palm > 0.5, back < -0.5, else side); skin tone band (melanin of the
item's `skin` record: light [0, 1/3), medium [1/3, 2/3), dark [2/3, 1]); hand size in the frame
(larger side of the label's 21-keypoint box over the larger image side: small < 0.4, medium
0.4-0.6, large >= 0.6 - what camera variety, `[cameras.jitter]`, changes); handedness (only when
the labels carry a `handedness` field); shape band (only with `[hand.shape]`: the item's
`shape.band`, small / medium / large by hand length, datagen.hand.shape; with --compare also
paired per band of this run).

Writes OUT/results.json (definitions, every group, every item) and OUT/contact_sheet.png (the
misses with our 2D label skeleton, then the detections with item PCK@0.1 below --low-pck, label
and detection drawn).  Prints a table; the last line is
    realism_items=N detect_rate=X pck01=Y

Only the render command line and the files it writes are used (no datagen imports), so the
benchmark does not depend on the package layout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np

from datagen.hand.base import KEYPOINT_NAMES as _KEYPOINT_NAMES

REPO = Path(__file__).resolve().parent.parent
RENDER_SCRIPT = REPO / "blender_scripts" / "render.py"
DETECT_SCRIPT = Path(__file__).resolve().parent / "mediapipe_detect.py"
DEFAULT_CONFIG = REPO / "configs" / "default.toml"
DEFAULT_MP_VENV = REPO / ".venv-mediapipe"
MP_VERSION = "0.10.14"
N_KP = 21
N_BASE_POSES = 32  # 5 fingers straight/bent
N_PAIRS = N_BASE_POSES * (N_BASE_POSES - 1) // 2

PCK_ALPHA = 0.1
SIDE_COS = 0.5  # |cos| above this: palm / back; else side
TONE_BANDS = (("light", 0.0, 1 / 3), ("medium", 1 / 3, 2 / 3), ("dark", 2 / 3, 1.0))
SIDES = ("palm", "side", "back")
SIZE_BANDS = (("small", 0.0, 0.4), ("medium", 0.4, 0.6), ("large", 0.6, math.inf))  # keypoint box / image side

KEYPOINT_NAMES = tuple(_KEYPOINT_NAMES)  # FreiHAND order (datagen.hand.base)
BONES = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11),
         (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20)]


class BenchError(RuntimeError):
    """Bad input or a failed step; the message names the file or command."""


# ----------------------------------------------------------------------------- pure parts

def handedness_agreement(records: list[dict]) -> dict:
    """Per label handedness ("left"/"right", items whose labels carry one), how often MediaPipe's
    own handedness (unmirrored) says the same on the detected items:
    {label: {"detected", "agree", "rate"}}."""
    out = {}
    for hand in ("left", "right"):
        det = [r for r in records if r.get("handedness") == hand and r["detected"]]
        if det:
            agree = sum(str(r.get("det_handedness") or "").lower() == hand for r in det)
            out[hand] = {"detected": len(det), "agree": agree, "rate": agree / len(det)}
    return out


def sample_items(n_poses: int, n_views: int, n: int, seed: int) -> list[tuple[int, int]]:
    """n distinct (pose, view) items, seeded, spread uniformly over poses and views.

    Views: concatenated random permutations of all views (every view once per n_views items);
    poses: the same over all poses (distinct while n <= n_poses).  A (pose, view) pair drawn
    twice (possible only when n > n_poses) redraws its pose.  Sorted pose-major.
    """
    if n_poses < 1 or n_views < 1:
        raise BenchError(f"need at least one pose and one view (got {n_poses} poses, {n_views} views)")
    if not 1 <= n <= n_poses * n_views:
        raise BenchError(f"--sample {n}: must be 1..{n_poses * n_views} (= {n_poses} poses x {n_views} views)")
    rng = np.random.default_rng(seed)
    views = np.concatenate([rng.permutation(n_views) for _ in range(math.ceil(n / n_views))])[:n]
    poses = np.concatenate([rng.permutation(n_poses) for _ in range(math.ceil(n / n_poses))])[:n]
    used: set[tuple[int, int]] = set()
    out = []
    for p, v in zip(poses.tolist(), views.tolist()):
        while (p, v) in used:
            p = int(rng.integers(n_poses))
        used.add((p, v))
        out.append((p, v))
    return sorted(out)


def size_band(box_frac: float) -> str:
    """Hand size band from the keypoint box's larger side over the larger image side."""
    f = float(box_frac)
    if not f >= 0.0:
        raise BenchError(f"keypoint box fraction {f} is not >= 0")
    return next(name for name, lo, hi in SIZE_BANDS if lo <= f < hi)


def keypoint_box_size(kp2d: np.ndarray) -> float:
    """Larger side (px) of the axis-aligned box of all 21 label keypoints."""
    kp2d = np.asarray(kp2d, dtype=np.float64)
    return float(np.max(kp2d.max(axis=0) - kp2d.min(axis=0)))


def pck_correct(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, alpha: float = PCK_ALPHA):
    """Per-keypoint PCK of one item.

    Returns (correct (21,) bool - False where not visible, errors (21,) px, threshold px):
    a visible keypoint is correct when its error is <= alpha x keypoint_box_size(gt).
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    visible = np.asarray(visible, dtype=bool)
    if pred.shape != gt.shape or gt.shape != (visible.shape[0], 2):
        raise BenchError(f"pck: shapes differ: pred {pred.shape}, gt {gt.shape}, visible {visible.shape}")
    thr = alpha * keypoint_box_size(gt)
    err = np.linalg.norm(pred - gt, axis=1)
    return (err <= thr) & visible, err, thr


def latitude_ring(view_id: int, n_longitudes: int) -> int:
    """lat_index of a view (view id = lat_index * longitudes + lon_index)."""
    return int(view_id) // int(n_longitudes)


def camera_palm_cos(R, t) -> float:
    """cos between the palm normal (+z of the hand frame) and the unit vector wrist -> camera.

    The camera centre in the hand frame is C = -R^T t (x_cam = R x_hand + t); the wrist is the
    hand frame's origin (and the centre of the camera sphere), so the direction is C / |C|.
    """
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    c = -R.T @ t
    n = np.linalg.norm(c)
    if n == 0:
        raise BenchError("camera centre at the wrist: no view direction")
    return float(c[2] / n)


def view_side(cos: float, limit: float = SIDE_COS) -> str:
    """'palm' if the camera sees the palm (cos > limit), 'back' if cos < -limit, else 'side'."""
    if cos > limit:
        return "palm"
    if cos < -limit:
        return "back"
    return "side"


# Shape bands of the item JSON's `shape` record (datagen.hand.shape.BAND_NAMES; hand length).
SHAPE_BANDS = ("small", "medium", "large")


def tone_band(melanin: float) -> str:
    """Skin tone band from melanin in [0, 1]: light [0, 1/3), medium [1/3, 2/3), dark [2/3, 1]."""
    m = float(melanin)
    if not 0.0 <= m <= 1.0:
        raise BenchError(f"melanin {m} outside [0, 1]")
    for name, lo, hi in TONE_BANDS:
        if lo <= m < hi:
            return name
    return TONE_BANDS[-1][0]  # m == 1


def summarize(records: list[dict]) -> dict:
    """Detection rate and pooled PCK of a list of item records.

    A record needs `detected` (bool), `visible` (21 bool) and, when detected, `correct` (21 bool).
    pck01 pools the visible keypoints of detected items; pck01_all pools the visible keypoints
    of all items, those of missed items counted wrong.  Rates are None when undefined.
    """
    n = len(records)
    det = [r for r in records if r["detected"]]
    kps_det = sum(int(np.sum(r["visible"])) for r in det)
    kps_all = sum(int(np.sum(r["visible"])) for r in records)
    ok = sum(int(np.sum(np.asarray(r["correct"], bool) & np.asarray(r["visible"], bool))) for r in det)
    return {"items": n, "detected": len(det), "detect_rate": len(det) / n if n else None,
            "kps": kps_det, "pck01": ok / kps_det if kps_det else None,
            "kps_all": kps_all, "pck01_all": ok / kps_all if kps_all else None}


def group_by(records: list[dict], key: str, order=None) -> dict[str, dict]:
    """summarize() per value of record[key], in `order` (values absent from the records skipped)."""
    values = order if order is not None else sorted({r[key] for r in records})
    return {str(v): summarize([r for r in records if r[key] == v]) for v in values
            if any(r[key] == v for r in records)}


def per_keypoint(records: list[dict]) -> list[dict]:
    """PCK and median normalised error per keypoint over detected items where it is visible."""
    rows = []
    for k in range(N_KP):
        vis = [r for r in records if r["visible"][k]]
        det = [r for r in vis if r["detected"]]
        ok = sum(bool(r["correct"][k]) for r in det)
        errs = [r["errors_px"][k] / r["box_px"] for r in det if r["box_px"] > 0]
        rows.append({"kp": k, "name": KEYPOINT_NAMES[k], "visible_items": len(vis), "detected_visible": len(det),
                     "pck01": ok / len(det) if det else None,
                     "pck01_all": ok / len(vis) if vis else None,
                     "median_err_box": float(np.median(errs)) if errs else None})
    return rows


def paired_compare(mine: list[dict], base: list[dict], n_boot: int = 10000, seed: int = 0) -> dict:
    """Paired comparison of two runs over the same items (matched by (pose_id, view_id)).

    Detection: discordant counts (detected here only / in the base only) and the exact two-sided
    McNemar p-value (binomial test of the discordant split at 1/2).  PCK@0.1 on the items both
    runs detected (same keypoints, so directly paired), and a paired bootstrap over items
    (`n_boot` resamples, seeded) of the differences mine - base of detect_rate, pck01 (each run's
    own detected items, as in the summary) and pck01_all, as 95% percentile intervals.
    """
    key = lambda r: (int(r["pose_id"]), int(r["view_id"]))  # noqa: E731
    b_by = {key(r): r for r in base}
    pairs = [(r, b_by[key(r)]) for r in mine if key(r) in b_by]
    if not pairs:
        raise BenchError("paired comparison: no items in common")
    n = len(pairs)
    da = np.array([a["detected"] for a, _ in pairs], bool)
    db = np.array([b["detected"] for _, b in pairs], bool)
    only_mine, only_base = int(np.sum(da & ~db)), int(np.sum(~da & db))
    k, m = min(only_mine, only_base), only_mine + only_base
    p = min(1.0, 2 * sum(math.comb(m, i) for i in range(k + 1)) / 2 ** m) if m else 1.0

    def ok_vis(r):
        vis = np.asarray(r["visible"], bool)
        if not r["detected"]:
            return 0, int(vis.sum())
        return int(np.sum(np.asarray(r["correct"], bool) & vis)), int(vis.sum())

    oa = np.array([ok_vis(a) for a, _ in pairs])  # (n, 2): correct, visible
    ob = np.array([ok_vis(b) for _, b in pairs])
    both = da & db
    pck_both = (float(oa[both, 0].sum() / oa[both, 1].sum()) if oa[both, 1].sum() else None,
                float(ob[both, 0].sum() / ob[both, 1].sum()) if ob[both, 1].sum() else None)

    def stats(idx):
        def one(o, d):
            dv = o[idx, 1][d[idx]].sum()
            return d[idx].mean(), (o[idx, 0][d[idx]].sum() / dv if dv else np.nan), o[idx, 0].sum() / max(1, o[idx, 1].sum())
        a, b = one(oa, da), one(ob, db)
        return np.array(a) - np.array(b)

    point = stats(np.arange(n))
    rng = np.random.default_rng(seed)
    boot = np.array([stats(rng.integers(0, n, n)) for _ in range(n_boot)])
    lo, hi = np.nanpercentile(boot, 2.5, axis=0), np.nanpercentile(boot, 97.5, axis=0)
    names = ("detect_rate", "pck01", "pck01_all")
    return {"items": n, "detected_only_here": only_mine, "detected_only_base": only_base,
            "detected_both": int(both.sum()), "mcnemar_exact_p": p,
            "pck01_both_detected": {"here": pck_both[0], "base": pck_both[1], "items": int(both.sum())},
            "diff": {nm: {"value": float(point[i]), "ci95": [float(lo[i]), float(hi[i])]}
                     for i, nm in enumerate(names)},
            "bootstrap": {"resamples": n_boot, "seed": seed}}


def format_compare(c: dict, base_path) -> str:
    pb = c["pck01_both_detected"]
    lines = [f"paired comparison with {base_path} ({c['items']} common items; differences = this run - base, "
             f"95% paired bootstrap CI, {c['bootstrap']['resamples']} resamples)",
             f"  detection: both {c['detected_both']}, only this run {c['detected_only_here']}, only base "
             f"{c['detected_only_base']}; exact McNemar p = {c['mcnemar_exact_p']:.3f}",
             f"  PCK@0.1 on the {pb['items']} items both detect: this run {_f(pb['here'])}, base {_f(pb['base'])}"]
    for nm, d in c["diff"].items():
        lines.append(f"  d_{nm:<11s} {d['value']:+.3f}  [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- config / grid

def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _load_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except OSError as exc:
        raise BenchError(f"config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"config {path}: not valid TOML: {exc}") from None


def grid_from_config(config: Path | None) -> tuple[int, int, int]:
    """(n_poses, n_views, longitudes) the config gives, read from its TOML (no datagen import).

    n_poses = 32 base + 496 pairs x poses.interpolation_steps + the pose families' counts
    ([poses.families], docs/POSES.md); n_views = longitudes x latitudes.
    Keys the config omits take configs/default.toml's values.  Checked after rendering against
    RENDER_DIR/run.json.
    """
    flat = _flatten(_load_toml(DEFAULT_CONFIG)) if DEFAULT_CONFIG.exists() else {}
    if config is not None:
        flat.update(_flatten(_load_toml(config)))
    try:
        steps = int(flat.get("poses.interpolation_steps", 3))
        lon = int(flat.get("cameras.longitudes", 36))
        lat = int(flat.get("cameras.latitudes", 6))
        families = sum(int(v) for k, v in flat.items() if k.startswith("poses.families."))
    except (TypeError, ValueError) as exc:
        raise BenchError(f"config {config or DEFAULT_CONFIG}: {exc}") from None
    return N_BASE_POSES + N_PAIRS * steps + families, lon * lat, lon


def check_config_matches(config: Path | None, run_json: dict, run_path: Path) -> None:
    """Stop if a key the config sets differs from the resolved config an existing RENDER_DIR used."""
    cfg_path = config or DEFAULT_CONFIG
    if not cfg_path.exists():
        return
    mine = _flatten(_load_toml(cfg_path))
    theirs = _flatten(run_json.get("config", {}))
    for key, val in mine.items():
        if key in ("render.device", "render.threads") or key not in theirs:
            continue
        a, b = val, theirs[key]
        same = (np.allclose(np.asarray(a, float), np.asarray(b, float))
                if _numeric(a) and _numeric(b) and np.shape(a) == np.shape(b) else a == b)
        if not same:
            raise BenchError(f"{run_path} was rendered with {key} = {b!r} but {cfg_path} sets {a!r}: "
                             f"use another --out for this config")


def _numeric(x) -> bool:
    try:
        np.asarray(x, dtype=float)
        return not isinstance(x, (str, bool))
    except (TypeError, ValueError):
        return False


# ----------------------------------------------------------------------------- rendering

def item_stem(render_dir: Path, pose: int, view: int) -> Path:
    return render_dir / "items" / f"{pose:05d}" / f"v{view:03d}"


def render_items(items: list[tuple[int, int]], out: Path, render_dir: Path, config: Path | None) -> None:
    todo = [(p, v) for p, v in items if not item_stem(render_dir, p, v).with_suffix(".json").exists()]
    print(f"render: {len(items)} items, {len(items) - len(todo)} already rendered in {render_dir}, "
          f"{len(todo)} to render", flush=True)
    if not todo:
        return
    items_file = out / "items.txt"
    items_file.write_text("".join(f"{p} {v}\n" for p, v in items))
    cmd = [sys.executable, str(RENDER_SCRIPT), "--out", str(render_dir), "--items-file", str(items_file)]
    if config is not None:
        cmd += ["--config", str(config)]
    print("  $ " + " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, cwd=REPO)
    if rc == 1:
        print(f"warning: some items failed to render (see {render_dir / 'failures.log'}); "
              f"evaluating the rendered ones", flush=True)
    elif rc == 130:
        raise KeyboardInterrupt
    elif rc != 0:
        raise BenchError(f"render.py exited with status {rc} (messages above): {' '.join(cmd)}")


def load_label(path: Path) -> dict:
    try:
        lab = json.loads(path.read_text())
    except OSError as exc:
        raise BenchError(f"label {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise BenchError(f"label {path}: not valid JSON ({exc})") from None
    for key in ("keypoints_2d", "visible", "R", "t", "skin", "view_id", "pose_id", "image_size"):
        if key not in lab:
            raise BenchError(f"label {path}: missing field {key!r}")
    if np.shape(lab["keypoints_2d"]) != (N_KP, 2) or np.shape(lab["visible"]) != (N_KP,):
        raise BenchError(f"label {path}: keypoints_2d must be 21x2 and visible 21 "
                         f"(got {np.shape(lab['keypoints_2d'])}, {np.shape(lab['visible'])})")
    if "melanin" not in lab["skin"]:
        raise BenchError(f"label {path}: skin record has no 'melanin'")
    return lab


# ----------------------------------------------------------------------------- MediaPipe

def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _mp_version(py: Path) -> str | None:
    try:
        r = subprocess.run([str(py), "-c", "import mediapipe; print(mediapipe.__version__)"],
                           capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else None


def ensure_mediapipe_venv(venv: Path) -> Path:
    """The venv's python, creating the venv (Python 3.11 + mediapipe==0.10.14) if needed."""
    py = _venv_python(venv)
    stamp = venv / f".installed-mediapipe-{MP_VERSION}"
    if stamp.exists() and py.exists():
        return py
    if py.exists() and _mp_version(py) == MP_VERSION:
        stamp.touch()
        return py
    if not py.exists():
        base = shutil.which("python3.11") or (sys.executable if sys.version_info[:2] == (3, 11) else None)
        if base is None:
            raise BenchError("python3.11 not found: mediapipe==0.10.14 needs Python 3.11 for its venv "
                             f"({venv})")
        print(f"creating the MediaPipe venv {venv} ({base} -m venv) ...", flush=True)
        r = subprocess.run([base, "-m", "venv", str(venv)], capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"cannot create venv {venv}: {r.stderr.strip()}")
    log = venv / "pip-install.log"
    print(f"installing mediapipe=={MP_VERSION} into {venv} (log: {log}) ...", flush=True)
    with open(log, "w") as f:
        r = subprocess.run([str(py), "-m", "pip", "install", f"mediapipe=={MP_VERSION}"], stdout=f,
                           stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise BenchError(f"pip install mediapipe=={MP_VERSION} into {venv} failed (status {r.returncode}); "
                         f"see {log}")
    got = _mp_version(py)
    if got != MP_VERSION:
        raise BenchError(f"{py} imports mediapipe {got!r}, expected {MP_VERSION}; see {log}")
    stamp.touch()
    return py


def _file_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def detect(images: list[Path], out: Path, mp_venv: Path) -> tuple[dict[str, dict], dict | None]:
    """(MediaPipe records by image path (str), detector settings), cached in OUT/detections.json."""
    from tqdm import tqdm

    cache_path = out / "detections.json"
    cache: dict = {}
    if cache_path.exists():
        try:
            cache = json.loads(cache_path.read_text())
        except json.JSONDecodeError:
            print(f"warning: {cache_path} is not valid JSON; detecting again", flush=True)
        if cache.get("mediapipe_version") != MP_VERSION:
            cache = {}
    entries = cache.get("items", {})
    todo = [p for p in images if entries.get(str(p), {}).get("file_key") != _file_key(p)]
    print(f"detect: {len(images)} images, {len(images) - len(todo)} cached in {cache_path}, "
          f"{len(todo)} to run", flush=True)
    settings = cache.get("settings")
    if todo:
        py = ensure_mediapipe_venv(mp_venv)
        list_file = out / "detect_list.txt"
        list_file.write_text("".join(f"{p}\n" for p in todo))
        det_file = out / "detect_out.json"
        log_path = out / "detect.log"
        cmd = [str(py), str(DETECT_SCRIPT), "--list", str(list_file), "--out", str(det_file)]
        got = {}
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO)
            with tqdm(total=len(todo), desc="mediapipe", unit="img") as bar:
                for line in proc.stdout:
                    if line.startswith("@@mp "):
                        rec = json.loads(line[5:])
                        got[rec["image"]] = rec
                        bar.update(1)
            rc = proc.wait()
        if rc != 0:
            tail = log_path.read_text().strip().splitlines()[-5:]
            raise BenchError(f"MediaPipe detector failed (status {rc}): {' '.join(cmd)}; log {log_path}:\n  "
                             + "\n  ".join(tail))
        doc = json.loads(det_file.read_text())
        settings = doc["settings"]
        for p in todo:
            if str(p) not in got:
                raise BenchError(f"detector output {det_file} has no record for {p}")
            entries[str(p)] = dict(got[str(p)], file_key=_file_key(p))
        cache = {"mediapipe_version": MP_VERSION, "settings": settings, "items": entries}
        tmp = cache_path.with_name(f".{cache_path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_path)
        for f in (list_file, det_file):
            f.unlink(missing_ok=True)
    return {str(p): entries[str(p)] for p in images}, settings


# ----------------------------------------------------------------------------- evaluation

def evaluate_item(lab: dict, det: dict, n_longitudes: int, latitudes_deg, image: Path) -> dict:
    gt = np.asarray(lab["keypoints_2d"], dtype=np.float64)
    vis = np.asarray(lab["visible"], dtype=bool)
    cos = camera_palm_cos(lab["R"], lab["t"])
    ring = latitude_ring(lab["view_id"], n_longitudes)
    rec = {
        "pose_id": int(lab["pose_id"]), "view_id": int(lab["view_id"]),
        "item_id": int(lab.get("item_id", -1)), "image": str(image),
        "ring": ring, "latitude_deg": float(latitudes_deg[ring]) if latitudes_deg is not None else None,
        "palm_cos": cos, "side": view_side(cos),
        "melanin": float(lab["skin"]["melanin"]), "tone": tone_band(lab["skin"]["melanin"]),
        "handedness": lab.get("handedness"),
        "shape_band": (lab.get("shape") or {}).get("band"),
        "hand_length_m": (lab.get("shape") or {}).get("hand_length_m"),
        "visible": vis.tolist(), "n_visible": int(vis.sum()),
        "box_px": keypoint_box_size(gt),
        "box_frac": keypoint_box_size(gt) / max(lab.get("image_size") or [256, 256]),
        "detected": bool(det["detected"]),
        "det_handedness": det.get("handedness_unmirrored"), "det_score": det.get("score"),
        "pred_2d": det.get("keypoints_2d"),
        "correct": None, "errors_px": None, "pck01": None,
    }
    rec["size"] = size_band(rec["box_frac"])
    if rec["detected"]:
        correct, err, _ = pck_correct(det["keypoints_2d"], gt, vis)
        rec.update(correct=correct.tolist(), errors_px=err.tolist(),
                   pck01=float(correct.sum() / vis.sum()) if vis.any() else None)
    return rec


# ----------------------------------------------------------------------------- contact sheet

def _draw_skeleton(draw, kp, vis, scale: float, colour, width: int, radius: float):
    pts = [(float(x) * scale, float(y) * scale) for x, y in kp]
    for a, b in BONES:
        draw.line([pts[a], pts[b]], fill=colour, width=width)
    for i, (x, y) in enumerate(pts):
        box = [x - radius, y - radius, x + radius, y + radius]
        if vis is None or vis[i]:
            draw.ellipse(box, fill=colour)
        else:
            draw.ellipse(box, outline=colour)


def contact_sheet(misses: list[dict], low: list[dict], path: Path, low_pck: float, tile: int = 192,
                  cols: int = 10) -> None:
    """Misses (label skeleton, green) then low-PCK detections (label green, MediaPipe magenta)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    pad, cap, head = 4, 14, 24
    sections = [(f"missed: no hand detected ({len(misses)} items) - green: our 2D label "
                 f"(filled = visible, hollow = occluded)", misses),
                (f"detected with item PCK@0.1 < {low_pck:g} ({len(low)} items) - green: our label, "
                 f"magenta: MediaPipe", low)]
    cell_w, cell_h = tile + pad, tile + cap + pad
    height = sum(head + max(1, math.ceil(len(recs) / cols)) * cell_h for _, recs in sections)
    sheet = Image.new("RGB", (cols * cell_w + pad, height + pad), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    y0 = pad
    for title, recs in sections:
        draw.text((pad, y0 + 6), title, fill=(255, 255, 255), font=font)
        y0 += head
        for i, r in enumerate(recs):
            x, y = pad + (i % cols) * cell_w, y0 + (i // cols) * cell_h
            try:
                im = Image.open(r["image"]).convert("RGB")
            except OSError as exc:
                raise BenchError(f"contact sheet: cannot read {r['image']}: {exc}") from None
            scale = tile / max(im.size)
            im = im.resize((round(im.size[0] * scale), round(im.size[1] * scale)), Image.BILINEAR)
            d = ImageDraw.Draw(im)
            _draw_skeleton(d, r["gt_2d"], r["visible"], scale, (0, 230, 0), 2, 2.5)
            if r["detected"]:
                _draw_skeleton(d, r["pred_2d"], None, scale, (255, 0, 255), 1, 1.5)
            sheet.paste(im, (x, y))
            label = f"p{r['pose_id']} v{r['view_id']} {r['side']} m{r['melanin']:.2f}"
            if r["pck01"] is not None:
                label += f" pck{r['pck01']:.2f}"
            draw.text((x, y + tile + 1), label, fill=(220, 220, 220), font=font)
        y0 += max(1, math.ceil(len(recs) / cols)) * cell_h
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    sheet.save(tmp, format="PNG")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- report

def _f(x, nd=3) -> str:
    return f"{x:.{nd}f}" if x is not None else "-"


def format_table(groups: list[tuple[str, dict[str, dict]]], kp_rows: list[dict], notes: list[str]) -> str:
    lines = []
    head = f"{'group':<32s} {'items':>6s} {'det':>5s} {'det_rate':>8s} {'kps':>6s} {'pck01':>6s} {'pck01_all':>9s}"
    lines.append(head)
    for title, rows in groups:
        if title:
            lines.append(f"-- {title}")
        for name, s in rows.items():
            lines.append(f"{name:<32s} {s['items']:6d} {s['detected']:5d} {_f(s['detect_rate']):>8s} "
                         f"{s['kps']:6d} {_f(s['pck01']):>6s} {_f(s['pck01_all']):>9s}")
    lines += notes
    lines.append("")
    lines.append(f"{'kp':>2s} {'name':<12s} {'visible':>7s} {'det_vis':>7s} {'pck01':>6s} {'pck01_all':>9s} "
                 f"{'med_err/box':>11s}")
    for r in kp_rows:
        lines.append(f"{r['kp']:2d} {r['name']:<12s} {r['visible_items']:7d} {r['detected_visible']:7d} "
                     f"{_f(r['pck01']):>6s} {_f(r['pck01_all']):>9s} {_f(r['median_err_box']):>11s}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=int, default=240, help="items to evaluate (default 240)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    ap.add_argument("--config", type=Path, default=None, help="dataset config (default configs/default.toml)")
    ap.add_argument("--out", type=Path, default=None,
                    help="renders + results folder (default out/realism/<config name>)")
    ap.add_argument("--low-pck", type=float, default=0.5,
                    help="detections with item PCK@0.1 below this go on the contact sheet (default 0.5)")
    ap.add_argument("--sheet-max", type=int, default=150, help="at most this many tiles per sheet section")
    ap.add_argument("--mp-venv", type=Path, default=DEFAULT_MP_VENV,
                    help="MediaPipe venv (created on first use; default .venv-mediapipe/)")
    ap.add_argument("--compare", type=Path, default=None, metavar="RESULTS_JSON",
                    help="also compare item by item with another run's results.json (same sample): "
                         "McNemar on detections, paired bootstrap CIs of the differences")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args) -> int:
    config = args.config.resolve() if args.config is not None else None
    if config is not None and not config.is_file():
        raise BenchError(f"--config {args.config}: no such file")
    if args.sheet_max < 0:
        raise BenchError(f"--sheet-max {args.sheet_max}: must be >= 0")
    out = (args.out or REPO / "out" / "realism" / (config.stem if config else "default")).resolve()
    render_dir = out / "renders"
    out.mkdir(parents=True, exist_ok=True)

    run_path = render_dir / "run.json"
    if run_path.exists():
        run_json = json.loads(run_path.read_text())
        check_config_matches(config, run_json, run_path)
        n_poses, n_views = int(run_json["n_poses"]), int(run_json["n_views"])
    else:
        n_poses, n_views, _ = grid_from_config(config)
    items = sample_items(n_poses, n_views, args.sample, args.seed)
    render_items(items, out, render_dir, config)

    if not run_path.exists():
        raise BenchError(f"{run_path} missing after rendering: nothing was rendered")
    run_json = json.loads(run_path.read_text())
    if (int(run_json["n_poses"]), int(run_json["n_views"])) != (n_poses, n_views):
        raise BenchError(f"{run_path}: {run_json['n_poses']} poses x {run_json['n_views']} views, but the sample "
                         f"was drawn for {n_poses} x {n_views} (config read wrongly?)")
    n_lon = int(run_json["config"]["cameras"]["longitudes"])
    lat_deg = None
    views_path = render_dir / "views.npz"
    if views_path.exists():
        with np.load(views_path) as z:
            lat_deg = np.asarray(z["latitude_deg"]).reshape(-1, n_lon)[:, 0]

    done = [(p, v) for p, v in items if item_stem(render_dir, p, v).with_suffix(".json").exists()]
    if len(done) < len(items):
        print(f"warning: {len(items) - len(done)} sampled items have no label (render failed); skipped", flush=True)
    if not done:
        raise BenchError(f"no rendered items in {render_dir}")
    labels = [load_label(item_stem(render_dir, p, v).with_suffix(".json")) for p, v in done]
    images = [item_stem(render_dir, p, v).with_suffix(".png") for p, v in done]
    for im in images:
        if not im.exists():
            raise BenchError(f"image {im} missing although its label exists")
    dets, settings = detect(images, out, args.mp_venv)

    records = []
    for lab, im in zip(labels, images):
        rec = evaluate_item(lab, dets[str(im)], n_lon, lat_deg, im)
        rec["gt_2d"] = lab["keypoints_2d"]
        records.append(rec)

    overall = summarize(records)
    rings = sorted({r["ring"] for r in records})
    ring_rows = {}
    for k in rings:
        name = f"ring {k}" + (f" (lat {lat_deg[k]:.0f} deg)" if lat_deg is not None else "")
        ring_rows[name] = summarize([r for r in records if r["ring"] == k])
    side_names = {"palm": f"palm (cos > {SIDE_COS:g})", "side": f"side (|cos| <= {SIDE_COS:g})",
                  "back": f"back (cos < -{SIDE_COS:g})"}
    side_rows = {side_names[k]: v for k, v in group_by(records, "side", SIDES).items()}
    tone_names = {n: f"{n} (melanin {lo:.2f}-{hi:.2f})" for n, lo, hi in TONE_BANDS}
    tone_rows = {tone_names[k]: v for k, v in group_by(records, "tone", [n for n, _, _ in TONE_BANDS]).items()}
    size_names = {n: f"{n} (box {lo:.1f}-{hi:.1f})" if math.isfinite(hi) else f"{n} (box >= {lo:.1f})"
                  for n, lo, hi in SIZE_BANDS}
    size_rows = {size_names[k]: v for k, v in group_by(records, "size", [n for n, _, _ in SIZE_BANDS]).items()}
    groups = [("", {"overall": overall}),
              (f"latitude ring (lat_index = view_id // {n_lon})", ring_rows),
              ("view side (cos of palm normal +z and wrist->camera)", side_rows),
              ("skin tone (item skin.melanin)", tone_rows),
              ("hand size (keypoint box side / image side)", size_rows)]
    notes = []
    hand_rows = None
    labelled = [r for r in records if r["handedness"] is not None]
    if labelled:
        hand_rows = group_by(labelled, "handedness")
        groups.append(("handedness (label field)", hand_rows))
        if len(labelled) < len(records):
            notes.append(f"   ({len(records) - len(labelled)} items have no handedness field)")
    else:
        notes.append("-- handedness: the labels have no `handedness` field (all right hands); group skipped")
    band_rows = None
    shaped = [r for r in records if r.get("shape_band") is not None]
    if shaped:
        band_rows = group_by(shaped, "shape_band", [b for b in SHAPE_BANDS if any(r["shape_band"] == b for r in shaped)])
        groups.append(("shape band (label shape.band: hand length, datagen.hand.shape)", band_rows))
    else:
        notes.append("-- shape band: the labels have no `shape` record (one hand shape); group skipped")
    det_hand = [r["det_handedness"] for r in records if r["detected"]]
    if det_hand:
        counts = {h: det_hand.count(h) for h in sorted(set(map(str, det_hand)))}
        notes.append("-- MediaPipe handedness of the detections (label swapped: MediaPipe assumes a mirrored "
                     "image): " + ", ".join(f"{h} {c}" for h, c in counts.items()))
    agreement = handedness_agreement(records)
    if agreement:
        notes.append("-- MediaPipe handedness (swapped) agrees with the label: " + ", ".join(
            f"{h} {a['agree']}/{a['detected']} ({a['rate']:.2f})" for h, a in agreement.items()))
    kp_rows = per_keypoint(records)

    misses = [r for r in records if not r["detected"]]
    low = sorted([r for r in records if r["detected"] and r["pck01"] is not None and r["pck01"] < args.low_pck],
                 key=lambda r: r["pck01"])
    sheet_path = out / "contact_sheet.png"
    contact_sheet(misses[:args.sheet_max], low[:args.sheet_max], sheet_path, args.low_pck)

    print()
    print(f"realism benchmark: MediaPipe Hands {MP_VERSION} on {len(records)} items "
          f"(sample {args.sample}, seed {args.seed}, config {config or DEFAULT_CONFIG}); "
          f"PCK@{PCK_ALPHA:g} over visible keypoints, threshold = {PCK_ALPHA:g} x larger side of the label's "
          f"keypoint box")
    print(format_table(groups, kp_rows, notes))
    print(f"contact sheet: {sheet_path} ({min(len(misses), args.sheet_max)} misses, "
          f"{min(len(low), args.sheet_max)} low-PCK detections)")

    results = {
        "benchmark": "realism", "sample": args.sample, "seed": args.seed,
        "config": str(config or DEFAULT_CONFIG), "render_dir": str(render_dir),
        "config_digest": run_json.get("config_digest"),
        "mediapipe_version": MP_VERSION, "detector_settings": settings,
        "definitions": {
            "pck": f"visible keypoint correct when |pred - label| <= {PCK_ALPHA} x max side of the label's "
                   "21-keypoint 2D box; pck01 pools detected items, pck01_all counts missed items' keypoints wrong",
            "pixels": "continuous pixel coordinates, pixel centres at +0.5; MediaPipe (x, y) -> (x W, y H)",
            "ring": f"lat_index = view_id // {n_lon}",
            "side": f"cos = palm normal (+z) . unit(wrist -> camera); palm if > {SIDE_COS}, back if < -{SIDE_COS}, "
                    "else side",
            "tone": {n: [lo, hi] for n, lo, hi in TONE_BANDS},
            "size": {n: [lo, hi if math.isfinite(hi) else None] for n, lo, hi in SIZE_BANDS},
            "low_pck": args.low_pck,
        },
        "summary": overall,
        "groups": {"latitude": ring_rows, "side": side_rows, "tone": tone_rows, "size": size_rows,
                   "handedness": hand_rows, "shape_band": band_rows},
        "handedness_agreement": agreement,
        "per_keypoint": kp_rows,
        "contact_sheet": str(sheet_path),
        "items": [{k: v for k, v in r.items() if k != "gt_2d"} for r in records],
    }
    if args.compare is not None:
        try:
            base_items = json.loads(args.compare.read_text())["items"]
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            raise BenchError(f"--compare {args.compare}: not a results.json of this benchmark ({exc})") from None
        comp = paired_compare(results["items"], base_items)
        comp["base"] = str(args.compare)
        results["paired_compare"] = comp
        print(format_compare(comp, args.compare))
        if shaped:  # the same items, split by this run's shape band (the base may have one hand)
            by_band = {}
            for band in SHAPE_BANDS:
                mine = [r for r in results["items"] if r.get("shape_band") == band]
                keys = {(r["pose_id"], r["view_id"]) for r in mine}
                base = [r for r in base_items if (r["pose_id"], r["view_id"]) in keys]
                if mine and base:
                    by_band[band] = {"here": summarize(mine), "base": summarize(base),
                                     "paired": paired_compare(mine, base)}
            results["paired_compare_by_shape_band"] = by_band
            print("paired, by this run's shape band (base = the same items in the base run):")
            print(f"  {'band':<8}{'items':>6}{'detect':>8}{'base':>7}{'pck01':>8}{'base':>7}   d_detect [95% CI]")
            for band, c in by_band.items():
                h, b, d = c["here"], c["base"], c["paired"]["diff"]["detect_rate"]
                print(f"  {band:<8}{h['items']:>6}{h['detect_rate']:>8.3f}{b['detect_rate']:>7.3f}"
                      f"{_f(h['pck01']):>8}{_f(b['pck01']):>7}   {d['value']:+.3f} [{d['ci95'][0]:+.3f}, "
                      f"{d['ci95'][1]:+.3f}]")
    res_path = out / "results.json"
    tmp = res_path.with_name(f".{res_path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, res_path)
    print(f"results: {res_path}")
    print(f"realism_items={overall['items']} detect_rate={overall['detect_rate']:.3f} "
          f"pck01={_f(overall['pck01'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
