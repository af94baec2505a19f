"""The dense -> 778-vertex mapping (datagen/mapping.py, datagen/open778.py), default topology.

Builds the open778 mapping once per session (decimation + pose relaxation + quality over all
1520 poses, ~30 s) in the session's temporary cache.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp

from datagen.geometry.joint_regressor import apply_joint_regressor, fit_joint_regressor
from datagen.mapping.__main__ import main
from datagen.mapping.dense_to_778 import Mapping, build_mapping, format_report, measure_poses
from datagen.mapping.surface import REGRESSOR_SUPPORT, SIGNED_ROWS_ABOVE_MM, rest_geometry
from datagen.mapping.open778 import boundary_loop

LAST_LINE = re.compile(r"^topology=(open778|mano) surface_mean_mm=\d+\.\d+ surface_max_mm=\d+\.\d+ flipped_faces=\d+$")


@pytest.fixture(scope="session")
def open778(prepared, cache_dir):
    return build_mapping(prepared, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def rest(prepared):
    return rest_geometry(prepared)


def _signed_volume(V, F):
    a, b, c = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
    return np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6


def test_matrix_and_mesh_structure(open778, prepared, rest):
    m = open778
    M = m.matrix
    assert m.topology == "open778"
    assert sp.isspmatrix_csr(M) and M.shape == (778, prepared.asset.n_dense)
    np.testing.assert_allclose(np.asarray(M.sum(1)).ravel(), 1.0, atol=1e-12)
    assert M.data.min() >= 0 and np.diff(M.indptr).max() <= 3
    # open778 vertices are dense vertices: one weight per row, all distinct
    assert (np.diff(M.indptr) == 1).all() and len(set(M.indices.tolist())) == 778
    assert not rest["cap"][M.indices].any()  # nothing of the wrist cap is kept
    F = m.faces
    assert F.shape == (1538, 3) and F.min() == 0 and F.max() == 777
    assert len(np.unique(F)) == 778
    # manifold, consistently oriented, one 16-edge wrist opening (MANO's shapes)
    directed = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    assert len({tuple(e) for e in directed.tolist()}) == len(directed)
    assert len(boundary_loop(F)) == 16
    # outward winding: close the opening with a fan and the enclosed volume is positive
    V = m.apply(rest["vertices"])
    ring = boundary_loop(F)
    Vc = np.vstack([V, V[ring].mean(0)])
    cap = np.stack([np.full(len(ring), 778), np.roll(ring, -1), ring], axis=1)
    vol = _signed_volume(Vc, np.vstack([F, cap]))
    # ... and about the dense hand's: its faces without the removed (forearm) vertices, closed the same way
    kept = rest["faces"][~rest["cap"][rest["faces"]].any(1)]
    hand_ring = boundary_loop(kept)
    Vd = np.vstack([rest["vertices"], rest["vertices"][hand_ring].mean(0)])
    fan = np.stack([np.full(len(hand_ring), len(rest["vertices"])), np.roll(hand_ring, -1), hand_ring], axis=1)
    assert vol > 0 and vol == pytest.approx(_signed_volume(Vd, np.vstack([kept, fan])), rel=0.05)


def test_quality_is_measured_and_clean(open778):
    q = open778.quality
    assert q["flipped_faces"] == 0 and q["poses"]["collapsed_faces"] == 0
    assert q["poses"]["n_poses"] == 1520
    assert 0 < q["surface_mean_mm"] < 0.3 and q["surface_max_mm"] < 3.0
    assert q["mapped_surface"]["to_dense"]["max_mm"] >= q["mapped_surface"]["to_dense"]["mean_mm"]
    assert q["poses"]["joints_mean_mm"] < 0.5
    assert len(open778.per_pose["flipped"]) == 1520


def test_flip_measure_detects_bad_meshes(open778, prepared):
    """The flip/collapse counter is not a constant: inverted or scrambled meshes are caught."""
    m = open778
    idx = np.arange(0, 1520, 40)  # 38 poses
    from datagen.mapping.surface import dense_posed_arrays, map_posed

    class Sub:  # the prepared poses restricted to idx
        asset = prepared.asset
        base_vertices = prepared.base_vertices[idx]
        keypoints = prepared.keypoints[idx]

    pos, nrm = dense_posed_arrays(Sub)
    X, N = map_posed(m.matrix, pos[1:], nrm[1:])

    q, _ = measure_poses(Sub, m.matrix, m.faces, m.joint_regressor, (X, N))
    assert q["flipped_faces"] == 0
    q, _ = measure_poses(Sub, m.matrix, m.faces[:, ::-1], m.joint_regressor, (X, N))
    assert q["flipped_faces"] == len(m.faces)
    rng = np.random.default_rng(0)
    perm = rng.permutation(778)
    q, _ = measure_poses(Sub, m.matrix, perm[m.faces], m.joint_regressor, (X, N))
    assert q["flipped_faces"] > 300


def test_no_face_turns_over_in_the_fist(open778, prepared, rest):
    """Independent check on the all-fingers-bent pose (31) with plain numpy."""
    D = prepared.asset.dense_matrix
    dense = D @ prepared.base_vertices[31].astype(np.float64)
    V = open778.apply(dense)
    F = open778.faces
    fn = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
    # dense vertex normals (area-weighted) at the corners
    Fd = rest["faces"]
    fd = np.cross(dense[Fd[:, 1]] - dense[Fd[:, 0]], dense[Fd[:, 2]] - dense[Fd[:, 0]])
    vn = np.zeros_like(dense)
    for k in range(3):
        np.add.at(vn, Fd[:, k], fd)
    vn /= np.linalg.norm(vn, axis=1, keepdims=True)
    vn_m = vn[open778.matrix.indices]
    ref = vn_m[F].sum(1)
    assert (np.einsum("ij,ij->i", fn, ref) > 0).all()


def test_apply_batches_and_dtype(open778, prepared):
    a = prepared.asset
    dense = np.stack([prepared.dense_vertices(i) for i in (0, 31, 700)])
    out = open778.apply(dense)
    assert out.shape == (3, 778, 3) and out.dtype == np.float64
    for k in range(3):
        np.testing.assert_allclose(out[k], open778.matrix @ dense[k])
    out32 = open778.apply(dense.astype(np.float32))
    assert out32.dtype == np.float32
    assert open778.apply(dense[0]).shape == (778, 3)
    # the composed matrix (778 x base) gives the same meshes straight from the base vertices
    MD = open778.matrix @ a.dense_matrix
    np.testing.assert_allclose(MD @ prepared.base_vertices[31].astype(np.float64), out[1], atol=1e-9)
    with pytest.raises(ValueError):
        open778.apply(np.zeros((10, 3)))


def test_joint_regressor_generalises_to_held_out_poses(open778, prepared, rest):
    R = open778.joint_regressor
    assert R.shape == (21, 778)
    np.testing.assert_allclose(R.sum(1), 1.0, atol=1e-9)
    MD = (open778.matrix @ prepared.asset.dense_matrix).tocsr()
    base = prepared.base_vertices.astype(np.float64)
    mapped = (MD @ base.transpose(1, 0, 2).reshape(base.shape[1], -1)).reshape(778, -1, 3).transpose(1, 0, 2)
    err = np.linalg.norm(open778.joints(mapped) - prepared.keypoints, axis=-1) * 1e3
    assert err.mean() < 0.5 and err.max() < 2.0
    # fitted on half the poses, it still holds on the other half
    Vrest = open778.apply(rest["vertices"])
    R_half, _ = fit_joint_regressor(mapped[::2], prepared.keypoints[::2], Vrest, rest["keypoints"],
                                    k=REGRESSOR_SUPPORT, signed_above_mm=SIGNED_ROWS_ABOVE_MM)
    held = np.linalg.norm(apply_joint_regressor(R_half, mapped[1::2]) - prepared.keypoints[1::2], axis=-1) * 1e3
    assert held.mean() < 0.6 and held.max() < 3.0


def test_cache_roundtrip_and_cli(open778, prepared, cache_dir, capsys):
    again = build_mapping(prepared, cache_dir=cache_dir)  # from the cache file
    assert again.key == open778.key
    assert (again.matrix != open778.matrix).nnz == 0 and np.array_equal(again.faces, open778.faces)
    files = list((cache_dir / "mapping").glob(f"open778_{open778.key}.npz"))
    assert len(files) == 1
    loaded = Mapping.load(files[0])
    assert loaded.quality == open778.quality and loaded.source == open778.source
    assert main(["--report", "--cache-dir", str(cache_dir)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert LAST_LINE.match(out[-1]) and out[-1].startswith("topology=open778 ")
    assert out[-1] == format_report(open778).splitlines()[-1]
    assert any("faces that flip" in line for line in out)


def test_bad_arguments(prepared, cache_dir):
    with pytest.raises(ValueError, match="mano_path"):
        build_mapping(prepared, topology="mano", cache_dir=cache_dir)
    with pytest.raises(ValueError, match="topology"):
        build_mapping(prepared, topology="smplx", cache_dir=cache_dir)
