"""A picture of a packed dataset, read straight from the shards.

    python -m datagen.preview OUT_DIR [-o PNG] [-n 8] [--seed 0] [--index I]

Top: a contact sheet, four tiles per sample - the image with the 21-keypoint skeleton (hollow
circles = not visible, crosses = hidden by an occluder), the silhouette outlined on the image, the depth map colour-mapped
(turbo, near = blue, over the hand's own depth range; the range is printed on the tile), and
the 778-vertex mapped mesh shaded and blended over the image with the sample's own camera (it
must sit exactly on the hand).  Bottom: the mapped mesh and keypoints of one sample in 3D,
seen from the palm side and from the thumb side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datagen.inspect import viz as viz
from datagen.dataset.reader import ShardDataset
from datagen.geometry.mirror import mirror_mesh, mirror_points, reverse_winding


def depth_tile(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import cv2

    out = np.full((*depth.shape, 3), 40, np.uint8)
    if mask.any():
        lo, hi = float(depth[mask].min()), float(depth[mask].max())
        norm = np.clip((depth - lo) / max(hi - lo, 1e-6), 0, 1)
        col = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]
        out[mask] = col[mask]
        out = viz.label(out, f"{lo:.3f}-{hi:.3f} m", (255, 255, 255))
    return out


def mesh_overlay(img: np.ndarray, verts_cam: np.ndarray, faces: np.ndarray, K: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    shaded = viz.shade_mesh(verts_cam.astype(np.float64), faces, np.eye(3), np.zeros(3), K.astype(np.float64), w, h,
                            face_colours=np.tile([0.55, 0.75, 1.0], (len(faces), 1)))
    on = (shaded != 255).any(-1)
    out = img.copy()
    out[on] = (0.35 * img[on] + 0.65 * shaded[on]).astype(np.uint8)
    return out


def _left(s: dict) -> bool:
    return bool(s.get("handedness", 0))


def sample_tiles(s: dict, faces: np.ndarray) -> list[np.ndarray]:
    img = s["image"].transpose(1, 2, 0)
    if _left(s):  # the mirrored mesh: the template's triangles with reversed vertex order
        faces = reverse_winding(faces)
    caption = f"{'L' if _left(s) else 'R'} item {s['item_id']} p{s['pose_id']} v{s['view_id']}"
    t1 = viz.label(viz.draw_skeleton(img, s["keypoints_2d"] - 0.5, s["visible"],
                                              occluded=s.get("occluded_by_object")), caption)
    t2 = viz.label(viz.outline(img, s["mask"], (255, 255, 0)), f"silhouette {int(s['mask'].sum())} px")
    t3 = depth_tile(s["depth"], s["mask"])
    t4 = viz.label(mesh_overlay(img, s["vertices_cam"], faces, s["K"]), "778 mesh")
    return [t1, t2, t3, t4]


def view_3d(s: dict, faces: np.ndarray, size: int, ds: ShardDataset) -> list[np.ndarray]:
    """The sample's mapped mesh and keypoints in the hand frame, from the palm and the thumb side."""
    tb = ds.tables
    p = tb.pose_row[s["pose_id"]]
    # the sample's own mesh (its forearm turned with per-item wrists: Tables.item_mano)
    verts = tb.item_mano(p, s.get("wrist_deg", (np.nan, np.nan)))[0].astype(np.float64)
    kps = tb.keypoints[p].astype(np.float64)
    left = _left(s)
    if left:  # a left sample: its hand is the table's right hand mirrored (x -> -x)
        verts, faces = mirror_mesh(verts, faces)
        kps = mirror_points(kps)
    centre = 0.5 * (verts.min(0) + verts.max(0))
    extent = float(np.ptp(verts, axis=0).max())
    f = size * 1.2
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    dist = extent * 1.25 * f / size + extent / 2
    tiles = []
    for name, direction, up in (("palm side", (0, 0, 1), (0, 1, 0)), ("thumb side", (1, 0, 0.3), (0, 1, 0))):
        d = np.asarray(direction, float) * ([-1.0, 1.0, 1.0] if left else 1.0)
        R, t = viz.look_at(centre + dist * d / np.linalg.norm(d), centre, up)
        img = viz.shade_mesh(verts, faces, R, t, K, size, size)
        cam = kps @ R.T + t
        uv = cam[:, :2] / cam[:, 2:] * f + size / 2
        img = viz.draw_skeleton(img, uv - 0.5, None, thickness=2)
        tiles.append(viz.label(img, f"pose {s['pose_id']} {name} ({ds.manifest.get('topology')}, "
                                    f"{len(verts)} v)"))
    return tiles


def preview(root, out=None, n: int = 8, seed: int = 0, index: int | None = None, columns: int = 2) -> Path:
    import cv2

    ds = ShardDataset(root)
    if len(ds) == 0:
        raise ValueError(f"{root}: the dataset holds no samples")
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(ds), min(n, len(ds)), replace=False))
    faces = ds.tables.mano["faces"]
    tiles = []
    for i in picks:
        tiles += sample_tiles(ds.read_sample(int(i)), faces)
    sheet = viz.grid(tiles, columns=4 * columns)
    s3 = ds.read_sample(int(picks[0] if index is None else index))
    size = int(np.clip(sheet.shape[1] // 2 - 3, 256, 640))
    strip = viz.grid(view_3d(s3, faces, size, ds), columns=2)
    width = max(sheet.shape[1], strip.shape[1])
    pad = lambda a: np.pad(a, ((0, 0), (0, width - a.shape[1]), (0, 0)), constant_values=255)  # noqa: E731
    picture = np.vstack([pad(sheet), pad(strip)])
    out = Path(out) if out else Path(root) / "preview.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), picture[..., ::-1])
    ds.close()
    return out
