"""Check the renderer with other Blender versions' bpy wheels (side venvs), against this venv.

    python3.11 -m venv /tmp/bpy420 && /tmp/bpy420/bin/pip install bpy==4.2.0 'numpy<2'
    python3.11 -m venv /tmp/bpy450 && /tmp/bpy450/bin/pip install bpy==4.5.0 'numpy<2'
    .venv/bin/python scripts/bpy_wheels_check.py /tmp/bpy420/bin/python /tmp/bpy450/bin/python [--blender blender]

For each interpreter (or Blender binary): scripts/blender_compat_check.py (the version tables
against the build), then the same items as this venv's bpy rendered through the numpy-only
route (the side venvs hold nothing but bpy and numpy, like Blender's own Python), and their
labels compared with this venv's: max |d| of 2D keypoints (px), 3D keypoints and depth (m),
masks and visibility equal or not.  Prints one line per Blender; exit 1 on any difference.
Needs the prepared cache (`.venv/bin/python blender_scripts/render.py --prepare-only`).

bpy wheels on PyPI for Python 3.11: 4.2.x .. 5.0.x (4.0 and 4.1 were built for Python 3.10).
Run on the development machine (64 px, 1 sample, pose 0 views 0-2): 3.4.1 (Debian binary),
4.2.0, 4.5.0 - compat check ok, labels equal (max |d kp2d| 1.4e-14 px, depth 0).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RENDER = REPO / "blender_scripts" / "render.py"
ITEMS = ["--poses", "0", "--views", "0-2"]
NUMPY_ONLY_ROUTE = (
    "import sys; sys.path.insert(0, sys.argv[1]); import blender_scripts.render as r; "
    "r.in_blender_binary = lambda: True; sys.exit(r.main(sys.argv[2:]))")


def compare(ref: Path, out: Path) -> dict:
    worst = {"kp2d_px": 0.0, "kp3d_m": 0.0, "depth_m": 0.0, "masks_equal": True, "visibility_equal": True,
             "items": 0}
    for j in sorted((ref / "items").glob("*/v*.json")):
        a, b = json.loads(j.read_text()), json.loads((out / j.relative_to(ref)).read_text())
        stem = j.name[:-5]
        worst["items"] += 1
        worst["kp2d_px"] = max(worst["kp2d_px"], float(np.abs(np.subtract(a["keypoints_2d"], b["keypoints_2d"])).max()))
        worst["kp3d_m"] = max(worst["kp3d_m"],
                              float(np.abs(np.subtract(a["keypoints_3d_cam"], b["keypoints_3d_cam"])).max()))
        worst["visibility_equal"] &= all(a[k] == b[k] for k in ("visible", "in_frame", "crossings", "mask_area_px"))
        worst["masks_equal"] &= (j.parent / f"{stem}.mask.png").read_bytes() == \
            (out / j.relative_to(ref)).with_name(f"{stem}.mask.png").read_bytes()
        da = np.load(j.parent / f"{stem}.depth.npy")
        db = np.load((out / j.relative_to(ref)).with_name(f"{stem}.depth.npy"))
        worst["depth_m"] = max(worst["depth_m"], float(np.abs(da - db).max()))
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pythons", nargs="*", help="interpreters of side venvs holding another bpy wheel")
    ap.add_argument("--blender", action="append", default=[], help="a Blender binary to check as well")
    ap.add_argument("--cache", default=None, help="prepared-cache folder (default: cache/)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bpy_wheels_check_"))
    cfg = tmp / "c.toml"
    cfg.write_text(f"[cameras]\nwidth = 64\nheight = 64\nfocal_px = {373.3511425 * 64 / 256}\n"
                   "[hdri]\nsources = [\"builtin\"]\n[render]\nsamples = 1\nthreads = 2\n")
    common = ["--config", str(cfg), "--no-progress"] + (["--cache", args.cache] if args.cache else []) + ITEMS
    ref = tmp / "venv"
    subprocess.run([sys.executable, str(RENDER), "--out", str(ref)] + common, check=True, cwd=REPO)
    bad = 0
    runs = [(py, [py, str(REPO / "scripts/blender_compat_check.py")], [py, "-c", NUMPY_ONLY_ROUTE, str(REPO)])
            for py in args.pythons]
    runs += [(b, [b, "-b", "--factory-startup", "-P", str(REPO / "scripts/blender_compat_check.py")],
              [b, "-b", "--factory-startup", "-P", str(RENDER), "--"]) for b in args.blender]
    for name, check_cmd, render_cmd in runs:
        chk = subprocess.run(check_cmd, capture_output=True, text=True, cwd=REPO)
        version = next((ln for ln in chk.stdout.splitlines() if ln.startswith("Blender ")), "?")
        verdict = chk.stdout.strip().splitlines()[-1] if chk.stdout.strip() else "no output"
        out = tmp / Path(name).parent.parent.name
        r = subprocess.run(render_cmd + ["--out", str(out)] + common, capture_output=True, text=True, cwd=REPO)
        if r.returncode != 0:
            print(f"{version}: {verdict}; render exit status {r.returncode}:\n{r.stderr[-2000:]}")
            bad += 1
            continue
        w = compare(ref, out)
        ok = (chk.returncode == 0 and w["kp2d_px"] < 1e-9 and w["kp3d_m"] < 1e-12 and w["depth_m"] < 1e-6
              and w["masks_equal"] and w["visibility_equal"] and w["items"] == 3)
        bad += not ok
        fb = json.loads((out / "run.json").read_text())["render"].get("fallbacks", [])
        print(f"{version}: {verdict}; render exit 0; labels vs venv bpy: {w}; "
              f"fallbacks: {[f['key'] + '->' + str(f['used']) for f in fb]} -> {'OK' if ok else 'DIFFERENT'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
