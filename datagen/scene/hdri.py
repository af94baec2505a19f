"""HDRI environments: discovery, header checks, licences, and the environment's orientation.

Light and background come from the same equirectangular HDRI (Cycles world shader).

Sources (config `[hdri] sources`):
- "builtin": the CC0 HDRIs that ship inside Blender / the bpy package
  (``<bpy>/<version>/datafiles/studiolights/world/*.exr`` and its license.txt).  Found without
  importing bpy (importlib's spec location) so that pure-Python tools can list them; inside
  Blender through ``bpy.utils.system_resource``.
- any other entry: a file or a folder (relative to the repo root, or absolute) searched
  recursively for .hdr / .exr files.  The default "hdri" is the repo's `hdri/` folder.

Licences: the builtin set is CC0 (its license.txt is recorded, with each file's Poly Haven
original where the text names it).  A user file's licence is read from a text file beside it
(`<file>.license`, `<stem>.license.txt`, `<stem>.txt`, ... or a folder-wide LICENSE); without
one it is recorded as "unknown, user-supplied" and a warning is printed.  Every HDRI a run can
use is listed with its licence in run.json.

Checks: every file's header is parsed here in pure Python (OpenEXR magic, attributes, data
window, chunk offset table against the file size; Radiance signature, format and resolution
line) so a corrupt or truncated file fails with its name before anything renders; the renderer
also loads each one in Blender when it builds the scene.

Orientation ("vertical"): Blender's equirectangular mapping has world +z up.  The hand frame's
up for the environment is its distal axis **+y** (wrist -> middle MCP).  The camera roll
(datagen/cameras.py) puts +y up in every image, so every view's image-up vector has a positive
component along the environment's up: no background is ever upside down, the horizon is level
in every equator view, and the high-latitude (egocentric) views look along the forearm towards
the fingers.  The hand-to-world rotation is
``M = Rz(rotation) @ A`` with ``A (x, y, z) = (x, -z, y)`` (hand +y -> world +z, hand +z (palmar) ->
world -y); the per-item rotation about the world's vertical is drawn from the item seed, and
M is stored in every label (`hdri.hand_to_world`): a ray leaving the camera in hand-frame
direction d sees the environment in world direction M d.
"""

from __future__ import annotations

import importlib.util
import math
import struct
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HDRI_SUFFIXES = (".hdr", ".exr")
UNKNOWN_LICENCE = "unknown, user-supplied"
# Hand frame (x, y, z) -> environment/world frame: hand +y is the environment's up (+z).
HAND_TO_ENV = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
ENV_UP_HAND = (0.0, 1.0, 0.0)


class HdriError(ValueError):
    """An HDRI source is missing, empty, unreadable or corrupt; the message names the file."""


@dataclass(frozen=True)
class Hdri:
    name: str  # "builtin/city.exr", "hdri/studio_2k.hdr": unique, used in labels
    path: str  # absolute path on this machine
    file: str  # portable: "<bpy>/datafiles/..." or relative to the repo root when inside it
    source: str  # the config entry it came from
    format: str  # "exr" or "hdr"
    width: int
    height: int
    licence: str
    licence_file: str | None
    origin: str | None = None  # where the original came from, when the licence text says

    def record(self) -> dict:
        d = asdict(self)
        d.pop("path")
        return d


def hand_to_world(rotation_deg: float) -> np.ndarray:
    """Rotation taking hand-frame directions to the world (environment) frame."""
    a = math.radians(rotation_deg)
    c, s = math.cos(a), math.sin(a)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return rz @ HAND_TO_ENV


# ----------------------------------------------------------------------------- discovery

def builtin_dir() -> Path:
    """The folder of Blender's bundled CC0 HDRIs (bpy package or a running Blender)."""
    if "bpy" in sys.modules:
        import bpy

        p = bpy.utils.system_resource("DATAFILES", path="studiolights/world")
        if p and Path(p).is_dir():
            return Path(p)
    spec = importlib.util.find_spec("bpy")
    roots = []
    if spec is not None:
        roots += list(spec.submodule_search_locations or [])
        if spec.origin and spec.origin not in ("built-in", "frozen"):
            roots.append(str(Path(spec.origin).parent))
    for root in roots:
        hits = sorted(Path(root).glob("*/datafiles/studiolights/world"))
        if hits:
            return hits[-1]
    if spec is not None and "bpy" not in sys.modules:  # Blender's own Python: bpy is built in
        import bpy  # noqa: F401

        return builtin_dir()
    raise HdriError("hdri source 'builtin': cannot find Blender's studiolights/world folder "
                    "(is the bpy package installed?)")


def _portable(path: Path, repo_root: Path, bdir: Path | None) -> str:
    path = path.resolve()
    if bdir is not None:
        try:
            return "<bpy>/datafiles/studiolights/world/" + str(path.relative_to(bdir.resolve()))
        except ValueError:
            pass
    try:
        return str(path.relative_to(repo_root.resolve()))
    except ValueError:
        return str(path)


def _builtin_licence(bdir: Path) -> tuple[str, Path | None, dict[str, str]]:
    lic = bdir / "license.txt"
    if not lic.is_file():
        return "CC0-1.0 (Blender bundled studio lights; license.txt missing)", None, {}
    text = lic.read_text(errors="replace")
    licence = "CC0-1.0" if "CC0" in text else text.strip().splitlines()[0][:200]
    origins = {}
    for line in text.splitlines():
        line = line.strip().lstrip("-").strip()
        if ":" in line and "http" in line:
            key, _, rest = line.partition(":")
            url = rest[rest.find("http"):].split()[0]
            origins[key.strip().lower()] = url
    return licence, lic, origins


LICENCE_NAMES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "LICENCE.txt", "LICENCE.md",
                 "license.txt", "licence.txt", "license.md", "COPYING")


def user_licence(path: Path) -> tuple[str, Path | None]:
    """(licence text summary, licence file) for a user-supplied HDRI."""
    candidates = [path.with_name(path.name + ".license"), path.with_name(path.name + ".licence"),
                  path.with_name(path.name + ".license.txt"), path.with_name(path.stem + ".license.txt"),
                  path.with_name(path.stem + ".licence.txt"), path.with_name(path.stem + ".txt")]
    candidates += [path.parent / n for n in LICENCE_NAMES]
    for c in candidates:
        if c.is_file():
            text = c.read_text(errors="replace").strip()
            first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
            return (first[:200] or f"see {c.name}"), c
    return UNKNOWN_LICENCE, None


def source_files(src: str, repo_root: Path, suffixes, what: str, kind: str) -> tuple[list[Path], Path]:
    """(files, folder their names are relative to) of one user source entry: a file with one
    of `suffixes`, or a folder searched recursively (hidden files and folders skipped), relative
    to `repo_root` unless absolute.  ValueError "<what> source '<src>': ..." for a missing path
    or a file of another kind (`kind`, e.g. "a .hdr or .exr file").  Shared by the HDRI and the
    background-image discovery."""
    p = Path(src)
    p = p if p.is_absolute() else Path(repo_root) / p
    if p.is_file():
        if p.suffix.lower() not in suffixes:
            raise ValueError(f"{what} source {src!r}: {p} is not {kind}")
        return [p], p.parent
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes
                      and not any(part.startswith(".") for part in f.relative_to(p).parts)), p
    raise ValueError(f"{what} source {src!r}: {p} does not exist")


def discover(sources, repo_root: str | Path, check: bool = True) -> tuple[list[Hdri], list[str]]:
    """All HDRIs of the configured sources, sorted by name, and warnings (licences).

    Raises HdriError naming the file for a missing source, an empty selection, or (with
    `check`) a file whose header is corrupt.
    """
    repo_root = Path(repo_root)
    out: dict[str, Hdri] = {}
    warnings: list[str] = []
    bdir = None
    for src in sources:
        if src == "builtin":
            bdir = builtin_dir()
            licence, lic_file, origins = _builtin_licence(bdir)
            files = sorted(p for p in bdir.iterdir() if p.suffix.lower() in HDRI_SUFFIXES)
            if not files:
                raise HdriError(f"hdri source 'builtin': no .exr/.hdr files in {bdir}")
            for f in files:
                _add(out, Hdri(f"builtin/{f.name}", str(f), "", src, f.suffix.lower()[1:], 0, 0, licence,
                               None, origins.get(f.stem.lower())), f, lic_file, repo_root, bdir, check)
            continue
        try:
            files, label = source_files(src, repo_root, HDRI_SUFFIXES, "hdri", "a .hdr or .exr file")
        except ValueError as exc:
            raise HdriError(str(exc)) from None
        for f in files:
            licence, lic_file = user_licence(f)
            if lic_file is None:
                warnings.append(f"HDRI {f}: no licence file beside it; recorded as '{UNKNOWN_LICENCE}' "
                                f"(add {f.name}.license or a LICENSE file, see hdri/README.md)")
            prefix = _portable(label, repo_root, None).rstrip("/")
            name = f"{prefix}/{f.relative_to(label)}"  # a single file: label is its folder
            _add(out, Hdri(name, str(f), "", src, f.suffix.lower()[1:], 0, 0, licence, None),
                 f, lic_file, repo_root, bdir, check)
    if not out:
        raise HdriError(f"no HDRI found in sources {list(sources)}: drop .hdr/.exr files into hdri/ "
                        f"or add 'builtin' to [hdri] sources")
    return [out[k] for k in sorted(out)], warnings


def _add(out, h: Hdri, f: Path, lic_file, repo_root, bdir, check):
    width = height = 0
    if check:
        width, height = check_header(f)
    rec = Hdri(h.name, str(f.resolve()), _portable(f, repo_root, bdir), h.source, h.format, width, height,
               h.licence, _portable(lic_file, repo_root, bdir) if lic_file else None, h.origin)
    if rec.name in out and out[rec.name].path != rec.path:
        raise HdriError(f"two HDRIs share the name {rec.name!r}: {out[rec.name].path} and {rec.path}")
    out[rec.name] = rec


# ----------------------------------------------------------------------------- header checks

EXR_MAGIC = b"\x76\x2f\x31\x01"
# Scanlines per chunk for each OpenEXR compression (index = compression code).
EXR_LINES_PER_CHUNK = {0: 1, 1: 1, 2: 1, 3: 16, 4: 32, 5: 16, 6: 32, 7: 32, 8: 32, 9: 256, 10: 256, 11: 32}


def check_header(path: str | Path) -> tuple[int, int]:
    """Parse an .exr/.hdr header; return (width, height) or raise HdriError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 16)
            size = f.seek(0, 2)
    except OSError as exc:
        raise HdriError(f"HDRI {path}: cannot read ({exc.strerror})") from None
    try:
        if data[:4] == EXR_MAGIC:
            return _check_exr(path, data, size)
        if data[:2] == b"#?":
            return _check_hdr(data, size)
        kind = path.suffix.lower()
        raise ValueError(f"not an OpenEXR or Radiance file (extension {kind}, first bytes {data[:8]!r})")
    except HdriError:
        raise
    except (ValueError, struct.error, IndexError, UnicodeDecodeError) as exc:
        raise HdriError(f"HDRI {path} is corrupt or unreadable: {exc}") from None


def _check_exr(path: Path, data: bytes, size: int) -> tuple[int, int]:
    flags = struct.unpack_from("<I", data, 4)[0]
    if flags & 0xFF != 2:
        raise ValueError(f"OpenEXR version {flags & 0xFF} (expected 2)")
    tiled, long_names, deep, multipart = (bool(flags & b) for b in (0x200, 0x400, 0x800, 0x1000))
    pos = 8
    attrs: dict[str, tuple[str, bytes]] = {}
    maxlen = 256 if long_names else 32
    while True:
        if pos >= len(data):
            raise ValueError("header truncated or larger than 64 KiB")
        if data[pos] == 0:
            pos += 1
            break
        end = data.index(b"\0", pos)
        name = data[pos:end].decode("ascii")
        tend = data.index(b"\0", end + 1)
        typ = data[end + 1:tend].decode("ascii")
        if len(name) >= maxlen or len(typ) >= maxlen:
            raise ValueError(f"attribute name/type too long: {name[:40]!r}")
        n = struct.unpack_from("<i", data, tend + 1)[0]
        if n < 0 or tend + 5 + n > len(data):
            raise ValueError(f"attribute {name!r} runs past the header")
        attrs[name] = (typ, data[tend + 5 : tend + 5 + n])
        pos = tend + 5 + n
    for req in ("channels", "compression", "dataWindow"):
        if req not in attrs:
            raise ValueError(f"required header attribute {req!r} missing")
    x0, y0, x1, y1 = struct.unpack("<4i", attrs["dataWindow"][1][:16])
    width, height = x1 - x0 + 1, y1 - y0 + 1
    if width <= 0 or height <= 0 or width * height > 1 << 31:
        raise ValueError(f"bad data window {width}x{height}")
    channels = attrs["channels"][1]
    if len(channels) < 2:
        raise ValueError("no channels")
    compression = attrs["compression"][1][0]
    if multipart or deep or tiled or compression not in EXR_LINES_PER_CHUNK:
        if size <= pos:
            raise ValueError("no pixel data after the header")
        return width, height  # offset tables of these layouts are not checked here
    n_chunks = -(-height // EXR_LINES_PER_CHUNK[compression])
    need = pos + 8 * n_chunks
    if size < need:
        raise ValueError(f"file is {size} bytes, shorter than its chunk offset table ({need})")
    with open(path, "rb") as f:
        f.seek(pos)
        offsets = np.frombuffer(f.read(8 * n_chunks), dtype="<u8")
        if np.any(offsets < need) or np.any(offsets + 8 > size):
            raise ValueError(f"truncated: chunk offsets point outside the {size}-byte file")
        last = int(offsets.max())
        f.seek(last)
        _, nbytes = struct.unpack("<ii", f.read(8))
        if nbytes < 0 or last + 8 + nbytes > size:
            raise ValueError(f"truncated: last chunk needs {last + 8 + nbytes} bytes, file has {size}")
    return width, height


def _check_hdr(data: bytes, size: int) -> tuple[int, int]:
    lines = data.split(b"\n")
    if not (lines[0].startswith(b"#?RADIANCE") or lines[0].startswith(b"#?RGBE")):
        raise ValueError(f"unknown Radiance signature {lines[0][:20]!r}")
    fmt = None
    i = 1
    while i < len(lines) and lines[i].strip():
        if lines[i].startswith(b"FORMAT="):
            fmt = lines[i][7:].strip().decode()
        i += 1
    if i + 1 >= len(lines):
        raise ValueError("header has no resolution line")
    if fmt not in (None, "32-bit_rle_rgbe", "32-bit_rle_xyze"):
        raise ValueError(f"unsupported FORMAT={fmt}")
    res = lines[i + 1].split()
    if len(res) != 4 or res[0] not in (b"-Y", b"+Y", b"-X", b"+X") or res[2] not in (b"-Y", b"+Y", b"-X", b"+X"):
        raise ValueError(f"bad resolution line {lines[i + 1][:40]!r}")
    a, b = int(res[1]), int(res[3])
    width, height = (b, a) if res[0].endswith(b"Y") else (a, b)
    if width <= 0 or height <= 0:
        raise ValueError(f"bad size {width}x{height}")
    start = sum(len(ln) + 1 for ln in lines[: i + 2])
    if size - start < 4 * height:
        raise ValueError(f"truncated: {size - start} bytes of pixel data for {height} scanlines")
    first = data[start : start + 4]
    if len(first) == 4 and first[0] == 2 and first[1] == 2 and first[2] < 128:
        scan_w = (first[2] << 8) | first[3]
        if scan_w != (width if res[0].endswith(b"Y") else height):
            raise ValueError(f"first scanline says width {scan_w}, header says {width}")
    return width, height


def equirect_directions(h: int, w: int) -> np.ndarray:
    """(h, w, 3) world directions of the texel centres of an equirectangular image whose rows
    run bottom-up (Blender's pixel order): Blender maps a direction d to u = 0.5 -
    atan2(d_y, d_x) / 2pi, v = 0.5 + asin(d_z) / pi."""
    v = (np.arange(h) + 0.5) / h
    u = (np.arange(w) + 0.5) / w
    lat = (v - 0.5) * np.pi
    lon = (0.5 - u) * 2 * np.pi
    cl = np.cos(lat)[:, None]
    return np.stack([cl * np.cos(lon)[None, :], cl * np.sin(lon)[None, :],
                     np.broadcast_to(np.sin(lat)[:, None], (h, w))], axis=-1)


@dataclass
class LightProbe:
    """A small luminance map of an HDRI for exposure decisions (rows bottom-up)."""

    luminance: np.ndarray  # (h, w) linear luminance, block-averaged
    directions: np.ndarray  # (h * w, 3)
    solid_angle: np.ndarray  # (h * w,)

    @classmethod
    def from_pixels(cls, rgb: np.ndarray, size: tuple[int, int] = (32, 64)) -> LightProbe:
        H, W = rgb.shape[:2]
        h, w = size
        lum = rgb[..., :3].astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])
        # block average (crop to a multiple of the block size; the HDRIs are 2:1)
        bh, bw = max(1, H // h), max(1, W // w)
        lum = lum[: bh * h, : bw * w].reshape(h, bh, w, bw).mean(axis=(1, 3))
        lat = ((np.arange(h) + 0.5) / h - 0.5) * np.pi
        sa = np.repeat(np.cos(lat)[:, None], w, axis=1).ravel() * (np.pi / h) * (2 * np.pi / w)
        return cls(lum, equirect_directions(h, w).reshape(-1, 3), sa)

    def mean(self) -> float:
        return float((self.luminance.ravel() * self.solid_angle).sum() / self.solid_angle.sum())

    def irradiance_map(self, size: tuple[int, int] = (16, 32)) -> np.ndarray:
        """(h, w) table of facing() for surface normals at the texel centres of an
        equirectangular grid (rows bottom-up, Blender's mapping), computed once per probe.
        Irradiance is a cosine-lobe average of the environment, so it varies slowly: on the
        8 builtin HDRIs a 16 x 32 table (11.25 deg steps) read at the nearest texel is within
        a few percent of the exact value."""
        key = tuple(size)
        cache = self.__dict__.setdefault("_irradiance", {})
        if key not in cache:
            n = equirect_directions(*size).reshape(-1, 3)
            cos = np.clip(n @ self.directions.T, 0.0, None)
            cache[key] = ((cos * (self.luminance.ravel() * self.solid_angle)[None, :]).sum(axis=1) / np.pi
                          ).reshape(size)
        return cache[key]

    def skin_irradiance(self, normals, weights, size: tuple[int, int] = (16, 32)) -> float:
        """Weighted mean of facing(n) over surface normals (N, 3) in world directions: the
        radiance a white Lambertian surface with these normals would show, averaged (no
        shadowing).  With the hand's camera-facing normals weighted by their projected area
        (`visible_normal_weights`) this predicts the rendered skin brightness over albedo."""
        n = np.asarray(normals, dtype=np.float64)
        w = np.asarray(weights, dtype=np.float64)
        total = w.sum()
        if not total > 0:
            return 0.0
        table = self.irradiance_map(size)
        h, wd = table.shape
        norm = np.linalg.norm(n, axis=1)
        n = n / np.where(norm > 0, norm, 1.0)[:, None]
        lat = np.arcsin(np.clip(n[:, 2], -1.0, 1.0))
        lon = np.arctan2(n[:, 1], n[:, 0])
        row = np.clip(((lat / np.pi + 0.5) * h).astype(int), 0, h - 1)
        col = np.clip(((0.5 - lon / (2 * np.pi)) * wd).astype(int) % wd, 0, wd - 1)
        return float((table[row, col] * w).sum() / total)

    def facing(self, normal) -> float:
        """Irradiance on a surface facing world direction `normal`, divided by pi: the
        uniform radiance that would light it alike (equals mean() for a uniform sky)."""
        n = np.asarray(normal, dtype=np.float64)
        n = n / np.linalg.norm(n)
        cos = np.clip(self.directions @ n, 0.0, None)
        return float((self.luminance.ravel() * cos * self.solid_angle).sum() / np.pi)


def visible_normal_weights(vertices: np.ndarray, faces: np.ndarray, camera_centre) -> tuple[np.ndarray, np.ndarray]:
    """(unit face normals (F, 3), weights (F,)) of a mesh seen from `camera_centre` (same
    frame): each face weighs its area projected towards the camera (area x cos, 0 for faces
    turned away).  Occlusion is ignored: faces hidden behind others still count, which is
    what a skin-brightness prediction wants to first order (fingers shadowing the palm are
    rare at the camera-facing side)."""
    v = np.asarray(vertices, dtype=np.float64)
    tri = v[np.asarray(faces)]
    nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area2 = np.linalg.norm(nrm, axis=1)
    unit = nrm / np.where(area2 > 0, area2, 1.0)[:, None]
    to_cam = np.asarray(camera_centre, dtype=np.float64)[None, :] - tri.mean(axis=1)
    to_cam /= np.linalg.norm(to_cam, axis=1, keepdims=True)
    w = 0.5 * area2 * np.clip((unit * to_cam).sum(axis=1), 0.0, None)
    return unit, w


def subject_exposure(skin_irradiance: float, mean_luminance: float, target: float,
                     max_stops: float) -> float:
    """Exposure scale that makes the predicted skin radiance over albedo equal `target`,
    kept within `max_stops` of the scale that normalises the environment's mean luminance to
    `target` (a hand in a nearly black corner of a bright scene is not pushed to a white
    background)."""
    base = target / max(mean_luminance, 1e-12)
    lim = 2.0 ** max_stops
    return float(np.clip(target / max(skin_irradiance, 1e-12), base / lim, base * lim))


def mean_luminance(rgb: np.ndarray) -> float:
    """Solid-angle-weighted mean luminance of an equirectangular image (H, W, >=3) in linear
    Rec.709; rows may be top-first or bottom-first (the weight is symmetric)."""
    h = rgb.shape[0]
    lum = rgb[..., :3].astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])
    lat = (np.arange(h) + 0.5) / h * np.pi - np.pi / 2
    w = np.cos(lat)[:, None]
    return float((lum * w).sum() / (w.sum() * rgb.shape[1]))
