"""Where does MediaPipe's agreement fall with occluders?  PCK@0.1 of keypoints by their distance to the object.

    .venv/bin/python benchmarks/occluder_agreement.py ON_RESULTS OFF_RESULTS
    .venv/bin/python benchmarks/occluder_agreement.py out/realism/occluders/results.json out/realism/default/results.json

Takes two realism-benchmark runs on the same sample (benchmarks/realism_bench.py: one with
`[occluders]`, one without) and, over the items that have an object in the image and that
MediaPipe detects in both runs, pairs every keypoint marked visible in both: its PCK@0.1 with
the object and without it, grouped by the keypoint's distance (px) to the nearest object pixel
(part_mask 3 of the occluder run's renders).  If the drop of agreement sat only at the objects'
edges our visibility labels would be suspect there; a drop far from the object is the detector's
(its whole-hand fit degrades when part of the hand is hidden).  Prints a table, then
`occluder_pairs=N pck_near=X pck_near_without=Y pck_far=Z pck_far_without=W` (near: < 10 px).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

BANDS = ((0.0, 10.0), (10.0, 30.0), (30.0, float("inf")))


def paired_keypoints(on: dict, off: dict) -> np.ndarray:
    """(N, 3): distance to the object (px), correct with the object, correct without it."""
    renders = Path(on["render_dir"])
    off_items = {(i["pose_id"], i["view_id"]): i for i in off["items"]}
    rows = []
    for it in on["items"]:
        key = (it["pose_id"], it["view_id"])
        o = off_items.get(key)
        if not it["detected"] or o is None or not o["detected"]:
            continue
        stem = renders / "items" / f"{key[0]:05d}" / f"v{key[1]:03d}"
        lab = json.loads(stem.with_suffix(".json").read_text())
        if not (lab.get("occluders") or {}).get("objects"):
            continue
        part = cv2.imread(str(stem) + ".part_mask.png", cv2.IMREAD_GRAYSCALE)
        if part is None or not (part == 3).any():
            continue
        dist = cv2.distanceTransform((part != 3).astype(np.uint8), cv2.DIST_L2, 5)
        h, w = dist.shape
        uv = np.asarray(lab["keypoints_2d"], dtype=np.float64)
        for j in range(len(uv)):
            if it["visible"][j] and o["visible"][j]:
                x, y = int(np.clip(uv[j, 0], 0, w - 1)), int(np.clip(uv[j, 1], 0, h - 1))
                rows.append((float(dist[y, x]), bool(it["correct"][j]), bool(o["correct"][j])))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("on", type=Path, help="results.json of the run with occluders")
    ap.add_argument("off", type=Path, help="results.json of the run without, same sample")
    args = ap.parse_args(argv)
    try:
        on, off = (json.loads(p.read_text()) for p in (args.on, args.off))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if (on.get("sample"), on.get("seed")) != (off.get("sample"), off.get("seed")):
        print("error: the two runs are not the same sample (--sample / --seed differ)", file=sys.stderr)
        return 2
    rows = paired_keypoints(on, off)
    if not len(rows):
        print("error: no detected item with an object in both runs", file=sys.stderr)
        return 2
    print(f"{'distance to object':>20} {'keypoints':>10} {'PCK with':>9} {'without':>8}")
    summary = {}
    for lo, hi in BANDS:
        m = (rows[:, 0] >= lo) & (rows[:, 0] < hi)
        band = f"{lo:.0f}-{hi:.0f} px" if np.isfinite(hi) else f">= {lo:.0f} px"
        if m.any():
            print(f"{band:>20} {int(m.sum()):>10} {rows[m, 1].mean():>9.3f} {rows[m, 2].mean():>8.3f}")
    near, far = rows[:, 0] < BANDS[0][1], rows[:, 0] >= BANDS[0][1]
    for name, m in (("near", near), ("far", far)):
        summary[name] = (rows[m, 1].mean(), rows[m, 2].mean()) if m.any() else (float("nan"), float("nan"))
    print(f"occluder_pairs={len(rows)} pck_near={summary['near'][0]:.3f} pck_near_without={summary['near'][1]:.3f} "
          f"pck_far={summary['far'][0]:.3f} pck_far_without={summary['far'][1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
