"""Atomic file writes: a temporary name in the same folder, then one rename.

A renderer may be killed at any moment (Ctrl-C, a pre-empted cluster job, out of memory).
Every file it produces is therefore written under a hidden temporary name and renamed onto
its final name only when complete; `os.replace` is atomic on POSIX file systems, so a final
name always holds a whole file.  A killed run leaves at most some hidden temporaries behind;
`remove_stale_temps` deletes those whose writer is provably dead.

Temporary names: ``.<final name>.tmp-<host>-<pid>`` (hidden; readers that list a folder skip
dot-files).  The host and pid let several workers share an output folder, even across machines
on a shared file system, without one deleting another's file in flight.

Nothing corrupt goes under a final name: before the rename every file is checked - its size
against the bytes written, and a PNG (Blender's `save_render` does not report a failed write,
e.g. on a full disk) is parsed whole (chunk CRCs, IEND, the zlib stream and its length).  A
failed write raises `WriteError` naming the file, in one line; `DiskFullError` when the device
(or quota) is full - callers stop the run on it instead of failing item after item.

Only the standard library and numpy are used: this module runs inside Blender's own Python.
`fsync=True` also survives power loss (costs a disk flush per file); killing a process
never needs it.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import zlib
from pathlib import Path
from typing import Any
from collections.abc import Callable

import numpy as np

_HOST = socket.gethostname().replace("-", "_").replace(os.sep, "_") or "host"
TEMP_MARK = ".tmp-"
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# Below this many free bytes a file that came out short is blamed on a full device.
FULL_DEVICE_BYTES = 1 << 20


class WriteError(OSError):
    """A file could not be written whole; str() is one line naming the file.  The temporary
    was removed; nothing was put under the final name."""

    def __init__(self, message: str, code: int | None = None, path: str | Path | None = None):
        super().__init__(message)
        self.message = message
        self.errno = code
        self.filename = None if path is None else str(path)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return type(self), (self.message, self.errno, self.filename)


class DiskFullError(WriteError):
    """No space (or quota) left on the device: every further write would fail too - stop."""


def free_bytes(folder: str | Path) -> int | None:
    """Bytes this process may still write in `folder`'s file system (root may use the reserve)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return (st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail) * st.f_frsize


def human_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000.0
    return str(n)


def disk_full_error(final: str | Path, detail: str = "") -> DiskFullError:
    final = Path(final)
    free = free_bytes(final.parent)
    return DiskFullError(f"no space left on device: cannot write {final}{detail} ({human_bytes(free)} free in "
                         f"{final.parent}); free some space or write to another folder, then run again",
                         errno.ENOSPC, final)


def as_write_error(exc: OSError, final: str | Path) -> WriteError:
    """One-line error for an OSError raised while writing `final`."""
    if isinstance(exc, WriteError):
        return exc
    if exc.errno in NO_SPACE_ERRNOS:
        return disk_full_error(final)
    return WriteError(f"cannot write {final}: {exc.strerror or exc}", exc.errno, final)


def check_png(path: str | Path) -> None:
    """Raise ValueError unless `path` is a whole PNG: signature, IHDR first, every chunk's CRC,
    IEND last, the IDAT zlib stream complete and as long as the header's image needs."""
    data = Path(path).read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("not a PNG (bad signature)" if data else "empty file")
    pos, idat, header, end = 8, [], None, False
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError(f"truncated chunk header at byte {pos}")
        n, tag = struct.unpack(">I4s", data[pos:pos + 8])
        if pos + 12 + n > len(data):
            raise ValueError(f"truncated {tag.decode(errors='replace')} chunk at byte {pos} "
                             f"(file ends at {len(data)})")
        body = data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        if zlib.crc32(tag + body) & 0xFFFFFFFF != crc:
            raise ValueError(f"CRC mismatch in the {tag.decode(errors='replace')} chunk at byte {pos}")
        if header is None and tag != b"IHDR":
            raise ValueError("IHDR is not the first chunk")
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", body[:13])
        elif tag == b"IDAT":
            idat.append(body)
        elif tag == b"IEND":
            end = True
            break
        pos += 12 + n
    if not end:
        raise ValueError("no IEND chunk (the file was cut short)")
    w, h, depth, colour, _, _, interlace = header
    d = zlib.decompressobj()
    try:
        raw = d.decompress(b"".join(idat))
    except zlib.error as exc:
        raise ValueError(f"image data do not decompress ({exc})") from None
    if not d.eof:
        raise ValueError("image data stream is incomplete")
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if channels is None:
        raise ValueError(f"unknown PNG colour type {colour}")
    if not interlace and len(raw) != h * (1 + (w * channels * depth + 7) // 8):
        raise ValueError(f"image data hold {len(raw)} bytes, a {w}x{h} image needs "
                         f"{h * (1 + (w * channels * depth + 7) // 8)}")


def check_file(tmp: str | Path, final: str | Path, expected_size: int | None = None) -> None:
    """Raise WriteError (DiskFullError on a full device) unless the finished temporary `tmp`
    is whole: its size matches `expected_size` (the bytes written) and, for a .png final
    name, it parses as a complete PNG."""
    final = Path(final)
    try:
        size = os.stat(tmp).st_size
    except OSError as exc:
        raise as_write_error(exc, final) from None
    why = None
    if expected_size is not None and size != expected_size:
        why = f"{size} of {expected_size} bytes on disk"
    elif size == 0:
        why = "empty file"
    elif final.suffix.lower() == ".png":
        try:
            check_png(tmp)
        except ValueError as exc:
            why = f"incomplete PNG: {exc}"
        except OSError as exc:
            raise as_write_error(exc, final) from None
    if why is None:
        return
    free = free_bytes(final.parent)
    if free is not None and free < FULL_DEVICE_BYTES:
        raise disk_full_error(final, f" ({why})")
    raise WriteError(f"{final} was written incomplete ({why}); it was not renamed into place", errno.EIO, final)


def temp_path(final: str | Path) -> Path:
    final = Path(final)
    return final.with_name(f".{final.name}{TEMP_MARK}{_HOST}-{os.getpid()}")


def commit(tmp: str | Path, final: str | Path, fsync: bool = False, expected_size: int | None = None) -> None:
    """Check a finished temporary file (`check_file`) and rename it onto its final name (atomic).
    On a failed check the temporary stays: callers remove it."""
    check_file(tmp, final, expected_size)
    try:
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, final)
    except OSError as exc:
        raise as_write_error(exc, final) from None


def write_with(final: str | Path, writer: Callable[[Any], None], fsync: bool = False) -> Path:
    """Call `writer(binary_file)` on a temporary file, check it, then rename it to `final`."""
    final = Path(final)
    tmp = temp_path(final)
    try:
        try:
            with open(tmp, "wb") as f:
                writer(f)
                written = f.tell()
        except OSError as exc:
            raise as_write_error(exc, final) from None
        commit(tmp, final, fsync, expected_size=written)
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
