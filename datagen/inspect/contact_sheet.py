"""Contact sheet of a RENDER_DIR: rendered items with their labels drawn on top.

    python -m datagen.contact_sheet RENDER_DIR [-o sheet.png] [--max 48] [--columns 8]

Each tile shows the RGB render, the exact silhouette's outline (yellow; with occluders the
visible hand), the outline of occluder pixels (magenta, part_mask 3), the 21-keypoint skeleton
in FreiHAND colours (one colour per finger, white wrist) with visible keypoints as filled dots,
hidden ones (self-occluded or out of frame) as hollow circles and those an object hides
(occluded_by_object) as crosses, and a caption with handedness (R / L), pose id, view id,
HDRI, skin melanin, the hand length with [hand.shape] and the occluder's kind; --with-raw puts the
plain render beside each tile.
When more items exist than --max, an evenly spaced subset (in item order) is shown.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from datagen.inspect.viz import draw_skeleton, grid, label, outline


def list_items(render_dir: str | Path) -> list[Path]:
    """Label JSONs of the finished items, in item order."""
    root = Path(render_dir) / "items"
    return sorted(p for p in root.glob("*/v*.json") if not p.name.startswith("."))


def tile_caption(rec: dict) -> str:
    """A tile's caption from its item JSON: R/L, pose, view, HDRI, melanin, hand length, objects."""
    hdri = rec.get("hdri", {}).get("name", "?").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    mel = rec.get("skin", {}).get("melanin")
    hand = "L" if rec.get("handedness", "right") == "left" else "R"  # records without the field: right
    caption = f"{hand} p{rec['pose_id']} v{rec['view_id']} {hdri}" + (f" m{mel:.2f}" if mel is not None else "")
    shape = rec.get("shape")  # [hand.shape]: the hand's length (mm) and band
    if shape:
        caption += f" {shape['hand_length_m'] * 1e3:.0f}mm" if shape.get("hand_length_m") else f" {shape.get('band', '')}"
    objects = (rec.get("occluders") or {}).get("objects") or []
    if objects:
        caption += " " + ",".join(f"{o['kind']}/{o['placement']}" for o in objects)
    return caption


def tile(json_path: Path, scale: int = 1, with_raw: bool = False) -> np.ndarray:
    import cv2

    rec = json.loads(json_path.read_text())
    stem = json_path.name[: -len(".json")]
    rgb_path = json_path.with_name(stem + ".png")
    img = cv2.imread(str(rgb_path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"{rgb_path} is missing or unreadable")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raw = img
    mask = cv2.imread(str(json_path.with_name(stem + ".mask.png")), cv2.IMREAD_GRAYSCALE)
    uv = np.asarray(rec["keypoints_2d"], dtype=np.float64)
    if scale != 1:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        if mask is not None:
            mask = cv2.resize(mask, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        uv = uv * scale
    part_path = json_path.with_name(stem + ".part_mask.png")  # only with the forearm or occluders
    part = cv2.imread(str(part_path), cv2.IMREAD_GRAYSCALE) if part_path.exists() else None
    if part is not None and scale != 1:
        part = cv2.resize(part, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    if mask is not None:
        img = outline(img, mask > 127)
    if part is not None:
        img = outline(img, part == 3, colour=(255, 0, 255))
    # viz.draw_skeleton uses cv2's integer-centre convention: continuous coordinates - 0.5.
    img = draw_skeleton(img, uv - 0.5, rec["visible"], thickness=1 if img.shape[0] <= 256 else 2,
                        occluded=rec.get("occluded_by_object"))
    caption = tile_caption(rec)
    img = label(img, caption)
    if with_raw:
        if scale != 1:
            raw = cv2.resize(raw, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        img = np.concatenate([raw, img], axis=1)
    return img


def make_sheet(render_dir: str | Path, max_items: int = 48, columns: int | None = None,
               scale: int = 1, with_raw: bool = False) -> tuple[np.ndarray, int]:
    items = list_items(render_dir)
    if not items:
        raise FileNotFoundError(f"no finished items (items/*/v*.json) in {render_dir}")
    if len(items) > max_items:
        idx = np.unique(np.linspace(0, len(items) - 1, max_items).round().astype(int))
        items = [items[i] for i in idx]
    tiles = [tile(p, scale, with_raw) for p in items]
    columns = columns or int(np.ceil(np.sqrt(len(tiles) * (0.75 if with_raw else 1.5))))
    return grid(tiles, min(columns, len(tiles))), len(tiles)
