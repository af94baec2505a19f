"""`python -m datagen.cameras --report`: the views of the config's sampler and their framing.

The last line is the summary: `views=216 worst_margin_px=X` (the hand's smallest distance to
the image border over all poses and views; negative = cropped).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from datagen.console import setup_logging
from datagen.cameras.framing import framing_margins
from datagen.cameras.samplers import views_for


def main(argv=None) -> int:
    setup_logging()
    from datagen.config import load_config
    from datagen.poses.prepared import prepare_poses

    ap = argparse.ArgumentParser(prog="python -m datagen.cameras", description="The views of the config's camera sampler and their framing report.")
    ap.add_argument("--config", help="dataset config (TOML); default: configs/default.toml")
    ap.add_argument("--report", action="store_true", help="check framing of every pose in every view")
    ap.add_argument("--export", metavar="PATH", help="write K, R, t, centres per view (.npz)")
    ap.add_argument("--cache", default=None, help="cache folder (default: cache/ at the repo root)")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    prepared = prepare_poses(cfg, cache_dir=args.cache, progress=True)
    views = views_for(cfg.cameras, prepared.asset)
    if args.export:
        np.savez(args.export, K=views.K, R=views.R, t=views.t, centres=views.centres, **views.columns)
        print(f"wrote {args.export}")
    if args.report or not args.export:
        m = framing_margins(prepared, views, progress=True)
        p, v = np.unravel_index(np.argmin(m), m.shape)
        where = ""
        if cfg.cameras.sampler == "hemisphere":
            per_lat = m.reshape(len(prepared.ids), cfg.cameras.latitudes, cfg.cameras.longitudes).min(axis=(0, 2))
            print(f"{'latitude':>9s} {'worst margin px':>16s}")
            for i, val in enumerate(per_lat):
                print(f"{cfg.cameras.latitude_start_deg + i * cfg.cameras.latitude_step_deg:9.1f} {val:16.1f}")
            where = f" (lat {views.latitude_deg[v]:.0f}, lon {views.longitude_deg[v]:.0f})"
        print(f"radius {cfg.cameras.radius_m} m, f {cfg.cameras.focal_px} px, {cfg.cameras.width}x{cfg.cameras.height}")
        print(f"worst: pose {p} view {v}{where}")
        print(f"views={len(views)} worst_margin_px={m.min():.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
