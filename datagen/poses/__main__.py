"""`python -m datagen.poses`: the pose table's report, export and pose sheet.

    python -m datagen.poses --report        # interpenetration of all 1520 poses; last line is the summary
    python -m datagen.poses --sheet X.png   # the 32 base poses and one interpolated sequence
    python -m datagen.poses --export X.npz  # the pose table

    python -m datagen.poses --shapes --config configs/shapes.toml   # hand sizes over the drawn shapes

`--config configs/splay.toml` (finger splay) or `configs/families.toml` (pose families after
id 1519) report, draw and export those tables instead (docs/POSES.md "Options beyond the paper").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from datagen.console import config_errors_exit, setup_logging
from datagen.poses.construction import pair_list, check_limits


def write_pose_sheet(prepared, path, size: int = 160, splay: bool = False, families: dict | None = None) -> None:
    """The 32 base poses (palm-side three-quarter view) and the 7 -> 15 sequence of the paper's Fig. 11.

    With splay on, a row of base poses seen square onto the palm follows (the spread is in the
    palm plane); with hand shapes, a row of 8 poses whose hands span the drawn hand lengths
    (shortest to longest, labelled with length and band); with pose families ({name: count}, in id order after the paper's poses), up
    to 8 poses of each family, one row per family.
    """
    import imageio.v3 as iio

    from datagen.inspect.viz import PART_COLOURS, grid, label, look_at, shade_mesh

    a = prepared.asset
    K = np.array([[size * 2.3, 0, size / 2], [0, size * 2.3, size / 2], [0, 0, 1.0]])
    colours = PART_COLOURS[a.dense_part[a.dense_faces[:, 0]]] * 0.6 + 0.4
    R, t = look_at(a.palm_centre + np.array([0.18, 0.02, 0.45]), a.palm_centre + np.array([0, 0.03, 0]), (0, 1, 0))

    def tile(pid, text, R=R, t=t):
        img = shade_mesh(prepared.dense_vertices(pid), a.dense_faces, R, t, K, size, size, colours)
        return label(img, text)

    def row(t_list):
        blank = np.full_like(t_list[0], 255)
        return t_list + [blank] * (-len(t_list) % 8)

    tiles = [tile(m, f"{m}: {format(m, '05b')[::-1]}") for m in range(32)]
    pair = pair_list().index((7, 15))
    seq = [7] + [32 + 3 * pair + s for s in range(3)] + [15]
    tiles += row([tile(pid, f"{pid} t={prepared.t[pid]:.2f}" if pid >= 32 else f"{pid}") for pid in seq])
    if splay:
        aim = a.palm_centre + np.array([0.0, 0.04, 0.0])  # between palm and fingertips
        Rp, tp = look_at(aim + np.array([0.0, 0.0, 0.6]), aim, (0, 1, 0))
        tiles += row([tile(pid, f"{pid} palm-on", Rp, tp) for pid in (0, 1, 16, 17, 2, 4, 8, 6)])
    if getattr(prepared, "shape_measures", None) is not None:
        # Hand shapes: 8 poses whose hands span the drawn hand lengths (shortest .. longest), then
        # the same 8 hands' lengths in the labels; one row of the open-hand-like base poses too.
        from datagen.hand.shape import shape_band

        length = prepared.shape_measures[:, 0]
        order = np.argsort(length, kind="stable")
        picks = [int(order[round(q * (len(order) - 1))]) for q in np.linspace(0, 1, 8)]
        tiles += row([tile(pid, f"{pid} {length[pid] * 1e3:.0f}mm {shape_band(length[pid])}") for pid in picks])
    start = len(prepared.ids) - sum((families or {}).values())  # the families follow the paper's poses
    for name, n in (families or {}).items():
        tiles += row([tile(pid, f"{pid} {name}") for pid in range(start, start + min(n, 8))])
        start += n
    iio.imwrite(path, grid(tiles, 8))


def shape_report(prepared, cfg) -> str:
    """Sizes of the drawn hands (one per canonical pose, open hand) against adult anthropometry."""
    from datagen.hand.shape import ANTHROPOMETRY_MM, BAND_EDGES_MM, BAND_NAMES, shape_band

    rows = np.unique(prepared.canonical)
    m = {str(n).removesuffix("_m"): prepared.shape_measures[rows, i] * 1e3
         for i, n in enumerate(prepared.shape_measure_names)}
    ranges = ", ".join(f"{k} {lo:g}-{hi:g}" for k, (lo, hi) in cfg.hand.shape.items())
    lines = [f"hand shapes: {len(rows)} drawn hands (one per canonical pose), ranges: {ranges}; others at "
             f"[hand.phenotype]", "", f"{'measure (mm, open hand)':<28}{'p5':>8}{'p50':>8}{'p95':>8}"]
    pct = {k: np.percentile(v, [5, 50, 95]) for k, v in m.items()}
    for k, (a, b, c) in pct.items():
        lines.append(f"{k:<28}{a:8.1f}{b:8.1f}{c:8.1f}")
    lines += ["", "published adult hands (Pheasant & Haslegrave, Bodyspace 3rd ed. 2006; British adults 19-65):"]
    for k, by in ANTHROPOMETRY_MM.items():
        for who, (a, b, c) in by.items():
            lines.append(f"{k + ' ' + who:<28}{a:8.1f}{b:8.1f}{c:8.1f}")
    bands = [shape_band(x / 1e3) for x in m["hand_length"]]
    lines.append("")
    lines.append("shape bands (hand length edges " + " / ".join(f"{e:g}" for e in BAND_EDGES_MM) + " mm): "
                 + ", ".join(f"{b} {bands.count(b)}" for b in BAND_NAMES))
    hl, pb = pct["hand_length"], pct["palm_breadth"]
    lines.append(f"shapes={len(rows)} hand_length_mm={hl[0]:.1f}/{hl[1]:.1f}/{hl[2]:.1f} "
                 f"palm_breadth_mm={pb[0]:.1f}/{pb[1]:.1f}/{pb[2]:.1f}")
    return "\n".join(lines)


@config_errors_exit
def main(argv=None) -> int:
    setup_logging()
    from datagen.poses.prepared import prepare_poses

    ap = argparse.ArgumentParser(prog="python -m datagen.poses", description="The pose space of the complement dataset: 32 base poses, 496 pairs, 1520 poses.")
    ap.add_argument("--config", help="dataset config (TOML); default: configs/default.toml")
    ap.add_argument("--report", action="store_true", help="measure interpenetration of all poses and print it")
    ap.add_argument("--export", metavar="PATH", help="write the pose table (.npz: ids, provenance, rotations, keypoints)")
    ap.add_argument("--sheet", metavar="PNG", help="draw the 32 base poses and one interpolated sequence")
    ap.add_argument("--shapes", action="store_true",
                    help="with [hand.shape]: hand length, palm width/breadth and bone lengths over the drawn "
                         "shapes (5th/50th/95th percentiles) against published adult anthropometry")
    ap.add_argument("--cache", default=None, help="cache folder (default: cache/ at the repo root)")
    args = ap.parse_args(argv)
    from datagen.config import load_config
    from datagen.poses.prepared import default_cache_dir

    cfg = load_config(args.config)
    if args.shapes and not cfg.hand.shape:
        print("error: --shapes needs a config with [hand.shape] ranges (e.g. --config configs/shapes.toml)",
              file=sys.stderr)
        return 2
    cache = Path(args.cache) if args.cache else default_cache_dir()
    prepared = prepare_poses(cfg, cache_dir=cache, progress=True)
    if args.export:
        prepared.export_table(args.export)
        print(f"wrote {args.export}")
    if args.sheet:
        write_pose_sheet(prepared, args.sheet, splay=cfg.poses.splay, families=cfg.poses.families)
        print(f"wrote {args.sheet}")
    from datagen.hand import hand_model_entry

    problems = check_limits(hand_model_entry(cfg.hand.model).pose_angles)  # the model's own tables
    for p in problems:
        print("joint limit:", p)
    if args.shapes:
        print(shape_report(prepared, cfg))
    if args.report or not (args.export or args.sheet or args.shapes):
        from datagen.poses.collision import penetration_report, wrist_range_rotations

        wrists = wrist_range_rotations(cfg)
        if wrists:
            print(f"per-item wrists: the fingers-arm pairs are also checked with the arm at {len(wrists)} corners and "
                  "edge midpoints of the wrist ranges")
        report = penetration_report(prepared, progress=True, cache_dir=cache, wrists=wrists)
        print(report.table())
        n_distinct = len(np.unique(prepared.canonical))
        print(f"distinct poses: {n_distinct} of {len(prepared.ids)} (midpoints of pairs that differ only in "
              "the direction their fingers move coincide; see datagen.poses.canonical_ids)")
        n_family = sum(cfg.poses.families.values())
        families = f"families={n_family} " if n_family else ""
        print(
            f"poses={len(prepared.ids)} base=32 pairs={len(pair_list())} {families}"
            f"penetrating_over_2mm={report.count_over(0.002)} worst_penetration_mm={report.worst_mm:.2f}"
        )
    return 1 if problems else 0



if __name__ == "__main__":
    sys.exit(main())
