"""Hand mesh from your own images: ``python -m train.predict IMAGE... --checkpoint OUT/model.pt``.

For every image it writes, into ``--out``:

* ``NAME.ply`` and/or ``NAME.obj``: the predicted 778-vertex mesh in camera space (metres;
  OpenCV axes), its root translation recovered from the 2D joints (see below);
* ``NAME_overlay.png``: the image with the mesh (flat-shaded, translucent) and the
  21-joint skeleton drawn on it;
* ``NAME.json``: 2D joints (px), 3D joints (camera space, m), root, the crop used, the focal.

Cropping: the network sees a square crop around the hand.  Give ``--box X0 Y0 X1 Y1`` (the
hand's box in pixels, e.g. from a detector): the crop is that box squared and enlarged by
the training scale (1.3).  Without a box, the crop is the largest centred square of the
image - fine for images where the hand is roughly centred and fills it (like FreiHAND or our
renders), poor otherwise.

Camera: the root translation is solved from the 2D joints, the intrinsics and the
root-relative 3D joints (:func:`train.geometry.recover_root`).  Give ``--focal`` (px) and
optionally ``--principal``; by default f = 1.46 x the longer image side (the field of view of
our renders, ~38 degrees) and the principal point at the image centre.  The focal only sets
the depth of the mesh; the overlay is consistent either way.  If the least-squares root puts
the mesh behind the camera (a barely trained model), a weak-perspective fit is used instead and
the JSON says so (``root_fallback_weak_perspective``).

Left hands: ``--hand left`` says the images show left hands.  A model trained with
``data.left_hands = "flip"`` (the default, MobRecon's convention) knows right hands only: the
image is flipped horizontally (the principal point with it), the flipped image predicted, and
the outputs flipped back (camera x -> -x, u -> W - u), so the mesh, the joints and the overlay
are the left hand in the image's own frame; the mesh files get the template's faces with
reversed vertex order (outward normals).  A model trained with ``"keep"`` predicts left hands
directly (no flip).  ``--hand auto`` (with ``--detect``) takes each image's hand from MediaPipe
Hands' handedness.  The JSON records ``hand``, ``hand_source`` and ``flipped``.

Image size: images larger than ``--max-side`` (default 1024 px) are downscaled first (the
network sees a 128 px crop; the camera and the box are scaled with the image, so the mesh is
the same and the 2D joints in the JSON are in the original image's pixels; the overlay is
written at the reduced size).  Images under 32 px a side are refused, and a hand region that
the network must upsample more than 2x gets a warning.  Exit status: 0 every image done, 1 some
image could not be read or processed, 2 bad arguments or checkpoint.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from .augment import ROOT_SCALE_M, normalise
from datagen.geometry.mirror import flip_image, flip_K, flip_uv, mirror_points, reverse_winding
from datagen.geometry.projection import project

from .geometry import apply_affine, crop_affine, recover_root, warp_crop

__all__ = ["predict_image", "write_ply", "write_obj", "draw_overlay", "shade_mesh", "draw_skeleton", "BONES", "main"]

BONES = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11), (11, 12),
         (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20)]
FINGER_COLOURS = [(255, 80, 80), (255, 200, 40), (80, 220, 80), (60, 170, 255), (200, 90, 255)]  # RGB
MIN_SIDE = 32  # smaller images cannot show a hand the network can read
MAX_SIDE = 1024  # larger images are downscaled before anything else (memory grows with the pixels)


def write_ply(path, verts: np.ndarray, faces: np.ndarray) -> None:
    lines = ["ply", "format ascii 1.0", f"element vertex {len(verts)}", "property float x", "property float y",
             "property float z", f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    lines += [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
    lines += [f"3 {a} {b} {c}" for a, b, c in faces]
    Path(path).write_text("\n".join(lines) + "\n")


def write_obj(path, verts: np.ndarray, faces: np.ndarray) -> None:
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    Path(path).write_text("\n".join(lines) + "\n")


def shade_mesh(image: np.ndarray, verts_cam: np.ndarray, faces, K, alpha: float = 0.7,
               tint=(120, 200, 255)) -> np.ndarray:
    """RGB image with the mesh drawn over it: flat-shaded (|face normal . view ray|), translucent,
    outlined.  Nothing is drawn when a vertex is not in front of the camera."""
    out = image.copy()
    h, w = image.shape[:2]
    v = np.asarray(verts_cam, np.float64)
    if not np.all(v[:, 2] > 1e-3):
        return out
    from datagen.geometry.normals import face_normals
    from datagen.geometry.raster import rasterize

    f = np.asarray(faces)
    r = rasterize(v, f, np.asarray(K, np.float64), w, h)
    mask = r.mask
    if not mask.any():
        return out
    n = face_normals(v, f, unit=True)
    ray = v[f].mean(1)
    ray /= np.linalg.norm(ray, axis=1, keepdims=True)
    lam = np.abs((n * ray).sum(1))  # two-sided
    shade = (0.3 + 0.7 * lam[r.face[mask]])[:, None]
    colour = np.asarray(tint, np.float32)[None] * shade
    out[mask] = ((1 - alpha) * out[mask] + alpha * colour).clip(0, 255).astype(np.uint8)
    edge = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edge] = (40, 120, 255)
    return out


def draw_skeleton(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """RGB image with the 21-joint skeleton (FreiHAND order; wrist white, one colour per finger)."""
    out = image.copy()
    h, w = image.shape[:2]
    t = max(1, round(max(h, w) / 200))
    shift = 4  # sub-pixel drawing: continuous px -> cv2's integer pixel centres
    pts = np.round((np.asarray(uv) - 0.5) * (1 << shift)).astype(np.int64)
    for k, (a, b) in enumerate(BONES):
        cv2.line(out, tuple(map(int, pts[a])), tuple(map(int, pts[b])), FINGER_COLOURS[k // 4], t, cv2.LINE_AA, shift)
    for j, p in enumerate(pts):
        cv2.circle(out, tuple(map(int, p)), (t + 1) << shift, (255, 255, 255) if j == 0 else FINGER_COLOURS[(j - 1) // 4],
                   -1, cv2.LINE_AA, shift)
    return out


def draw_overlay(image: np.ndarray, uv: np.ndarray, verts_cam: np.ndarray | None, faces, K,
                 alpha: float = 0.6) -> np.ndarray:
    """RGB image with the projected mesh (shaded, translucent) and the skeleton."""
    out = image if verts_cam is None else shade_mesh(image, verts_cam, faces, K, alpha)
    return draw_skeleton(out, uv)


def crop_for(image_shape, box, scale: float, out: int) -> np.ndarray:
    h, w = image_shape[:2]
    if box is None:
        return crop_affine((w / 2.0, h / 2.0), float(min(h, w)), 0.0, out)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"--box must be X0 Y0 X1 Y1 with X1 > X0 and Y1 > Y0, got {box}")
    return crop_affine(((x0 + x1) / 2.0, (y0 + y1) / 2.0), max(x1 - x0, y1 - y0) * scale, 0.0, out)


@torch.no_grad()
def predict_image(model, image: np.ndarray, K: np.ndarray, box=None, scale: float = 1.3, crop: int = 128,
                  device="cpu", flip: bool = False) -> dict:
    """RGB uint8 image -> {verts_cam, joints_cam, uv (image px), root, A (crop affine), flipped}.

    `flip`: predict on the horizontally flipped image (camera flip_K, box mirrored) and flip
    the results back into this image's frame - how a right-hand model reads a left hand."""
    if flip:
        w = image.shape[1]
        fbox = None if box is None else [w - box[2], box[1], w - box[0], box[3]]
        r = predict_image(model, flip_image(image), flip_K(K, w), fbox, scale, crop, device)
        F = np.array([[-1.0, 0.0, w], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # image px -> flipped image px
        return {"verts_cam": mirror_points(r["verts_cam"]), "joints_cam": mirror_points(r["joints_cam"]),
                "uv": flip_uv(r["uv"], w), "root": mirror_points(r["root"]), "A": r["A"] @ F,
                "root_fallback": r["root_fallback"], "flipped": True}
    A = crop_for(image.shape, box, scale, crop)
    x = torch.from_numpy(normalise(warp_crop(image, A, crop)))[None].to(device)
    out = model(x)
    verts = out["verts"][0].float().cpu().numpy().astype(np.float64) * ROOT_SCALE_M
    joints = model.joint_regressor.cpu().numpy().astype(np.float64) @ verts
    uv_crop = out["uv"][0].float().cpu().numpy().astype(np.float64) * crop
    T = recover_root(uv_crop, A @ K, joints)
    fallback = bool((verts[:, 2] + T[2]).min() <= 0.02)
    if fallback:
        T = weak_perspective_root(uv_crop, A @ K, joints)
    return {"verts_cam": verts + T, "joints_cam": joints + T, "uv": apply_affine(np.linalg.inv(A), uv_crop),
            "root": T, "A": A, "root_fallback": fallback, "flipped": False}


def weak_perspective_root(uv: np.ndarray, K: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """Root from a scaled orthographic fit: depth = f x 3D spread / 2D spread, x/y from the 2D centroid.

    Used when the least-squares root puts the mesh behind the camera (an inconsistent, e.g.
    barely trained, prediction), so a mesh can still be shown.
    """
    f = np.sqrt(abs(np.linalg.det(K[:2, :2])))
    s2 = np.sqrt(((uv - uv.mean(0)) ** 2).sum(1).mean())
    s3 = np.sqrt(((rel[:, :2] - rel[:, :2].mean(0)) ** 2).sum(1).mean())
    z = f * s3 / max(s2, 1e-6) - rel[:, 2].mean()
    z = max(z, 0.05 - rel[:, 2].min())
    c = np.linalg.inv(K) @ np.array([*uv.mean(0), 1.0])
    mean_rel = rel.mean(0)
    return c / c[2] * (z + mean_rel[2]) - mean_rel


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m train.predict",
        description="Predict the 3D hand mesh in images with a trained MobRecon checkpoint; writes a mesh "
                    "(.ply/.obj, camera space, metres), an overlay PNG (mesh silhouette + skeleton) and a JSON per "
                    "image. Without --box or --detect the crop is the largest centred square of the image.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format OpenCV reads)")
    ap.add_argument("--checkpoint", required=True, metavar="CKPT", help="OUT/model.pt (or last.pt) of python -m train")
    ap.add_argument("--out", default="out/predict", metavar="DIR", help="output folder")
    ap.add_argument("--box", type=float, nargs=4, default=None, metavar=("X0", "Y0", "X1", "Y1"),
                    help="hand box in pixels (same for every image); the crop is the box squared x --scale")
    ap.add_argument("--detect", action="store_true",
                    help="find each image's hand box with MediaPipe Hands (its own venv .venv-mediapipe/; see "
                         "train/hand_detector.py) - for photos where the hand is not centred")
    ap.add_argument("--scale", type=float, default=None,
                    help="crop side / box side with --box (default: the checkpoint's augment.scale, 1.3)")
    ap.add_argument("--focal", type=float, default=None,
                    help="focal length in pixels of the images (default 1.46 x the longer side)")
    ap.add_argument("--principal", type=float, nargs=2, default=None, metavar=("CX", "CY"),
                    help="principal point in pixels (default: the image centre)")
    ap.add_argument("--hand", choices=("right", "left", "auto"), default="right",
                    help="the images show right or left hands; left: a right-hand model (data.left_hands = flip) "
                         "predicts on the flipped image and the results are flipped back into the image's frame; "
                         "auto (with --detect): each image's hand as MediaPipe Hands classifies it")
    ap.add_argument("--format", choices=("ply", "obj", "both"), default="ply", help="mesh file format")
    ap.add_argument("--max-side", type=int, default=MAX_SIDE,
                    help="downscale larger images to this longer side first (memory; the crop is 128 px anyway)")
    ap.add_argument("--device", default="cpu", help="torch device")
    return ap


def argument_error(args) -> str | None:
    """What is wrong with the arguments (checked before the checkpoint is loaded), or None."""
    if args.box is not None:
        x0, y0, x1, y1 = args.box
        if not np.all(np.isfinite(args.box)):
            return f"--box {' '.join(f'{v:g}' for v in args.box)}: all four numbers must be finite"
        if x1 <= x0 or y1 <= y0:
            return (f"--box {' '.join(f'{v:g}' for v in args.box)}: give X0 Y0 X1 Y1 with X1 > X0 and Y1 > Y0 "
                    f"(the hand's top-left and bottom-right corners in pixels)")
    if args.box is not None and args.detect:
        return "--box and --detect: give one (a fixed box for every image, or a detected box per image)"
    if args.hand == "auto" and not args.detect:
        return "--hand auto takes each image's handedness from the detector: add --detect (or say --hand left|right)"
    if args.scale is not None and not (np.isfinite(args.scale) and args.scale > 0):
        return f"--scale {args.scale:g}: must be > 0"
    if args.focal is not None and not (np.isfinite(args.focal) and args.focal > 0):
        return f"--focal {args.focal:g}: must be > 0 pixels"
    if args.principal is not None and not np.all(np.isfinite(args.principal)):
        return "--principal: both numbers must be finite"
    if args.max_side < MIN_SIDE:
        return f"--max-side {args.max_side}: must be >= {MIN_SIDE}"
    return None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .model_io import CheckpointError, model_from_checkpoint

    problem = argument_error(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        model, tpl, ck = model_from_checkpoint(args.checkpoint, args.device)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    detected: dict = {}
    if args.detect:
        from .hand_detector import DetectorUnavailable, detect_hands

        try:
            detected = detect_hands(args.images)
        except DetectorUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    elif args.box is None:
        print("note: no --box: each image's largest centred square is the crop, so the hand must be near the "
              "centre; otherwise give --box X0 Y0 X1 Y1 or --detect (MediaPipe Hands)", file=sys.stderr)
    scale = args.scale if args.scale is not None else ck["config"]["augment"]["scale"]
    from .data import flip_mode

    flip_left = flip_mode(ck["config"]["data"]) == "left"  # a right-hand model: left images are flipped
    crop = ck["config"]["data"]["crop_size"]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    status = 0
    for path in args.images:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            print(f"error: cannot read {path} (missing, or not an image OpenCV reads)", file=sys.stderr)
            status = 1
            continue
        h, w = bgr.shape[:2]
        if min(h, w) < MIN_SIDE:
            print(f"error: {path}: {w}x{h} pixels is too small to show a hand (need >= {MIN_SIDE} px a side); "
                  f"skipped", file=sys.stderr)
            status = 1
            continue
        user_box, hand = args.box, args.hand
        if args.detect:
            found = detected.get(str(path))
            if found is None:
                print(f"error: {path}: MediaPipe Hands finds no hand; give --box X0 Y0 X1 Y1 instead; skipped",
                      file=sys.stderr)
                status = 1
                continue
            user_box = found.box
            if hand == "auto":
                hand = found.handedness or "right"
                if found.handedness is None:
                    print(f"warning: {path}: the detector gives no handedness; predicting a right hand", file=sys.stderr)
        flip = hand == "left" and flip_left
        faces = reverse_winding(tpl.faces) if hand == "left" else tpl.faces  # a left mesh: outward normals
        if user_box is not None:
            x0, y0, x1, y1 = user_box
            if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
                print(f"error: {path}: --box {' '.join(f'{v:g}' for v in user_box)} lies outside the {w}x{h} image; "
                      f"skipped", file=sys.stderr)
                status = 1
                continue
        f = args.focal if args.focal else 1.46 * max(h, w)
        cx, cy = args.principal if args.principal else (w / 2.0, h / 2.0)
        K0 = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1.0]])
        # downscale first: everything after (crop, overlay rasterisation) costs memory per pixel
        s = min(1.0, args.max_side / max(h, w))
        if s < 1.0:
            size = (max(1, round(w * s)), max(1, round(h * s)))
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        sx, sy = bgr.shape[1] / w, bgr.shape[0] / h  # continuous pixel coordinates scale exactly
        S = np.diag([sx, sy, 1.0])
        img = np.ascontiguousarray(bgr[..., ::-1])
        del bgr
        K = S @ K0
        box = None if user_box is None else [user_box[0] * sx, user_box[1] * sy, user_box[2] * sx, user_box[3] * sy]
        region = (max(user_box[2] - user_box[0], user_box[3] - user_box[1]) * scale if user_box is not None
                  else min(h, w)) * min(sx, sy)  # the crop's side in the pixels the network gets
        if region < crop / 2:
            print(f"warning: {path}: the hand region is {region:.0f} px, upsampled {crop / region:.1f}x to the "
                  f"network's {crop} px crop - expect a poor prediction", file=sys.stderr)
        try:
            r = predict_image(model, img, K, box, scale, crop, args.device, flip)
        except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
            print(f"error: {path}: prediction failed ({type(exc).__name__}: {exc}); skipped", file=sys.stderr)
            status = 1
            continue
        uv_full = r["uv"] / np.array([sx, sy])
        stem = out_dir / Path(path).stem
        written = []
        if args.format in ("ply", "both"):
            write_ply(stem.with_suffix(".ply"), r["verts_cam"], faces)
            written.append(stem.with_suffix(".ply"))
        if args.format in ("obj", "both"):
            write_obj(stem.with_suffix(".obj"), r["verts_cam"], faces)
            written.append(stem.with_suffix(".obj"))
        ov = draw_overlay(img, r["uv"], r["verts_cam"], faces, K)
        png = stem.parent / f"{stem.name}_overlay.png"
        cv2.imwrite(str(png), ov[..., ::-1])
        meta = {"image": str(path), "image_size": [w, h], "K": K0.tolist(), "crop_affine": (r["A"] @ S).tolist(),
                "hand": hand, "hand_source": "detect" if args.hand == "auto" else "user", "flipped": r["flipped"], "box": user_box, "box_source": "detect" if args.detect else ("user" if args.box else None), "uv_px": uv_full.tolist(), "joints_cam_m": r["joints_cam"].tolist(),
                "root_m": r["root"].tolist(), "root_fallback_weak_perspective": r["root_fallback"],
                "processed_size": [img.shape[1], img.shape[0]], "overlay_size": [ov.shape[1], ov.shape[0]],
                "reprojection_px": float(np.linalg.norm(project(r["joints_cam"], K0) - uv_full, axis=-1).mean())}
        js = stem.with_suffix(".json")
        js.write_text(json.dumps(meta, indent=1))
        print(f"{path}: " + ", ".join(str(p) for p in written + [png, js]))
    return status


if __name__ == "__main__":
    sys.exit(main())
