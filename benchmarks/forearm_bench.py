"""Forearm benchmark: how much of the hand does the arm hide, and is its cut end ever seen?

    python benchmarks/forearm_bench.py --config CONFIG [--poses 40] [--seed 0]

For a seeded sample of poses, every view of the config's camera set is rasterised exactly
(datagen.geometry.raster, the labeller's own rasteriser) twice: the whole mesh and the hand alone
(the dense faces of parts 0..5).  Per item:
- hand_visible = hand pixels in the full render (pixels whose front triangle is a hand triangle),
- hand_alone   = hand pixels with the arm removed,
- arm_hides    = 1 - hand_visible / hand_alone (the share of the hand the arm hides),
- cap_px       = pixels whose front triangle touches the cap at the forearm's cut end.
With per-item wrists ([hand] wrist_draw = "item", the default) each item has its own arm, drawn as
the renderer draws it.  Prints per latitude ring and overall: the share of items whose arm hides more than half of the
hand (the issue's measure), the mean hidden share, and items with any cap pixel.  The last line is
    forearm_items=N arm_hides_half=X cap_visible_items=K
Pure numpy + the prepared tables; no rendering.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ARM_PART = 6


@dataclass
class ArmOcclusion:
    """Per-item arm occlusion and cap visibility over a sample (see the module docstring)."""

    pose_ids: np.ndarray  # (N,)
    view_ids: np.ndarray  # (N,)
    hand_visible_px: np.ndarray
    hand_alone_px: np.ndarray
    cap_px: np.ndarray

    @property
    def hidden(self) -> np.ndarray:
        return 1.0 - self.hand_visible_px / np.maximum(self.hand_alone_px, 1)

    def summary(self, sel=None) -> dict:
        sel = np.ones(len(self.pose_ids), bool) if sel is None else sel
        h = self.hidden[sel]
        return {"items": int(sel.sum()), "arm_hides_half": float((h > 0.5).mean()) if len(h) else 0.0,
                "mean_hidden": float(h.mean()) if len(h) else 0.0,
                "cap_visible_items": int((self.cap_px[sel] > 0).sum())}


def _front_faces(cam: np.ndarray, faces: np.ndarray, views) -> np.ndarray:
    """(H, W) front triangle per pixel (-1: none) of `faces` seen with camera-frame vertices `cam`."""
    from datagen.geometry.raster import rasterize

    return rasterize(cam, faces, views.K, views.width, views.height).face


def _hand_pixels(full: np.ndarray, face_arm: np.ndarray) -> int:
    """Pixels of a whole-mesh rasterisation whose front triangle is the hand's (not the arm's)."""
    return int((~face_arm[full[full >= 0]]).sum())


def measure(prepared, views, poses: np.ndarray, cfg=None, tables=None) -> ArmOcclusion:
    """`cfg` + `tables` (datagen.poses.tables.HandTables) with [hand] wrist_draw = "item": each
    item's own arm (datagen.scene.arm, the renderer's draw with the view's camera)."""
    from datagen.cameras.jitter import view_camera
    from datagen.mapping.open778 import cap_vertices
    from datagen.scene.arm import draw_item_arm

    a = prepared.asset
    F = np.asarray(a.dense_faces, np.int64)
    part = np.asarray(a.dense_part)
    face_arm = (part[F] == ARM_PART).all(1)
    hand_faces = F[~face_arm]
    cap = cap_vertices(a.dense_matrix, a.base_faces)  # dense vertices made of the cut loop only
    face_cap = cap[F].any(1)
    if not face_arm.any():
        face_cap[:] = False  # without a forearm the only cap is the old wrist cap, not measured here
    pids, vids, vis, alone, capn = [], [], [], [], []
    per_item = cfg is not None and cfg.hand.arm_per_item
    for p in poses:
        V = prepared.dense_vertices(int(p))
        for v in range(len(views.R)):
            if per_item:
                V = tables.dense(draw_item_arm(cfg, tables, int(p), v, view_camera(views, v), views.width,
                                               views.height).base)
            cam = V @ views.R[v].T + views.t[v]
            full = _front_faces(cam, F, views)
            vis.append(_hand_pixels(full, face_arm))
            capn.append(int(face_cap[full[full >= 0]].sum()))
            alone.append(int((_front_faces(cam, hand_faces, views) >= 0).sum()))
            pids.append(int(p))
            vids.append(v)
    return ArmOcclusion(np.asarray(pids), np.asarray(vids), np.asarray(vis, float), np.asarray(alone, float),
                        np.asarray(capn))


@dataclass
class WristDifference:
    """Our wrist keypoint vs a MANO-style wrist on the 778-vertex path, over all poses (mm).

    MANO's mesh is open at the wrist with a 16-vertex ring, and its regressed wrist joint
    (J_regressor row 0, FreiHAND's keypoint 0) sits at the middle of that opening; the
    MANO-style wrist here is the centroid of the open778 mesh's 16-vertex wrist ring (MANO's
    own regressor is not redistributable; `python -m datagen.mapping --mano` uses the real one).
    `axial_mm` is the difference along the hand's distal axis (+y: positive = the ring centroid
    lies distal of our wrist)."""

    mean_mm: float
    max_mm: float
    axial_mm: float
    lateral_mm: float


def wrist_difference(prepared) -> WristDifference:
    from datagen.mapping.dense_to_778 import build_mapping
    from datagen.mapping.open778 import boundary_loop

    m = build_mapping(prepared, progress=True)
    ring = np.asarray(boundary_loop(m.faces))
    d = []
    for p in range(len(prepared.ids)):
        v778 = m.apply(prepared.dense_vertices(p))
        d.append(v778[ring].mean(0) - prepared.keypoints[p, 0])
    d = np.asarray(d) * 1e3
    n = np.linalg.norm(d, axis=1)
    return WristDifference(float(n.mean()), float(n.max()), float(d[:, 1].mean()),
                           float(np.linalg.norm(d[:, [0, 2]], axis=1).mean()))


def wrist_grid(cfg, flexions, deviations, poses, view_step: int = 1) -> list[dict]:
    """For each wrist angle pair (flexion, deviation) applied to every pose of `poses` (the
    config's pose table, fingers as prepared): the cut end's exact frame check over all views
    (views whose frustum the cut end meets, for any of the poses), the smallest distance from a
    camera centre to the arm's surface (a camera inside or touching the arm sees its inside), and
    the share of items (poses x every `view_step`-th view) where the arm hides more than half of
    the hand."""
    from datagen.cameras.cut_end import cut_end_faces, faces_in_frame
    from datagen.cameras.hemisphere import views_for
    from datagen.geometry.closest_point import closest_points
    from datagen.hand import load_hand_model
    from datagen.hand.asset import build_asset
    from datagen.hand.base import forward_kinematics
    from datagen.poses.construction import build_pose_table
    from datagen.poses.wrist import forearm_rotation

    hand = load_hand_model(cfg.hand.model, cfg.hand.phenotype, cfg.hand.forearm_length_m)
    asset = build_asset(hand, cfg.hand.subdivision_levels)
    table = build_pose_table(hand, cfg.poses.interpolation_steps)
    views = views_for(cfg.cameras, asset)
    centres = -np.einsum("vji,vj->vi", views.R, views.t)
    F = np.asarray(asset.dense_faces, np.int64)
    part = np.asarray(asset.dense_part)
    face_arm = (part[F] == ARM_PART).all(1)
    arm_faces = F[(part[F] == ARM_PART).any(1)]
    cut = cut_end_faces(asset)
    sub = np.arange(0, len(views.R), view_step)
    rows = []
    alone = {}
    for f in flexions:
        for d in deviations:
            rot = table.rotations[np.asarray(poses)].copy()
            rot[:, hand.rig.forearm] = forearm_rotation(f, d)
            Vb = hand.skin(forward_kinematics(hand.rig, rot))
            in_frame = np.zeros(len(views.R), bool)
            clearance = np.inf
            hides = []
            crossing = 0
            for k, p in enumerate(poses):
                V = asset.dense(Vb[k])
                in_frame |= faces_in_frame(V, cut, views)
                clearance = min(clearance, float(closest_points(V, arm_faces, centres)[2].min()))
                for v in sub:
                    cam = V @ views.R[v].T + views.t[v]
                    if cam[:, 2].min() <= 0:  # the arm reaches behind the camera: the labeller refuses it
                        crossing += 1
                        continue
                    if (p, v) not in alone:
                        alone[(p, v)] = int((_front_faces(cam, F[~face_arm], views) >= 0).sum())
                    hides.append(1.0 - _hand_pixels(_front_faces(cam, F, views), face_arm) / max(alone[(p, v)], 1))
            hides = np.asarray(hides)
            rows.append({"flexion_deg": float(f), "deviation_deg": float(d),
                         "cut_end_views": int(in_frame.sum()), "camera_clearance_m": clearance,
                         "arm_hides_half": float((hides > 0.5).mean()) if len(hides) else float("nan"),
                         "mean_hidden": float(hides.mean()) if len(hides) else float("nan"),
                         "items_crossing_camera_plane": crossing})
            print(f"flexion {f:+6.1f} deviation {d:+6.1f}: cut end in frame in {in_frame.sum():3d}/{len(views.R)} "
                  f"views, camera clearance {clearance * 100:5.1f} cm, arm hides > 1/2 in "
                  f"{rows[-1]['arm_hides_half']:.3f} (mean hidden {rows[-1]['mean_hidden']:.3f}); "
                  f"{crossing}/{crossing + len(hides)} items with the arm behind the camera plane", flush=True)
    return rows


def main(argv=None) -> int:
    from datagen.cameras.hemisphere import views_for
    from datagen.config import load_config
    from datagen.poses.prepared import prepare_poses

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=None)
    ap.add_argument("--poses", type=int, default=40, help="poses sampled (each with every view)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the per-item numbers here (.json)")
    ap.add_argument("--wrist", action="store_true", help="only: our wrist vs the MANO-style wrist on the 778 path")
    ap.add_argument("--cut-end", action="store_true",
                    help="only: the cut end's exact frame check, every pose x every view of the config")
    ap.add_argument("--wrist-grid", default=None, metavar="F0:F1:STEP,D0:D1:STEP",
                    help="only: per wrist angle pair of this grid (degrees), cut end in frame, camera clearance "
                         "and arm occlusion (with --poses poses, --view-step)")
    ap.add_argument("--view-step", type=int, default=2, help="--wrist-grid: rasterise every n-th view")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except Exception as e:  # noqa: BLE001 - a bad config: say which, exit non-zero
        print(f"forearm_bench: {e}", file=sys.stderr)
        return 2
    if not cfg.hand.forearm:
        print("forearm_bench: the config has no forearm ([hand] forearm = false)", file=sys.stderr)
        return 2
    if args.wrist_grid:
        try:
            (f0, f1, fs), (d0, d1, ds) = [[float(x) for x in part.split(":")] for part in args.wrist_grid.split(",")]
        except ValueError:
            print(f"forearm_bench: --wrist-grid {args.wrist_grid!r}: expected F0:F1:STEP,D0:D1:STEP", file=sys.stderr)
            return 2
        poses = np.sort(np.random.default_rng(args.seed).choice(1520, args.poses, replace=False))
        rows = wrist_grid(cfg, np.arange(f0, f1 + 1e-9, fs), np.arange(d0, d1 + 1e-9, ds), poses, args.view_step)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"poses": poses.tolist(), "view_step": args.view_step, "grid": rows}))
        best = min(rows, key=lambda r: (r["cut_end_views"], r["arm_hides_half"]))
        print(f"wrist_grid_points={len(rows)} min_cut_end_views={best['cut_end_views']} "
              f"at_flexion={best['flexion_deg']:+.1f} at_deviation={best['deviation_deg']:+.1f}")
        return 0
    prepared = prepare_poses(cfg, progress=True)
    if args.wrist:
        w = wrist_difference(prepared)
        print(f"wrist vs MANO-style (778 wrist-ring centroid), all {len(prepared.ids)} poses: mean {w.mean_mm:.1f} mm, "
              f"max {w.max_mm:.1f} mm; along +y (distal) {w.axial_mm:+.1f} mm, across {w.lateral_mm:.1f} mm")
        print(f"wrist_vs_mano_mm={w.mean_mm:.2f}")
        return 0
    views = views_for(cfg.cameras, prepared.asset)
    if args.cut_end:
        from datagen.cameras.cut_end import cut_end_report

        if cfg.hand.arm_per_item:
            print("forearm_bench: --cut-end checks the pose table's arms; with per-item wrists every item's arm is "
                  "checked when it is drawn (python -m datagen.cameras --report; the default run's cap_visible_items "
                  "rasterises it)", file=sys.stderr)
            return 2
        r = cut_end_report(prepared, views, progress=True)
        n_lon = cfg.cameras.longitudes
        for ring in range(len(views.R) // n_lon):
            sl = r.in_frame[:, ring * n_lon:(ring + 1) * n_lon]
            print(f"ring {ring}: cut end in frame in {sl.mean():.3f} of the items, in {sl.any(0).sum()}/{n_lon} views "
                  f"for some pose")
        print(f"cut_end_items={r.in_frame.size} cut_end_in_frame={r.item_share:.4f} "
              f"views_with_cut_end={int(r.in_frame.any(0).sum())}")
        return 0
    poses = np.sort(np.random.default_rng(args.seed).choice(len(prepared.ids), args.poses, replace=False))
    tables = None
    if cfg.hand.arm_per_item:
        from datagen.poses.tables import ensure_tables

        tables = ensure_tables(cfg)
    m = measure(prepared, views, poses, cfg, tables)
    n_lon = cfg.cameras.longitudes
    print(f"{'group':24s} {'items':>6s} {'hides>1/2':>10s} {'mean hidden':>12s} {'cap seen':>9s}")
    rows = {}
    for ring in range(len(views.R) // n_lon):
        s = m.summary(m.view_ids // n_lon == ring)
        lat = cfg.cameras.latitude_start_deg + ring * cfg.cameras.latitude_step_deg
        rows[f"ring {ring}"] = s
        print(f"ring {ring} (lat {lat:.0f} deg){'':8s} {s['items']:6d} {s['arm_hides_half']:10.3f} "
              f"{s['mean_hidden']:12.3f} {s['cap_visible_items']:9d}")
    s = m.summary()
    print(f"{'overall':24s} {s['items']:6d} {s['arm_hides_half']:10.3f} {s['mean_hidden']:12.3f} "
          f"{s['cap_visible_items']:9d}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"overall": s, "rings": rows, "items": {
            k: np.asarray(v).tolist() for k, v in asdict(m).items()}}))
    print(f"forearm_items={s['items']} arm_hides_half={s['arm_hides_half']:.3f} "
          f"cap_visible_items={s['cap_visible_items']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
