"""The on-disk schema of a packed dataset and the low-level HDF5 I/O (see docs/DATASET.md).

A packed dataset (OUT_DIR) is

    manifest.json      what it is: schema, config, seeds, versions, topology, licences, per-file SHA-256
    tables.h5          everything stored once: per pose, per view, the hand, the 778-vertex mapping,
                       HDRI names, and the global sample index (item -> shard, row)
    shard-00000.h5 ... per-sample data: image, silhouette, depth, 2D keypoints, visibility, ids, ...

This module knows the layout and the encodings ("codecs") of the big per-sample arrays; it
knows nothing about render directories (datagen.pack) or torch (datagen.dataset).

Determinism: every file is written by one code path in one order, with `track_times=False`,
fixed `libver` bounds and attributes written in sorted order, so the same inputs give the same
bytes.  Writers write to `<name>.partial`, fsync, then rename: a file under its final name is
complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from datagen import atomic

SCHEMA_VERSION = 1
LIBVER = ("v110", "v110")  # readable by HDF5 >= 1.10; fixed so a library upgrade cannot change the bytes
MANIFEST = "manifest.json"
TABLES = "tables.h5"
SHARD_PATTERN = "shard-{:05d}.h5"
PARTIAL = ".partial"
N_KEYPOINTS = 21
# Read-side chunk cache per open file.  Samples are chunked one per chunk and read at random,
# so a cache only costs memory; 0 also makes HDF5 read unfiltered chunks straight into the
# caller's buffer.
READ_CACHE_BYTES = 0
BLOB_CHUNK = 1 << 16  # 64 KiB chunks of the flat byte arrays holding encoded samples

# ---------------------------------------------------------------------------------------------
# Codecs.  An *array* codec stores (N, ...) with one sample per HDF5 chunk and an HDF5 filter;
# a *blob* codec stores each sample's encoded bytes back to back in a flat uint8 dataset with
# an (N + 1,) offsets column.  Codecs with `offset=True` also store a per-sample float64.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    name: str
    kind: str  # "array" | "blob"
    description: str
    encode: Callable  # array -> (stored array | bytes, offset or None)
    decode: Callable  # (stored array | bytes, offset, (H, W)) -> array
    dtype: str = "uint8"  # stored dtype (array codecs)
    stored_shape: Callable | None = None  # (H, W) -> per-sample stored shape (array codecs)
    filters: tuple = ()  # (compression, compression_opts, shuffle) for array codecs
    offset: bool = False
    lossless: bool = True
    needs_mask: bool = False  # decode(payload, offset, hw, mask): values stored on the silhouette only
    chw: bool = False  # images: decodes to planar (3, H, W) rather than (H, W, 3)


def _rgb_to_bgr(a):
    return np.ascontiguousarray(a[..., ::-1])


def _imencode(ext, params=()):
    import cv2

    def enc(img, _src=None):
        ok, buf = cv2.imencode(ext, _rgb_to_bgr(img), list(params))
        if not ok:
            raise ValueError(f"cv2 could not encode {ext}")
        return buf.tobytes(), None

    return enc


def _imdecode_rgb(buf, _offset=None, _hw=None):
    import cv2

    img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("cannot decode image bytes")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _identity_enc(a, _src=None):
    return a, None


def _identity_dec(a, _offset=None, _hw=None):
    return a


def _png_copy_enc(img, src=None):
    """The renderer's own PNG bytes when given (checked to decode to `img`), else a new PNG."""
    if src is not None:
        return src, None
    return _imencode(".png", (16, 3))(img)


DEPTH_STEP_M = 1e-5  # 10 micrometres per uint16 step
DEPTH_U16_RANGE_M = 65534 * DEPTH_STEP_M


def _depth_u16_enc(depth, _src=None):
    """uint16 = 1 + round((z - offset) / 10 um) on the hand, 0 = background; offset per sample."""
    fg = depth > 0
    if not fg.any():
        return np.zeros(depth.shape, np.uint16), 0.0
    zmin, zmax = float(depth[fg].min()), float(depth[fg].max())
    off = np.floor(zmin / DEPTH_STEP_M) * DEPTH_STEP_M
    if zmax - off > DEPTH_U16_RANGE_M:
        raise ValueError(f"depth range {zmax - off:.3f} m exceeds the uint16 codec's "
                         f"{DEPTH_U16_RANGE_M:.3f} m; pack with --depth-codec f32-gzip")
    q = np.zeros(depth.shape, np.uint16)
    q[fg] = (np.rint((depth[fg].astype(np.float64) - off) / DEPTH_STEP_M) + 1).astype(np.uint16)
    return q, off


def _depth_u16_dec(q, off, _hw=None):
    out = (q.astype(np.float32) - 1.0) * np.float32(DEPTH_STEP_M) + np.float32(off)
    out[q == 0] = 0
    return out


def _depth_png16_enc(depth, _src=None):
    import cv2

    q, off = _depth_u16_enc(depth)
    ok, buf = cv2.imencode(".png", q, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    return buf.tobytes(), off


def _depth_png16_dec(buf, off, _hw=None):
    import cv2

    return _depth_u16_dec(cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED), off)


def _masked_enc(level):
    """Depth on the silhouette only: the float32 values where depth > 0, row-major, then
    optionally byte-shuffled + zlib.  Exact (lossless); needs the mask to decode, and the packer
    guarantees mask == (depth > 0)."""
    def enc(depth, _src=None):
        v = np.ascontiguousarray(depth[depth > 0], np.float32)
        if level is None:
            return v.tobytes(), None
        return zlib.compress(np.ascontiguousarray(v.view(np.uint8).reshape(-1, 4).T).tobytes(), level), None

    def dec(buf, _offset, hw, mask):
        if level is not None:  # un-shuffle: byte k of every value sits in plane k
            planes = np.frombuffer(zlib.decompress(buf), np.uint8).reshape(4, -1)
            values = np.empty((planes.shape[1], 4), np.uint8)
            for k in range(4):  # four strided row copies: ~4x faster than a transposed copy
                values[:, k] = planes[k]
            buf = values
        out = np.zeros(hw, np.float32)
        out[mask] = np.frombuffer(buf, np.float32)
        return out

    return enc, dec


def _chw(h, w):
    return (3, h, w)


def _to_chw(img, _src=None):
    return np.ascontiguousarray(np.asarray(img).transpose(2, 0, 1)), None


def _hw(h, w):
    return (h, w)


def _bits(h, w):
    return ((h * w + 7) // 8,)


def _f16_enc(d, _src=None):
    return d.astype(np.float16), None


def _f32_dec(d, _offset=None, _hw=None):
    return d.astype(np.float32)


def _pack_bits(m, _src=None):
    return np.packbits(np.asarray(m, bool).ravel()), None


def _u8_mask(m, _src=None):
    return np.asarray(m, bool).view(np.uint8), None


def _unpack_bits(b, _offset, hw):
    return np.unpackbits(b, count=hw[0] * hw[1]).reshape(hw).view(bool)


def _u8_to_bool(m, _offset=None, _hw=None):
    return m.view(bool)


IMAGE_CODECS = {
    c.name: c
    for c in [
        Codec("raw", "array", "uint8 3xHxW (planar RGB), no compression", _to_chw, _identity_dec, "uint8", _chw,
              chw=True),
        Codec("lzf", "array", "uint8 3xHxW, HDF5 lzf", _to_chw, _identity_dec, "uint8", _chw, ("lzf", None, False),
              chw=True),
        Codec("gzip1", "array", "uint8 3xHxW, HDF5 gzip level 1", _to_chw, _identity_dec, "uint8", _chw,
              ("gzip", 1, False), chw=True),
        Codec("png", "blob", "the renderer's PNG bytes as they are", _png_copy_enc, _imdecode_rgb),
        Codec("webp", "blob", "lossless WebP (cv2)", _imencode(".webp", (64, 101)), _imdecode_rgb),
        Codec("jpeg95", "blob", "JPEG quality 95, 4:2:0 (cv2/libjpeg) - lossy", _imencode(".jpg", (1, 95)),
              _imdecode_rgb, lossless=False),
    ]
}
DEPTH_CODECS = {
    c.name: c
    for c in [
        Codec("f32", "array", "float32 metres, no compression", _identity_enc, _identity_dec, "float32", _hw),
        Codec("f32-gzip", "array", "float32 metres, byte shuffle + gzip 4", _identity_enc, _identity_dec, "float32",
              _hw, ("gzip", 4, True)),
        Codec("f32-lzf", "array", "float32 metres, byte shuffle + lzf", _identity_enc, _identity_dec, "float32", _hw,
              ("lzf", None, True)),
        Codec("f16-gzip", "array", "float16 metres, byte shuffle + gzip 4 - lossy (half a float16 step: 0.12 mm below 0.5 m, 0.24 mm below 1 m)", _f16_enc,
              _f32_dec, "float16", _hw, ("gzip", 4, True), lossless=False),
        Codec("u16-gzip", "array", "uint16 10 um steps above a per-sample offset, shuffle + gzip 4 (error <= 5 um)",
              _depth_u16_enc, _depth_u16_dec, "uint16", _hw, ("gzip", 4, True), offset=True, lossless=False),
        Codec("f32-masked", "blob", "float32 metres on the silhouette only (row-major), no compression",
              *_masked_enc(None), needs_mask=True),
        Codec("f32-masked-zlib", "blob", "float32 metres on the silhouette only, byte shuffle + zlib 4",
              *_masked_enc(4), needs_mask=True),
        Codec("u16-png", "blob", "the same uint16 as a 16-bit PNG (error <= 5 um)", _depth_png16_enc, _depth_png16_dec,
              offset=True, lossless=False),
    ]
}
MASK_CODECS = {
    c.name: c
    for c in [
        Codec("bits-gzip", "array", "bit-packed (numpy.packbits, row-major), gzip 4", _pack_bits, _unpack_bits, "uint8", _bits,
              ("gzip", 4, False)),
        Codec("bits", "array", "bit-packed, no compression", _pack_bits, _unpack_bits, "uint8", _bits),
        Codec("u8-gzip", "array", "one uint8 0/1 per pixel, gzip 4", _u8_mask, _u8_to_bool, "uint8", _hw,
              ("gzip", 4, False)),
    ]
}
CODECS = {"image": IMAGE_CODECS, "depth": DEPTH_CODECS, "mask": MASK_CODECS}
# Chosen by measurement (docs/DATASET.md, benchmarks/io_bench.py --codecs): lossless, and the
# cheapest to decode - raw images cost 0.03 ms/sample where the smallest lossless option (WebP)
# costs ~1 ms; depth on the silhouette only is both the smallest and among the fastest.
DEFAULT_CODECS = {"image": "raw", "depth": "f32-masked-zlib", "mask": "bits-gzip"}


def codec(field: str, name: str) -> Codec:
    try:
        return CODECS[field][name]
    except KeyError:
        raise ValueError(f"unknown {field} codec {name!r}; known: {', '.join(CODECS[field])}") from None


# ---------------------------------------------------------------------------------------------
# Per-sample columns (small, fixed size): stored whole, read whole when a shard is opened.
# ---------------------------------------------------------------------------------------------

SAMPLE_COLUMNS = {
    # name: (dtype, per-sample shape); documented in docs/DATASET.md
    "item_id": ("int64", ()),
    "pose_id": ("int32", ()),
    "view_id": ("int32", ()),
    "seed": ("int64", ()),
    "keypoints_2d": ("float32", (N_KEYPOINTS, 2)),
    "visible": ("bool", (N_KEYPOINTS,)),
    "in_frame": ("bool", (N_KEYPOINTS,)),
    "depth_gap_m": ("float32", (N_KEYPOINTS,)),
    "crossings": ("int16", (N_KEYPOINTS,)),
    "skin_distance_m": ("float32", (N_KEYPOINTS,)),
    "bbox_xyxy": ("int32", (4,)),
    "mask_area_px": ("int32", ()),
    "hdri_index": ("int32", ()),
    "hdri_rotation_deg": ("float32", ()),
    "hdri_strength": ("float32", ()),
    # "skin": float32 (N, S), names in the attribute skin_names (S comes from the render items)
}


def set_attrs(obj, attrs: dict) -> None:
    for k in sorted(attrs):
        v = attrs[k]
        obj.attrs[k] = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list, tuple)) else v


def attr_json(obj, key, default=None):
    if key not in obj.attrs:
        return default
    v = obj.attrs[key]
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str) and v[:1] in "[{":
        return json.loads(v)
    return v.item() if isinstance(v, np.generic) else v


def fsync_rename(tmp: Path, final: Path) -> None:
    """`atomic.commit` with fsync, then the folder's entry too (a finished shard survives power loss)."""
    atomic.commit(tmp, final, fsync=True)
    try:
        fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some filesystems cannot fsync a directory
        pass


def sha256_file(path: Path, bufsize: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def create_file(path: Path) -> h5py.File:
    return h5py.File(path, "w", libver=LIBVER, rdcc_nbytes=0)


def write_array(parent, name: str, data, compress: bool = True, chunks=None, attrs: dict | None = None):
    data = np.asarray(data)
    kw = dict(track_times=False)
    if data.dtype.kind in "OU":
        data = data.astype(h5py.string_dtype())
    elif compress and data.size * data.itemsize > 4096:
        kw.update(compression="gzip", compression_opts=4, shuffle=data.itemsize > 1,
                  chunks=chunks if chunks is not None else True)
    ds = parent.create_dataset(name, data=data, **kw)
    if attrs:
        set_attrs(ds, attrs)
    return ds


# ---------------------------------------------------------------------------------------------
# Shard writer / reader
# ---------------------------------------------------------------------------------------------


class ShardWriter:
    """Appends samples to `<path>.partial`; `close()` finalises it under `path`."""

    def __init__(self, path: Path, height: int, width: int, codecs: dict[str, str], skin_names: list[str],
                 extra: bool = False):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + PARTIAL)
        self.h, self.w = height, width
        self.codecs = {f: codec(f, n) for f, n in codecs.items()}
        if any(c.needs_mask for c in self.codecs.values()) and "mask" not in self.codecs:
            raise ValueError("a codec that stores values on the silhouette needs the mask in the same shard")
        self.skin_names = list(skin_names)
        self.f = create_file(self.tmp)
        self.n = 0
        self.columns: dict[str, list] = {k: [] for k in SAMPLE_COLUMNS}
        self.columns["skin"] = []
        self.extra = [] if extra else None
        self.offsets = {f: [] for f, c in self.codecs.items() if c.offset}
        self.blob_pos = {f: [0] for f, c in self.codecs.items() if c.kind == "blob"}
        for field, c in self.codecs.items():
            if c.kind == "array":
                shape = c.stored_shape(height, width)
                comp, opts, shuffle = c.filters if c.filters else (None, None, False)
                self.f.create_dataset(field, shape=(0, *shape), maxshape=(None, *shape), chunks=(1, *shape),
                                      dtype=c.dtype, compression=comp, compression_opts=opts, shuffle=shuffle,
                                      track_times=False)
            else:
                self.f.create_dataset(field + "_bytes", shape=(0,), maxshape=(None,), chunks=(BLOB_CHUNK,),
                                      dtype="uint8", track_times=False)

    def add(self, sample: dict) -> None:
        for k in SAMPLE_COLUMNS:
            self.columns[k].append(sample[k])
        self.columns["skin"].append(sample["skin"])
        if self.extra is not None:
            self.extra.append(sample.get("extra_json", "{}"))
        for field, c in self.codecs.items():
            payload, off = c.encode(sample[field], sample.get(field + "_source"))
            if c.offset:
                self.offsets[field].append(off)
            if c.kind == "array":
                ds = self.f[field]
                ds.resize(self.n + 1, axis=0)
                ds[self.n] = payload
            else:
                ds = self.f[field + "_bytes"]
                start = self.blob_pos[field][-1]
                ds.resize(start + len(payload), axis=0)
                ds[start:] = np.frombuffer(payload, np.uint8)
                self.blob_pos[field].append(start + len(payload))
        self.n += 1

    def size(self) -> int:
        return self.tmp.stat().st_size

    def close(self, attrs: dict) -> Path:
        f = self.f
        for k, (dtype, shape) in SAMPLE_COLUMNS.items():
            write_array(f, k, np.asarray(self.columns[k], dtype=dtype).reshape(self.n, *shape))
        write_array(f, "skin", np.asarray(self.columns["skin"], np.float32).reshape(self.n, len(self.skin_names)),
                    attrs={"names": self.skin_names})
        if self.extra is not None:
            write_array(f, "extra_json", np.asarray(self.extra, dtype=object))
        for field, offs in self.offsets.items():
            write_array(f, field + "_offset_m", np.asarray(offs, np.float64))
        for field, pos in self.blob_pos.items():
            write_array(f, field + "_offsets", np.asarray(pos, np.int64))
        set_attrs(f, {**attrs, "schema_version": SCHEMA_VERSION, "kind": "shard", "count": self.n,
                          "height": self.h, "width": self.w,
                          "codecs": {k: c.name for k, c in sorted(self.codecs.items())}})
        f.close()
        fsync_rename(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self.f.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class ShardReader:
    """Random access to one shard.  Small columns are read whole on open; images on demand."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.f = h5py.File(self.path, "r", rdcc_nbytes=READ_CACHE_BYTES)
        f = self.f
        version = int(f.attrs.get("schema_version", -1))
        if version != SCHEMA_VERSION:
            raise ValueError(f"{self.path.name}: schema version {version}, this reader knows {SCHEMA_VERSION}")
        self.count = int(f.attrs["count"])
        self.height, self.width = int(f.attrs["height"]), int(f.attrs["width"])
        self.codecs = {k: codec(k, v) for k, v in attr_json(f, "codecs").items()}
        self.columns = {k: f[k][()] for k in SAMPLE_COLUMNS}
        self.columns["skin"] = f["skin"][()]
        self.skin_names = attr_json(f["skin"], "names")
        self.offsets = {k: f[k + "_offset_m"][()] for k, c in self.codecs.items() if c.offset}
        self.blob_offsets = {k: f[k + "_offsets"][()] for k, c in self.codecs.items() if c.kind == "blob"}
        self._ds = {k: f[k] if c.kind == "array" else f[k + "_bytes"] for k, c in self.codecs.items()}

    def raw(self, field: str, row: int):
        """The stored payload of one sample (array or bytes), as on disk after HDF5 filters."""
        c = self.codecs[field]
        if c.kind == "array":
            return self._ds[field][row]
        o = self.blob_offsets[field]
        return self._ds[field][o[row]:o[row + 1]].tobytes()

    def read(self, field: str, row: int, chw: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
        """One decoded sample: image uint8 (H, W, 3) - (3, H, W) with chw=True -, mask bool
        (H, W), depth float32 (H, W) metres.  `mask`: this row's mask if the caller already
        read it (codecs that store values on the silhouette only need it)."""
        c = self.codecs[field]
        payload = self.raw(field, row)
        off = self.offsets[field][row] if c.offset else None
        if c.needs_mask:
            return c.decode(payload, off, (self.height, self.width), self.read("mask", row) if mask is None else mask)
        out = c.decode(payload, off, (self.height, self.width))
        if field == "image" and c.chw != chw:
            out = np.ascontiguousarray(out.transpose((1, 2, 0) if c.chw else (2, 0, 1)))
        return out

    def stored_bytes(self) -> dict[str, int]:
        """Bytes on disk per field (compressed chunk sizes; blobs: their byte count)."""
        out = {}
        for k, c in self.codecs.items():
            if c.kind == "blob":  # the encoded bytes; the unused tail of the last chunk counts as overhead
                out[k] = int(self.blob_offsets[k][-1])
            else:
                out[k] = int(self._ds[k].id.get_storage_size())
        small = list(SAMPLE_COLUMNS) + ["skin"] + [k + "_offset_m" for k in self.offsets] + \
            [k + "_offsets" for k in self.blob_offsets] + (["extra_json"] if "extra_json" in self.f else [])
        out["labels"] = int(sum(self.f[k].id.get_storage_size() for k in small))
        return out

    def close(self) -> None:
        self.f.close()


def read_shard_attrs(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: attr_json(f, k) for k in f.attrs}
