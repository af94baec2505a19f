"""The dense surface machinery both 778 topologies share (open778 and MANO).

Rest and posed dense geometry, barycentric rows onto the dense surface, surface distances,
face health in every pose and the pose relaxation that keeps mapped faces from flipping or
collapsing.  `datagen.mapping.dense_to_778` builds a mapping with it; `datagen.mapping.mano`
uses it for the user's MANO topology.
"""

from __future__ import annotations


import numpy as np
import scipy.sparse as sp

from datagen.geometry.closest_point import closest_points
from datagen.geometry.normals import face_normals, triangle_normals, vertex_normals



# --------------------------------------------------------------------------------------------
# pose-aware relaxation: edge flips and vertex slides onto dense vertices
# --------------------------------------------------------------------------------------------
# Health of a face in one pose: min(cos / COS_TARGET, area ratio / AREA_TARGET, quality /
# QUALITY_TARGET); a face needs work while its worst health over the poses is below 1.
# cos: agreement of its normal with the sum of its corners' dense normals; area ratio: area
# over rest area; quality: 4*sqrt(3)*area / sum(edge^2).  The targets leave margin over the
# thresholds the report counts as flipped (cos <= 0) and collapsed (0.05, 0.02).
COS_TARGET, AREA_TARGET, QUALITY_TARGET = 0.2, 0.1, 0.05

POSE_CHUNK = 128


# The fitted open778 joint regressor (datagen.geometry.joint_regressor): each row on the 32
# nearest rest vertices; a joint whose convex fit stays more than 0.5 mm (rms over the poses)
# off - the wrist keypoint, in the wrist opening - gets a signed row.
REGRESSOR_SUPPORT = 32


SIGNED_ROWS_ABOVE_MM = 0.5


# Points sampled on each triangle for surface distances (barycentric): the centroid, the edge
# midpoints and three inner points; the corners are added for the maxima.
_FACE_SAMPLES = np.array([
    [1 / 3, 1 / 3, 1 / 3],
    [0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5],
    [2 / 3, 1 / 6, 1 / 6], [1 / 6, 2 / 3, 1 / 6], [1 / 6, 1 / 6, 2 / 3],
])


# --------------------------------------------------------------------------------------------
# surface distances
# --------------------------------------------------------------------------------------------
def _sample_surface(V: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fixed samples on every face (F, 7, 3) and the face areas (F,)."""
    tri = V[F]  # (F, 3, 3)
    pts = np.einsum("sk,fkc->fsc", _FACE_SAMPLES, tri)
    area = 0.5 * np.linalg.norm(face_normals(V, F), axis=1)
    return pts, area


def surface_distances(V_from: np.ndarray, F_from: np.ndarray, V_to: np.ndarray, F_to: np.ndarray) -> dict:
    """How far the surface (V_from, F_from) lies from the surface (V_to, F_to), in mm.

    mean: area-weighted mean over the from-surface of the distance of fixed sample points
    (7 per face) to the to-surface; max: over those samples and the from-surface's vertices."""
    pts, area = _sample_surface(V_from, F_from)
    _, _, d = closest_points(V_to, F_to, pts.reshape(-1, 3))
    d = d.reshape(len(F_from), -1)
    used = np.unique(F_from)
    _, _, dv = closest_points(V_to, F_to, V_from[used])
    mean = float((d.mean(1) * area).sum() / area.sum())
    return {"mean_mm": 1e3 * mean, "max_mm": 1e3 * float(max(d.max(), dv.max())),
            "p95_mm": 1e3 * float(np.percentile(np.concatenate([d.ravel(), dv]), 95))}


def boundary_edge_count(F: np.ndarray) -> int:
    e = np.sort(np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]]), axis=1)
    _, c = np.unique(e, axis=0, return_counts=True)
    return int((c == 1).sum())


def barycentric_matrix(face: np.ndarray, bary: np.ndarray, faces: np.ndarray, n_cols: int,
                       drop_below: float = 1e-9) -> sp.csr_matrix:
    """Rows of barycentric weights on `faces[face]`; tiny weights dropped, rows renormalised."""
    w = np.where(bary < drop_below, 0.0, bary)
    w = w / w.sum(1, keepdims=True)
    rows = np.repeat(np.arange(len(face)), 3)
    M = sp.csr_matrix((w.ravel(), (rows, faces[face].ravel())), shape=(len(face), n_cols))
    M.sum_duplicates()
    M.eliminate_zeros()
    M.sort_indices()
    return M


def face_health(faces: np.ndarray, X: np.ndarray, N: np.ndarray) -> np.ndarray:
    """(F,) worst health over poses; X, N (P, V, 3) positions and unit normals, pose 0 = rest."""
    return _face_health_raw(faces, X, N).min(0)


def _face_health_raw(faces: np.ndarray, X: np.ndarray, N: np.ndarray) -> np.ndarray:
    """(P, F) health per pose; pose 0 is the rest pose (the area reference)."""
    a, b, c = X[:, faces[:, 0]], X[:, faces[:, 1]], X[:, faces[:, 2]]
    n = triangle_normals(a, b, c)
    r = N[:, faces[:, 0]] + N[:, faces[:, 1]] + N[:, faces[:, 2]]
    nn = np.linalg.norm(n, axis=-1)
    cos = np.einsum("pfc,pfc->pf", n, r) / np.maximum(nn * np.linalg.norm(r, axis=-1), 1e-30)
    ratio = nn / np.maximum(nn[:1], 1e-30)
    s2 = ((b - a) ** 2).sum(-1) + ((c - b) ** 2).sum(-1) + ((a - c) ** 2).sum(-1)
    q = 2 * np.sqrt(3) * nn / np.maximum(s2, 1e-30)
    return np.minimum(np.minimum(cos / COS_TARGET, ratio / AREA_TARGET), q / QUALITY_TARGET)


def _rest_quality(V: np.ndarray, faces: np.ndarray) -> np.ndarray:
    a, b, c = V[faces[:, 0]], V[faces[:, 1]], V[faces[:, 2]]
    s2 = ((b - a) ** 2).sum(1) + ((c - b) ** 2).sum(1) + ((a - c) ** 2).sum(1)
    return 2 * np.sqrt(3) * np.linalg.norm(triangle_normals(a, b, c), axis=1) / np.maximum(s2, 1e-300)


def _relax_on(faces: np.ndarray, X: np.ndarray, N: np.ndarray, home: np.ndarray,
                    dense_posed: np.ndarray, dense_normals: np.ndarray, dense_faces: np.ndarray,
                    movable: np.ndarray, on_dense: np.ndarray, allow_flips: bool = True,
                    max_slide_m: float | None = None, min_rest_quality: float = 0.1,
                    max_rounds: int = 50, start: np.ndarray | None = None) -> tuple[np.ndarray, dict, dict]:
    """Local moves so that no mapped face turns over or collapses in any pose.

    A coarse triangle whose corners sit on both walls of a skin crease (a finger joint flexed
    in a fist, where the skinned dense surface itself folds) turns against the surface or is
    squashed when the joint bends, although every corner follows the skin.  For every face
    whose worst health over the poses (`face_health`) is below 1, worst first, two kinds of
    local moves are tried:

    - (if `allow_flips`) flip one of its interior edges (the quad's other diagonal);
    - slide one of its corners onto a dense vertex within two dense rings of its `home`
      dense vertex (`movable`, not already taken by a mapped vertex, not for wrist-ring
      vertices, and - with `max_slide_m` - no farther than that from where it was at rest);

    and the move that most raises the worst health of the faces it changes is kept, if the
    changed faces stay well shaped at rest (quality >= `min_rest_quality`, or no worse than
    before).  Deterministic; stops when no bad face can be improved.

    faces: (F, 3) mapped faces.  X, N: (P, V, 3) mapped vertices and unit reference normals
    per pose, pose 0 = rest (modified in place for slid vertices).  home: (V,) the dense vertex
    nearest each mapped vertex at rest; on_dense: (V,) bool, the mapped vertex is that dense
    vertex (a one-hot row).  dense_posed,
    dense_normals: (P, Nd, 3) the same for the dense mesh.
    Returns (faces, {mapped vertex: dense vertex it was slid onto}, stats).
    """
    from datagen.mapping.open778 import boundary_loop

    F = np.asarray(faces, dtype=np.int64).copy()
    home = np.asarray(home, dtype=np.int64).copy()
    on_dense = np.asarray(on_dense, dtype=bool).copy()
    occupied = set(home[on_dense].tolist())
    n_dense = dense_posed.shape[1]
    try:
        ring = set(boundary_loop(F).tolist())
    except ValueError:
        ring = set()
    nbr: list[set[int]] = [set() for _ in range(n_dense)]
    for a, b, c in np.asarray(dense_faces).tolist():
        nbr[a].update((b, c))
        nbr[b].update((a, c))
        nbr[c].update((a, b))
    start = X[0].astype(np.float64).copy() if start is None else start
    moved: dict[int, int] = {}
    stats = {"edge_flips": 0, "vertex_slides": 0, "rounds": 0, "max_slide_mm": 0.0}

    def local(fs: np.ndarray, vi: int | None = None, c: int | None = None) -> float:
        verts, inv = np.unique(fs, return_inverse=True)
        Xl, Nl = X[:, verts], N[:, verts]
        if vi is not None:
            k = int(np.flatnonzero(verts == vi)[0])
            Xl, Nl = Xl.copy(), Nl.copy()
            Xl[:, k], Nl[:, k] = dense_posed[:, c], dense_normals[:, c]
        return float(face_health(inv.reshape(-1, 3), Xl, Nl).min())

    for _ in range(max_rounds):
        stats["rounds"] += 1
        worst = face_health(F, X, N)
        bad = [int(i) for i in np.argsort(worst, kind="stable") if worst[i] < 1.0]
        if not bad:
            break
        vfaces: list[list[int]] = [[] for _ in range(X.shape[1])]
        edge_faces: dict[tuple[int, int], list[int]] = {}
        for fi, f in enumerate(F.tolist()):
            for k in range(3):
                vfaces[f[k]].append(fi)
                edge_faces.setdefault((min(f[k], f[(k + 1) % 3]), max(f[k], f[(k + 1) % 3])), []).append(fi)
        touched: set[int] = set()
        changed = False
        rest_now = X[0].astype(np.float64)
        for fi in bad:
            if fi in touched:
                continue
            best = None  # (gain, kind, payload)
            f = F[fi].tolist()
            for k in range(3 if allow_flips else 0):
                u, v, w = f[k], f[(k + 1) % 3], f[(k + 2) % 3]
                pair = edge_faces.get((min(u, v), max(u, v)), [])
                if len(pair) != 2:
                    continue
                gi = pair[0] if pair[1] == fi else pair[1]
                if gi in touched:
                    continue
                x = [y for y in F[gi].tolist() if y not in (u, v)][0]
                if (min(w, x), max(w, x)) in edge_faces:
                    continue  # the other diagonal is already an edge
                new = np.array([[u, x, w], [x, v, w]])
                old = F[[fi, gi]]
                if _rest_quality(rest_now, new).min() < min(min_rest_quality, _rest_quality(rest_now, old).min()):
                    continue
                gain = local(new) - local(old)
                if gain > 1e-9 and (best is None or gain > best[0]):
                    best = (gain, "flip", (fi, gi, new))
            for vi in f:
                if vi in ring or any(g in touched for g in vfaces[vi]):
                    continue
                inc = np.asarray(vfaces[vi])
                fs = F[inc]
                before = local(fs)
                q_before = _rest_quality(rest_now, fs).min()
                cands = set(nbr[home[vi]]) | {int(home[vi])}
                for c in list(cands):
                    cands |= nbr[c]
                for c in sorted(cands - occupied):
                    if not movable[c]:
                        continue
                    if max_slide_m is not None and np.linalg.norm(dense_posed[0, c] - start[vi]) > max_slide_m:
                        continue
                    trial = rest_now.copy()
                    trial[vi] = dense_posed[0, c]
                    if _rest_quality(trial, fs).min() < min(min_rest_quality, q_before):
                        continue
                    gain = local(fs, vi, c) - before
                    if gain > 1e-9 and (best is None or gain > best[0]):
                        best = (gain, "slide", (vi, c, inc))
            if best is None:
                continue
            _, kind, payload = best
            if kind == "flip":
                fi_, gi, new = payload
                F[fi_], F[gi] = new[0], new[1]
                touched.update((fi_, gi))
                stats["edge_flips"] += 1
            else:
                vi, c, inc = payload
                if on_dense[vi]:
                    occupied.discard(int(home[vi]))
                occupied.add(c)
                moved[vi] = c
                home[vi] = c
                on_dense[vi] = True
                X[:, vi], N[:, vi] = dense_posed[:, c], dense_normals[:, c]
                stats["max_slide_mm"] = max(stats["max_slide_mm"], 1e3 * float(np.linalg.norm(X[0, vi] - start[vi])))
                touched.update(inc.tolist())
                stats["vertex_slides"] += 1
            changed = True
        if not changed:
            break
    return F, moved, stats


def relax_for_poses(faces: np.ndarray, X: np.ndarray, N: np.ndarray, home: np.ndarray,
                    dense_posed: np.ndarray, dense_normals: np.ndarray, dense_faces: np.ndarray,
                    movable: np.ndarray, on_dense: np.ndarray, allow_flips: bool = True,
                    max_slide_m: float | None = None, min_rest_quality: float = 0.1,
                    max_passes: int = 10) -> tuple[np.ndarray, dict, dict]:
    """`_relax_on` over all poses, by active sets: moves are chosen on the rest pose plus the
    poses where faces were found unhealthy so far, then every pose is checked and the worst
    pose of each face still unhealthy joins the set (at most `max_passes` times).  Same
    arguments and result as `_relax_on`; X and N are updated in place for slid vertices."""
    F = np.asarray(faces, dtype=np.int64).copy()
    home = np.asarray(home, dtype=np.int64).copy()
    on_dense = np.asarray(on_dense, dtype=bool).copy()
    moved: dict[int, int] = {}
    stats = {"edge_flips": 0, "vertex_slides": 0, "rounds": 0, "max_slide_mm": 0.0, "passes": 0}
    start = X[0].astype(np.float64).copy()
    active = [0]
    for _ in range(max_passes):
        h_all = _health_per_pose(F, X, N)  # (P, F)
        bad = np.flatnonzero(h_all.min(0) < 1.0)
        if not len(bad):
            break
        stats["passes"] += 1
        worst_pose = np.unique(h_all[:, bad].argmin(0))
        new = sorted(set(worst_pose.tolist()) - set(active))
        if not new:
            break  # the active set already holds every worst pose: nothing more to learn
        active = [0] + sorted(set(active[1:]) | set(new) - {0})
        idx = np.asarray(active)
        Xa, Na = X[idx].copy(), N[idx].copy()
        F, mv, st = _relax_on(F, Xa, Na, home, dense_posed[idx], dense_normals[idx], dense_faces, movable,
                              on_dense, allow_flips=allow_flips, max_slide_m=max_slide_m,
                              min_rest_quality=min_rest_quality, start=start)
        for i, c in mv.items():
            moved[i] = c
            home[i] = c
            on_dense[i] = True
            X[:, i], N[:, i] = dense_posed[:, c], dense_normals[:, c]
        for k in ("edge_flips", "vertex_slides", "rounds"):
            stats[k] += st[k]
        stats["max_slide_mm"] = max(stats["max_slide_mm"], st["max_slide_mm"])
    h = face_health(F, X, N)
    stats["active_poses"] = len(active)
    stats["bad_faces_left"] = int((h < 1.0).sum())
    stats["min_health"] = float(h.min())
    return F, moved, stats


def _health_per_pose(faces: np.ndarray, X: np.ndarray, N: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(P, F) health per pose (see `face_health`), pose 0 = rest, in chunks of poses."""
    out = np.empty((X.shape[0], len(faces)), np.float32)
    for s in range(0, X.shape[0], chunk):
        idx = np.r_[0, s:min(s + chunk, X.shape[0])]
        out[s:s + len(idx) - 1] = _face_health_raw(faces, X[idx], N[idx])[1:]
    return out


def rest_geometry(prepared) -> dict:
    """Rest-pose dense vertices, faces, open (cap-free) faces and the 21 rig keypoints."""
    from datagen.mapping.open778 import cap_vertices, open_dense_faces

    a = prepared.asset
    V = a.dense(np.asarray(a.rest_base_vertices, dtype=np.float64))
    cap = cap_vertices(a.dense_matrix, a.base_faces, a.base_part)  # with a forearm: the arm too
    return {"vertices": V, "faces": np.asarray(a.dense_faces, dtype=np.int64), "cap": cap,
            "open_faces": open_dense_faces(a.dense_faces, cap),
            "keypoints": a.keypoints(np.asarray(a.rest_heads, dtype=np.float64), V)}


def dense_posed_arrays(prepared, chunk: int = POSE_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """(1 + P, Nd, 3) float32 dense vertices and unit vertex normals: the rest pose, then every pose."""
    a = prepared.asset
    D = a.dense_matrix.tocsr()
    Fd = np.asarray(a.dense_faces, dtype=np.int64)
    nd = a.n_dense
    base = np.concatenate([np.asarray(a.rest_base_vertices, dtype=np.float32)[None],
                           np.asarray(prepared.base_vertices, dtype=np.float32)])
    pos = np.empty((len(base), nd, 3), np.float32)
    nrm = np.empty((len(base), nd, 3), np.float32)
    for s in range(0, len(base), chunk):
        b = base[s:s + chunk].astype(np.float64)
        c = len(b)
        dense = np.asarray(D @ b.transpose(1, 0, 2).reshape(b.shape[1], -1)).reshape(nd, c, 3).transpose(1, 0, 2)
        pos[s:s + c] = dense
        nrm[s:s + c] = vertex_normals(dense, Fd)
    return pos, nrm


def map_posed(M: sp.csr_matrix, pos: np.ndarray, nrm: np.ndarray, chunk: int = POSE_CHUNK):
    """M applied to (P, Nd, 3) dense positions and unit normals -> (P, V, 3) float32 each
    (normals renormalised)."""
    P, nd, _ = pos.shape
    X = np.empty((P, M.shape[0], 3), np.float32)
    N = np.empty((P, M.shape[0], 3), np.float32)
    for s in range(0, P, chunk):
        c = min(chunk, P - s)
        for src, dst in ((pos, X), (nrm, N)):
            a = src[s:s + c].transpose(1, 0, 2).reshape(nd, -1).astype(np.float64)
            dst[s:s + c] = np.asarray(M @ a).reshape(-1, c, 3).transpose(1, 0, 2)
    N /= np.maximum(np.linalg.norm(N, axis=-1, keepdims=True), 1e-30)
    return X, N
