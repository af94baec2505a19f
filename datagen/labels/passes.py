"""Label passes: one object per kind of per-item output, from the renderer to the dataset reader.

A `LabelPass` knows its name (the shard dataset, the reader's output key, the codec option),
how it is computed for an item (`compute(ItemContext)`, numpy only - it runs inside Blender),
its file in RENDER_DIR (`items/<pose>/v<view><suffix>`, written by `save`), how the packer
reads and checks that file (`load`), its shard codecs (`codecs`, `default_codec`), the check
that the decoded arrays of one sample agree (`check`: the packer runs it on the files, verify
on the shards), and how the dataset reader returns it (`read`).  Hooks that need heavy
libraries (cv2, h5py) may be given as 'module:function' strings or import inside the function,
so registering a pass stays import-light.

Every item has the four built-in passes, in this order: `image` (Cycles' PNG), `mask` (the
exact silhouette), `depth` (camera z), and `labels` (the item JSON: keypoints, visibility,
camera, draws).  `labels` is the one *record* pass: it is written last (its file marks the
item done) and the packer turns it into per-sample columns (datagen.dataset.shards.
SAMPLE_COLUMNS via datagen.dataset.pack.Scan), which verify.check_labels checks and the
reader returns as keypoints_2d, visible, joints_cam, ...

To add a label pass: build a `LabelPass` (name, suffix, compute, save, load, codecs, check,
read) and `register_label_pass(it)`, then list it in the config: `[render] label_passes =
["name"]`.  Renderer, packer, verify and reader pick it up from the registry and from the run's
config (run.json); a module outside datagen loads in every process through HANDSYNTH_PLUGINS.
tests/toy_plugins.py defines a complete one (a per-pixel hand-part image) in one file.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from datagen import atomic
from datagen.dataset.codecs import DEPTH_CODECS, IMAGE_CODECS, MASK_CODECS, Codec
from datagen.registry import Registry, resolve
from datagen.render.layout import DEPTH_SUFFIX, IMAGE_SUFFIX, LABELS_SUFFIX, MASK_SUFFIX, item_file

log = logging.getLogger(__name__)

LABEL_PASSES: Registry[LabelPass] = Registry(
    "label pass",
    how_to_add="register one with datagen.labels.passes.register_label_pass; modules outside datagen load "
               "through the HANDSYNTH_PLUGINS environment variable")

BUILTIN_PASSES = ("image", "mask", "depth", "labels")
# Names a pass cannot take: per-sample shard columns, the reader's other output keys, and the
# datasets a codec adds next to a field (tests/test_registries.py keeps this list complete).
RESERVED_NAMES = frozenset({
    "item_id", "pose_id", "view_id", "seed", "keypoints_2d", "visible", "in_frame", "depth_gap_m", "crossings",
    "skin_distance_m", "bbox_xyxy", "mask_area_px", "hdri_index", "hdri_rotation_deg", "hdri_strength", "skin",
    "extra_json", "joints_cam", "vertices_cam", "mano_joints_cam", "dense_vertices_cam", "K", "R", "t", "ids",
    "hdri", "index", "view_columns", "handedness", "occluded_by_object",
    "occluders", "shape", "shape_band", "wrist_deg"})
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SUFFIX = re.compile(r"^(\.[A-Za-z0-9_-]+)+$")


class PassError(ValueError):
    """An item's label-pass file cannot be read, or its arrays disagree; the message says how."""


@dataclass
class ItemContext:
    """What a pass's `compute` sees of one item: computed once, shared by every pass.

    `labels` (datagen.labels.visibility.ItemLabels) is the exact rasterisation of the labelled
    mesh: depth, mask, the triangle seen at each pixel (`face`, -1 = background), keypoints
    and visibility.  `tables` is the prepared hand (dense_faces, dense_part, ...).  For a left
    item (`spec.handedness`), `dense` is the mirrored hand and `faces` its triangles with the
    vertex order reversed (same face ids as tables.dense_faces; datagen.labels.handedness):
    compute geometry from (`dense`, `faces`).
    """

    spec: Any  # datagen.scene.items.ItemSpec
    labels: Any  # datagen.labels.visibility.ItemLabels
    dense: np.ndarray  # (Nd, 3) posed dense vertices of the item's hand, hand frame (metres)
    tables: Any  # datagen.poses.tables.HandTables
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int
    hdri: dict = field(default_factory=dict)  # the item JSON's hdri / render / versions blocks
    render: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    faces: np.ndarray | None = None  # (F, 3) the item's triangles (None: tables.dense_faces)
    # Further item-JSON blocks of options that are on (e.g. `background`, `lights`); absent
    # when the option is off, so items of a run without it are unchanged.
    scene: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LabelPass:
    """One label pass; see the module docstring.  Hooks may be callables or 'module:attr'."""

    name: str
    suffix: str
    description: str
    compute: Callable | str | None = None  # (ItemContext) -> value; None: the renderer writes the file (Cycles)
    save: Callable | str | None = None  # (path, value, fsync) -> None: one atomic write (datagen.atomic)
    load: Callable | str | None = None  # (path, height, width) -> {name: array, [name_source: bytes]}
    shape: Callable[[int, int], tuple] | None = None  # decoded per-sample shape for (height, width)
    codecs: Mapping[str, Codec] | str | None = None  # name -> Codec (or 'module:attr' of such a table)
    default_codec: str | None = None
    check: Callable | str | None = None  # (arrays of one sample) -> [(kind, message)]: they agree
    read: Callable | str | None = None  # (ShardReader, row, out, options) -> value for the reader's output
    kind: str = "array"  # "array": an encoded array per sample | "record": the item JSON (columns)

    def hook(self, name: str) -> Callable | None:
        return resolve(getattr(self, name))

    def codec_table(self) -> Mapping[str, Codec]:
        table = self.codecs
        if isinstance(table, str):
            module, _, attr = table.partition(":")
            import importlib

            table = getattr(importlib.import_module(module), attr)
        if not table:
            raise ValueError(f"label pass {self.name!r} stores no array in the shards (it has no codecs)")
        return table

    def path(self, out_dir: str | Path, pose_id: int, view_id: int) -> Path:
        return item_file(out_dir, pose_id, view_id, self.suffix)

    def load_arrays(self, path: Path, height: int, width: int) -> dict:
        """The pass's arrays from its RENDER_DIR file (PassError when unreadable or malformed)."""
        return self.hook("load")(path, height, width)

    def problems(self, arrays: dict) -> list[tuple[str, str]]:
        """(kind, message) for each way the sample's arrays disagree (this pass's check)."""
        fn = self.hook("check")
        return list(fn(arrays) or []) if fn is not None else []

    def read_sample(self, reader, row: int, out: dict, options: dict):
        """What the dataset reader returns for this pass (default: the decoded array)."""
        fn = self.hook("read")
        if fn is not None:
            return fn(reader, row, out, options)
        return reader.read(self.name, row, mask=out.get("mask"))


def register_label_pass(p: LabelPass, replace: bool = False) -> LabelPass:
    """Register a label pass, refusing names and suffixes other parts of the format already use."""
    if not _NAME.match(p.name) or p.name in RESERVED_NAMES:
        raise ValueError(f"label pass name {p.name!r} must be lower_case and not one of the dataset's own "
                         f"keys ({', '.join(sorted(RESERVED_NAMES))})")
    if not _SUFFIX.match(p.suffix or ""):
        raise ValueError(f"label pass {p.name!r}: suffix {p.suffix!r} must look like '.name.ext'")
    if p.kind not in ("array", "record"):
        raise ValueError(f"label pass {p.name!r}: kind must be 'array' or 'record', got {p.kind!r}")
    for other_name, other in LABEL_PASSES._entries.items():
        if other_name != p.name and other.suffix == p.suffix:
            raise ValueError(f"label pass {p.name!r}: suffix {p.suffix!r} is already label pass {other_name!r}'s")
    if p.kind == "array" and (p.load is None or p.shape is None or p.codecs is None or p.default_codec is None):
        raise ValueError(f"label pass {p.name!r}: an array pass needs load, shape, codecs and default_codec "
                         "(the packer reads its file, verify checks its shape, the shards store it)")
    if p.name not in BUILTIN_PASSES and (p.compute is None or p.save is None):
        raise ValueError(f"label pass {p.name!r} needs compute and save (the renderer writes it)")
    return LABEL_PASSES.register(p.name, p, replace=replace)


def passes_for(extra: tuple[str, ...] | list[str] = ()) -> list[LabelPass]:
    """The passes of a run, in writing order: image, mask, depth, the extra ones, labels (last:
    its file marks the item done)."""
    names = list(BUILTIN_PASSES[:-1]) + [n for n in extra if n not in BUILTIN_PASSES] + [BUILTIN_PASSES[-1]]
    return [LABEL_PASSES.get(n) for n in names]


def run_passes(run: dict) -> list[LabelPass]:
    """The passes a RENDER_DIR holds, from its run.json (renders before label passes existed: the four)."""
    extra = ((run.get("config") or {}).get("render") or {}).get("label_passes") or ()
    return passes_for(tuple(extra))


def ordered(names) -> list[str]:
    """Pass names in writing order (built-ins first): a depth codec may need the mask read before it."""
    names = list(names)
    rank = {n: i for i, n in enumerate(BUILTIN_PASSES)}
    return sorted(names, key=lambda n: (rank.get(n, len(BUILTIN_PASSES) - 0.5), names.index(n)))


def compute_passes(passes: list[LabelPass], ctx: ItemContext) -> dict[str, Any]:
    """Every computed pass's value for one item (before the render: labels never wait for Cycles)."""
    out = {}
    for p in passes:
        fn = p.hook("compute")
        if fn is not None:
            out[p.name] = fn(ctx)
    return out


def write_passes(passes: list[LabelPass], values: dict[str, Any], out_dir: str | Path, pose_id: int, view_id: int,
                 fsync: bool = False) -> None:
    """Write the computed passes' files in order; the record pass is last in `passes`."""
    Path(passes[0].path(out_dir, pose_id, view_id)).parent.mkdir(parents=True, exist_ok=True)
    for p in passes:
        if p.name in values:
            p.hook("save")(p.path(out_dir, pose_id, view_id), values[p.name], fsync)


# ---------------------------------------------------------------------------------------------
# The built-in passes
# ---------------------------------------------------------------------------------------------


def _cv2():
    import cv2  # the packer's side only; the renderer writes PNGs with datagen.atomic

    return cv2


def _load_image(path: Path, height: int, width: int) -> dict:
    cv2 = _cv2()
    src = Path(path).read_bytes()
    img = cv2.imdecode(np.frombuffer(src, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise PassError("image PNG cannot be decoded")
    if img.shape != (height, width, 3) or img.dtype != np.uint8:
        raise PassError(f"image is {img.shape} {img.dtype}, expected ({height}, {width}, 3) uint8")
    return {"image": cv2.cvtColor(img, cv2.COLOR_BGR2RGB), "image_source": src}


def _read_image(reader, row: int, out: dict, options: dict):
    img = reader.read("image", row, chw=True)
    return img.astype(np.float32) * np.float32(1 / 255) if options.get("image_float") else img


def _save_mask(path: Path, mask: np.ndarray, fsync: bool) -> None:
    atomic.write_png(path, np.asarray(mask, bool).astype(np.uint8) * 255, level=6, fsync=fsync)


def _load_mask(path: Path, height: int, width: int) -> dict:
    m = _cv2().imread(str(path), _cv2().IMREAD_UNCHANGED)
    if m is None:
        raise PassError("mask PNG cannot be decoded")
    if m.shape != (height, width) or m.dtype != np.uint8:
        raise PassError(f"mask is {m.shape} {m.dtype}, expected ({height}, {width}) uint8")
    if not ((m == 0) | (m == 255)).all():
        raise PassError("mask holds values other than 0 and 255")
    return {"mask": m > 0}


def _save_depth(path: Path, depth: np.ndarray, fsync: bool) -> None:
    atomic.save_npy(path, np.asarray(depth, np.float32), fsync=fsync)


def _load_depth(path: Path, height: int, width: int) -> dict:
    try:
        depth = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise PassError(f"depth .npy cannot be read: {exc}") from None
    if depth.shape != (height, width) or depth.dtype != np.float32:
        raise PassError(f"depth is {depth.shape} {depth.dtype}, expected ({height}, {width}) float32")
    return {"depth": depth}


def _check_depth(arrays: dict) -> list[tuple[str, str]]:
    depth = arrays["depth"]
    if not np.isfinite(depth).all() or (depth < 0).any():
        return [("depth", "depth holds NaN, inf or negative values")]
    part = arrays.get("part_mask")
    if part is not None and (part == PART_MASK_OBJECT).any():
        # With occluders the depth also covers the objects: > 0 exactly where some surface is.
        bad = int(np.count_nonzero((part > 0) != (depth > 0)))
        if bad:
            return [("part_mask vs depth", f"part_mask and depth disagree at {bad} pixels (depth must be > 0 "
                                           "exactly where the part mask shows hand, arm or object)")]
        return []
    if "mask" in arrays:
        bad = int(np.count_nonzero(arrays["mask"] != (depth > 0)))
        if bad:
            return [("silhouette vs depth", f"silhouette and depth disagree at {bad} pixels (depth must be > 0 "
                                            "exactly on the mask)")]
    return []


def _read_depth(reader, row: int, out: dict, options: dict):
    return reader.read("depth", row, mask=out.get("mask"))


def _label_record(ctx: ItemContext) -> dict:
    from datagen.labels.visibility import label_record

    shape = getattr(ctx.tables, "shape_record", None)
    return dict(label_record(ctx.spec, ctx.labels, ctx.K, ctx.R, ctx.t, ctx.hdri, ctx.render, ctx.versions,
                             shape=shape(ctx.spec.pose_id) if shape is not None else None),
                **ctx.scene)


def _save_json(path: Path, record: dict, fsync: bool) -> None:
    atomic.write_json(path, record, fsync=fsync)


def _hw(h: int, w: int) -> tuple:
    return (h, w)


def _hw3(h: int, w: int) -> tuple:
    return (h, w, 3)


# Registered in writing order.  The image's `compute` is Cycles itself (blender_scripts/scene.py).
register_label_pass(LabelPass(
    "image", IMAGE_SUFFIX, "the rendered RGB image (Cycles, colour-managed 8-bit PNG); reader: uint8 (3, H, W)",
    load=_load_image, shape=_hw3, codecs=IMAGE_CODECS, default_codec="raw", read=_read_image))
register_label_pass(LabelPass(
    "mask", MASK_SUFFIX, "the exact silhouette: pixel centre inside the hand, the hand the nearest surface there "
    "(with occluders: the visible hand) (0/255 PNG); reader: bool (H, W)",
    compute=lambda ctx: ctx.labels.mask, save=_save_mask, load=_load_mask, shape=_hw, codecs=MASK_CODECS,
    default_codec="bits-gzip"))
register_label_pass(LabelPass(
    "depth", DEPTH_SUFFIX, "camera z in metres at pixel centres of the nearest surface (hand, and with occluders "
    "the objects), 0 = background (float32 .npy); reader: float32 (H, W)",
    compute=lambda ctx: ctx.labels.depth, save=_save_depth, load=_load_depth, shape=_hw, codecs=DEPTH_CODECS,
    default_codec="f32-masked-zlib", check=_check_depth, read=_read_depth))
register_label_pass(LabelPass(
    "labels", LABELS_SUFFIX, "the item JSON (keypoints, visibility, camera, draws; docs/LABELS.md): packed "
    "into the per-sample columns, checked by verify.check_labels, read as keypoints_2d, visible, joints_cam, ...",
    compute=_label_record, save=_save_json, kind="record"))


def codec(field: str, name: str) -> Codec:
    """Codec `name` of the label pass `field` (its entry in datagen.labels.passes lists them)."""
    codecs = LABEL_PASSES.get(field).codec_table()
    try:
        return codecs[name]
    except KeyError:
        raise ValueError(f"unknown {field} codec {name!r}; known: {', '.join(codecs)}") from None


# ---- part_mask: hand / forearm / object per pixel (issues 12, 14; added automatically with the
# forearm or occluders, or list it in [render] label_passes) -----------------------------------
# 0 background, 1 hand (palm and fingers, dense parts 0..5), 2 forearm (datagen.hand.forearm.
# ARM_PART), 3 object (an occluder, datagen.scene.occluders) - whichever surface is nearest at
# the pixel centre.  From the exact rasterisation (the triangle seen at each pixel centre), so it
# agrees with the silhouette pixel for pixel: `mask == (part_mask in {1, 2})`, and with the
# depth: `depth > 0 == (part_mask > 0)`.  A run without the forearm has no 2s, one without
# occluders no 3s.
PART_MASK_HAND, PART_MASK_ARM, PART_MASK_OBJECT = 1, 2, 3
_ARM_PART = 6  # datagen.hand.forearm.ARM_PART (not imported: this module loads in Blender)


def _compute_part_mask(ctx: ItemContext) -> np.ndarray:
    face = ctx.labels.face
    out = np.zeros(face.shape, np.uint8)
    hit = face >= 0
    part = ctx.tables.dense_part[ctx.tables.dense_faces[face[hit], 0]]
    out[hit] = np.where(part == _ARM_PART, PART_MASK_ARM, PART_MASK_HAND)
    if ctx.labels.object_mask is not None:
        out[ctx.labels.object_mask] = PART_MASK_OBJECT
    return out


def _save_part_mask(path: Path, value: np.ndarray, fsync: bool) -> None:
    atomic.write_png(path, np.asarray(value, np.uint8), level=6, fsync=fsync)


def _load_part_mask(path: Path, height: int, width: int) -> dict:
    value = _cv2().imread(str(path), _cv2().IMREAD_UNCHANGED)
    if value is None:
        raise PassError("part_mask PNG cannot be decoded")
    if value.shape != (height, width) or value.dtype != np.uint8:
        raise PassError(f"part_mask is {value.shape} {value.dtype}, expected ({height}, {width}) uint8")
    return {"part_mask": value}


def _check_part_mask(arrays: dict) -> list[tuple[str, str]]:
    value = arrays["part_mask"]
    problems = []
    if value.max(initial=0) > PART_MASK_OBJECT:
        problems.append(("part_mask", f"part_mask values up to {int(value.max())} (0 background, 1 hand, 2 arm, "
                                      "3 object)"))
    hand = (value == PART_MASK_HAND) | (value == PART_MASK_ARM)
    if "mask" in arrays and not np.array_equal(hand, arrays["mask"]):
        problems.append(("part_mask vs silhouette", f"part_mask's hand and arm and the silhouette differ at "
                                                    f"{int(np.count_nonzero(hand != arrays['mask']))} px"))
    return problems


def _u8_encode(a, _src=None):
    return np.asarray(a, np.uint8), None


def _u8_decode(a, _offset=None, _hw=None):
    return np.asarray(a)


PART_MASK_CODECS = {"u8-gzip": Codec("u8-gzip", "array", "uint8 part per pixel (0 background, 1 hand, 2 arm, "
                                     "3 object), "
                                     "gzip 4", _u8_encode, _u8_decode, "uint8", _hw, ("gzip", 4, False))}

register_label_pass(LabelPass(
    "part_mask", ".part_mask.png", "the nearest surface per pixel: 0 background, 1 hand, 2 forearm, 3 object "
    "(8-bit PNG); reader: uint8 (H, W)", compute=_compute_part_mask, save=_save_part_mask, load=_load_part_mask, shape=_hw,
    codecs=PART_MASK_CODECS, default_codec="u8-gzip", check=_check_part_mask))


# ---- hand_depth: the hand alone, as if there were no occluders (issue 14; list it in [render]
# label_passes) ------------------------------------------------------------------------------
# Camera z of the hand (and forearm) at pixel centres, 0 = background, ignoring the objects: the
# rasterisation the occluded labels are composited from, so it costs only its file.  Without
# occluders it equals `depth`.  Stored like depth, with a self-contained codec (its support is
# not the visible silhouette).


def _compute_hand_depth(ctx: ItemContext) -> np.ndarray:
    hd = ctx.labels.hand_depth
    return np.asarray(ctx.labels.depth if hd is None else hd, np.float32)


def _load_hand_depth(path: Path, height: int, width: int) -> dict:
    return {"hand_depth": _load_depth(path, height, width)["depth"]}


def _check_hand_depth(arrays: dict) -> list[tuple[str, str]]:
    hd = arrays["hand_depth"]
    if not np.isfinite(hd).all() or (hd < 0).any():
        return [("hand_depth", "hand_depth holds NaN, inf or negative values")]
    problems = []
    if "mask" in arrays and not (hd[arrays["mask"]] > 0).all():
        problems.append(("hand_depth vs silhouette", "hand_depth is 0 on visible hand pixels"))
    if "depth" in arrays and "mask" in arrays and not np.array_equal(hd[arrays["mask"]], arrays["depth"][arrays["mask"]]):
        problems.append(("hand_depth vs depth", "hand_depth differs from depth where the hand is visible"))
    return problems


register_label_pass(LabelPass(
    "hand_depth", ".hand_depth.npy", "camera z of the hand alone (occluders ignored), 0 = background (float32 "
    ".npy); reader: float32 (H, W)", compute=_compute_hand_depth, save=_save_depth, load=_load_hand_depth, shape=_hw,
    codecs="datagen.dataset.codecs:SPARSE_DEPTH_CODECS", default_codec="f32-sparse-zlib", check=_check_hand_depth,
    read=lambda reader, row, out, options: reader.read("hand_depth", row)))
