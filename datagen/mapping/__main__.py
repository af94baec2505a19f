"""`python -m datagen.mapping --report`: build (or load) the dense -> 778 mapping and print its quality."""

from __future__ import annotations

import argparse
import sys

from datagen.console import config_errors_exit, setup_logging
from datagen.mapping.dense_to_778 import build_mapping, format_report


@config_errors_exit
def main(argv: list[str] | None = None) -> int:
    setup_logging()
    ap = argparse.ArgumentParser(prog="python -m datagen.mapping", description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", action="store_true", help="print the mapping-quality table (default action)")
    ap.add_argument("--mano", metavar="PATH", help="your own MANO_RIGHT.pkl (topology 'mano'); default: open778")
    ap.add_argument("--mano-left", metavar="PATH",
                    help="your own MANO_LEFT.pkl: report the left model's registration (mirrored, see "
                         "datagen.mapping.mano.mirror_mano) instead")
    ap.add_argument("--config", help="config TOML (default: configs/default.toml)")
    ap.add_argument("--cache-dir", help="cache root (default: $HANDSYNTH_CACHE or <repo>/cache)")
    ap.add_argument("--posed-surface", type=int, metavar="STRIDE", default=0,
                    help="also measure the mapped surface against the posed dense surface on every STRIDE-th "
                         "pose (1 = all; seconds per pose): the mapping's error over poses and, with [hand.shape], "
                         "over the hand shapes")
    args = ap.parse_args(argv)
    from datagen.config import load_config
    from datagen.poses.prepared import prepare_poses

    if args.mano and args.mano_left:
        print("error: give --mano (right) or --mano-left (left), one at a time", file=sys.stderr)
        return 2
    side, mano_path = ("left", args.mano_left) if args.mano_left else ("right", args.mano)
    cfg = load_config(args.config)
    if mano_path:  # a bad file is reported at once, before the pose table is prepared
        from datagen.mapping.mano import load_mano

        try:
            load_mano(mano_path)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    prepared = prepare_poses(cfg, cache_dir=args.cache_dir, progress=True)
    try:
        m = build_mapping(prepared, topology="mano" if mano_path else "open778", mano_path=mano_path,
                          cache_dir=args.cache_dir, progress=True, side=side)
    except (ValueError, OSError) as exc:
        print(f"error: cannot build the {'mano' if mano_path else 'open778'} mapping: {exc}", file=sys.stderr)
        return 1
    print(format_report(m))
    if args.posed_surface:
        if args.posed_surface < 1:
            print("error: --posed-surface STRIDE must be >= 1", file=sys.stderr)
            return 2
        from datagen.mapping.posed import posed_surface_errors

        e = posed_surface_errors(prepared, m, range(0, len(prepared.ids), args.posed_surface), progress=True)
        worst = int(e["poses"][e["max_mm"].argmax()])
        print(f"posed surface (mapped mesh vs posed dense surface) over {len(e['poses'])} poses "
              f"(every {args.posed_surface}th): mean of per-pose means {e['mean_mm'].mean():.3f} mm "
              f"(largest {e['mean_mm'].max():.3f}), max {e['max_mm'].max():.3f} mm (pose {worst})")
        print(f"posed_poses={len(e['poses'])} posed_surface_mean_mm={e['mean_mm'].mean():.3f} "
              f"posed_surface_max_mm={e['max_mm'].max():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
