"""`python -m datagen.preview`: the command-line front end of `datagen.inspect.preview`."""

from __future__ import annotations

import argparse
import sys

from datagen.console import setup_logging
from datagen.inspect.preview import preview


def main(argv=None) -> int:
    setup_logging()
    ap = argparse.ArgumentParser(prog="python -m datagen.preview", description='A picture of a packed dataset, read straight from the shards.')
    ap.add_argument("out_dir", help="a packed dataset (python -m datagen.pack)")
    ap.add_argument("-o", "--output", help="PNG to write (default: OUT_DIR/preview.png)")
    ap.add_argument("-n", type=int, default=8, help="samples on the contact sheet (default 8)")
    ap.add_argument("--seed", type=int, default=0, help="which samples (random, seeded)")
    ap.add_argument("--index", type=int, default=None, help="sample for the 3D view (default: the first shown)")
    ap.add_argument("--columns", type=int, default=2, help="samples per row")
    args = ap.parse_args(argv)
    try:
        path = preview(args.out_dir, args.output, args.n, args.seed, args.index, args.columns)
    except (FileNotFoundError, ValueError) as exc:
        print(f"preview: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
