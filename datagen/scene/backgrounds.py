"""Background images: ordinary photos (PNG/JPEG) behind the hand instead of the HDRI's own sky.

Config `[backgrounds]` (docs/RENDERING.md, "Backgrounds"): `sources` are folders (searched
recursively, hidden files skipped) or single files, relative to the repo root or absolute;
`share` is the fraction of items that show a photo (drawn per item); the rest show the HDRI as
before.  The HDRI still lights the hand in both cases: the renderer renders the hand on a
transparent film (Cycles' film_transparent only hides what camera rays see of the world;
lighting, shadows and reflections still come from the HDRI) and composites it over the photo's
crop (`composite`), so the photo's pixels appear exactly as in the file and the labels (mask,
depth, keypoints: exact rasterisation) are the same as without it.

Discovery decodes every image before any rendering (Pillow in the venv, Blender's image loader
inside a `blender` binary); a corrupt, truncated or unsupported file stops the run with its path
(BackgroundError, exit status 2).  Licences as for HDRIs (datagen.scene.hdri.user_licence): a
per-file sidecar (`<file>.license`, `<stem>.license.txt`, `<stem>.txt`) or a folder-wide
LICENSE* / licence.txt beside the images; without one the licence is recorded as
"unknown, user-supplied" with a warning.  Every usable image is listed with its licence in
run.json (`backgrounds`), and the ones a dataset uses in its manifest.

Per item (datagen.scene.items, a child stream of its own): whether it shows a photo, which,
the crop (side = `scale` x the largest window of the image's aspect-correct size, position
uniform), and a left-right flip.  numpy only at import (imported inside Blender).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from datagen.scene.hdri import UNKNOWN_LICENCE, _portable, source_files, user_licence

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class BackgroundError(ValueError):
    """A background source is missing or empty, or an image cannot be decoded; names the file."""


@dataclass(frozen=True)
class Background:
    name: str  # "<source>/<relative path>": unique, used in labels
    path: str  # absolute path on this machine
    file: str  # portable: relative to the repo root when inside it
    source: str  # the config entry it came from
    width: int
    height: int
    licence: str
    licence_file: str | None

    def record(self) -> dict:
        d = asdict(self)
        d.pop("path")
        return d


@dataclass(frozen=True)
class BackgroundDraw:
    """An item's background choice (None on ItemSpec when the item shows the HDRI)."""

    index: int  # into the discovered list
    scale: float  # crop side over the largest aspect-correct window
    x: float  # crop position in [0, 1] along the free width
    y: float  # ... and height
    flip: bool

    def record(self, bg: Background) -> dict:
        return {"name": bg.name, "file": bg.file, "index": self.index, "scale": self.scale, "x": self.x,
                "y": self.y, "flip": self.flip}


def draw_background(cfg, n_backgrounds: int, rng: np.random.Generator) -> BackgroundDraw | None:
    """One item's draws (always the same five, in this order, whatever they decide)."""
    use = rng.random() < cfg.share
    index = int(rng.integers(n_backgrounds))
    s0, s1 = cfg.scale
    scale = float(s0 + (s1 - s0) * rng.random())
    x, y = float(rng.random()), float(rng.random())
    flip = bool(rng.random() < 0.5) and bool(cfg.flip)
    return BackgroundDraw(index, scale, x, y, flip) if use else None


# ----------------------------------------------------------------------------- decoding

def decode(path: str | Path) -> np.ndarray:
    """The image at `path` as uint8 RGB (H, W, 3), top row first; BackgroundError naming the
    file if it cannot be decoded.  Pillow where it is installed (the venv), else Blender's image
    loader (inside a `blender` binary, whose Python has no Pillow)."""
    path = Path(path)
    try:
        from PIL import Image
    except ImportError:
        return _decode_bpy(path)
    try:
        with Image.open(path) as im:
            im.load()  # decodes every pixel: a truncated or damaged file raises here
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:  # PIL.UnidentifiedImageError is an OSError
        raise BackgroundError(f"background image {path} cannot be decoded: {exc}") from None
    if rgb.ndim != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise BackgroundError(f"background image {path} has no pixels")
    return rgb


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the image at `path` from its header, without decoding the pixels
    (Pillow); where Pillow is missing (Blender's own Python) the image is decoded."""
    path = Path(path)
    try:
        from PIL import Image
    except ImportError:
        h, w = _decode_bpy(path).shape[:2]
        return w, h
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, SyntaxError) as exc:
        raise BackgroundError(f"background image {path} cannot be read: {exc}") from None


def _decode_bpy(path: Path) -> np.ndarray:
    import bpy

    try:
        img = bpy.data.images.load(str(path), check_existing=False)
    except RuntimeError as exc:
        raise BackgroundError(f"background image {path} cannot be decoded: {exc}") from None
    try:
        w, h = img.size
        if w <= 0 or h <= 0 or not img.has_data:
            raise BackgroundError(f"background image {path} cannot be decoded (Blender loaded no pixels)")
        px = np.empty(w * h * img.channels, np.float32)
        img.pixels.foreach_get(px)
    finally:
        bpy.data.images.remove(img)
    px = px.reshape(h, w, -1)[::-1]  # Blender's rows run bottom-up
    rgb = px[..., :3] if px.shape[2] >= 3 else np.repeat(px[..., :1], 3, axis=2)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- discovery

def discover(sources, repo_root: str | Path, check: bool = True) -> tuple[list[Background], list[str]]:
    """Every image of the configured sources, sorted by name, and licence warnings.

    Raises BackgroundError naming the path for a missing source, a source without images, a
    file of another type given directly, or (with `check`) an image that does not decode.
    `check=False` reads each image's size from its header only: for the job driver's workers,
    whose driver decoded every image before starting them (decoding thousands of photos again
    at every worker start and recycle would cost more than the renders between them).
    """
    repo_root = Path(repo_root)
    out: dict[str, Background] = {}
    warnings: list[str] = []
    for src in sources:
        try:
            files, label = source_files(src, repo_root, IMAGE_SUFFIXES, "backgrounds", "a PNG or JPEG file")
        except ValueError as exc:
            raise BackgroundError(str(exc)) from None
        if not files:
            raise BackgroundError(f"backgrounds source {src!r}: no .png/.jpg/.jpeg files in {label}")
        prefix = _portable(label, repo_root, None).rstrip("/")
        for f in files:
            licence, lic_file = user_licence(f)
            if lic_file is None:
                warnings.append(f"background {f}: no licence file beside it; recorded as '{UNKNOWN_LICENCE}' "
                                f"(add {f.name}.license or a LICENSE file, see docs/RENDERING.md)")
            if check:
                height, width = decode(f).shape[:2]
            else:
                width, height = image_size(f)
            name = f"{prefix}/{f.relative_to(label)}"
            rec = Background(name, str(f.resolve()), _portable(f, repo_root, None), src, int(width), int(height),
                             licence, _portable(lic_file, repo_root, None) if lic_file else None)
            if name in out and out[name].path != rec.path:
                raise BackgroundError(f"two background images share the name {name!r}: {out[name].path} and "
                                      f"{rec.path}")
            out[name] = rec
    return [out[k] for k in sorted(out)], warnings


# ----------------------------------------------------------------------------- crop and composite

def crop_window(image_hw: tuple[int, int], out_wh: tuple[int, int], draw: BackgroundDraw) -> tuple[float, ...]:
    """(x0, y0, width, height) in image pixels of the item's crop: the output's aspect ratio,
    `draw.scale` times the largest such window, placed at (draw.x, draw.y) of the free range."""
    ih, iw = image_hw
    ow, oh = out_wh
    fit = min(iw / ow, ih / oh)  # image pixels per output pixel of the largest window
    cw, ch = draw.scale * fit * ow, draw.scale * fit * oh
    return draw.x * (iw - cw), draw.y * (ih - ch), cw, ch


def _box_reduce(img: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k boxes of an (H, W, C) array whose H and W are multiples of k, float32;
    two passes of sums (rows, then columns), in integers for uint8 input (exact, and ~5x faster
    than a float mean over both axes on a 4096-pixel photo)."""
    h, w, c = img.shape
    acc = np.uint32 if img.dtype == np.uint8 else np.float64
    rows = img.reshape(h // k, k, w * c).sum(axis=1, dtype=acc)
    return (rows.reshape(h // k, w // k, k, c).sum(axis=2, dtype=acc) / float(k * k)).astype(np.float32)


def resample(image: np.ndarray, window: tuple[float, ...], out_wh: tuple[int, int], flip: bool) -> np.ndarray:
    """The window (x0, y0, w, h) of a uint8 RGB image resampled to out_wh, float32 in [0, 255]:
    box-averaged by the whole part of the reduction, then bilinear at the output pixel centres
    (separable: rows, then columns); `flip` mirrors it left-right.  Only the window's pixels
    (plus a margin of one box) are touched, so a large photo costs what its crop costs."""
    x0, y0, cw, ch = window
    ow, oh = out_wh
    k = max(1, int(min(cw / ow, ch / oh)))
    ih, iw = image.shape[:2]
    # the window in whole boxes of k pixels, one box of margin for the bilinear neighbours
    bx0, by0 = max(0, int(x0 // k) - 1), max(0, int(y0 // k) - 1)
    bx1, by1 = min(iw // k, int(np.ceil((x0 + cw) / k)) + 1), min(ih // k, int(np.ceil((y0 + ch) / k)) + 1)
    img = np.asarray(image[by0 * k: by1 * k, bx0 * k: bx1 * k])
    # box filter first, so a large photo does not alias
    img = _box_reduce(img, k) if k > 1 else img.astype(np.float32)
    x0, y0, cw, ch = x0 / k - bx0, y0 / k - by0, cw / k, ch / k
    h, w = img.shape[:2]
    xs = x0 + (np.arange(ow) + 0.5) * (cw / ow) - 0.5
    ys = y0 + (np.arange(oh) + 0.5) * (ch / oh) - 0.5
    if flip:
        xs = xs[::-1]
    xs, ys = np.clip(xs, 0, w - 1), np.clip(ys, 0, h - 1)
    xi, yi = np.minimum(xs.astype(int), max(w - 2, 0)), np.minimum(ys.astype(int), max(h - 2, 0))
    fx, fy = (xs - xi)[None, :, None].astype(np.float32), (ys - yi)[:, None, None].astype(np.float32)
    x1, y1 = np.minimum(xi + 1, w - 1), np.minimum(yi + 1, h - 1)
    rows = img[yi] * (1 - fy) + img[y1] * fy
    return (rows[:, xi] * (1 - fx) + rows[:, x1] * fx).astype(np.float32)


def prepare(image: np.ndarray, out_wh: tuple[int, int], min_scale: float) -> np.ndarray:
    """A decoded photo reduced once (box filter by an integer factor) to the resolution its
    smallest crop (`min_scale`) needs at the output size, float32: what the renderer keeps in
    memory and crops per item, so a 4000-pixel photo costs per item what a small one does."""
    ih, iw = image.shape[:2]
    ow, oh = out_wh
    f = max(1, int(min(iw / ow, ih / oh) * min_scale))
    if f == 1:
        return np.asarray(image, np.float32)
    return _box_reduce(np.asarray(image)[: ih // f * f, : iw // f * f], f)


def background_pixels(image: np.ndarray, out_wh: tuple[int, int], draw: BackgroundDraw) -> np.ndarray:
    """The item's background (H, W, 3) float32 in [0, 255] from the (prepared) photo."""
    return resample(image, crop_window(image.shape[:2], out_wh, draw), out_wh, draw.flip)


def composite(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    """uint8 RGB of a render with straight alpha (H, W, 4; uint8 or float in [0, 1]) over a
    background (H, W, 3, [0, 255]): rgb * a + background * (1 - a), in the display (sRGB) values
    both are stored in.  Where alpha is 0 the result is the background exactly."""
    px = np.asarray(rgba)
    px = px.astype(np.float32) / 255.0 if px.dtype == np.uint8 else px.astype(np.float32)
    out = np.clip(np.rint(background), 0, 255).astype(np.uint8)
    hit = px[..., 3] > 0  # only the hand's pixels blend (most of the image is background)
    a = px[hit][:, 3:4]
    blend = px[hit][:, :3] * 255.0 * a + np.asarray(background, np.float32)[hit] * (1.0 - a)
    out[hit] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    return out
