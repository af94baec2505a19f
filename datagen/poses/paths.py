"""Where the prepared hand and pose tables live in the cache (standard library only).

A leaf module, so the interpenetration workers (datagen.poses.collision) find the files
without importing datagen.poses.prepared, which builds pose families with the checker.
"""

from __future__ import annotations

from pathlib import Path


def prepared_paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    """(hand file, poses file) of the prepared tables with cache key `key`."""
    d = Path(cache_dir) / "prepared"
    return d / f"hand_{key}.npz", d / f"poses_{key}.npz"
