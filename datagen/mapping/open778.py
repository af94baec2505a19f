"""`open778`: an open 778-vertex hand mesh cut out of our own dense hand (no MANO involved).

Construction (deterministic, rest pose, hand frame):

1. Open the wrist.  The dense mesh is closed by a cap over the base mesh's wrist loop.  A dense
   vertex belongs to the cap when its row of the dense matrix D only uses base vertices of that
   loop (the cap centre, the spoke edge points and the fan's face points); every dense face
   touching such a vertex is removed.  What is left is the hand with its wrist opening, whose
   boundary runs through the subdivided wrist loop (40 dense vertices by default).
2. Coarsen the wrist ring to 16 vertices, as MANO's is (`WRIST_RING`).  Boundary vertices are
   chosen at equal arc-length steps (starting at the ring vertex nearest the radial, +x, side);
   every other ring vertex is collapsed along the boundary onto its nearer kept neighbour.  With
   one hole of 16 edges, a 778-vertex disc-topology mesh has exactly 2*778 - 2 - 16 = 1538
   faces, so `open778` arrays have MANO's shapes (vertices 778x3, faces 1538x3).
3. Decimate with `datagen.decimate.collapse_to` (subset-keeping quadric edge collapse) to 778
   vertices, with a boundary weight so large that the 16 ring vertices are never collapsed.

Every kept vertex is a vertex of the dense mesh, at exactly its position; the faces are the
collapse's faces (outward winding preserved).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from datagen.geometry.decimate import boundary_edges, collapse_to
from datagen.geometry.normals import face_normals

N_VERTICES = 778
WRIST_RING = 16
BOUNDARY_WEIGHT = 1.0e6  # keeps the coarsened wrist ring intact through the decimation

__all__ = ["Open778", "N_VERTICES", "WRIST_RING", "cap_vertices", "open_dense_faces",
           "boundary_loop", "coarsen_boundary", "build_open778"]


@dataclass
class Open778:
    dense_indices: np.ndarray  # (778,) int64: dense vertex kept as each open778 vertex
    faces: np.ndarray  # (1538, 3) int64, outward winding
    params: dict  # the construction's parameters (recorded in Mapping.source)


def cap_vertices(dense_matrix: sp.spmatrix, base_faces: np.ndarray, base_part: np.ndarray | None = None,
                 arm_part: int = 6) -> np.ndarray:
    """(Nd,) bool: dense vertices that only depend on the base mesh's boundary (wrist) loop.

    With a forearm (`base_part` has `arm_part`, datagen.hand.forearm) the 778 mesh stays on the
    hand: every dense vertex made mostly of forearm base vertices is removed instead, which
    opens the hand at its own wrist loop as before."""
    D = sp.csr_matrix(dense_matrix, copy=True)  # never touch the caller's matrix
    D.eliminate_zeros()
    if base_part is not None and (np.asarray(base_part) == arm_part).any():
        # Mostly forearm: the subdivision weights on forearm base vertices outweigh the hand's, so
        # the opening runs along the hand/forearm junction (the hand.R wrist loop), where the
        # hand-only mesh had its cut.
        on_arm = (np.asarray(base_part) == arm_part).astype(np.float64)
        return np.asarray(D @ on_arm).ravel() > 0.5
    loop = np.unique(boundary_edges(np.asarray(base_faces)))
    on_loop = np.zeros(dense_matrix.shape[1], dtype=bool)
    on_loop[loop] = True
    off_loop = (D != 0).astype(np.int64) @ (~on_loop).astype(np.int64)
    return np.asarray(off_loop).ravel() == 0


def open_dense_faces(dense_faces: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """The dense faces without any face touching a cap vertex."""
    F = np.asarray(dense_faces, dtype=np.int64)
    return F[~cap[F].any(axis=1)]


def boundary_loop(faces: np.ndarray) -> np.ndarray:
    """The single boundary loop of `faces`, in the faces' winding direction."""
    F = np.asarray(faces, dtype=np.int64)
    directed = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    und = {tuple(e) for e in boundary_edges(F).tolist()}
    nxt: dict[int, int] = {}
    for a, b in directed.tolist():
        if (min(a, b), max(a, b)) in und:
            if a in nxt:
                raise ValueError(f"vertex {a} starts two boundary edges (pinched boundary)")
            nxt[a] = b
    if not nxt:
        raise ValueError("mesh has no boundary")
    start = min(nxt)
    loop = [start]
    while nxt[loop[-1]] != start:
        loop.append(nxt[loop[-1]])
        if len(loop) > len(nxt):
            raise ValueError("boundary is not a simple loop")
    if len(loop) != len(nxt):
        raise ValueError(f"expected one boundary loop, found {len(nxt)} boundary edges in several loops")
    return np.asarray(loop, dtype=np.int64)


def coarsen_boundary(vertices: np.ndarray, faces: np.ndarray, n_ring: int) -> tuple[np.ndarray, np.ndarray]:
    """Collapse boundary vertices along the (single) boundary loop until `n_ring` remain.

    Kept ring vertices are the loop vertices nearest to `n_ring` equal arc-length steps, the
    first step at the loop vertex with the largest x (radial side).  Each removed vertex is
    merged onto the nearer kept neighbour along the loop (half-edge collapse along the
    boundary: its boundary face disappears, its other faces are re-attached).

    Returns (faces, removed): faces on the same vertex ids (removed vertices unused), and the
    removed vertex ids.  Raises ValueError if a collapse would flip or degenerate a face.
    """
    V = np.asarray(vertices, dtype=np.float64)
    F = np.asarray(faces, dtype=np.int64).copy()
    loop = boundary_loop(F)
    n = len(loop)
    if n_ring >= n:
        return F, np.zeros(0, dtype=np.int64)
    if n_ring < 3:
        raise ValueError("a boundary ring needs at least 3 vertices")
    shift = int(np.argmax(V[loop, 0]))
    loop = np.roll(loop, -shift)
    seg = np.linalg.norm(V[np.roll(loop, -1)] - V[loop], axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)[:-1]])
    total = seg.sum()
    keep_pos: list[int] = []
    for k in range(n_ring):
        target = k * total / n_ring
        i = int(np.argmin(np.abs(s - target)))
        if i in keep_pos:
            raise ValueError("boundary too coarse for the requested ring size")
        keep_pos.append(i)
    keep_pos.sort()
    n0 = face_normals(V, F)
    # Target of every removed loop position: the nearer kept neighbour along the loop.
    target_of: dict[int, int] = {}
    removed_order: list[int] = []
    for a_i, a in enumerate(keep_pos):
        b = keep_pos[(a_i + 1) % len(keep_pos)]
        gap = [(a + j) % n for j in range(1, (b - a) % n)]
        half = (len(gap) + 1) // 2
        # innermost first, so every collapse runs along an existing boundary edge:
        # a+1 -> a, then a+2 -> a (now adjacent), ...; and b-1 -> b, b-2 -> b, ...
        for j, p in enumerate(gap):
            target_of[p] = a if j < half else b
        removed_order += gap[:half] + gap[half:][::-1]
    alive = np.ones(len(F), dtype=bool)
    for p in removed_order:
        u, v = int(loop[p]), int(loop[target_of[p]])
        has_u = alive & (F == u).any(axis=1)
        has_v = (F == v).any(axis=1)
        shared = has_u & has_v
        if shared.sum() != 1:
            raise ValueError(f"boundary collapse {u}->{v} is not along a single boundary edge")
        alive &= ~shared
        moving = np.flatnonzero(has_u & ~shared)
        F[moving] = np.where(F[moving] == u, v, F[moving])
        nn = face_normals(V, F[moving])
        if np.any(np.einsum("ij,ij->i", nn, n0[moving]) <= 0) or np.any(np.linalg.norm(nn, axis=1) < 1e-14):
            raise ValueError(f"boundary collapse {u}->{v} would flip or degenerate a face")
    out = F[alive]
    removed = np.sort(loop[list(target_of)])
    if len(boundary_loop(out)) != n_ring:
        raise ValueError("boundary coarsening did not give the requested ring")
    return out, removed


def build_open778(rest_dense: np.ndarray, dense_faces: np.ndarray, dense_matrix: sp.spmatrix,
                  base_faces: np.ndarray, n_vertices: int = N_VERTICES, wrist_ring: int = WRIST_RING,
                  boundary_weight: float = BOUNDARY_WEIGHT, base_part: np.ndarray | None = None) -> Open778:
    """The open778 mesh of a dense hand (see the module docstring); `base_part` (with a forearm)
    removes the forearm (see `cap_vertices`)."""
    cap = cap_vertices(dense_matrix, base_faces, base_part)
    Fo = open_dense_faces(dense_faces, cap)
    Fc, _ = coarsen_boundary(rest_dense, Fo, wrist_ring)
    kept, faces = collapse_to(rest_dense, Fc, n_vertices, boundary_weight=boundary_weight)
    ring = len(boundary_loop(faces))
    if ring != wrist_ring:
        raise ValueError(f"decimation changed the wrist ring: {ring} boundary edges, expected {wrist_ring}")
    params = {"method": "cap removal + wrist ring coarsening + datagen.decimate.collapse_to",
              "n_vertices": int(n_vertices), "wrist_ring": int(wrist_ring),
              "boundary_weight": float(boundary_weight), "cap_vertices_removed": int(cap.sum()),
              "open_dense_boundary": int(len(boundary_loop(Fo)))}
    return Open778(dense_indices=kept, faces=faces, params=params)
