"""MANO without chumpy: a restricted loader, an smplx layer, registration to our hand, a stand-in.

Loading (`load_mano`).  MANO_RIGHT.pkl is a Python-2 pickle: numpy arrays, a scipy.sparse csc
J_regressor and `chumpy.ch.Ch` wrappers around some arrays.  Unpickling can run arbitrary code,
so `RestrictedUnpickler` resolves only the globals such a file needs - numpy's array/dtype/
scalar reconstructors (object dtypes refused), set/frozenset, copy_reg's plain-object
reconstructor, latin-1 `_codecs.encode` (bytes in a protocol-2 pickle written by Python 3), and stand-ins for `chumpy.ch.Ch` and scipy's `csc_matrix` that only capture
their pickled state (their own code never runs) - and refuses anything else, naming the
offending global.  chumpy is neither needed nor imported.

Layer (`mano_layer`).  smplx's MANO built through its data-struct path from the loaded arrays
(float64, full 45-dim axis-angle hand pose, flat hand mean).

Registration (`register`).  MANO is fitted to the rest-pose dense hand in two stages:
(1) a similarity (scale, rotation, translation) from the 21 keypoints by Umeyama, then pose,
shape, scale and translation on the keypoints (MANO joints: 16 regressed + 5 tip vertices);
(2) the surface: alternating closest-point correspondences in both directions (MANO vertices
-> dense surface, dense vertices -> MANO surface, normal-compatible, trimmed) with L-BFGS on
all parameters, keypoints kept with a small weight, mild priors on pose and shape.

Stand-in (`write_standin`).  A MANO-format file made from our own open778 mesh, for tests and
demos only: same keys, shapes and pickle structure as MANO_RIGHT.pkl (Python-2 strings,
chumpy-typed arrays, an old-style scipy csc), written with temporary fake `chumpy.ch` and
`scipy.sparse.csc` modules.  It is not MANO and carries none of MANO's data.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import pickle
import struct
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

# FreiHAND order from MANO order (16 regressed joints, then tips index, middle, little, ring, thumb).
MANO_TO_FREIHAND = [0, 13, 14, 15, 20, 1, 2, 3, 16, 4, 5, 6, 17, 10, 11, 12, 19, 7, 8, 9, 18]
# Tip vertices commonly used with MANO, in MANO's tip order (joints 16..20).
MANO_TIP_VERTICES = {"index": 317, "middle": 444, "little": 673, "ring": 556, "thumb": 745}
MANO_PARENTS = [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14]
N_VERTICES = 778
N_JOINTS = 16

__all__ = ["UnsafePickleError", "ManoModel", "load_mano", "mirror_mano", "mirror_arrays", "mirror_pose", "mano_layer", "mano_regressor21",
           "register", "Registration", "build_mano_mapping", "write_standin",
           "MANO_TO_FREIHAND", "MANO_TIP_VERTICES"]


# --------------------------------------------------------------------------------------------
# restricted unpickling
# --------------------------------------------------------------------------------------------
class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """The file references a global that a MANO model file does not need."""


class _StandIn:
    """Takes the place of a class in the pickle: keeps the pickled attribute dict, runs no code."""

    kind = "object"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.kind} state is not a dict")
        self.state = state


class _ChStandIn(_StandIn):
    """chumpy.ch.Ch: an array in attribute 'x'."""

    kind = "chumpy.ch.Ch"

    def to_array(self) -> np.ndarray:
        x = getattr(self, "state", {}).get("x")
        if not isinstance(x, np.ndarray):
            raise pickle.UnpicklingError("chumpy.ch.Ch object without an array 'x' (a chumpy expression "
                                         "cannot be evaluated without chumpy)")
        return x


class _CscStandIn(_StandIn):
    """scipy.sparse csc_matrix as old scipy pickled it: data, indices, indptr, _shape."""

    kind = "csc_matrix"

    def to_scipy(self) -> sp.csc_matrix:
        s = getattr(self, "state", {})
        shape = s.get("_shape", s.get("shape"))
        try:
            data, indices, indptr = (np.asarray(s[k]) for k in ("data", "indices", "indptr"))
            return sp.csc_matrix((data, indices, indptr), shape=tuple(int(n) for n in shape))
        except Exception as e:  # noqa: BLE001
            raise pickle.UnpicklingError(f"malformed csc_matrix state: {e}") from e


def _np_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"numpy _reconstruct of {subtype!r}: only numpy.ndarray is admitted")
    from numpy.core.multiarray import _reconstruct

    return _reconstruct(np.ndarray, shape, dtype)


def _np_dtype(*args):
    d = np.dtype(*args)
    if d.hasobject:
        raise UnsafePickleError("numpy object dtype: a MANO file holds only numeric arrays")
    return d


def _np_scalar(dtype, *args):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise UnsafePickleError("numpy scalar of object dtype refused")
    from numpy.core.multiarray import scalar

    return scalar(dtype, *args)


def _copyreg_reconstructor(cls, base, state):
    if cls not in (_ChStandIn, _CscStandIn) or base is not object or state is not None:
        raise UnsafePickleError(f"copy_reg._reconstructor for {cls!r}: only chumpy/scipy stand-ins are admitted")
    return object.__new__(cls)


def _codecs_encode(text, encoding="utf-8"):
    """Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, 'latin1')."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("_codecs.encode is admitted only for latin-1 byte strings")
    return text.encode("latin1")


_ALLOWED = {
    ("_codecs", "encode"): _codecs_encode,  # a MANO file re-saved by Python 3 at protocol 2
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _np_dtype,
    ("chumpy.ch", "Ch"): _ChStandIn,
    ("scipy.sparse.csc", "csc_matrix"): _CscStandIn,
    ("scipy.sparse._csc", "csc_matrix"): _CscStandIn,
    ("scipy.sparse", "csc_matrix"): _CscStandIn,
    ("__builtin__", "set"): set, ("builtins", "set"): set,
    ("__builtin__", "frozenset"): frozenset, ("builtins", "frozenset"): frozenset,
    ("__builtin__", "object"): object, ("builtins", "object"): object,
    ("copy_reg", "_reconstructor"): _copyreg_reconstructor,
    ("copyreg", "_reconstructor"): _copyreg_reconstructor,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a MANO model file needs (see `_ALLOWED`)."""

    def __init__(self, file, source: str = "<pickle>"):
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load {self.source}: it references the global '{module}.{name}', which a "
                f"MANO model file does not need (admitted: numpy arrays, scipy.sparse csc matrices, "
                f"chumpy.ch.Ch array wrappers). The file is not a MANO model or has been tampered with."
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"refusing to load {self.source}: persistent ids are not admitted")


def restricted_load(data: bytes, source: str = "<pickle>"):
    return RestrictedUnpickler(io.BytesIO(data), source).load()


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------
@dataclass
class ManoModel:
    v_template: np.ndarray  # (778, 3)
    faces: np.ndarray  # (F, 3) int64
    J_regressor: sp.csc_matrix  # (16, 778)
    weights: np.ndarray  # (778, 16)
    kintree_table: np.ndarray  # (2, 16)
    shapedirs: np.ndarray  # (778, 3, B)
    posedirs: np.ndarray  # (778, 3, 135)
    hands_components: np.ndarray  # (45, 45)
    hands_mean: np.ndarray  # (45,)
    sha256: str = ""
    path: str = ""
    extra: dict = field(default_factory=dict)


def _plain(v):
    if isinstance(v, _ChStandIn):
        return v.to_array()
    if isinstance(v, _CscStandIn):
        return v.to_scipy()
    return v


def load_mano(path: str | Path) -> ManoModel:
    """Load a MANO right-hand model file safely (no chumpy, no arbitrary code).

    Every failure is a ValueError whose message names the file and what is wrong (missing,
    unreadable, not a pickle, a refused global, missing keys, wrong shapes)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"MANO file {path} does not exist (download MANO_RIGHT.pkl from "
                         f"https://mano.is.tue.mpg.de and pass its path)") from None
    except OSError as exc:
        raise ValueError(f"MANO file {path} cannot be read: {exc.strerror or exc}") from None
    try:
        obj = restricted_load(data, str(path))
    except UnsafePickleError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever foreign bytes make the unpickler raise
        raise ValueError(f"{path}: not a MANO model file - it does not unpickle ({type(exc).__name__}: "
                         f"{str(exc)[:120]})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict of model arrays, got {type(obj).__name__}")
    d = {str(k): _plain(v) for k, v in obj.items()}
    need = ["v_template", "f", "J_regressor", "weights", "kintree_table", "shapedirs", "posedirs",
            "hands_components", "hands_mean"]
    missing = [k for k in need if k not in d]
    if missing:
        raise ValueError(f"{path}: not a MANO model file, missing {missing}")

    def arr(k, shape, dtype=np.float64):
        a = np.asarray(d[k], dtype=dtype)
        if any(s is not None and s != t for s, t in zip(shape, a.shape)) or a.ndim != len(shape):
            raise ValueError(f"{path}: '{k}' has shape {a.shape}, expected {tuple(s or 'n' for s in shape)}")
        return a

    jr = d["J_regressor"]
    jr = sp.csc_matrix(jr) if sp.issparse(jr) else sp.csc_matrix(np.asarray(jr, dtype=np.float64))
    if jr.shape != (N_JOINTS, N_VERTICES):
        raise ValueError(f"{path}: 'J_regressor' has shape {jr.shape}, expected (16, 778)")
    faces = arr("f", (None, 3), np.int64)
    if faces.min() < 0 or faces.max() >= N_VERTICES:
        raise ValueError(f"{path}: face indices out of range")
    model = ManoModel(
        v_template=arr("v_template", (N_VERTICES, 3)),
        faces=faces,
        J_regressor=jr.astype(np.float64),
        weights=arr("weights", (N_VERTICES, N_JOINTS)),
        kintree_table=arr("kintree_table", (2, N_JOINTS), np.int64),
        shapedirs=arr("shapedirs", (N_VERTICES, 3, None)),
        posedirs=arr("posedirs", (N_VERTICES, 3, 9 * (N_JOINTS - 1))),
        hands_components=arr("hands_components", (45, 45)),
        hands_mean=arr("hands_mean", (45,)),
        sha256=hashlib.sha256(data).hexdigest(),
        path=str(path),
        extra={k: v for k, v in d.items() if isinstance(v, str)},
    )
    parents = model.kintree_table[0].copy()
    parents[0] = -1
    if list(parents) != MANO_PARENTS:
        raise ValueError(f"{path}: kinematic tree {parents.tolist()} is not MANO's")
    return model


def mano_layer(model: ManoModel, dtype=None):
    """smplx's MANO layer built from the loaded arrays (float64, 45-dim axis-angle, flat mean)."""
    import smplx
    import torch
    from smplx.utils import Struct

    struct_ = Struct(v_template=model.v_template, f=model.faces, J_regressor=model.J_regressor,
                     weights=model.weights, kintree_table=model.kintree_table,
                     shapedirs=model.shapedirs, posedirs=model.posedirs,
                     hands_components=model.hands_components, hands_mean=model.hands_mean)
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note about 10 betas
        layer = smplx.MANO(model_path=model.path or "MANO_RIGHT.pkl", data_struct=struct_, is_rhand=True,
                           use_pca=False, flat_hand_mean=True, num_betas=model.shapedirs.shape[-1],
                           dtype=dtype or torch.float64, batch_size=1)
    return layer


def mano_regressor21(model: ManoModel) -> np.ndarray:
    """(21, 778) joints in FreiHAND order: MANO's 16 regressor rows + the 5 tip vertices."""
    R = np.zeros((21, N_VERTICES))
    R[:16] = model.J_regressor.toarray()
    for j, v in enumerate(MANO_TIP_VERTICES.values()):
        R[16 + j, v] = 1.0
    return R[MANO_TO_FREIHAND]


# --------------------------------------------------------------------------------------------
# the other hand (MANO_LEFT.pkl)
# --------------------------------------------------------------------------------------------
# Sign of each coordinate under the reflection x -> -x (datagen.geometry.mirror.MIRROR_X).
_S = np.array([-1.0, 1.0, 1.0])


def mirror_mano(model: ManoModel) -> ManoModel:
    """The model of the other hand: every output vertex reflected (x -> -x), exactly.

    A model posed with per-joint axis-angles w gives, mirrored, the reflection of the original
    posed with (wx, -wy, -wz) (a reflection S turns a rotation R into S R S, whose axis-angle is
    -S w).  So: v_template and the shape directions get S; a pose-corrective direction of joint
    j, entry (a, b) of (R_j - I), gets s_c s_a s_b on coordinate c; the hand-pose mean and PCA
    components get (1, -1, -1) per joint; the joint regressor, skinning weights and tree are
    unchanged.  The faces are reversed (a reflection turns a mesh inside out), then checked to
    point outwards (vertices' mean offset from the centroid along their normals > 0) and flipped
    if not - a MANO_LEFT.pkl whose faces are MANO_RIGHT's (inside out for a left hand) and one
    with outward faces both give an outward right hand.  `extra["mirrored"]` records it.

    Used to register the user's MANO_LEFT.pkl to our (right) hand: the mirrored left model is a
    right-hand model whose vertex i is the reflection of the left model's vertex i.
    """
    from datagen.geometry.normals import vertex_normals

    m = mirror_arrays({"v_template": model.v_template, "f": model.faces, "shapedirs": model.shapedirs,
                       "posedirs": model.posedirs, "hands_components": model.hands_components,
                       "hands_mean": model.hands_mean})
    v, faces = m["v_template"], np.asarray(m["f"], np.int64)
    n = vertex_normals(v, faces)
    reoriented = bool(((v - v.mean(0)) * n).sum(1).mean() < 0)
    if reoriented:
        faces = np.ascontiguousarray(faces[:, ::-1])
    return ManoModel(
        v_template=v, faces=faces, J_regressor=model.J_regressor.copy(), weights=model.weights.copy(),
        kintree_table=model.kintree_table.copy(), shapedirs=m["shapedirs"], posedirs=m["posedirs"],
        hands_components=m["hands_components"], hands_mean=m["hands_mean"], sha256=model.sha256, path=model.path,
        extra=dict(model.extra, mirrored=True, faces_reoriented=reoriented))


def mirror_arrays(arrays: dict) -> dict:
    """The arrays of a MANO model file (`load_mano`'s keys: v_template, f, shapedirs, posedirs,
    hands_components, hands_mean; others are copied) for the other hand - see `mirror_mano`
    (this is its arithmetic, without the faces' orientation check).  `write_standin` of the
    result of a right stand-in's arrays is a left stand-in."""
    from datagen.geometry.mirror import reverse_winding

    out = dict(arrays)
    entry_sign = np.outer(_S, _S).ravel()  # entry (a, b) of (R_j - I), row-major: s_a s_b
    pd = np.asarray(arrays["posedirs"], np.float64)
    out["posedirs"] = (pd.reshape(pd.shape[0], 3, -1, 9) * _S[None, :, None, None]
                       * entry_sign[None, None, None, :]).reshape(pd.shape)
    pose_sign = np.tile([1.0, -1.0, -1.0], 15)
    out["v_template"] = np.asarray(arrays["v_template"], np.float64) * _S
    out["shapedirs"] = np.asarray(arrays["shapedirs"], np.float64) * _S[None, :, None]
    out["hands_components"] = np.asarray(arrays["hands_components"], np.float64) * pose_sign[None, :]
    out["hands_mean"] = np.asarray(arrays["hands_mean"], np.float64) * pose_sign
    out["f"] = reverse_winding(np.asarray(arrays["f"])).astype(np.asarray(arrays["f"]).dtype)
    return out


def mirror_pose(axis_angles: np.ndarray) -> np.ndarray:
    """Per-joint axis-angles (..., 3k) of a hand -> those of its mirror image: (x, -y, -z) each."""
    a = np.array(axis_angles, dtype=np.float64, copy=True)
    a = a.reshape(*a.shape[:-1], -1, 3) * [1.0, -1.0, -1.0]
    return a.reshape(*a.shape[:-2], -1)


# --------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------
@dataclass
class Registration:
    vertices: np.ndarray  # (778, 3) registered MANO vertices, hand frame
    params: dict  # scale, transl, global_orient, hand_pose, betas (lists)
    keypoint_rms_mm: float
    history: list  # (stage, loss) per outer step


def register(model: ManoModel, dense_vertices: np.ndarray, dense_faces: np.ndarray,
             open_faces: np.ndarray, keypoints: np.ndarray, outer_steps: int = 12,
             keypoint_weight: float = 0.05, pose_prior: float = 0.01, shape_prior: float = 0.01,
             trim_mm: float = 5.0) -> Registration:
    """Fit MANO (pose, shape, scale, translation) to the rest-pose dense hand (see module doc).

    Losses are in mm^2 (mean squared distances); priors are per rad^2 of hand pose and per
    unit beta^2.  Runs torch on one thread (tiny tensors: more threads only cost).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _register(model, dense_vertices, dense_faces, open_faces, keypoints, outer_steps,
                         keypoint_weight, pose_prior, shape_prior, trim_mm)
    finally:
        torch.set_num_threads(threads)


def _register(model, dense_vertices, dense_faces, open_faces, keypoints, outer_steps, keypoint_weight,
              pose_prior, shape_prior, trim_mm) -> Registration:
    import torch
    from scipy.spatial.transform import Rotation

    from datagen.geometry.alignment import umeyama
    from datagen.geometry.closest_point import closest_points
    from datagen.geometry.normals import vertex_normals

    dt = torch.float64
    layer = mano_layer(model)
    nb = model.shapedirs.shape[-1]
    F = torch.as_tensor(model.faces)
    R21 = torch.as_tensor(mano_regressor21(model), dtype=dt)
    K = torch.as_tensor(keypoints, dtype=dt)
    mm = 1e3  # losses in mm^2

    def forward(p):
        out = layer(betas=p["betas"], global_orient=p["go"], hand_pose=p["hp"],
                    transl=torch.zeros(1, 3, dtype=dt))
        return torch.exp(p["log_s"]) * out.vertices[0] + p["t"]

    with torch.no_grad():
        V0 = forward({"betas": torch.zeros(1, nb, dtype=dt), "go": torch.zeros(1, 3, dtype=dt),
                      "hp": torch.zeros(1, 45, dtype=dt), "log_s": torch.zeros((), dtype=dt),
                      "t": torch.zeros(3, dtype=dt)}).numpy()
        J0 = layer(betas=torch.zeros(1, nb, dtype=dt), global_orient=torch.zeros(1, 3, dtype=dt),
                   hand_pose=torch.zeros(1, 45, dtype=dt)).joints[0, 0].numpy()
    s, Rm, tp = umeyama(mano_regressor21(model) @ V0, np.asarray(keypoints))
    s = float(s)
    # smplx rotates about the root joint: s (R (v - J0) + J0) + t = s R v + tp
    t0 = tp - s * (J0 - Rm @ J0)
    p = {"betas": torch.zeros(1, nb, dtype=dt), "go": torch.as_tensor(Rotation.from_matrix(Rm).as_rotvec()[None], dtype=dt),
         "hp": torch.zeros(1, 45, dtype=dt), "log_s": torch.tensor(np.log(s), dtype=dt),
         "t": torch.as_tensor(t0, dtype=dt)}
    for v in p.values():
        v.requires_grad_(True)

    def priors():
        return pose_prior * (p["hp"] ** 2).sum() + shape_prior * (p["betas"] ** 2).sum()

    def kp_loss(V):
        return (((R21 @ V - K) * mm) ** 2).sum(1).mean()

    def run(closure_loss, iters):
        opt = torch.optim.LBFGS(list(p.values()), lr=1.0, max_iter=iters, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-10, tolerance_change=1e-14, history_size=50)

        def closure():
            opt.zero_grad()
            loss = closure_loss()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            return float(closure_loss())

    history = [("keypoints", run(lambda: kp_loss(forward(p)) + priors(), 300))]

    Vd = np.asarray(dense_vertices, dtype=np.float64)
    Fd = np.asarray(dense_faces, dtype=np.int64)
    open_ids = np.unique(open_faces)
    dense_n = vertex_normals(Vd, Fd)[open_ids]
    P_dense = Vd[open_ids]
    Pt_dense = torch.as_tensor(P_dense, dtype=dt)
    for _ in range(outer_steps):
        with torch.no_grad():
            V = forward(p).numpy()
        nV = vertex_normals(V, model.faces)
        # MANO vertices -> closest normal-compatible point of the (closed) dense surface
        f1, b1, d1 = closest_points(Vd, Fd, V, normals=nV)
        T1 = torch.as_tensor(np.einsum("nk,nkc->nc", b1, Vd[Fd[f1]]), dtype=dt)
        w1 = torch.as_tensor(d1 * mm <= max(trim_mm, 3 * np.median(d1) * mm), dtype=dt)
        # open dense vertices -> closest normal-compatible point of the MANO surface
        f2, b2, d2 = closest_points(V, model.faces, P_dense, normals=dense_n)
        w2 = torch.as_tensor(d2 * mm <= max(trim_mm, 3 * np.median(d2) * mm), dtype=dt)
        Fi = F[torch.as_tensor(f2)]
        B2 = torch.as_tensor(b2, dtype=dt)

        def surf_loss():
            V_ = forward(p)
            e1 = (((V_ - T1) * mm) ** 2).sum(1)
            Q = (B2[:, :, None] * V_[Fi]).sum(1)
            e2 = (((Q - Pt_dense) * mm) ** 2).sum(1)
            return ((w1 * e1).sum() / w1.sum() + (w2 * e2).sum() / w2.sum()
                    + keypoint_weight * kp_loss(V_) + priors())

        history.append(("surface", run(surf_loss, 30)))

    with torch.no_grad():
        V = forward(p)
        kp_rms = float(torch.sqrt(kp_loss(V)))
    params = {"scale": float(torch.exp(p["log_s"].detach())), "transl": p["t"].detach().numpy().tolist(),
              "global_orient": p["go"].detach().numpy()[0].tolist(),
              "hand_pose": p["hp"].detach().numpy()[0].tolist(),
              "betas": p["betas"].detach().numpy()[0].tolist()}
    return Registration(vertices=V.numpy().copy(), params=params, keypoint_rms_mm=kp_rms, history=history)


MAX_SLIDE_M = 0.003  # how far the pose relaxation may move a mapped MANO vertex along the surface


def build_mano_mapping(mano_path, prepared, rest: dict, side: str = "right"):
    """(M, faces, joint regressor, quality extras, source, posed arrays) for topology 'mano'.

    side="left": `mano_path` is a MANO_LEFT.pkl; it is mirrored into a right-hand model
    (`mirror_mano`) and registered to our right hand like a right model.  The mapping then gives
    the mirrored left model's vertices from the right dense mesh; applied to a left item's
    (mirrored) dense mesh it gives the left model's own vertices, whose outward faces are
    `faces` reversed.

    Registration, then each registered vertex's closest normal-compatible point on the dense
    rest surface (a barycentric row).  Then the pose relaxation of `datagen.mapping`
    (vertex slides only: MANO's connectivity is kept) moves, where a face would turn over or
    collapse in some pose, a vertex onto a dense vertex at most MAX_SLIDE_M away.
    """
    from scipy.spatial import cKDTree

    from datagen.geometry.closest_point import closest_points
    from datagen.geometry.normals import vertex_normals
    from datagen.mapping.surface import (
        barycentric_matrix,
        dense_posed_arrays,
        map_posed,
        relax_for_poses,
        surface_distances,
    )
    from datagen.mapping.open778 import boundary_loop

    model = load_mano(mano_path)
    if side == "left":
        model = mirror_mano(model)
    elif side != "right":
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    reg = register(model, rest["vertices"], rest["faces"], rest["open_faces"], rest["keypoints"])
    V = reg.vertices
    face, bary, dist = closest_points(rest["vertices"], rest["faces"], V,
                                      normals=vertex_normals(V, model.faces))
    n_dense = prepared.asset.n_dense
    M = barycentric_matrix(face, bary, rest["faces"], n_dense)
    pos, nrm = dense_posed_arrays(prepared)
    X, N = map_posed(M, pos, nrm)
    home = cKDTree(rest["vertices"]).query(X[0].astype(np.float64))[1]
    on_dense = (np.diff(M.indptr) == 1) & (M.indices[M.indptr[:-1]] == home)
    movable = ~rest["cap"]
    movable[boundary_loop(rest["open_faces"])] = False
    faces, moved, relax = relax_for_poses(model.faces, X, N, home, pos, nrm, rest["faces"], movable,
                                          on_dense=on_dense, allow_flips=False, max_slide_m=MAX_SLIDE_M)
    del pos, nrm
    if moved:
        M = M.tolil()
        for i, c in moved.items():
            M.rows[i], M.data[i] = [int(c)], [1.0]
        M = M.tocsr()
    Vm = np.asarray(M @ rest["vertices"])
    extra = {
        "registration": {
            "to_dense": surface_distances(V, model.faces, rest["vertices"], rest["faces"]),
            "from_dense": surface_distances(rest["vertices"], rest["open_faces"], V, model.faces),
        },
        "registration_params": {
            "scale": reg.params["scale"], "betas_norm": float(np.linalg.norm(reg.params["betas"])),
            "hand_pose_norm": float(np.linalg.norm(reg.params["hand_pose"])),
            "keypoint_rms_mm": reg.keypoint_rms_mm,
        },
        "projection_mean_mm": 1e3 * float(np.linalg.norm(Vm - V, axis=1).mean()),
        "projection_max_mm": 1e3 * float(np.linalg.norm(Vm - V, axis=1).max()),
        "relax": relax,
    }
    source = {"topology": "mano", "mano_file": Path(mano_path).name, "hand_key": prepared.key,
              "registration": reg.params, "pose_relaxation": dict(relax, max_slide_mm=1e3 * MAX_SLIDE_M),
              "joint_regressor": "MANO J_regressor (16 joints) + tip vertices "
                                 + str(MANO_TIP_VERTICES) + ", FreiHAND order"}
    if side == "left":
        source.update(side="left", mirrored=True, faces_reoriented=bool(model.extra["faces_reoriented"]))
    posed = (X[1:], N[1:])
    return M, np.asarray(faces, np.int64), mano_regressor21(model), extra, source, posed


# --------------------------------------------------------------------------------------------
# a MANO-format stand-in for tests (not MANO)
# --------------------------------------------------------------------------------------------
class _Py2Pickler(pickle._Pickler):
    """Writes str/bytes as Python-2 strings (BINSTRING), as a Python-2 pickle.dump would."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


@contextlib.contextmanager
def _fake_modules():
    """Temporary `chumpy.ch.Ch` and old-style `scipy.sparse.csc.csc_matrix` classes for pickling."""

    class Ch:  # what chumpy's Ch pickles: its __dict__ without the weak-reference caches
        def __init__(self, x):
            self.x = np.asarray(x, dtype=np.float64)
            self._dirty_vars = set()
            self._itr = None
            self._depends_on_deps = {}
            self._make_dense = False
            self._make_sparse = False

    class csc_matrix:  # noqa: N801 - scipy < 1.8 pickled csc matrices as their attribute dict
        def __init__(self, m):
            m = sp.csc_matrix(m)
            self._shape = tuple(m.shape)
            self.maxprint = 50
            self.format = "csc"
            self.data, self.indices, self.indptr = m.data, m.indices, m.indptr

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    csc_matrix.__module__, csc_matrix.__qualname__ = "scipy.sparse.csc", "csc_matrix"
    fake = {"chumpy": types.ModuleType("chumpy"), "chumpy.ch": types.ModuleType("chumpy.ch"),
            "scipy.sparse.csc": types.ModuleType("scipy.sparse.csc")}
    fake["chumpy.ch"].Ch = Ch
    fake["chumpy"].ch = fake["chumpy.ch"]
    fake["scipy.sparse.csc"].csc_matrix = csc_matrix
    saved = {k: sys.modules.get(k) for k in fake}
    sys.modules.update(fake)
    try:
        yield Ch, csc_matrix
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def standin_arrays(vertices: np.ndarray, faces: np.ndarray, keypoints: np.ndarray, part: np.ndarray,
                   seed: int = 0, pose_range: float = 0.15, shape_sigma: float = 0.5) -> dict:
    """MANO-format arrays from an open 778-vertex hand mesh (hand frame, FreiHAND keypoints).

    Vertices are permuted so that MANO's tip vertex ids hold the vertices nearest the
    fingertip keypoints; the J_regressor is fitted (convex rows) to the keypoints in MANO
    order; weights are bone-segment assignments smoothed over the mesh; shapedirs are smooth
    analytic fields (scale, length, width, thickness, waves); posedirs are zero; hand PCA is a
    random rotation.  Then the template is posed (small random finger rotations), reshaped
    and moved by a similarity, so a registration has to recover all of that.
    """
    import torch

    from datagen.geometry.joint_regressor import fit_joint_regressor
    from datagen.mapping.surface import REGRESSOR_SUPPORT, SIGNED_ROWS_ABOVE_MM

    rng = np.random.default_rng(seed)
    V = np.asarray(vertices, dtype=np.float64)
    Fc = np.asarray(faces, dtype=np.int64)
    K = np.asarray(keypoints, dtype=np.float64)
    # MANO order joints from FreiHAND-order keypoints: mano[MANO_TO_FREIHAND[i]] = frei[i]
    mano21 = np.zeros((21, 3))
    mano21[MANO_TO_FREIHAND] = K
    # permutation: tips onto MANO's tip ids
    order = list(range(len(V)))
    for j, target in enumerate(MANO_TIP_VERTICES.values()):
        old = int(np.argmin(np.linalg.norm(V - mano21[16 + j], axis=1)))
        pos = order.index(old)
        order[pos], order[target] = order[target], order[pos]
    order = np.asarray(order)
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    V, Fc, part = V[order], inv[Fc], np.asarray(part)[order]
    # regressor (16 x 778) fitted at rest
    Jr, _ = fit_joint_regressor(V[None], mano21[None, :16], V, mano21[:16], k=REGRESSOR_SUPPORT,
                                signed_above_mm=SIGNED_ROWS_ABOVE_MM)
    # weights: part 0 -> root; finger part -> nearest of its three segments
    chains = {1: [13, 14, 15, 20], 2: [1, 2, 3, 16], 3: [4, 5, 6, 17], 4: [10, 11, 12, 19], 5: [7, 8, 9, 18]}
    W = np.zeros((len(V), N_JOINTS))
    for i, (x, pt) in enumerate(zip(V, part)):
        if pt == 0:
            W[i, 0] = 1
            continue
        ch = chains[int(pt)]
        best, arg = np.inf, ch[0]
        for a, b in zip(ch[:-1], ch[1:]):
            A, B = mano21[a], mano21[b]
            t = np.clip((x - A) @ (B - A) / ((B - A) @ (B - A)), 0, 1)
            d = np.linalg.norm(A + t * (B - A) - x)
            if d < best:
                best, arg = d, a
        W[i, arg] = 1
    adj = sp.coo_matrix((np.ones(Fc.size * 2), (np.r_[Fc.ravel(), np.roll(Fc, 1, 1).ravel()],
                                                 np.r_[np.roll(Fc, 1, 1).ravel(), Fc.ravel()])),
                        shape=(len(V), len(V))).tocsr()
    adj.data[:] = 1
    adj = adj + sp.identity(len(V), format="csr")
    for _ in range(3):
        W = np.asarray(adj @ W)
        W /= W.sum(1, keepdims=True)
    c = V.mean(0)
    J0 = mano21[0]
    phase = rng.uniform(0, 2 * np.pi, size=(6, 3))
    fields = [V - J0, np.c_[np.zeros(len(V)), V[:, 1] - J0[1], np.zeros(len(V))],
              np.c_[V[:, 0] - c[0], np.zeros((len(V), 2))], np.c_[np.zeros((len(V), 2)), V[:, 2] - c[2]]]
    fields = [0.01 * f for f in fields]
    for k in range(6):
        fields.append(0.002 * np.sin(2 * np.pi * V[:, [1, 2, 0]] / 0.08 + phase[k]))
    shapedirs = np.stack(fields, axis=-1)
    Q, _ = np.linalg.qr(rng.normal(size=(45, 45)))
    kin = np.array([[2**32 - 1] + MANO_PARENTS[1:], list(range(N_JOINTS))], dtype=np.int64)
    arrays = {"v_template": V, "f": Fc.astype(np.uint32), "J_regressor": sp.csc_matrix(Jr),
              "weights": W, "kintree_table": kin, "shapedirs": shapedirs,
              "posedirs": np.zeros((N_VERTICES, 3, 135)), "hands_components": Q,
              "hands_mean": 0.1 * rng.normal(size=45), "J": Jr @ V,
              "bs_style": "lbs", "bs_type": "lrotmin"}
    # pose, reshape and move the template, so a registration has something to recover
    model = ManoModel(v_template=V, faces=Fc, J_regressor=sp.csc_matrix(Jr), weights=W, kintree_table=kin,
                      shapedirs=shapedirs, posedirs=arrays["posedirs"], hands_components=Q,
                      hands_mean=arrays["hands_mean"])
    layer = mano_layer(model)
    dt = torch.float64
    with torch.no_grad():
        out = layer(betas=torch.as_tensor(rng.normal(scale=shape_sigma, size=(1, shapedirs.shape[-1])), dtype=dt),
                    global_orient=torch.zeros(1, 3, dtype=dt),
                    hand_pose=torch.as_tensor(rng.uniform(-pose_range, pose_range, size=(1, 45)), dtype=dt),
                    transl=torch.zeros(1, 3, dtype=dt))
    from scipy.spatial.transform import Rotation

    Rm = Rotation.from_rotvec(rng.normal(size=3) / np.sqrt(3) * 1.8).as_matrix()
    s = 0.93
    Vp = s * out.vertices[0].numpy() @ Rm.T + np.array([0.09, 0.005, 0.006])
    arrays["v_template"] = Vp
    arrays["J"] = Jr @ Vp
    arrays["shapedirs"] = s * np.einsum("ij,vjk->vik", Rm, shapedirs)  # the shape space moves along
    return arrays


def write_standin(path: str | Path, arrays: dict) -> None:
    """Write `arrays` (see `standin_arrays`) as a MANO_RIGHT.pkl-style Python-2 pickle."""
    with _fake_modules() as (Ch, csc_matrix):
        obj = {}
        for k, v in arrays.items():
            if k in ("shapedirs", "J"):
                obj[k] = Ch(v)  # chumpy-typed, as in the real file
            elif sp.issparse(v):
                obj[k] = csc_matrix(v)
            else:
                obj[k] = v
        buf = io.BytesIO()
        _Py2Pickler(buf, protocol=2).dump(obj)
    Path(path).write_bytes(buf.getvalue())
