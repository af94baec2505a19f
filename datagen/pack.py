"""`python -m datagen.pack`: the command-line front end of `datagen.dataset.pack`."""

from __future__ import annotations

import argparse
import sys

from datagen.console import setup_logging
from datagen.dataset import shards as S
from datagen.dataset.pack import PackError, pack


def main(argv=None) -> int:
    setup_logging()
    ap = argparse.ArgumentParser(prog="python -m datagen.pack", description='Pack a render directory into HDF5 shards + tables + manifest (docs/DATASET.md).')
    ap.add_argument("render_dir", help="the renderer's output folder (docs/ARCHITECTURE.md)")
    ap.add_argument("out_dir", help="where the shards, tables.h5 and manifest.json go")
    ap.add_argument("--shard-size-mb", type=float, default=1024, help="target shard size (default 1024)")
    ap.add_argument("--topology", choices=("open778", "mano"), default="open778",
                    help="778-vertex mesh: open778 (embedded, no MANO) or mano (needs --mano)")
    ap.add_argument("--mano", metavar="PATH", help="your MANO_RIGHT.pkl (for --topology mano)")
    ap.add_argument("--mano-left", metavar="PATH",
                    help="your MANO_LEFT.pkl (with --topology mano): left items get the left model's vertices; "
                         "without it they get the right model's registration mirrored")
    ap.add_argument("--skip-bad", action="store_true",
                    help="leave out incomplete/corrupt items (recorded in the manifest) instead of stopping")
    ap.add_argument("--image-codec", choices=list(S.IMAGE_CODECS), default=S.DEFAULT_CODECS["image"])
    ap.add_argument("--depth-codec", choices=list(S.DEPTH_CODECS), default=None,
                    help=f"default {S.DEFAULT_CODECS['depth']}; a render with occluders: {S.OCCLUDER_DEPTH_CODEC}")
    ap.add_argument("--mask-codec", choices=list(S.MASK_CODECS), default=S.DEFAULT_CODECS["mask"])
    ap.add_argument("--codec", action="append", default=[], metavar="PASS=CODEC",
                    help="codec of a further label pass (default: the pass's own default)")
    ap.add_argument("--workers", type=int, default=2, help="threads reading and decoding render files")
    ap.add_argument("--cache", default=None, help="cache folder for the mapping (default: cache/)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    codecs = {"image": args.image_codec, "mask": args.mask_codec}
    if args.depth_codec is not None:  # else the packer's choice (it depends on the render: occluders)
        codecs["depth"] = args.depth_codec
    for spec in args.codec:
        name, sep, value = spec.partition("=")
        if not sep or not name or not value:
            print(f"pack: --codec {spec!r}: use PASS=CODEC", file=sys.stderr)
            return 2
        codecs[name] = value
    try:
        pack(args.render_dir, args.out_dir, args.shard_size_mb, args.topology, args.mano, args.skip_bad,
             codecs,
             progress=not args.no_progress, workers=args.workers, cache_dir=args.cache, mano_left_path=args.mano_left)
    except PackError as exc:
        print(f"pack: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk while writing shards, tables or the manifest
        from datagen import atomic

        print(f"pack: {atomic.as_write_error(exc, exc.filename or args.out_dir)}; the shards finished so far are "
              f"kept - run the same command again to continue", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
