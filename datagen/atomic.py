"""Atomic file writes: a temporary name in the same folder, then one rename.

A renderer may be killed at any moment (Ctrl-C, a pre-empted cluster job, out of memory).
Every file it produces is therefore written under a hidden temporary name and renamed onto
its final name only when complete; `os.replace` is atomic on POSIX file systems, so a final
name always holds a whole file.  A killed run leaves at most some hidden temporaries behind;
`remove_stale_temps` deletes those whose writer is provably dead.

Temporary names: ``.<final name>.tmp-<host>-<pid>`` (hidden; readers that list a folder skip
dot-files).  The host and pid let several workers share an output folder, even across machines
on a shared file system, without one deleting another's file in flight.

Only the standard library and numpy are used: this module runs inside Blender's own Python.
`fsync=True` also survives power loss (costs a disk flush per file); killing a process
never needs it.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

_HOST = socket.gethostname().replace("-", "_").replace(os.sep, "_") or "host"
TEMP_MARK = ".tmp-"


def temp_path(final: str | Path) -> Path:
    final = Path(final)
    return final.with_name(f".{final.name}{TEMP_MARK}{_HOST}-{os.getpid()}")


def commit(tmp: str | Path, final: str | Path, fsync: bool = False) -> None:
    """Rename a finished temporary file onto its final name (atomic)."""
    if fsync:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(tmp, final)


def write_with(final: str | Path, writer: Callable[[Any], None], fsync: bool = False) -> Path:
    """Call `writer(binary_file)` on a temporary file, then rename it to `final`."""
    final = Path(final)
    tmp = temp_path(final)
    try:
        with open(tmp, "wb") as f:
            writer(f)
        commit(tmp, final, fsync)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return final


def write_bytes(final: str | Path, data: bytes, fsync: bool = False) -> Path:
    return write_with(final, lambda f: f.write(data), fsync)


def write_text(final: str | Path, text: str, fsync: bool = False) -> Path:
    return write_bytes(final, text.encode("utf-8"), fsync)


def write_json(final: str | Path, obj: Any, fsync: bool = False, indent: int | None = None) -> Path:
    """Strict JSON (NaN/inf refused: use None for missing values)."""
    text = json.dumps(obj, indent=indent, allow_nan=False, sort_keys=False)
    return write_text(final, text + "\n", fsync)


def save_npy(final: str | Path, array: np.ndarray, fsync: bool = False) -> Path:
    return write_with(final, lambda f: np.save(f, np.asarray(array), allow_pickle=False), fsync)


def save_npz(final: str | Path, fsync: bool = False, compressed: bool = False, **arrays) -> Path:
    fn = np.savez_compressed if compressed else np.savez
    return write_with(final, lambda f: fn(f, **arrays), fsync)


def png_bytes(image: np.ndarray, level: int = 6) -> bytes:
    """Encode an 8-bit grey (H, W), RGB (H, W, 3) or RGBA (H, W, 4) array as PNG (zlib only)."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise TypeError(f"png_bytes needs uint8, got {img.dtype}")
    if img.ndim == 2:
        colour_type, channels = 0, 1
    elif img.ndim == 3 and img.shape[2] in (3, 4):
        colour_type, channels = (2, 3) if img.shape[2] == 3 else (6, 4)
    else:
        raise ValueError(f"png_bytes: unsupported shape {img.shape}")
    h, w = img.shape[:2]
    rows = np.empty((h, 1 + w * channels), np.uint8)
    rows[:, 0] = 0  # filter type None: masks are runs of 0/255 and compress well without one
    rows[:, 1:] = img.reshape(h, w * channels)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + chunk(b"IEND", b""))


def write_png(final: str | Path, image: np.ndarray, level: int = 6, fsync: bool = False) -> Path:
    return write_bytes(final, png_bytes(image, level), fsync)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: str | Path) -> int:
    """Delete temporaries left in `folder` by dead writers on this host; returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for p in folder.iterdir():
        name = p.name
        if not (name.startswith(".") and TEMP_MARK in name):
            continue
        owner = name.rsplit(TEMP_MARK, 1)[1]
        host, _, pid = owner.rpartition("-")
        if host != _HOST or not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        try:
            p.unlink()
            removed += 1
        except OSError:
            pass
    return removed
