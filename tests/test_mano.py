"""MANO without chumpy (datagen/mano.py): restricted loading, the smplx layer, registration.

The real MANO_RIGHT.pkl is never used or committed.  The tests write MANO-format stand-ins:
small synthetic ones for the loader, and one made from our own open778 hand (posed, reshaped
and moved away) that registration must bring back.
"""

from __future__ import annotations

import hashlib
import pickle
import pickletools
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from datagen.mapping import mano as mano
from datagen.mapping.dense_to_778 import build_mapping
from datagen.mapping.surface import rest_geometry
from support.toy_data import synthetic_mano_arrays as _synthetic_arrays


def _globals(data: bytes) -> set[str]:
    return {arg for op, arg, _ in pickletools.genops(data) if op.name in ("GLOBAL", "STACK_GLOBAL")}


def test_loader_reads_the_mano_pickle_structure(tmp_path):
    arrays = _synthetic_arrays()
    path = tmp_path / "MANO_RIGHT.pkl"
    mano.write_standin(path, arrays)
    data = path.read_bytes()
    # the file looks like the real one: chumpy and old-scipy globals, Python-2 strings
    assert {"chumpy.ch Ch", "scipy.sparse.csc csc_matrix", "numpy.core.multiarray _reconstruct"} <= _globals(data)
    assert any(op.name == "SHORT_BINSTRING" for op, _, _ in pickletools.genops(data))
    assert "chumpy" not in sys.modules and "chumpy.ch" not in sys.modules  # fake modules removed
    with pytest.raises(ModuleNotFoundError), warnings.catch_warnings():  # a plain unpickler needs chumpy
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy.sparse.csc, imported on the way
        pickle.loads(data, encoding="latin1")

    m = mano.load_mano(path)
    assert "chumpy" not in sys.modules
    np.testing.assert_array_equal(m.v_template, arrays["v_template"])
    np.testing.assert_array_equal(m.faces, arrays["f"].astype(np.int64))
    np.testing.assert_array_equal(m.shapedirs, arrays["shapedirs"])  # came from a chumpy object
    np.testing.assert_array_equal(m.posedirs, arrays["posedirs"])
    assert sp.issparse(m.J_regressor) and (m.J_regressor != arrays["J_regressor"]).nnz == 0
    assert m.extra == {"bs_style": "lbs", "bs_type": "lrotmin"}
    assert m.sha256 == hashlib.sha256(data).hexdigest()


def _refused(tmp_path, payload: bytes, name: str):
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    with pytest.raises(mano.UnsafePickleError, match=name.replace(".", r"\.")):
        mano.load_mano(path)


def test_malicious_pickles_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    # protocol 0: os.system("touch marker")
    _refused(tmp_path, b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.", "os.system")
    # hidden inside a MANO-looking dict, after real arrays
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    import io

    good = {"v_template": np.zeros((778, 3)), "f": np.zeros((1538, 3), np.uint32), "J_regressor": Evil()}
    buf = io.BytesIO()
    mano._Py2Pickler(buf, protocol=2).dump(good)  # Python-2 style, like the real file
    _refused(tmp_path, buf.getvalue(), "posix.system" if sys.platform != "win32" else "nt.system")
    _refused(tmp_path, pickle.dumps({"x": eval}, protocol=4), "builtins.eval")
    _refused(tmp_path, b"c__builtin__\neval\n(S'1'\ntR.", "__builtin__.eval")
    # chumpy expressions (not plain arrays) and numpy object arrays are refused too
    _refused(tmp_path, b"\x80\x02cchumpy.ch_ops\nadd\n)\x81.", "chumpy.ch_ops.add")
    with pytest.raises(mano.UnsafePickleError, match="object dtype"):
        mano.restricted_load(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2))
    assert not marker.exists()


def test_python3_resaved_file_loads(tmp_path):
    """A MANO file converted to plain arrays and re-saved by Python 3 (protocol 2 or 4)."""
    arrays = _synthetic_arrays()
    for proto in (2, 4):
        path = tmp_path / f"p{proto}.pkl"
        path.write_bytes(pickle.dumps(arrays, protocol=proto))
        m = mano.load_mano(path)
        np.testing.assert_array_equal(m.v_template, arrays["v_template"])
        assert (m.J_regressor != arrays["J_regressor"]).nnz == 0


def test_loader_validates_keys_and_shapes(tmp_path):
    arrays = _synthetic_arrays()
    arrays.pop("hands_mean")
    mano.write_standin(tmp_path / "a.pkl", arrays)
    with pytest.raises(ValueError, match="hands_mean"):
        mano.load_mano(tmp_path / "a.pkl")
    arrays = _synthetic_arrays()
    arrays["weights"] = arrays["weights"][:, :15]
    mano.write_standin(tmp_path / "b.pkl", arrays)
    with pytest.raises(ValueError, match="weights"):
        mano.load_mano(tmp_path / "b.pkl")


def test_smplx_layer_and_regressor21(tmp_path):
    import torch

    arrays = _synthetic_arrays()
    mano.write_standin(tmp_path / "m.pkl", arrays)
    m = mano.load_mano(tmp_path / "m.pkl")
    layer = mano.mano_layer(m)
    z = torch.zeros
    out = layer(betas=z(1, 10, dtype=torch.float64), global_orient=z(1, 3, dtype=torch.float64),
                hand_pose=z(1, 45, dtype=torch.float64), transl=z(1, 3, dtype=torch.float64))
    np.testing.assert_allclose(out.vertices[0].numpy(), m.v_template, atol=1e-12)
    beta = torch.zeros(1, 10, dtype=torch.float64)
    beta[0, 3] = 1.0
    out = layer(betas=beta, global_orient=z(1, 3, dtype=torch.float64), hand_pose=z(1, 45, dtype=torch.float64),
                transl=z(1, 3, dtype=torch.float64))
    np.testing.assert_allclose(out.vertices[0].numpy(), m.v_template + m.shapedirs[:, :, 3], atol=1e-6)  # smplx keeps shapedirs in float32
    R = mano.mano_regressor21(m)
    assert R.shape == (21, 778)
    np.testing.assert_allclose(R[0], m.J_regressor.toarray()[0])
    np.testing.assert_allclose(R[5], m.J_regressor.toarray()[1])  # index MCP = MANO joint 1
    np.testing.assert_allclose(R[1], m.J_regressor.toarray()[13])  # thumb CMC = MANO joint 13
    for row, v in zip((4, 8, 12, 16, 20), (745, 317, 444, 556, 673)):
        assert R[row, v] == 1.0 and R[row].sum() == 1.0


# ---- registration of a stand-in made from our own hand ----------------------------------------
@pytest.fixture(scope="session")
def standin(prepared, cache_dir, tmp_path_factory):
    m = build_mapping(prepared, cache_dir=cache_dir)  # open778 (cached by test_mapping if it ran)
    rest = rest_geometry(prepared)
    arrays = mano.standin_arrays(m.apply(rest["vertices"]), m.faces, rest["keypoints"],
                                 prepared.asset.dense_part[m.matrix.indices])
    path = tmp_path_factory.mktemp("mano") / "MANO_RIGHT.pkl"
    mano.write_standin(path, arrays)
    return path, arrays


@pytest.fixture(scope="session")
def mano_mapping(prepared, cache_dir, standin):
    return build_mapping(prepared, topology="mano", mano_path=standin[0], cache_dir=cache_dir)


def test_standin_is_far_from_our_hand_before_registration(standin, prepared):
    _, arrays = standin
    rest = rest_geometry(prepared)
    from datagen.mapping.surface import surface_distances

    d = surface_distances(arrays["v_template"], arrays["f"].astype(np.int64), rest["vertices"], rest["faces"])
    assert d["mean_mm"] > 20  # moved, rotated, scaled, posed and reshaped


def test_registration_recovers_the_standin(mano_mapping, standin):
    q = mano_mapping.quality
    reg = q["registration"]
    assert reg["to_dense"]["mean_mm"] < 0.5 and reg["from_dense"]["mean_mm"] < 0.5
    assert reg["to_dense"]["max_mm"] < 3.0
    assert q["registration_params"]["scale"] == pytest.approx(1 / 0.93, rel=0.02)
    assert q["surface_mean_mm"] == pytest.approx(0.5 * (reg["to_dense"]["mean_mm"] + reg["from_dense"]["mean_mm"]))
    assert mano_mapping.source["mano_sha256"] == hashlib.sha256(standin[0].read_bytes()).hexdigest()


def test_mano_mapping_matrix_faces_and_joints(mano_mapping, standin, prepared):
    m = mano_mapping
    M = m.matrix
    assert m.topology == "mano" and M.shape == (778, prepared.asset.n_dense)
    np.testing.assert_allclose(np.asarray(M.sum(1)).ravel(), 1.0, atol=1e-9)
    assert M.data.min() >= 0 and np.diff(M.indptr).max() <= 3
    assert np.array_equal(m.faces, standin[1]["f"].astype(np.int64))  # MANO's connectivity is kept
    loaded = mano.load_mano(standin[0])
    np.testing.assert_array_equal(m.joint_regressor, mano.mano_regressor21(loaded))
    q = m.quality
    assert q["flipped_faces"] == 0 and q["poses"]["collapsed_faces"] == 0
    # MANO-way joints vs rig keypoints: reported per joint, and in a plausible range
    assert set(q["poses"]["joints_per_joint_mean_mm"]) >= {"wrist", "thumb_tip", "little_tip"}
    assert 0 < q["poses"]["joints_mean_mm"] < 5.0
