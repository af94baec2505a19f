"""The mapping's surface error over poses (and, with [hand.shape], over the hand shapes).

Its own module: the mapping cache key hashes the source of dense_to_778.py, surface.py and
open778.py (datagen.mapping.dense_to_778._input_key), and measuring must not invalidate it.
"""

from __future__ import annotations

import numpy as np

from datagen.mapping.surface import rest_geometry, surface_distances


def posed_surface_errors(prepared, m, poses=None, progress: bool = False) -> dict:
    """The mapped mesh (M @ dense) against the posed dense surface, per pose: the rest report's
    two directions (`surface_distances`), headline mean = the mean of the two directions' means,
    max = the larger max (as `surface_mean_mm` / `surface_max_mm` at rest).  With [hand.shape]
    every pose has its own hand, so this is the mapping's error over the shapes.  `poses`: pose
    row indices (default all; the exact distances cost seconds per pose)."""
    rest = rest_geometry(prepared)
    ids = np.arange(len(prepared.ids)) if poses is None else np.asarray(poses, dtype=np.int64)
    means, maxes = np.empty(len(ids)), np.empty(len(ids))
    it = enumerate(ids)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(ids), desc="posed surface", unit="pose", mininterval=2.0)
    for i, pid in it:
        V = prepared.dense_vertices(int(pid))
        X = np.asarray(m.apply(V), np.float64)
        to_dense = surface_distances(X, m.faces, V, rest["faces"])
        from_dense = surface_distances(V, rest["open_faces"], X, m.faces)
        means[i] = 0.5 * (to_dense["mean_mm"] + from_dense["mean_mm"])
        maxes[i] = max(to_dense["max_mm"], from_dense["max_mm"])
    return {"poses": ids, "mean_mm": means, "max_mm": maxes}



__all__ = ["posed_surface_errors"]
