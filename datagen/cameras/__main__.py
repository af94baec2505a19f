"""`python -m datagen.cameras --report`: the views of the config's sampler and their framing.

The last line is the summary: `views=216 worst_margin_px=X` (the hand's smallest distance to
the image border over all poses and views; negative = cropped).

With `[cameras.jitter]` on (datagen.cameras.jitter) the report covers every item's own camera:
all poses x views, each with the one draw its seed gives (not a sample), and prints the hand's
size and offset in the frame with and without the jitter; the last line is then
`views=V items=N jitter=on worst_margin_px=X` (X over every item's camera).
With per-item wrists (`[hand] wrist_draw = "item"`, datagen.scene.arm) it also draws the arm of
every view for a sample of poses (right and, with left hands, left items) and reports how many
draws it took and whether any item found no wrist angles that keep the cut end out of frame.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from datagen.console import config_errors_exit, setup_logging
from datagen.cameras.framing import box_stats, framing_margins, jitter_framing
from datagen.cameras.jitter import jitter_on
from datagen.cameras.samplers import views_for


@config_errors_exit
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
        if cfg.hand.arm_per_item:
            report_arm(cfg, views, args.cache)
        if not jitter_on(cfg.cameras):
            print(f"views={len(views)} worst_margin_px={m.min():.1f}")
            return 0
        report_jitter(cfg, prepared, views, m)
    return 0


def report_arm(cfg, views, cache, pose_step: int = 19) -> int:
    """Per-item arms (datagen.scene.arm) for every view x every `pose_step`-th pose: draws needed,
    grid fallbacks, items without a way out (ArmError), the drawn wrist angles; returns failures."""
    from datagen.cameras.jitter import view_camera
    from datagen.poses.tables import ensure_tables
    from datagen.scene.arm import MAX_DRAWS, ArmError, draw_item_arm

    tables = ensure_tables(cfg, cache)
    hands = (False, True) if cfg.hand.left_share > 0 else (False,)
    draws, angles, failed = [], [], []
    for pid in range(0, tables.n_poses, pose_step):
        for v in range(len(views)):
            for left in hands:
                try:
                    a = draw_item_arm(cfg, tables, pid, v, view_camera(views, v), views.width, views.height, left=left)
                except ArmError as e:
                    failed.append(str(e))
                    continue
                draws.append(a.draws)
                angles.append((a.flexion_deg, a.deviation_deg))
    d, ang = np.asarray(draws), np.asarray(angles)
    print(f"per-item arm ({len(d) + len(failed)} items: every view x every {pose_step}th pose, "
          f"{'right and left' if len(hands) == 2 else 'right'} hands): first draw {np.mean(d == 1):.3f}, "
          f"2-{MAX_DRAWS} draws {np.mean(d > 1):.3f}, grid fallback {int((d == 0).sum())}, no way out {len(failed)}")
    print(f"drawn wrist angles: flexion mean {ang[:, 0].mean():+.1f} deg (p5 {np.percentile(ang[:, 0], 5):+.1f}, "
          f"p95 {np.percentile(ang[:, 0], 95):+.1f}), deviation mean {ang[:, 1].mean():+.1f} deg")
    for msg in failed[:5]:
        print("  " + msg)
    return len(failed)


def _pct(a, qs=(0, 5, 25, 50, 75, 95, 100)) -> str:
    return " ".join(f"{x:6.2f}" for x in np.percentile(a, qs))


def report_jitter(cfg, prepared, views, view_margins) -> None:
    """The jittered cameras' framing: every item (poses x views, the item's own draw)."""
    j = cfg.cameras.jitter
    print(f"[cameras.jitter] distance_scale {list(j.distance_scale)} focal_scale {list(j.focal_scale)} "
          f"roll_deg {list(j.roll_deg)} shift {j.shift} margin_px {j.margin_px}")
    base = box_stats(views, prepared, progress=True)
    r = jitter_framing(cfg.cameras, prepared, views, cfg.seed, progress=True)
    m = r["margin"]
    n = m.size
    print(f"{'percentiles 0 5 25 50 75 95 100':>46s}")
    print(f"{'hand box side / image side, views':<34s} {_pct(base['box_frac'])}")
    print(f"{'hand box side / image side, jitter':<34s} {_pct(r['box_frac'])}")
    print(f"{'box centre offset / image, views':<34s} {_pct(base['offset_frac'])}")
    print(f"{'box centre offset / image, jitter':<34s} {_pct(r['offset_frac'])}")
    print(f"{'distance scale':<34s} {_pct(r['distance_scale'])}")
    print(f"{'focal scale (after the cap)':<34s} {_pct(r['focal_scale'])}")
    print(f"{'roll deg':<34s} {_pct(r['roll_deg'])}")
    print(f"focal below focal_scale's low end (the hand would not fit otherwise): {int(r['capped'].sum())} "
          f"of {n} items")
    if cfg.cameras.sampler == "hemisphere":
        lat = np.asarray(views.latitude_deg)
        print(f"{'latitude':>9s} {'worst margin px':>16s} {'median box side':>16s}")
        for la in np.unique(lat):
            sel = lat == la
            print(f"{la:9.1f} {m[:, sel].min():16.1f} {np.median(r['box_frac'][:, sel]):16.2f}")
    p, v = np.unravel_index(np.argmin(m), m.shape)
    print(f"worst jittered item: pose {p} view {v} (margin {m[p, v]:.1f} px; the views' own worst "
          f"{view_margins.min():.1f} px)")
    print(f"views={len(views)} items={n} jitter=on worst_margin_px={m.min():.1f}")


if __name__ == "__main__":
    sys.exit(main())
