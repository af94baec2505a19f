"""train.metrics and train.geometry.recover_root against hand-computed values."""
import numpy as np
import pytest

from datagen.geometry.projection import project
from train.geometry import recover_root, rot_z
from datagen.geometry.alignment import similarity_align
from train.metrics import accel_error, auc, f_score, mpjpe, pa_errors, pck, root_aligned, summarise


def _rot(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def test_mpjpe_hand_computed():
    gt = np.zeros((1, 2, 3))
    pred = np.array([[[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]])  # distances 5 and 1
    assert mpjpe(pred, gt)[0] == pytest.approx(3.0)
    # root alignment removes a common offset only
    pred2 = np.array([[[1.0, 1, 1], [1.0, 1, 3]]])
    assert mpjpe(root_aligned(pred2), root_aligned(gt))[0] == pytest.approx(1.0)  # (0 + 2) / 2


def test_procrustes_removes_similarity_exactly():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(21, 3))
    pred = 1.7 * gt @ _rot([1, 2, 3], 0.8).T + np.array([0.3, -2.0, 5.0])
    np.testing.assert_allclose(similarity_align(pred, gt), gt, atol=1e-10)
    assert pa_errors(pred, gt).max() < 1e-10


def test_procrustes_hand_computed_residual():
    # square vs. the same square with one corner pushed out: the best similarity is not exact
    gt = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    pred = gt.copy()
    pred[2] = [1.0, 1.0, 1.0]
    err = pa_errors(pred, gt)
    assert 0 < err.mean() < 0.25
    # the aligned prediction is no worse than the unaligned one
    assert err.mean() <= np.linalg.norm(pred - gt, axis=1).mean()


def test_reflection_is_excluded_unless_allowed():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(10, 3))
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    assert pa_errors(mirrored, gt, allow_reflection=True).max() < 1e-10
    assert pa_errors(mirrored, gt, allow_reflection=False).mean() > 0.1


def test_auc_and_pck_hand_computed():
    t = np.linspace(0, 50, 100)
    assert auc(np.zeros(10), 0, 50) == pytest.approx(1.0)
    assert auc(np.full(10, 100.0), 0, 50) == pytest.approx(0.0)
    # every error 25: PCK is 0 below 25 and 1 from 25.25 (grid step 50/99); by symmetry AUC = 1/2
    assert auc(np.full(7, 25.0), 0, 50) == pytest.approx(0.5)
    # half the errors 0, half beyond range -> 0.5
    assert auc(np.array([0.0, 0.0, 60.0, 60.0]), 0, 50) == pytest.approx(0.5)
    assert list(pck(np.array([1.0, 2.0, 3.0]), np.array([0.0, 2.0, 3.0]))) == [0.0, pytest.approx(2 / 3), 1.0]
    assert len(t) == 100


def test_f_score_hand_computed():
    gt = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]], float)
    pred = gt.copy()
    pred[3] = [3, 5, 0]  # one predicted point far away
    # precision 3/4 (3 of 4 pred points within 0.5 of gt); recall 3/4 -> F = 0.75
    assert f_score(pred, gt, 0.5) == pytest.approx(0.75)
    pred2 = np.vstack([gt, [[10, 10, 10]]])  # 5 predictions, 4 exact: precision 4/5, recall 1
    assert f_score(pred2, gt, 0.5) == pytest.approx(2 * 0.8 * 1.0 / 1.8)
    assert f_score(gt + 10, gt, 0.5) == 0.0


def test_acceleration_error_hand_computed():
    T = np.arange(5, dtype=float)
    lin = np.stack([np.stack([T, 2 * T, 0 * T], -1)], 1)  # (5, 1, 3) constant velocity
    assert accel_error(lin) == pytest.approx(0.0)
    quad = np.stack([np.stack([T**2, 0 * T, 0 * T], -1)], 1)  # second difference 2 per frame^2
    assert accel_error(quad) == pytest.approx(2.0)
    assert accel_error(quad, lin) == pytest.approx(2.0)
    assert accel_error(quad, quad) == pytest.approx(0.0)
    assert accel_error([quad, lin], [lin, lin]) == pytest.approx(1.0)  # mean over 3 + 3 frames


def test_summarise_units_and_perfect_prediction():
    rng = np.random.default_rng(2)
    gj, gv = rng.normal(size=(3, 21, 3)) * 0.05, rng.normal(size=(3, 50, 3)) * 0.05
    m = summarise(gj, gj, gv, gv, np.zeros((3, 21, 2)), np.zeros((3, 21, 2)))
    assert m["mpjpe_mm"] == pytest.approx(0) and m["pa_mpvpe_mm"] < 1e-6
    assert m["f_at_5mm"] == 1.0 and m["auc_2d_0_30px"] == 1.0
    # PA leaves ~1e-17 m residuals, so PCK at the 0 mm threshold is 0: one half-interval short of 1
    assert m["auc_3d_pa_0_50mm"] == pytest.approx(1 - 0.5 / 99)
    shifted = gj + np.array([0.0, 0.0, 0.003])  # 3 mm everywhere: root-aligned error 0
    assert summarise(shifted, gj, gv, gv, fscore=False)["mpjpe_mm"] == pytest.approx(0, abs=1e-9)
    bent = gj.copy()
    bent[:, 5] += np.array([0.0, 0.021, 0.0])  # one joint 21 mm off: MPJPE = 21 / 21 = 1 mm
    assert summarise(bent, gj, gv, gv, fscore=False)["mpjpe_mm"] == pytest.approx(1.0)


@pytest.mark.parametrize("angle", [0.0, 0.7])
def test_root_recovery_exact(angle):
    rng = np.random.default_rng(3)
    rel = rng.normal(size=(21, 3)) * 0.04
    rel -= rel[0]
    T = np.array([0.03, -0.02, 0.4])
    K = np.array([[373.35, 0, 128.0], [0, 373.35, 128.0], [0, 0, 1]])
    # crop intrinsics with a rotation: a general (non upper-triangular) K
    A = np.array([[0.5, 0, -20], [0, 0.5, -10], [0, 0, 1]]) @ rot_z(angle)
    Kc = A @ K
    uv = project(rel + T, Kc)
    np.testing.assert_allclose(recover_root(uv, Kc, rel), T, atol=1e-9)
    # batched, and robust to 2D noise (0.5 px -> a few mm)
    noisy = uv + rng.normal(size=uv.shape) * 0.5
    got = recover_root(np.stack([uv, noisy]), np.stack([Kc, Kc]), np.stack([rel, rel]))
    np.testing.assert_allclose(got[0], T, atol=1e-9)
    assert np.linalg.norm(got[1] - T) < 0.02


def test_weak_perspective_fallback_root_is_close():
    from train.predict import weak_perspective_root

    rng = np.random.default_rng(4)
    rel = rng.normal(size=(21, 3)) * 0.03
    rel -= rel[0]
    T = np.array([0.02, -0.01, 0.5])
    K = np.array([[400.0, 0, 64], [0, 400, 64], [0, 0, 1]])
    got = weak_perspective_root(project(rel + T, K), K, rel)
    assert np.linalg.norm(got - T) < 0.02 and got[2] > 0
