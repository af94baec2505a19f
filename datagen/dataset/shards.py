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

Corruption is caught on read: every numeric dataset is chunked with HDF5's Fletcher32 checksum
filter (per chunk: one sample's image/mask/depth, 64 KiB of a blob, a column), so a damaged
byte fails the read of its chunk; the readers raise `CorruptShardError` naming the file, the
sample (row, item, pose, view) and the field.  The filter is transparent to any HDF5 reader.
Shards written before it (no filter) still read; their damage shows only where a decoder
notices (a gzip/zlib stream) - `datagen.verify` (SHA-256) finds the rest.  A file shorter or
longer than the manifest says is refused when it is opened (`ShardDataset`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import h5py
import numpy as np

from datagen import atomic

# Codecs live in datagen.dataset.codecs (import-light: label passes name theirs at registration);
# the names stay importable from here.
from datagen.dataset.codecs import (  # noqa: F401
    CODECS,
    DEFAULT_CODECS,
    DEPTH_CODECS,
    DEPTH_STEP_M,
    DEPTH_U16_RANGE_M,
    IMAGE_CODECS,
    MASK_CODECS,
    Codec,
)
from datagen.labels.passes import codec  # noqa: F401 - a pass's codec by name

# 2: every sample carries its own camera (K, R, t columns; per item with [cameras.jitter]).
# Schema 1 datasets (no camera columns: every sample has its view's camera) still read.
SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
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
# Fletcher32 on every numeric dataset written from now on (read-side: see the module docstring).
CHECKSUM = True

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A packed dataset's file is missing, truncated, damaged or inconsistent; the message names
    the file (and the sample) and says what to do."""


class CorruptShardError(DatasetError):
    """Bytes of a shard fail their checksum or do not decode."""

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
    "handedness": ("uint8", ()),  # 0 right, 1 left (datagen.labels.handedness)
    # The sample's camera (x_cam = R x_hand + t), as in its item JSON: the view's, or with
    # [cameras.jitter] the item's own.  Since schema 2 (SINCE_SCHEMA).
    "K": ("float64", (3, 3)),
    "R": ("float64", (3, 3)),
    "t": ("float64", (3,)),
    "occluded_by_object": ("bool", (N_KEYPOINTS,)),  # with occluders; all False in older shards
    # The item's own wrist angles [flexion, deviation] in degrees ([hand] wrist_draw = "item": the
    # item JSON's `wrist` block); NaN = the pose table's wrist (every other dataset, older shards).
    "wrist_deg": ("float32", (2,)),
    # "skin": float32 (N, S), names in the attribute skin_names (S comes from the render items)
}
# Columns added after schema version 1, with the value a shard written before them means
# (every sample was a right hand, no object hid a keypoint, the wrist was the pose table's): read
# as that value when missing, so older datasets stay readable.
LATER_COLUMNS = {"handedness": 0, "occluded_by_object": False, "wrist_deg": np.nan}
# Columns of a later schema: a shard of an older schema does not have them (a schema 1 sample's
# camera is its view's, tables.h5 views/; the reader falls back to it).
SINCE_SCHEMA = {"K": 2, "R": 2, "t": 2}


def read_column(f, name: str, count: int) -> np.ndarray:
    """A per-sample column of an open shard; a later column the shard predates is its default."""
    if name not in f and name in LATER_COLUMNS:
        dtype, shape = SAMPLE_COLUMNS[name]
        return np.full((count, *shape), LATER_COLUMNS[name], dtype)
    return f[name][()]


def sample_columns(version: int) -> dict:
    """SAMPLE_COLUMNS that a shard of schema `version` holds."""
    return {k: v for k, v in SAMPLE_COLUMNS.items() if SINCE_SCHEMA.get(k, 1) <= version}


def check_schema(version, what) -> int:
    """The schema version as int, or DatasetError naming `what` when this reader cannot read it."""
    try:
        v = int(version)
    except (TypeError, ValueError):
        v = -1
    if v not in READABLE_SCHEMAS:
        raise DatasetError(f"{what}: schema version {version}, this reader knows {', '.join(map(str, READABLE_SCHEMAS))}")
    return v


# The depth codec a run with occluders packs with by default (its depth is not on the silhouette only).
OCCLUDER_DEPTH_CODEC = "f32-sparse-zlib"


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


def write_array(parent, name: str, data, compress: bool = True, chunks=None, attrs: dict | None = None,
                checksum: bool | None = None):
    """A dataset written whole; numeric ones get the Fletcher32 checksum (chunked) by default."""
    data = np.asarray(data)
    kw = dict(track_times=False)
    checksum = CHECKSUM if checksum is None else checksum
    if data.dtype.kind in "OU":
        data = data.astype(h5py.string_dtype())
    elif compress and data.size * data.itemsize > 4096:
        kw.update(compression="gzip", compression_opts=4, shuffle=data.itemsize > 1,
                  chunks=chunks if chunks is not None else True)
    if checksum and data.dtype.kind not in "OU" and data.ndim and data.size:
        kw.update(fletcher32=True, chunks=kw.get("chunks") or (chunks if chunks is not None else True))
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
                                      fletcher32=CHECKSUM, track_times=False)
            else:
                self.f.create_dataset(field + "_bytes", shape=(0,), maxshape=(None,), chunks=(BLOB_CHUNK,),
                                      dtype="uint8", fletcher32=CHECKSUM, track_times=False)

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
        self._check_written()
        fsync_rename(self.tmp, self.path)
        return self.path

    def _check_written(self) -> None:
        """The finished file reads back (header, count) before it gets its final name."""
        try:
            with h5py.File(self.tmp, "r") as g:
                ok = int(g.attrs["count"]) == self.n and all(k in g for k in SAMPLE_COLUMNS)
        except (OSError, KeyError, ValueError):
            ok = False
        if not ok:
            raise OSError(5, f"{self.path.name}: the shard just written does not read back (a full disk?); "
                             f"it was not renamed into place", str(self.tmp))

    def abort(self) -> None:
        try:
            self.f.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class ShardReader:
    """Random access to one shard.  Small columns are read whole on open; images on demand.

    `expected_bytes` (the manifest's size): a file of another size is refused on open.  Every
    failure - a truncated or unreadable file, a chunk failing its checksum, bytes that do not
    decode - raises `DatasetError` / `CorruptShardError` naming the file and, on reads, the
    sample.
    """

    def __init__(self, path: Path, expected_bytes: int | None = None):
        self.path = Path(path)
        check_size(self.path, expected_bytes, "shard")
        try:
            self.f = h5py.File(self.path, "r", rdcc_nbytes=READ_CACHE_BYTES)
        except OSError as exc:
            raise DatasetError(f"{self.path}: not a readable HDF5 shard ({_h5_reason(exc)}); re-pack the dataset "
                               f"(python -m datagen.pack) or restore the file") from None
        try:
            self._open()
        except (OSError, KeyError, ValueError, TypeError) as exc:
            self.f.close()
            if isinstance(exc, DatasetError):
                raise
            raise CorruptShardError(f"{self.path}: damaged ({_h5_reason(exc)}) - its labels or layout cannot be "
                                    f"read; re-pack the dataset or restore the file (python -m datagen.verify "
                                    f"{self.path.parent} checks every file)") from None

    def _open(self) -> None:
        f = self.f
        self.schema_version = check_schema(f.attrs.get("schema_version", -1), self.path)
        self.count = int(f.attrs["count"])
        self.height, self.width = int(f.attrs["height"]), int(f.attrs["width"])
        self.codecs = {k: codec(k, v) for k, v in attr_json(f, "codecs").items()}
        self.columns = {k: read_column(f, k, self.count) for k in sample_columns(self.schema_version)}
        self.columns["skin"] = f["skin"][()]
        self.skin_names = attr_json(f["skin"], "names")
        self.offsets = {k: f[k + "_offset_m"][()] for k, c in self.codecs.items() if c.offset}
        self.blob_offsets = {k: f[k + "_offsets"][()] for k, c in self.codecs.items() if c.kind == "blob"}
        self._ds = {k: f[k] if c.kind == "array" else f[k + "_bytes"] for k, c in self.codecs.items()}
        self.checksummed = all(ds.fletcher32 for ds in self._ds.values())
        if not self.checksummed:
            log.debug("%s has no checksums (packed before they were added): damage may go unnoticed on read",
                      self.path)

    def where(self, row: int) -> str:
        """'sample ROW (item I, pose P, view V)' for messages."""
        c = getattr(self, "columns", {})
        try:
            return (f"sample {row} (item {int(c['item_id'][row])}, pose {int(c['pose_id'][row])}, "
                    f"view {int(c['view_id'][row])})")
        except (KeyError, IndexError, TypeError, ValueError):
            return f"sample {row}"

    def _corrupt(self, field: str, row: int, what: str) -> CorruptShardError:
        return CorruptShardError(f"{self.path}: {self.where(row)}, {field}: {what} - the shard is damaged; "
                                 f"restore or re-pack it (python -m datagen.verify {self.path.parent} lists "
                                 f"every damaged file)")

    def raw(self, field: str, row: int):
        """The stored payload of one sample (array or bytes), as on disk after HDF5 filters."""
        c = self.codecs[field]
        if not 0 <= row < self.count:
            raise IndexError(f"{self.path}: row {row} out of range (the shard holds {self.count} samples)")
        try:
            if c.kind == "array":
                return self._ds[field][row]
            o = self.blob_offsets[field]
            return self._ds[field][o[row]:o[row + 1]].tobytes()
        except OSError as exc:
            raise self._corrupt(field, row, f"the stored bytes fail their checksum or cannot be read "
                                            f"({_h5_reason(exc)})") from None

    def read(self, field: str, row: int, chw: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
        """One decoded sample: image uint8 (H, W, 3) - (3, H, W) with chw=True -, mask bool
        (H, W), depth float32 (H, W) metres.  `mask`: this row's mask if the caller already
        read it (codecs that store values on the silhouette only need it)."""
        c = self.codecs[field]
        payload = self.raw(field, row)
        off = self.offsets[field][row] if c.offset else None
        try:
            if c.needs_mask:
                return c.decode(payload, off, (self.height, self.width),
                                self.read("mask", row) if mask is None else mask)
            out = c.decode(payload, off, (self.height, self.width))
        except CorruptShardError:
            raise
        except Exception as exc:  # noqa: BLE001 - zlib.error, cv2.error, ValueError: the bytes are bad
            raise self._corrupt(field, row, f"the stored bytes do not decode ({type(exc).__name__}: {exc})") from None
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
        small = list(sample_columns(self.schema_version)) + ["skin"] + [k + "_offset_m" for k in self.offsets] + \
            [k + "_offsets" for k in self.blob_offsets] + (["extra_json"] if "extra_json" in self.f else [])
        out["labels"] = int(sum(self.f[k].id.get_storage_size() for k in small if k in self.f))
        return out

    def close(self) -> None:
        self.f.close()


def read_shard_attrs(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: attr_json(f, k) for k in f.attrs}


def _h5_reason(exc: BaseException) -> str:
    """h5py's message without its traceback noise: 'truncated file: eof = ..., stored_eof = ...'."""
    msg = str(exc).strip() or type(exc).__name__
    if "(" in msg and msg.endswith(")") and msg.startswith(("Unable to", "Can't")):
        inner = msg[msg.index("(") + 1:-1]
        return f"{msg[:msg.index('(')].strip()}: {inner}"
    return msg


def check_size(path: Path, expected_bytes: int | None, what: str = "file") -> None:
    """Refuse a missing file, or one whose size is not the manifest's (truncated, replaced)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DatasetError(f"{path}: the {what} is missing (listed in the manifest); restore it or re-pack the "
                           f"dataset (python -m datagen.pack)") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if expected_bytes is not None and size != int(expected_bytes):
        how = "truncated" if size < int(expected_bytes) else "longer than it should be"
        raise DatasetError(f"{path}: {size:,} bytes, the manifest says {int(expected_bytes):,} - the {what} is {how} "
                           f"(an interrupted copy or download?); copy it again or re-pack the dataset "
                           f"(python -m datagen.verify {path.parent} checks every file)")
