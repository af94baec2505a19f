"""Toy data shared by the tests: a toy hand mesh, a RENDER_DIR written the documented way
(exact silhouettes and depth from the rasteriser), a stub 778 mapping and packing helpers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from datagen.cameras.hemisphere import hemisphere
from datagen.cameras.jitter import item_camera
from datagen.config import CameraConfig
from datagen.dataset import shards as S
from datagen.dataset.pack import pack
from datagen.geometry.raster import rasterize
from datagen.hand.asset import HandAsset
from datagen.mapping.mano import MANO_PARENTS

REPO = Path(__file__).resolve().parent.parent.parent


SURFACE = (0, 4, 8, 12, 16, 20)  # wrist and fingertips lie on the skin, other keypoints inside


FLESH = np.array([0.0] + [0.04, 0.025, 0.02, 0.0] + [0.04, 0.02, 0.02, 0.0] * 4)  # as the renderer's contract


def toy_mesh(rings: int = 8, segments: int = 97):
    """A closed, elongated 'hand' along +y: 2 poles + rings x segments = 778 vertices."""
    v = [(0.0, 0.0, 0.0)]
    for i in range(1, rings + 1):
        a = np.pi * i / (rings + 1)
        for j in range(segments):
            b = 2 * np.pi * j / segments
            v.append((0.035 * np.sin(a) * np.cos(b), 0.09 * (1 - np.cos(a)), 0.02 * np.sin(a) * np.sin(b)))
    v.append((0.0, 0.18, 0.0))
    v = np.asarray(v)
    f = []
    top, bottom = 0, len(v) - 1
    ring = lambda i, j: 1 + i * segments + j % segments  # noqa: E731
    for j in range(segments):
        f.append((top, ring(0, j + 1), ring(0, j)))
        f.append((bottom, ring(rings - 1, j), ring(rings - 1, j + 1)))
        for i in range(rings - 1):
            f.append((ring(i, j), ring(i, j + 1), ring(i + 1, j)))
            f.append((ring(i + 1, j), ring(i, j + 1), ring(i + 1, j + 1)))
    return v, np.asarray(f, np.int64)[:, ::-1].copy()  # counter-clockwise seen from outside


def toy_asset() -> HandAsset:
    v, f = toy_mesh()
    n = len(v)
    heads = np.linspace([0, 0.0, 0], [0, 0.15, 0], 16)
    return HandAsset(
        name="toy", base_faces=f, dense_matrix=sp.identity(n, format="csr"), dense_faces=f,
        dense_quads=np.zeros((0, 4), np.int64), bone_names=tuple(f"b{i}" for i in range(16)),
        parents=np.arange(-1, 15), rest_heads=heads, rest_tails=heads + [0, 0.01, 0],
        joint_bones=np.arange(16), wrist_vertex=0, tip_faces=np.arange(5), tip_barycentric=np.full((5, 3), 1 / 3),
        base_part=np.zeros(n, np.int64), dense_part=np.zeros(n, np.int64), rest_base_vertices=v,
        palm_centre=np.array([0.0, 0.06, 0.0]), licence={"name": "toy", "licence": "CC0-1.0"},
        versions={"toy": "1"})


class StubMapping:
    """Same interface as datagen.mapping.Mapping: a vertex permutation of the toy mesh."""

    def __init__(self, n: int = 778, seed: int = 1):
        perm = np.random.default_rng(seed).permutation(n)
        self.perm = perm
        self.topology = "open778"
        self.matrix = sp.csr_matrix((np.ones(n), (np.arange(n), perm)), shape=(n, n))
        inv = np.argsort(perm)
        self.faces = inv[toy_mesh()[1]]
        self.joint_regressor = np.zeros((21, n))
        self.joint_regressor[np.arange(21), np.arange(21) * 30] = 1.0
        self.quality = {"surface_mean_mm": 0.0, "surface_max_mm": 0.0, "flipped_faces": 0}
        self.source = {"method": "test stub"}

    def apply(self, dense):
        return np.asarray(dense)[..., self.perm, :]


def pose_mesh(asset: HandAsset, pose: int):
    """Pose p: the toy bent by a pose-dependent amount about x, keypoints on/inside it."""
    v = asset.rest_base_vertices.copy()
    ang = 0.25 * pose * v[:, 1] / 0.18
    y, z = v[:, 1].copy(), v[:, 2].copy()
    v[:, 1], v[:, 2] = y * np.cos(ang) - z * np.sin(ang), y * np.sin(ang) + z * np.cos(ang)
    idx = np.linspace(1, len(v) - 2, 21).astype(int)
    kp = v[idx].copy()
    inner = [k for k in range(21) if k not in SURFACE]
    kp[inner] *= np.array([0.5, 1.0, 0.5])  # joint centres inside the body, tips on the skin
    return v, kp


def make_render_dir(root: Path, n_poses: int = 3, n_views: int = 4, size: int = 64, seed: int = 0,
                    left=(), jitter=None, shapes: bool = False) -> Path:
    """Write a complete RENDER_DIR (docs/ARCHITECTURE.md) for the toy hand; items (pose, view)
    in `left` are left hands (the mirrored mesh, datagen.labels.handedness).  `jitter`: a
    CameraJitterConfig; every item then has its own camera (datagen.cameras.jitter).  `shapes`: as with
    [hand.shape], per-pose shapes in poses.npz and each item's `shape` record."""
    from datagen.labels.handedness import handed_mesh, handed_points

    left = {tuple(x) for x in left}
    root = Path(root)
    asset = toy_asset()
    cam_cfg = CameraConfig(longitudes=n_views, longitude_step_deg=360 / n_views, latitudes=1, width=size,
                           height=size, focal_px=size * 1.46, radius_m=0.34)
    views = hemisphere(cam_cfg, np.zeros(3), asset.palm_centre)
    (root / "meshes").mkdir(parents=True, exist_ok=True)
    asset.save(root / "hand.npz")
    np.savez(root / "views.npz", K=views.K, R=views.R, t=views.t, centres=views.centres,
             longitude_deg=views.longitude_deg, latitude_deg=views.latitude_deg)
    P = max(n_poses, 3)
    pose_a = np.arange(P)
    pose_a[2] = 1  # pose 2 repeats pose 1's finger states (the real table repeats 285 poses)
    shape = {}
    if shapes:
        from datagen.hand.shape import draw_phenotypes

        names = ("gender", "height")
        lengths = np.linspace(0.16, 0.20, P)  # across the three bands
        shape = dict(shape_names=np.asarray(names),
                     shape_values=draw_phenotypes(pose_a, seed, names, {}, {"gender": (0.0, 1.0), "height": (0.3, 0.7)}),
                     shape_measure_names=np.asarray(["hand_length_m", "palm_width_m"]),
                     shape_measures=np.stack([lengths, np.full(P, 0.065)], 1))
    np.savez(root / "poses.npz", ids=np.arange(P), pose_a=pose_a, pose_b=pose_a, t=np.zeros(P),
             rotations=np.tile(np.eye(3), (P, 16, 1, 1)), **shape)
    hdris = [{"name": "studio", "file": "studio.exr", "licence": "CC0-1.0"},
             {"name": "forest", "file": "forest.hdr", "licence": "CC0-1.0"}]
    cams = {"width": size, "height": size}
    if jitter is not None:
        import dataclasses

        cams["jitter"] = json.loads(json.dumps(dataclasses.asdict(jitter)))
    run = {"config": {"seed": seed, "cameras": cams}, "seed": seed,
           "versions": {"bpy": "toy"}, "hand": asset.licence, "hdris": hdris,
           "visibility": {"surface_keypoints": list(SURFACE), "surface_tolerance_m": 0.004,
                          "joint_flesh_m": FLESH.tolist()}}
    (root / "run.json").write_text(json.dumps(run))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for p in range(n_poses):
        v, kp = pose_mesh(asset, p)
        np.savez(root / "meshes" / f"pose_{p:05d}.npz", dense=v.astype(np.float32), base=v.astype(np.float32),
                 keypoints=kp.astype(np.float32))
        d = root / "items" / f"{p:05d}"
        d.mkdir(parents=True, exist_ok=True)
        for view in range(n_views):
            hand = "left" if (p, view) in left else "right"
            R, t, K = views.R[view], views.t[view], views.K
            hv, hf = handed_mesh(v, asset.dense_faces, hand)
            jit = None
            if jitter is not None:
                cam = item_camera(jitter, views, view, seed, p, hv, handed_points(asset.palm_centre, hand))
                R, t, K, jit = cam.R, cam.t, cam.K, cam.jitter
            cam = hv @ R.T + t
            r = rasterize(cam, hf, K, size, size)
            kc = handed_points(kp.astype(np.float32).astype(np.float64), hand) @ R.T + t
            uv = kc[:, :2] / kc[:, 2:] * K[[0, 1], [0, 1]] + K[:2, 2]
            inside = (uv >= 0).all(1) & (uv < size).all(1)
            px = np.clip(np.floor(uv).astype(int), 0, size - 1)
            dz = r.depth[px[:, 1], px[:, 0]]
            gap = np.where(inside & (dz > 0), kc[:, 2] - dz, np.nan)
            surface = np.isin(np.arange(21), SURFACE)
            with np.errstate(invalid="ignore"):
                vis = inside & (dz > 0) & np.where(surface, np.abs(gap) < 0.002, (gap >= 0) & (gap < FLESH))
            img = np.stack([(xx * 3 + p * 40) % 256, (yy * 3 + view * 60) % 256, np.full_like(xx, 90)], -1)
            img = img.astype(np.uint8)
            img[r.mask] = (rng.integers(150, 230, size=3) * (0.6 + 0.4 * rng.random((r.mask.sum(), 1)))).astype(np.uint8)
            base = d / f"v{view:03d}"
            import cv2

            cv2.imwrite(str(base) + ".png", img[..., ::-1])
            cv2.imwrite(str(base) + ".mask.png", r.mask.astype(np.uint8) * 255)
            np.save(str(base) + ".depth.npy", r.depth)
            labels = {"pose_id": p, "view_id": view, "item_id": p * n_views + view,
                      "seed": [seed, p, view], "handedness": hand, "keypoints_2d": uv.tolist(), "keypoints_3d_cam": kc.tolist(),
                      "visible": vis.tolist(), "in_frame": inside.tolist(),
                      "depth_gap_m": [None if np.isnan(g) else float(g) for g in gap],
                      "K": K.tolist(), "R": R.tolist(), "t": t.tolist(),
                      "hdri": {"name": hdris[(p + view) % 2]["name"], "file": hdris[(p + view) % 2]["file"],
                               "rotation_deg": 10.0 * view, "strength": 1.0 + 0.1 * p},
                      "skin": {"melanin": 0.1 * p, "redness": 0.5, "roughness": 0.4},
                      "mask_area_px": int(r.mask.sum()), "render": {"samples": 16}, "versions": {"bpy": "toy"}}
            if jit is not None:
                labels["camera_jitter"] = jit
            if shapes:
                from datagen.hand.shape import shape_record

                labels["shape"] = shape_record(names, shape["shape_values"][p], *shape["shape_measures"][p])
            (Path(str(base) + ".json")).write_text(json.dumps(labels))
    return root


def run_pack(render, out, **kw):
    kw.setdefault("mapping", StubMapping())
    kw.setdefault("progress", False)
    return pack(render, out, log=lambda *_: None, **kw)


def rehash_manifest(root, name):
    """Make the manifest agree with an edited file, so only the label checks can notice."""
    m = json.loads((root / "manifest.json").read_text())
    for e in m["shards"] + [m["tables"]]:
        if e["file"] == name:
            e["sha256"], e["bytes"] = S.sha256_file(root / name), (root / name).stat().st_size
    (root / "manifest.json").write_text(json.dumps(m))


def synthetic_mano_arrays(seed=0):
    """Random arrays with the keys, shapes and pickle types of a MANO model file (not a hand)."""
    rng = np.random.default_rng(seed)
    V = rng.normal(scale=0.03, size=(778, 3))
    F = rng.integers(0, 778, size=(1538, 3)).astype(np.uint32)
    J = sp.random(16, 778, density=0.01, random_state=seed, format="csc")
    W = rng.random((778, 16))
    return {"v_template": V, "f": F, "J_regressor": J, "weights": W / W.sum(1, keepdims=True),
            "kintree_table": np.array([[2**32 - 1] + MANO_PARENTS[1:], list(range(16))], dtype=np.int64),
            "shapedirs": rng.normal(size=(778, 3, 10)), "posedirs": rng.normal(size=(778, 3, 135)),
            "hands_components": rng.normal(size=(45, 45)), "hands_mean": rng.normal(size=45),
            "J": rng.normal(size=(16, 3)), "bs_style": "lbs", "bs_type": "lrotmin"}
