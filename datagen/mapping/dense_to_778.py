"""The 778-vertex hand: a fixed sparse matrix from the dense hand to a MANO-style mesh.

    mapped vertices (778, 3) = M @ dense vertices (Nd, 3)      for every pose

M (778 x Nd, CSR) is computed once, on the rest pose: each row holds the barycentric
coordinates (at most 3 weights, summing to 1) of one 778-mesh vertex's closest point on the
dense rest surface.  Two topologies:

- ``open778`` (default, no MANO needed): the open mesh of `datagen.open778`, cut out of our own
  dense hand by decimation.  Its vertices are dense vertices, so every row of M is one-hot.
- ``mano``: the user's own MANO_RIGHT.pkl, loaded without chumpy by a restricted unpickler,
  registered to the rest-pose dense hand with smplx (`datagen.mano`); each registered vertex is
  then replaced by its closest point on the dense surface.

Both come with a 21 x 778 joint regressor in FreiHAND order (`Mapping.joint_regressor`): MANO's
own (16 regressor rows + 5 tip vertices) for ``mano``, a fitted one for ``open778``.

Quality (``Mapping.quality``, printed by ``python -m datagen.mapping --report``): surface
distances at rest in both directions, face flips/collapses of the mapped mesh in all poses,
joint differences rig vs. regressed.  See docs/MAPPING.md for definitions and numbers.

The result is cached under ``<cache>/mapping/`` keyed by a hash of every input (hand, poses,
MANO file, parameters, and the source of the modules that compute it).
"""

from __future__ import annotations

import logging
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from datagen import atomic
from datagen.geometry.closest_point import closest_points
from datagen.geometry.joint_regressor import apply_joint_regressor, fit_joint_regressor
from datagen.geometry.normals import face_normals
from datagen.hand.base import KEYPOINT_NAMES
from datagen.mapping.surface import (
    POSE_CHUNK,
    REGRESSOR_SUPPORT,
    SIGNED_ROWS_ABOVE_MM,
    barycentric_matrix,
    boundary_edge_count,
    dense_posed_arrays,
    map_posed,
    relax_for_poses,
    rest_geometry,
    surface_distances,
)

log = logging.getLogger(__name__)

TOPOLOGIES = ("open778", "mano")
MAPPING_VERSION = 1

# A mapped face "flips" in a pose when its normal points against the dense surface's normal
# there (reference = sum of the three corners' interpolated dense vertex normals).  It
# "collapses" when its area falls below COLLAPSE_AREA_RATIO of its rest area or its shape
# quality 4*sqrt(3)*area/sum(edge^2) (1 = equilateral) below COLLAPSE_QUALITY.
COLLAPSE_AREA_RATIO = 0.05
COLLAPSE_QUALITY = 0.02


__all__ = ["Mapping", "build_mapping", "TOPOLOGIES"]


# --------------------------------------------------------------------------------------------
# the mapping
# --------------------------------------------------------------------------------------------
@dataclass
class Mapping:
    """A dense -> 778-vertex map, its faces and joint regressor, and its measured quality."""

    topology: str  # "open778" or "mano"
    matrix: sp.csr_matrix  # (778, Nd), rows of barycentric weights summing to 1
    faces: np.ndarray  # (F, 3) int64, outward winding
    joint_regressor: np.ndarray  # (21, 778) float64, FreiHAND order
    quality: dict  # measured numbers (docs/MAPPING.md; measure_poses, surface_distances)
    source: dict  # what it was built from (MANO sha256 or decimation parameters, hand key)
    per_pose: dict = field(default_factory=dict)  # (P,) arrays: flipped, collapsed, joint_mean_mm
    key: str = ""

    @property
    def n_vertices(self) -> int:
        return self.matrix.shape[0]

    def apply(self, dense_vertices: np.ndarray) -> np.ndarray:
        """(..., Nd, 3) dense vertices -> (..., 778, 3) mapped vertices (same dtype)."""
        X = np.asarray(dense_vertices)
        if X.shape[-2:] != (self.matrix.shape[1], 3):
            raise ValueError(f"expected (..., {self.matrix.shape[1]}, 3), got {X.shape}")
        lead = X.shape[:-2]
        flat = np.moveaxis(X.reshape(-1, X.shape[-2], 3), 1, 0).reshape(X.shape[-2], -1)
        out = np.asarray(self.matrix @ flat.astype(np.float64, copy=False))
        out = np.moveaxis(out.reshape(self.n_vertices, -1, 3), 0, 1).reshape(*lead, self.n_vertices, 3)
        return out.astype(X.dtype if np.issubdtype(X.dtype, np.floating) else np.float64, copy=False)

    def joints(self, mapped_vertices: np.ndarray) -> np.ndarray:
        """(..., 778, 3) -> (..., 21, 3) joints by the regressor (FreiHAND order)."""
        return apply_joint_regressor(self.joint_regressor, mapped_vertices)

    # ---- persistence ----
    def save(self, path: str | Path) -> None:
        M = self.matrix.tocsr()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.save_npz(path, topology=np.asarray(self.topology), indptr=M.indptr, indices=M.indices,
                        data=M.data, shape=np.asarray(M.shape), faces=self.faces,
                        joint_regressor=self.joint_regressor, key=np.asarray(self.key),
                        quality=np.asarray(json.dumps(self.quality)), source=np.asarray(json.dumps(self.source)),
                        **{f"per_pose_{k}": v for k, v in self.per_pose.items()})

    @classmethod
    def load(cls, path: str | Path) -> Mapping:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        M = sp.csr_matrix((d["data"], d["indices"], d["indptr"]), shape=tuple(d["shape"]))
        return cls(topology=str(d["topology"]), matrix=M, faces=d["faces"],
                   joint_regressor=d["joint_regressor"], quality=json.loads(str(d["quality"])),
                   source=json.loads(str(d["source"])), key=str(d["key"]),
                   per_pose={k[len("per_pose_"):]: v for k, v in d.items() if k.startswith("per_pose_")})


def _quality_tri(fn: np.ndarray, V: np.ndarray, F: np.ndarray) -> np.ndarray:
    """4*sqrt(3)*area / sum of squared edges, (..., F)."""
    a, b, c = V[..., F[:, 0], :], V[..., F[:, 1], :], V[..., F[:, 2], :]
    s2 = ((b - a) ** 2).sum(-1) + ((c - b) ** 2).sum(-1) + ((a - c) ** 2).sum(-1)
    return 2 * np.sqrt(3) * np.linalg.norm(fn, axis=-1) / np.maximum(s2, 1e-300)


def measure_poses(prepared, M: sp.csr_matrix, faces: np.ndarray, regressor: np.ndarray,
                  posed: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[dict, dict]:
    """Flips/collapses of the mapped faces and joint differences over every pose."""
    a = prepared.asset
    if posed is None:
        X, N = map_posed(M, *dense_posed_arrays(prepared))
        posed = (X[1:], N[1:])
    mapped_all, refn_all = posed
    rest = np.asarray(M @ a.dense(np.asarray(a.rest_base_vertices, dtype=np.float64)))
    rest_area = 0.5 * np.linalg.norm(face_normals(rest, faces), axis=1)
    P = len(mapped_all)
    flipped_pp = np.zeros(P, np.int32)
    collapsed_pp = np.zeros(P, np.int32)
    joint_pp = np.zeros(P)
    face_flipped = np.zeros(len(faces), bool)
    face_collapsed = np.zeros(len(faces), bool)
    min_cos = np.full(len(faces), np.inf)
    min_ratio = np.full(len(faces), np.inf)
    min_q = np.full(len(faces), np.inf)
    jerr_sum = np.zeros(21)
    jerr_max = np.zeros(21)
    for s in range(0, P, POSE_CHUNK):
        ids = np.arange(s, min(s + POSE_CHUNK, P))
        mapped, rn = mapped_all[ids], refn_all[ids]
        ref = rn[:, faces[:, 0]] + rn[:, faces[:, 1]] + rn[:, faces[:, 2]]
        fn = face_normals(mapped, faces)
        cos = np.einsum("pfc,pfc->pf", fn, ref) / np.maximum(
            np.linalg.norm(fn, axis=-1) * np.linalg.norm(ref, axis=-1), 1e-300)
        ratio = 0.5 * np.linalg.norm(fn, axis=-1) / np.maximum(rest_area, 1e-300)
        q = _quality_tri(fn, mapped, faces)
        flip = cos <= 0
        coll = (ratio < COLLAPSE_AREA_RATIO) | (q < COLLAPSE_QUALITY)
        flipped_pp[ids] = flip.sum(1)
        collapsed_pp[ids] = coll.sum(1)
        face_flipped |= flip.any(0)
        face_collapsed |= coll.any(0)
        min_cos = np.minimum(min_cos, cos.min(0))
        min_ratio = np.minimum(min_ratio, ratio.min(0))
        min_q = np.minimum(min_q, q.min(0))
        J = apply_joint_regressor(regressor, mapped)
        err = 1e3 * np.linalg.norm(J - prepared.keypoints[ids].astype(np.float64), axis=-1)
        joint_pp[ids] = err.mean(1)
        jerr_sum += err.sum(0)
        jerr_max = np.maximum(jerr_max, err.max(0))
    per_joint = jerr_sum / P
    q = {
        "n_poses": int(P),
        "flipped_faces": int(face_flipped.sum()),
        "collapsed_faces": int(face_collapsed.sum()),
        "poses_with_flips": int((flipped_pp > 0).sum()),
        "poses_with_collapses": int((collapsed_pp > 0).sum()),
        "min_normal_cos": float(min_cos.min()),
        "min_area_ratio": float(min_ratio.min()),
        "min_triangle_quality": float(min_q.min()),
        "rest_min_triangle_quality": float(_quality_tri(face_normals(rest, faces), rest, faces).min()),
        "joints_mean_mm": float(per_joint.mean()),
        "joints_max_mm": float(jerr_max.max()),
        "joints_per_joint_mean_mm": {n: float(v) for n, v in zip(KEYPOINT_NAMES, per_joint)},
        "joints_per_joint_max_mm": {n: float(v) for n, v in zip(KEYPOINT_NAMES, jerr_max)},
    }
    per_pose = {"flipped": flipped_pp, "collapsed": collapsed_pp, "joint_mean_mm": joint_pp}
    return q, per_pose


def _mapped_surface_quality(rest: dict, M: sp.csr_matrix, faces: np.ndarray) -> dict:
    V = np.asarray(M @ rest["vertices"])
    to_dense = surface_distances(V, faces, rest["vertices"], rest["faces"])
    from_dense = surface_distances(rest["vertices"], rest["open_faces"], V, faces)
    return {"to_dense": to_dense, "from_dense": from_dense}


# --------------------------------------------------------------------------------------------
# building and caching
# --------------------------------------------------------------------------------------------
def _sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _input_key(prepared, topology: str, mano_sha: str | None) -> str:
    """Hash of everything the mapping depends on."""
    a = prepared.asset
    h = hashlib.sha256()
    h.update(json.dumps({"topology": topology, "mano": mano_sha, "version": MAPPING_VERSION,
                         "collapse": [COLLAPSE_AREA_RATIO, COLLAPSE_QUALITY]}).encode())
    D = sp.csr_matrix(a.dense_matrix, copy=True)  # canonical form: the hash must not depend on it
    D.sum_duplicates()
    D.eliminate_zeros()
    D.sort_indices()
    for arr in (D.indptr.astype(np.int64), D.indices.astype(np.int64), D.data, a.dense_faces, a.base_faces, a.rest_base_vertices,
                a.rest_heads, a.joint_bones, a.tip_faces, a.tip_barycentric,
                prepared.base_vertices, prepared.keypoints):
        h.update(np.ascontiguousarray(arr).tobytes())
    from datagen.geometry import alignment, closest_point, decimate, joint_regressor, normals
    from datagen.mapping import mano, open778, surface

    kernel = (normals, closest_point, decimate, joint_regressor)
    for module in (sys.modules[__name__], surface, open778) + kernel + ((mano, alignment) if topology == "mano" else ()):
        h.update(Path(module.__file__).read_bytes())
    if topology == "mano":
        import importlib.metadata

        for pkg in ("smplx", "torch"):
            h.update(importlib.metadata.version(pkg).encode())
    return h.hexdigest()[:16]


def _build_open778(prepared, rest: dict):
    from datagen.mapping.open778 import boundary_loop, build_open778

    a = prepared.asset
    o = build_open778(rest["vertices"], rest["faces"], a.dense_matrix, a.base_faces, base_part=a.base_part)
    pos, nrm = dense_posed_arrays(prepared)
    movable = ~rest["cap"]
    movable[boundary_loop(rest["open_faces"])] = False
    kept = o.dense_indices.copy()
    faces, moved, relax = relax_for_poses(o.faces, pos[:, kept], nrm[:, kept], kept, pos, nrm, rest["faces"],
                                          movable, on_dense=np.ones(len(kept), bool))
    for i, c in moved.items():
        kept[i] = c
    # The kept vertices are dense vertices: their closest points are themselves (one-hot rows).
    face, bary, dist = closest_points(rest["vertices"], rest["faces"], rest["vertices"][kept])
    M = barycentric_matrix(face, bary, rest["faces"], a.n_dense)
    if not np.array_equal(M.indices, kept) or not np.allclose(M.data, 1.0):
        raise AssertionError("open778 rows are not one-hot on the kept dense vertices")
    posed = (pos[1:, kept], nrm[1:, kept])  # == map_posed(M, pos, nrm) without the rest pose
    del pos, nrm
    R, signed_rows = fit_joint_regressor(posed[0], prepared.keypoints, rest["vertices"][kept], rest["keypoints"],
                                         k=REGRESSOR_SUPPORT, signed_above_mm=SIGNED_ROWS_ABOVE_MM)
    signed = [KEYPOINT_NAMES[j] for j in signed_rows]
    extra = {"projection_max_mm": 1e3 * float(dist.max()), "relax": relax}
    source = {"topology": "open778", "decimation": o.params, "pose_relaxation": relax,
              "hand_key": prepared.key,
              "joint_regressor": "fitted to the rig keypoints over all poses on the 32 nearest rest "
                                 "vertices: non-negative rows summing to 1 (least squares), signed "
                                 "rows (sum 1, ridge) where a joint lies outside that hull",
              "signed_regressor_rows": signed}
    return M, faces, R, extra, source, posed


def build_mapping(prepared, topology: str = "open778", mano_path: str | Path | None = None,
                  cache_dir: str | Path | None = None, progress: bool = False, side: str = "right") -> Mapping:
    """The dense -> 778 mapping for `prepared` (datagen.prepared.Prepared), cached on disk.

    topology: "open778" (default, no MANO) or "mano" (needs `mano_path`, the user's own
    MANO_RIGHT.pkl).  side="left" (topology "mano" only): `mano_path` is a MANO_LEFT.pkl,
    registered mirrored (datagen.mapping.mano.mirror_mano): the mapping takes the right dense
    mesh to the mirrored left model's vertices, so a left item's mirrored dense mesh maps to
    the left model's own vertices (faces: `faces` reversed).  cache_dir: the cache root
    (default: $HANDSYNTH_CACHE or <repo>/cache); the mapping goes to <cache_dir>/mapping/.
    """
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    if side == "left" and topology != "mano":
        raise ValueError("a left mapping needs topology 'mano' and a MANO_LEFT.pkl")
    if topology not in TOPOLOGIES:
        raise ValueError(f"topology must be one of {TOPOLOGIES}, got {topology!r}")
    if topology == "mano" and mano_path is None:
        raise ValueError("topology 'mano' needs mano_path: the path of your own MANO_RIGHT.pkl")
    if topology == "open778" and mano_path is not None:
        raise ValueError("mano_path is only used with topology='mano'")
    from datagen.poses.prepared import default_cache_dir

    try:
        mano_sha = _sha256_file(mano_path) if topology == "mano" else None
    except OSError as exc:
        raise ValueError(f"MANO file {mano_path}: {exc.strerror or exc}") from None
    key = _input_key(prepared, topology, mano_sha if side == "right" else f"{mano_sha}:left")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / "mapping" / f"{topology if side == 'right' else 'mano-left'}_{key}.npz"
    if path.exists():
        return Mapping.load(path)

    def say(msg):
        if progress:
            log.info(msg)

    rest = rest_geometry(prepared)
    quality: dict = {"topology": topology}
    if topology == "open778":
        say("building open778 (decimation of the rest-pose dense hand) ...")
        M, faces, R, extra, source, posed = _build_open778(prepared, rest)
    else:
        from datagen.mapping.mano import build_mano_mapping

        say(f"loading and registering MANO ({side} hand) from {mano_path} ...")
        M, faces, R, extra, source, posed = build_mano_mapping(mano_path, prepared, rest, side)
        source["mano_sha256"] = mano_sha
    quality.update(extra)
    say("measuring the surface at rest and every pose ...")
    quality["n_vertices"] = int(M.shape[0])
    quality["n_faces"] = int(len(faces))
    quality["boundary_edges"] = boundary_edge_count(faces)
    quality["weights_per_row_max"] = int(np.diff(M.indptr).max())
    quality["mapped_surface"] = _mapped_surface_quality(rest, M, faces)
    pq, per_pose = measure_poses(prepared, M, faces, R, posed)
    quality["poses"] = pq
    # The headline surface numbers: open778 -> the mapped (decimated) surface; mano -> the
    # registration residual.  mean = mean of the two directions' means, max = the larger max.
    surf = quality["registration"] if topology == "mano" else quality["mapped_surface"]
    quality["surface_mean_mm"] = 0.5 * (surf["to_dense"]["mean_mm"] + surf["from_dense"]["mean_mm"])
    quality["surface_max_mm"] = max(surf["to_dense"]["max_mm"], surf["from_dense"]["max_mm"])
    quality["flipped_faces"] = pq["flipped_faces"]
    mapping = Mapping(topology=topology, matrix=M, faces=np.asarray(faces, np.int64),
                      joint_regressor=np.asarray(R, np.float64), quality=quality, source=source,
                      per_pose=per_pose, key=key)
    mapping.save(path)
    return mapping


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def format_report(m: Mapping) -> str:
    q = m.quality
    lines = [f"dense -> {q['n_vertices']}-vertex mapping, topology {m.topology} (cache key {m.key})",
             f"  mesh: {q['n_vertices']} vertices, {q['n_faces']} faces, {q['boundary_edges']} boundary "
             f"edges (wrist opening), <= {q['weights_per_row_max']} weights per row of M"]
    r = q.get("relax")
    if r:
        lines.append(f"  pose relaxation: {r['edge_flips']} edge flips, {r['vertex_slides']} vertices slid onto "
                     f"other dense vertices (farthest {r['max_slide_mm']:.1f} mm), chosen on {r['active_poses']} "
                     f"poses; faces below the health target in any pose: {r['bad_faces_left']}")
    lines.append("")

    def surf_rows(title, s):
        return [f"  {title}",
                f"    {'direction':<44}{'mean mm':>9}{'p95 mm':>9}{'max mm':>9}",
                f"    {'778-surface -> dense surface':<44}{s['to_dense']['mean_mm']:9.3f}"
                f"{s['to_dense']['p95_mm']:9.3f}{s['to_dense']['max_mm']:9.3f}",
                f"    {'dense surface (without wrist cap) -> 778':<44}{s['from_dense']['mean_mm']:9.3f}"
                f"{s['from_dense']['p95_mm']:9.3f}{s['from_dense']['max_mm']:9.3f}"]

    lines.append("surface at rest")
    if m.topology == "mano":
        lines += surf_rows("registered MANO surface vs dense surface (registration residual):", q["registration"])
        r = q["registration_params"]
        lines.append(f"    registration: scale {r['scale']:.4f}, |betas| {r['betas_norm']:.3f}, "
                     f"|hand pose| {r['hand_pose_norm']:.3f} rad, keypoint rms {r['keypoint_rms_mm']:.2f} mm")
        lines.append(f"    MANO vertices moved onto the dense surface: mean {q['projection_mean_mm']:.3f} mm, "
                     f"max {q['projection_max_mm']:.3f} mm")
    lines += surf_rows("mapped mesh (M @ dense) vs dense surface:", q["mapped_surface"])
    pq = q["poses"]
    pp = m.per_pose
    lines += ["", f"faces over all {pq['n_poses']} poses (flip: normal against the dense surface normal; "
              f"collapse: area < {COLLAPSE_AREA_RATIO:g} x rest or quality < {COLLAPSE_QUALITY:g})",
              f"    faces that flip in some pose:      {pq['flipped_faces']:6d}   (poses with a flip: {pq['poses_with_flips']})",
              f"    faces that collapse in some pose:  {pq['collapsed_faces']:6d}   (poses with a collapse: {pq['poses_with_collapses']})",
              f"    worst normal agreement (cos):      {pq['min_normal_cos']:9.3f}",
              f"    smallest area / rest area:         {pq['min_area_ratio']:9.3f}",
              f"    worst triangle quality (posed):    {pq['min_triangle_quality']:9.3f}   (rest: {pq['rest_min_triangle_quality']:.3f})"]
    if len(pp.get("flipped", [])):
        bad = pp["flipped"].astype(np.int64) + pp["collapsed"].astype(np.int64)
        order = np.argsort(-bad, kind="stable")[:5]
        lines.append("    per pose: " + ("no pose has a flipped or collapsed face" if bad.max() == 0 else
                     "worst poses " + ", ".join(f"#{i}: {pp['flipped'][i]} flipped/{pp['collapsed'][i]} collapsed"
                                                for i in order if bad[i] > 0)))
    kind = ("MANO regressor (16 joints + 5 tip vertices)" if m.topology == "mano"
            else "fitted open778 regressor")
    lines += ["", f"joints: rig keypoints vs {kind} on the mapped mesh, all poses (mm)",
              f"    {'joint':<12}{'mean':>8}{'max':>8}    {'joint':<12}{'mean':>8}{'max':>8}"]
    names = list(KEYPOINT_NAMES)
    jm, jx = pq["joints_per_joint_mean_mm"], pq["joints_per_joint_max_mm"]
    half = (len(names) + 1) // 2
    for i in range(half):
        row = f"    {names[i]:<12}{jm[names[i]]:8.2f}{jx[names[i]]:8.2f}"
        if i + half < len(names):
            n2 = names[i + half]
            row += f"    {n2:<12}{jm[n2]:8.2f}{jx[n2]:8.2f}"
        lines.append(row)
    lines.append(f"    all joints: mean {pq['joints_mean_mm']:.2f}, max {pq['joints_max_mm']:.2f}")
    lines.append("")
    lines.append(f"topology={m.topology} surface_mean_mm={q['surface_mean_mm']:.3f} "
                 f"surface_max_mm={q['surface_max_mm']:.3f} flipped_faces={q['flipped_faces']}")
    return "\n".join(lines)
