"""`python -m datagen.verify`: the command-line front end of `datagen.dataset.verify`."""

from __future__ import annotations

import argparse
import sys

from datagen.console import setup_logging
from datagen.dataset.verify import verify


def main(argv=None) -> int:
    setup_logging()
    ap = argparse.ArgumentParser(prog="python -m datagen.verify", description='Check a packed dataset: files, checksums, counts, schema and label sanity.')
    ap.add_argument("out_dir")
    ap.add_argument("--quick", action="store_true", help="files, checksums, counts and schema only")
    ap.add_argument("--labels", type=int, default=None, metavar="N", help="label-check N random samples per shard "
                                                                            "(default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    rep = verify(args.out_dir, args.labels, args.quick, args.seed, progress=not args.no_progress)
    print(rep.text())
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
