"""The pure parts of the realism benchmark (benchmarks/realism_bench.py): PCK, grouping, sampling,
and MediaPipe's pixel convention (benchmarks/mediapipe_detect.py).  No MediaPipe, no rendering."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


rb = _load("realism_bench")
md = _load("mediapipe_detect")


def _hand_box(size: float = 100.0) -> np.ndarray:
    """21 keypoints spanning a 100 x 40 px box at (50, 60)."""
    gt = np.zeros((21, 2))
    gt[:, 0] = np.linspace(50, 50 + size, 21)
    gt[:, 1] = np.linspace(60, 100, 21)
    return gt


def test_keypoint_box_size_is_the_larger_side():
    assert rb.keypoint_box_size(_hand_box()) == pytest.approx(100.0)
    gt = _hand_box()[:, ::-1]  # 40 wide, 100 high
    assert rb.keypoint_box_size(gt) == pytest.approx(100.0)


def test_pck_threshold_and_visibility():
    gt = _hand_box()  # threshold = 0.1 * 100 = 10 px
    pred = gt.copy()
    pred[0] += [10.0, 0.0]     # exactly on the threshold: correct
    pred[1] += [6.0, 8.1]      # 10.06 px: wrong
    pred[2] += [50.0, 0.0]     # far off but not visible: not counted
    vis = np.ones(21, bool)
    vis[2] = False
    correct, err, thr = rb.pck_correct(pred, gt, vis)
    assert thr == pytest.approx(10.0)
    assert err[0] == pytest.approx(10.0) and err[1] == pytest.approx(np.hypot(6, 8.1))
    assert correct[0] and not correct[1] and not correct[2]
    assert correct.sum() == 19  # 21 - wrong - invisible


def test_pck_rejects_mismatched_shapes():
    with pytest.raises(rb.BenchError):
        rb.pck_correct(np.zeros((20, 2)), np.zeros((21, 2)), np.ones(21, bool))


def _rec(detected, n_vis, n_ok, **kw):
    vis = [i < n_vis for i in range(21)]
    correct = [i < n_ok for i in range(21)] if detected else None
    return dict(detected=detected, visible=vis, correct=correct, **kw)


def test_summarize_pools_visible_keypoints_of_detections():
    recs = [_rec(True, 10, 5), _rec(True, 20, 20), _rec(False, 10, 0)]
    s = rb.summarize(recs)
    assert s["items"] == 3 and s["detected"] == 2
    assert s["detect_rate"] == pytest.approx(2 / 3)
    assert s["kps"] == 30 and s["pck01"] == pytest.approx(25 / 30)
    assert s["kps_all"] == 40 and s["pck01_all"] == pytest.approx(25 / 40)
    empty = rb.summarize([_rec(False, 5, 0)])
    assert empty["detect_rate"] == 0 and empty["pck01"] is None


def test_group_by_keeps_order_and_skips_empty_groups():
    recs = [_rec(True, 10, 10, side="back"), _rec(False, 10, 0, side="palm"), _rec(True, 10, 0, side="palm")]
    g = rb.group_by(recs, "side", rb.SIDES)
    assert list(g) == ["palm", "back"]
    assert g["palm"]["detect_rate"] == pytest.approx(0.5) and g["palm"]["pck01"] == 0
    assert g["back"]["pck01"] == 1


def test_latitude_ring_from_view_id():
    assert [rb.latitude_ring(v, 36) for v in (0, 35, 36, 71, 180, 215)] == [0, 0, 1, 1, 5, 5]


def _look_from(direction) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV camera at 0.34 m from the wrist along `direction` (hand frame), looking at the wrist."""
    c = 0.34 * np.asarray(direction, float) / np.linalg.norm(direction)
    z = -c / np.linalg.norm(c)
    up = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return R, -R @ c


def test_view_side_from_camera_direction():
    cases = {(0, 0, 1): ("palm", 1.0), (0, 0, -1): ("back", -1.0), (1, 0, 0): ("side", 0.0),
             (0, 1, 1): ("palm", np.sqrt(0.5)), (0, -1, -1): ("back", -np.sqrt(0.5)),
             (0, np.sqrt(3), 1): ("side", 0.5)}  # cos exactly 0.5: side
    for d, (side, cos) in cases.items():
        R, t = _look_from(d)
        assert np.allclose(R @ (-R.T @ t) + t, 0)  # camera centre maps to the camera origin
        c = rb.camera_palm_cos(R, t)
        assert c == pytest.approx(cos, abs=1e-9), d
        assert rb.view_side(round(c, 12)) == side, d


def test_size_bands():
    assert [rb.size_band(f) for f in (0.0, 0.39, 0.4, 0.59, 0.6, 1.2)] == \
        ["small", "small", "medium", "medium", "large", "large"]
    with pytest.raises(rb.BenchError):
        rb.size_band(float("nan"))


def test_tone_bands():
    assert [rb.tone_band(m) for m in (0.0, 0.33, 1 / 3, 0.5, 0.66, 2 / 3, 1.0)] == \
        ["light", "light", "medium", "medium", "medium", "dark", "dark"]
    with pytest.raises(rb.BenchError):
        rb.tone_band(1.2)


def test_sample_is_seeded_distinct_and_spread():
    a = rb.sample_items(1520, 216, 240, seed=0)
    assert a == rb.sample_items(1520, 216, 240, seed=0)
    assert a != rb.sample_items(1520, 216, 240, seed=1)
    assert len(set(a)) == 240
    views = np.bincount([v for _, v in a], minlength=216)
    assert views.min() == 1 and views.max() == 2  # every view once, 24 twice
    assert len({p for p, _ in a}) == 240  # distinct poses
    small = rb.sample_items(3, 2, 6, seed=5)  # the whole grid
    assert sorted(small) == [(p, v) for p in range(3) for v in range(2)]
    with pytest.raises(rb.BenchError):
        rb.sample_items(3, 2, 7, seed=0)


def test_mediapipe_normalised_to_our_pixels():
    # MediaPipe: 0 = left/top image edge, 1 = right/bottom edge; ours: edges at 0 and W, the
    # centre of pixel j at j + 0.5.  So the image centre, an edge and a pixel centre map as:
    lms = [(0.5, 0.5, 0.0), (0.0, 1.0, 0.1), (0.5 / 256, 10.5 / 128, -0.2)]
    px = md.normalized_to_pixels(lms, 256, 128)
    assert np.allclose(px, [[128.0, 64.0], [0.0, 128.0], [0.5, 10.5]])
    assert md.swap_handedness("Left") == "Right" and md.swap_handedness(None) is None


def test_grid_from_config_reads_toml(tmp_path):
    assert rb.grid_from_config(None) == (1520, 216, 36)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[poses]\ninterpolation_steps = 1\n[cameras]\nlongitudes = 12\n")
    assert rb.grid_from_config(cfg) == (32 + 496, 12 * 6, 12)
    bad = tmp_path / "bad.toml"
    bad.write_text("[poses\n")
    with pytest.raises(rb.BenchError, match="bad.toml"):
        rb.grid_from_config(bad)


def test_handedness_agreement_counts_detected_items_per_label():
    recs = [{"handedness": "left", "detected": True, "det_handedness": "Left"},
            {"handedness": "left", "detected": True, "det_handedness": "Right"},
            {"handedness": "left", "detected": False, "det_handedness": None},
            {"handedness": "right", "detected": True, "det_handedness": "Right"},
            {"handedness": None, "detected": True, "det_handedness": "Right"}]
    a = rb.handedness_agreement(recs)
    assert a == {"left": {"detected": 2, "agree": 1, "rate": 0.5}, "right": {"detected": 1, "agree": 1, "rate": 1.0}}
    assert rb.handedness_agreement([{"handedness": None, "detected": True, "det_handedness": "Left"}]) == {}


def test_occluder_agreement_pairs_visible_keypoints_by_distance_to_the_object(tmp_path, capsys):
    """benchmarks/occluder_agreement.py: keypoints visible in both runs of detected items with an
    object, binned by their distance to the nearest object pixel of the part mask."""
    import json

    import cv2

    oa = _load("occluder_agreement")
    renders = tmp_path / "renders"
    (renders / "items" / "00001").mkdir(parents=True)
    part = np.ones((64, 64), np.uint8)
    part[:, :8] = 3  # the object: the 8 leftmost columns
    cv2.imwrite(str(renders / "items" / "00001" / "v002.part_mask.png"), part)
    uv = [[10.5 + 2.5 * j, 30.5] for j in range(21)]  # in pixel columns 10 .. 60: 3 .. 53 px from column 7
    (renders / "items" / "00001" / "v002.json").write_text(json.dumps(
        {"keypoints_2d": uv, "occluders": {"objects": [{"kind": "box", "placement": "front"}]}}))
    vis = [True] * 20 + [False]
    on_item = {"pose_id": 1, "view_id": 2, "detected": True, "visible": vis, "correct": [j >= 3 for j in range(21)]}
    off_item = dict(on_item, correct=[True] * 21)
    missed = {"pose_id": 3, "view_id": 4, "detected": False, "visible": vis, "correct": None}
    on = {"sample": 2, "seed": 0, "render_dir": str(renders), "items": [on_item, missed]}
    off = {"sample": 2, "seed": 0, "items": [off_item, dict(missed)]}
    rows = oa.paired_keypoints(on, off)
    assert rows.shape == (20, 3)  # the invisible keypoint and the missed item are left out
    assert np.allclose(np.sort(rows[:, 0]), np.floor(10.5 + 2.5 * np.arange(20)) - 7)  # distances in px
    assert rows[rows[:, 0] < 10, 1].sum() == 0 and rows[:, 2].all()
    (tmp_path / "on.json").write_text(json.dumps(on))
    (tmp_path / "off.json").write_text(json.dumps(off))
    assert oa.main([str(tmp_path / "on.json"), str(tmp_path / "off.json")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == "occluder_pairs=20 pck_near=0.000 pck_near_without=1.000 pck_far=1.000 pck_far_without=1.000"
    off["seed"] = 1
    (tmp_path / "off.json").write_text(json.dumps(off))
    assert oa.main([str(tmp_path / "on.json"), str(tmp_path / "off.json")]) == 2  # not the same sample
