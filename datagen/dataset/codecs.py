"""Shard codecs: how a label pass's per-sample array is stored in a shard (see docs/DATASET.md).

An *array* codec stores (N, ...) with one sample per HDF5 chunk and an HDF5 filter; a *blob*
codec stores each sample's encoded bytes back to back in a flat uint8 dataset with an (N + 1,)
offsets column.  Codecs with `offset=True` also store a per-sample float64.

numpy and the standard library only (cv2 is imported by the codecs that need it, when they
run): label passes name their codecs at registration, and the renderer - in Blender's own
Python - imports the label-pass registry.  `datagen.dataset.shards` does the HDF5 side.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from collections.abc import Callable

import numpy as np


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
    def enc(img, _src=None):
        import cv2

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


def _sparse_enc(depth, _src=None):
    """Self-contained sparse depth: the support (depth > 0) bit-packed, then its float32 values
    row-major, byte-shuffled; all zlib level 4.  Exact; needs no mask (with occluders the depth
    map covers more than the hand's silhouette)."""
    depth = np.asarray(depth, np.float32)
    fg = depth > 0
    v = np.ascontiguousarray(depth[fg], np.float32)
    body = np.packbits(fg.ravel()).tobytes() + np.ascontiguousarray(v.view(np.uint8).reshape(-1, 4).T).tobytes()
    return zlib.compress(body, 4), None


def _sparse_dec(buf, _offset, hw, _mask=None):
    raw = np.frombuffer(zlib.decompress(buf), np.uint8)
    nbits = (hw[0] * hw[1] + 7) // 8
    fg = np.unpackbits(raw[:nbits], count=hw[0] * hw[1]).reshape(hw).view(bool)
    planes = raw[nbits:].reshape(4, -1)
    values = np.empty((planes.shape[1], 4), np.uint8)
    for k in range(4):
        values[:, k] = planes[k]
    out = np.zeros(hw, np.float32)
    out[fg] = values.view(np.float32).ravel()
    return out


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
        Codec("f32-sparse-zlib", "blob", "bit-packed support (depth > 0) + float32 metres there, byte shuffle, "
              "zlib 4; self-contained (the default with occluders)", _sparse_enc, _sparse_dec),
    ]
}
# Depth maps whose support is not the silhouette (hand_depth; depth with occluders) use these.
SPARSE_DEPTH_CODECS = {k: DEPTH_CODECS[k] for k in ("f32-sparse-zlib", "f32-gzip", "f32")}
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
