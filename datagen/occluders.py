"""`python -m datagen.occluders --report`: how the occluders of a config are placed, measured.

    python -m datagen.occluders --report --config configs/occluders.toml [--items 200] [--seed 0]

Draws the occluders of a seeded sample of items (spread over poses and views) as the renderer
does (datagen.scene.occluders.place, the item's own stream, the item's hand - mirrored for a
left hand - seen by its view's camera; with [cameras.jitter] the renderer uses each item's
jittered camera, which only changes the coverage test), and measures each placed
object against the posed hand with methods other than the placement's accept test: the
exhaustive contact test (every edge crossing, every vertex inside the other mesh), the
penetration depth (the largest distance from a vertex inside the other mesh to that mesh's
surface, exact closest points; 0 when none is inside) and the clearance (the smallest distance
between the object's vertices and the hand's surface, and the hand's vertices and the object's
surface).  Prints counts per kind and placement, rejections, coverage and clearance; the last
line is machine-readable:

    occluder_items=N placed=P worst_penetration_mm=X min_clearance_mm=Y
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import numpy as np

from datagen.console import config_errors_exit, setup_logging


def measure(obj_v: np.ndarray, obj_f: np.ndarray, dense: np.ndarray, faces: np.ndarray) -> dict:
    """Contact, penetration depth (m) and clearance (m) of one object against the hand."""
    from datagen.geometry.closest_point import closest_points
    from datagen.geometry.mesh_contact import mesh_contact

    c = mesh_contact(obj_v, obj_f, dense, faces)
    _, _, d_obj = closest_points(dense, faces, obj_v)  # object vertices -> hand surface
    lo, hi = obj_v.min(0) - 0.01, obj_v.max(0) + 0.01
    near = np.all((dense >= lo) & (dense <= hi), axis=1)
    d_hand = closest_points(obj_v, obj_f, dense[near])[2] if near.any() else np.array([np.inf])
    depth = max(float(d_obj[c.a_inside_b].max(initial=0.0)), float(d_hand[c.b_inside_a[near]].max(initial=0.0)))
    return {"crossings": c.crossings, "inside": int(c.a_inside_b.sum() + c.b_inside_a.sum()), "depth_m": depth,
            "clearance_m": float(min(d_obj.min(), d_hand.min()))}


def report(cfg, n_items: int, seed: int, cache_dir=None, progress: bool = True) -> list[str]:
    from datagen.cameras import views_for
    from datagen.poses.tables import ensure_tables
    from datagen.labels.handedness import handed_mesh
    from datagen.scene.items import OCCLUDER_STREAM, item_stream, make_spec
    from datagen.scene.occluders import place

    tables = ensure_tables(cfg, cache_dir)
    views = views_for(cfg.cameras, tables)
    rng = np.random.default_rng(seed)
    n_v = len(views)
    items = sorted({(int(rng.integers(tables.n_poses)), int(rng.integers(n_v))) for _ in range(n_items)})
    rows, drawn, empty, attempts, rejected = [], 0, 0, [], Counter()
    it = items
    if progress:
        from tqdm import tqdm

        it = tqdm(items, desc="occluders", unit="item", file=sys.stderr)
    for p, v in it:
        # the item's hand as the renderer labels it (mirrored for a left hand)
        hand = make_spec(cfg, 1, p, v, n_v, n_backgrounds=1).handedness
        dense, faces = handed_mesh(tables.dense_vertices(p), tables.dense_faces, hand)
        pl = place(cfg.occluders, item_stream(cfg.seed, p, v, OCCLUDER_STREAM), dense, faces,
                   tables.dense_part, views.K, views.R[v], views.t[v], views.width, views.height)
        if not pl.drawn:
            continue
        drawn += 1
        attempts.append(pl.attempts)
        rejected.update(pl.rejected)
        if not pl.objects:
            empty += 1
        for o in pl.objects:
            m = measure(o.vertices, o.faces, dense, faces)
            rows.append(dict(m, kind=o.kind, placement=o.placement, coverage=o.coverage, item=(p, v)))
    lines = [f"items sampled: {len(items)} (seed {seed}); drew an object: {drawn}; placed: {len(rows)}; "
             f"all {cfg.occluders.max_attempts} attempts failed: {empty}",
             f"attempts per drawing item: mean {np.mean(attempts) if attempts else 0:.2f}, max "
             f"{max(attempts, default=0)}; rejected draws: " + ", ".join(f"{k} {n}" for k, n in sorted(rejected.items()))]
    if rows:
        lines.append(f"{'kind':<9s} {'placement':<9s} {'n':>4s} {'coverage':>17s} {'clearance_mm':>21s} "
                     f"{'crossings':>9s} {'inside':>6s}")
        groups = sorted({(r["kind"], r["placement"]) for r in rows})
        for key in groups + [("all", "all")]:
            g = [r for r in rows if key == ("all", "all") or (r["kind"], r["placement"]) == key]
            cov = np.array([r["coverage"] for r in g])
            cl = np.array([r["clearance_m"] for r in g]) * 1e3
            lines.append(f"{key[0]:<9s} {key[1]:<9s} {len(g):4d} {cov.min():5.2f}/{np.median(cov):5.2f}/{cov.max():5.2f} "
                         f"{cl.min():6.2f}/{np.median(cl):6.2f}/{cl.max():6.1f} {sum(r['crossings'] for r in g):9d} "
                         f"{sum(r['inside'] for r in g):6d}")
        lines.append("(coverage and clearance: min/median/max)")
        worst = max(rows, key=lambda r: r["depth_m"])
        lines.append(f"worst penetration: {worst['depth_m'] * 1e3:.3f} mm (item pose {worst['item'][0]} view "
                     f"{worst['item'][1]}, {worst['kind']} {worst['placement']})")
    depth = max((r["depth_m"] for r in rows), default=0.0)
    clear = min((r["clearance_m"] for r in rows), default=float("nan"))
    lines.append(f"occluder_items={len(items)} placed={len(rows)} worst_penetration_mm={depth * 1e3:.3f} "
                 f"min_clearance_mm={clear * 1e3:.3f}")
    return lines


@config_errors_exit
def main(argv=None) -> int:
    setup_logging()
    ap = argparse.ArgumentParser(prog="python -m datagen.occluders", description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", action="store_true", help="place and measure the occluders of a sample of items")
    ap.add_argument("--config", default=None, help="dataset config (default configs/default.toml: no occluders)")
    ap.add_argument("--items", type=int, default=200, help="items sampled (default 200)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    ap.add_argument("--cache", default=None, help="prepared-cache folder (default: cache/ at the repo root)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    from datagen.config import load_config

    if not args.report:
        ap.error("nothing to do: pass --report")
    if args.items < 1:
        print(f"error: --items {args.items}: must be >= 1", file=sys.stderr)
        return 2
    cfg = load_config(args.config)
    if cfg.occluders.share <= 0:
        print(f"error: {args.config or 'configs/default.toml'} has [occluders] share = 0: no item draws an object "
              f"(try --config configs/occluders.toml)", file=sys.stderr)
        return 2
    for line in report(cfg, args.items, args.seed, args.cache, progress=not args.no_progress):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
