"""`python -m datagen.mano`: check a MANO file with the restricted loader, or write the MANO-format
stand-in (not MANO) the tests use.  Library: `datagen.mapping.mano`."""

from __future__ import annotations

import sys

from datagen.console import setup_logging
from datagen.mapping.mano import load_mano, mirror_arrays, standin_arrays, write_standin


def main(argv=None) -> int:
    setup_logging()
    import argparse

    ap = argparse.ArgumentParser(prog="python -m datagen.mano", description="MANO helpers")
    ap.add_argument("--write-standin", metavar="PATH",
                    help="write a MANO-format stand-in made from our own open778 hand (for tests/demos; not MANO)")
    ap.add_argument("--left", action="store_true",
                    help="with --write-standin: write the left-hand stand-in (the mirror image, MANO_LEFT.pkl's format)")
    ap.add_argument("--check", metavar="PATH", help="load a MANO file with the restricted loader and summarise it")
    ap.add_argument("--cache-dir")
    args = ap.parse_args(argv)
    if args.write_standin:
        from datagen.config import load_config
        from datagen.mapping.dense_to_778 import build_mapping
        from datagen.mapping.surface import rest_geometry
        from datagen.poses.prepared import prepare_poses

        prepared = prepare_poses(load_config(), cache_dir=args.cache_dir)
        m = build_mapping(prepared, "open778", cache_dir=args.cache_dir)
        rest = rest_geometry(prepared)
        arrays = standin_arrays(m.apply(rest["vertices"]), m.faces, rest["keypoints"],
                                prepared.asset.dense_part[m.matrix.indices])
        write_standin(args.write_standin, mirror_arrays(arrays) if args.left else arrays)
        print(f"wrote MANO-format {'left' if args.left else 'right'}-hand stand-in (not MANO) to {args.write_standin}")
    if args.check:
        try:
            m = load_mano(args.check)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"{args.check}: sha256 {m.sha256}; v_template {m.v_template.shape}, f {m.faces.shape}, "
              f"J_regressor {m.J_regressor.shape} nnz {m.J_regressor.nnz}, shapedirs {m.shapedirs.shape}, "
              f"posedirs {m.posedirs.shape}, {m.extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
