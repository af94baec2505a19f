"""`python -m datagen.contact_sheet`: the command-line front end of `datagen.inspect.contact_sheet`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datagen.console import setup_logging
from datagen.inspect.contact_sheet import make_sheet


def main(argv=None) -> int:
    setup_logging()
    ap = argparse.ArgumentParser(prog="python -m datagen.contact_sheet", description='Contact sheet of a RENDER_DIR: rendered items with their labels drawn on top.')
    ap.add_argument("render_dir")
    ap.add_argument("-o", "--output", "--out", dest="output", default=None,
                    help="PNG to write (default RENDER_DIR/contact_sheet.png)")
    ap.add_argument("--max", type=int, default=48, help="at most this many tiles (evenly spaced)")
    ap.add_argument("--columns", type=int, default=None)
    ap.add_argument("--scale", type=int, default=1, help="upscale tiles by this integer factor")
    ap.add_argument("--with-raw", action="store_true", help="show each render without overlays beside it")
    args = ap.parse_args(argv)
    import cv2

    try:
        sheet, n = make_sheet(args.render_dir, args.max, args.columns, args.scale, args.with_raw)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output) if args.output else Path(args.render_dir) / "contact_sheet.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    from datagen.atomic import write_bytes

    ok, buf = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        print(f"error: could not encode {out}", file=sys.stderr)
        return 1
    write_bytes(out, buf.tobytes())
    print(f"wrote {out} ({n} items)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
