"""The RENDER_DIR contract: where an item's files live, and when a run may resume into it.

numpy-free: the renderer imports it inside Blender's own Python (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


# Files of the four label passes every item has (datagen.labels.passes); a further pass adds
# its own suffix to the same stem.
IMAGE_SUFFIX, MASK_SUFFIX, DEPTH_SUFFIX, LABELS_SUFFIX = ".png", ".mask.png", ".depth.npy", ".json"


@dataclass(frozen=True)
class ItemPaths:
    rgb: Path
    mask: Path
    depth: Path
    label: Path

    def all(self) -> tuple[Path, ...]:
        return (self.rgb, self.mask, self.depth, self.label)


def item_file(out_dir: str | Path, pose_id: int, view_id: int, suffix: str) -> Path:
    """items/<pose, 5 digits>/v<view, 3 digits><suffix>: an item's file of one label pass."""
    return Path(out_dir) / "items" / f"{pose_id:05d}" / f"v{view_id:03d}{suffix}"


def item_paths(out_dir: str | Path, pose_id: int, view_id: int) -> ItemPaths:
    return ItemPaths(*(item_file(out_dir, pose_id, view_id, s)
                       for s in (IMAGE_SUFFIX, MASK_SUFFIX, DEPTH_SUFFIX, LABELS_SUFFIX)))


def mesh_path(out_dir: str | Path, pose_id: int) -> Path:
    return Path(out_dir) / "meshes" / f"pose_{pose_id:05d}.npz"


def is_done(out_dir: str | Path, pose_id: int, view_id: int) -> bool:
    """An item is complete when its label JSON exists (it is written last)."""
    return item_paths(out_dir, pose_id, view_id).label.exists()


# ----------------------------------------------------------------------------- run.json contract

RUN_FORMAT = "handsynth-render-dir"
RUN_FORMAT_VERSION = 1
# One stdout line per item a `render.py --stdin` worker finished: PROTOCOL_PREFIX + JSON.
PROTOCOL_PREFIX = "@@handsynth "


class RenderDirError(ValueError):
    """A RENDER_DIR cannot be written to, or holds a run that this one must not mix with."""


def check_writable(out: str | Path) -> None:
    """Create OUT if needed and prove a file can be written and removed there."""
    from datagen import atomic

    out = Path(out)
    probe = atomic.temp_path(out / "probe")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
    except OSError as exc:
        if exc.errno in atomic.NO_SPACE_ERRNOS:
            raise RenderDirError(f"output folder {out}: no space left on device "
                                 f"({atomic.human_bytes(atomic.free_bytes(out))} free); free some space or "
                                 f"use another --out") from None
        raise RenderDirError(f"output folder {out} is not writable: {exc.strerror or exc}") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
