"""Pictures for people: shaded meshes, skeletons in FreiHAND colours, image grids.

Everything here draws with numpy and OpenCV on the CPU, so a contact sheet or a pose
overview needs no Blender and no display.
"""

from __future__ import annotations

import numpy as np

from datagen.geometry.normals import face_normals

# Bones of the 21-keypoint skeleton (FreiHAND order) and one colour per finger (RGB).
SKELETON = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11),
            (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20)]
FINGER_COLOURS = [(255, 60, 60), (255, 170, 0), (60, 200, 60), (40, 140, 255), (200, 60, 255)]
PART_COLOURS = np.array([[200, 170, 150]] + [list(c) for c in FINGER_COLOURS] + [[170, 150, 140]],  # palm, fingers, forearm
                        dtype=np.float64) / 255


def finger_of(keypoint: int) -> int:
    return max(0, (keypoint - 1) // 4)


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera (R, t), OpenCV axes, image-up along `up` projected on the image plane."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    down = -(up - np.dot(up, z) * z)
    n = np.linalg.norm(down)
    if n < 1e-9:
        raise ValueError("look_at: view direction parallel to up")
    y = down / n
    x = np.cross(y, z)
    R = np.stack([x, y, z])
    return R, -R @ eye


def shade_mesh(vertices, faces, R, t, K, width, height, face_colours=None, light=(0.3, -0.5, -1.0)):
    """A quick flat-shaded RGB uint8 picture of a mesh (white background)."""
    from datagen.geometry.raster import rasterize

    cam = vertices @ R.T + t
    r = rasterize(cam, faces, K, width, height)
    n = face_normals(cam, faces, unit=True)
    lvec = np.asarray(light, dtype=np.float64)
    lvec /= np.linalg.norm(lvec)
    lambert = np.clip(n @ lvec, 0, 1) * 0.75 + 0.25
    base = np.full((len(faces), 3), 0.8) if face_colours is None else np.asarray(face_colours)
    shaded = base * lambert[:, None]
    img = np.ones((height, width, 3))
    m = r.mask
    img[m] = shaded[r.face[m]]
    return (img * 255).round().astype(np.uint8)


def draw_skeleton(img: np.ndarray, uv: np.ndarray, visible=None, thickness: int = 1, occluded=None) -> np.ndarray:
    """Draw the 21-point skeleton in FreiHAND colours; hidden joints as hollow circles, joints
    an object hides (`occluded`, 21 bool: occluded_by_object) as crosses."""
    import cv2

    out = np.ascontiguousarray(img.copy())
    scale = 16  # sub-pixel precision for cv2 (shift=4)
    pts = np.round(np.asarray(uv) * scale).astype(np.int64)
    vis = np.ones(21, bool) if visible is None else np.asarray(visible, bool)
    for a, b in SKELETON:
        col = FINGER_COLOURS[finger_of(b)]
        cv2.line(out, tuple(map(int, pts[a])), tuple(map(int, pts[b])), col, thickness, cv2.LINE_AA, shift=4)
    r = max(2, thickness + 1) * scale
    occ = np.zeros(21, bool) if occluded is None else np.asarray(occluded, bool)
    for k in range(21):
        col = (255, 255, 255) if k == 0 else FINGER_COLOURS[finger_of(k)]
        if occ[k]:
            c = pts[k]
            for d in ((r, r), (r, -r)):
                p0, p1 = (int(c[0] - d[0]), int(c[1] - d[1])), (int(c[0] + d[0]), int(c[1] + d[1]))
                cv2.line(out, p0, p1, (0, 0, 0), thickness + 2, cv2.LINE_AA, shift=4)
                cv2.line(out, p0, p1, col, thickness, cv2.LINE_AA, shift=4)
        elif vis[k]:
            cv2.circle(out, tuple(map(int, pts[k])), r, col, -1, cv2.LINE_AA, shift=4)
        else:
            cv2.circle(out, tuple(map(int, pts[k])), r, col, 1, cv2.LINE_AA, shift=4)
    return out


def outline(img: np.ndarray, mask: np.ndarray, colour=(255, 255, 0)) -> np.ndarray:
    """Mark the one-pixel boundary of a binary mask."""
    m = mask.astype(bool)
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    out = img.copy()
    out[m & ~inner] = colour
    return out


def grid(images: list[np.ndarray], columns: int, pad: int = 2, background=255) -> np.ndarray:
    """Tile equally sized HxWx3 images into a sheet."""
    if not images:
        raise ValueError("no images to tile")
    h, w = images[0].shape[:2]
    rows = (len(images) + columns - 1) // columns
    sheet = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), background, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        sheet[y : y + h, x : x + w] = im[..., :3]
    return sheet


def label(img: np.ndarray, text: str, colour=(0, 0, 0)) -> np.ndarray:
    import cv2

    out = np.ascontiguousarray(img.copy())
    cv2.putText(out, text, (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 255), 2, cv2.LINE_AA)
    cv2.putText(out, text, (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.33, colour, 1, cv2.LINE_AA)
    return out
