"""Forearm benchmark: how much of the hand does the arm hide, and is its cut end ever seen?

    python benchmarks/forearm_bench.py --config CONFIG [--poses 40] [--seed 0]

For a seeded sample of poses, every view of the config's camera set is rasterised exactly
(datagen.geometry.raster, the labeller's own rasteriser) twice: the whole mesh and the hand alone
(the dense faces of parts 0..5).  Per item:
- hand_visible = hand pixels in the full render (pixels whose front triangle is a hand triangle),
- hand_alone   = hand pixels with the arm removed,
- arm_hides    = 1 - hand_visible / hand_alone (the share of the hand the arm hides),
- cap_px       = pixels whose front triangle touches the cap at the forearm's cut end.
Prints per latitude ring and overall: the share of items whose arm hides more than half of the
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


def measure(prepared, views, poses: np.ndarray) -> ArmOcclusion:
    from datagen.geometry.raster import rasterize
    from datagen.mapping.open778 import cap_vertices

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
    for p in poses:
        V = prepared.dense_vertices(int(p))
        for v in range(len(views.R)):
            cam = V @ views.R[v].T + views.t[v]
            full = rasterize(cam, F, views.K, views.width, views.height).face
            only = rasterize(cam, hand_faces, views.K, views.width, views.height).face
            hit = full >= 0
            vis.append(int((~face_arm[full[hit]]).sum()))
            capn.append(int(face_cap[full[hit]].sum()))
            alone.append(int((only >= 0).sum()))
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
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    prepared = prepare_poses(cfg, progress=True)
    if args.wrist:
        w = wrist_difference(prepared)
        print(f"wrist vs MANO-style (778 wrist-ring centroid), all {len(prepared.ids)} poses: mean {w.mean_mm:.1f} mm, "
              f"max {w.max_mm:.1f} mm; along +y (distal) {w.axial_mm:+.1f} mm, across {w.lateral_mm:.1f} mm")
        print(f"wrist_vs_mano_mm={w.mean_mm:.2f}")
        return 0
    views = views_for(cfg.cameras, prepared.asset)
    poses = np.sort(np.random.default_rng(args.seed).choice(len(prepared.ids), args.poses, replace=False))
    m = measure(prepared, views, poses)
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
