"""`python -m datagen.mapping --report`: build (or load) the dense -> 778 mapping and print its quality."""

from __future__ import annotations

import argparse
import sys

from datagen.console import setup_logging
from datagen.mapping.dense_to_778 import build_mapping, format_report


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    ap = argparse.ArgumentParser(prog="python -m datagen.mapping", description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", action="store_true", help="print the mapping-quality table (default action)")
    ap.add_argument("--mano", metavar="PATH", help="your own MANO_RIGHT.pkl (topology 'mano'); default: open778")
    ap.add_argument("--config", help="config TOML (default: configs/default.toml)")
    ap.add_argument("--cache-dir", help="cache root (default: $HANDSYNTH_CACHE or <repo>/cache)")
    args = ap.parse_args(argv)
    from datagen.config import ConfigError, load_config
    from datagen.poses.prepared import prepare_poses

    try:
        if args.mano:  # a bad file is reported at once, before the pose table is prepared
            from datagen.mapping.mano import load_mano

            load_mano(args.mano)
        cfg = load_config(args.config)
    except (ValueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    prepared = prepare_poses(cfg, cache_dir=args.cache_dir, progress=True)
    try:
        m = build_mapping(prepared, topology="mano" if args.mano else "open778", mano_path=args.mano,
                          cache_dir=args.cache_dir, progress=True)
    except (ValueError, OSError) as exc:
        print(f"error: cannot build the {'mano' if args.mano else 'open778'} mapping: {exc}", file=sys.stderr)
        return 1
    print(format_report(m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
