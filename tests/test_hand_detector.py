"""train.predict --detect: hand boxes from MediaPipe Hands (run in its own venv), here with a
stand-in detector that answers in the runner's output format, so the plumbing is tested
without MediaPipe; a real MediaPipe run is checked where .venv-mediapipe exists."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from train.hand_detector import Detection, DetectorUnavailable, detect_boxes, detect_hands, landmark_box

REPO = Path(__file__).resolve().parent.parent


def fake_venv(root: Path, answers: dict[str, list | dict | None]) -> Path:
    """A venv whose `python` ignores the runner script and writes `answers` (image name -> 21x2, or
    {"kp": 21x2, "hand": "Left"|"Right"} with the unmirrored handedness, or None)."""
    py = root / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.write_text(f"#!{sys.executable}\n" + f"""
import json, sys
from pathlib import Path
args = sys.argv[2:]
images = Path(args[args.index("--list") + 1]).read_text().split()
answers = json.loads({json.dumps(json.dumps(answers))})
results = []
for im in images:
    a = answers.get(Path(im).name)  # 21x2 landmarks, or {{"kp": ..., "hand": "Left"|"Right" (unmirrored)}}
    kp, hand = (a["kp"], a["hand"]) if isinstance(a, dict) else (a, None)
    results.append({{"image": im, "detected": kp is not None, "keypoints_2d": kp, "handedness_unmirrored": hand}})
Path(args[args.index("--out") + 1]).write_text(json.dumps({{"results": results}}))
""")
    py.chmod(py.stat().st_mode | stat.S_IEXEC)
    return root


def hand_landmarks(x0, y0, x1, y1) -> list:
    rng = np.random.default_rng(0)
    kp = np.column_stack([rng.uniform(x0, x1, 21), rng.uniform(y0, y1, 21)])
    kp[0], kp[1] = (x0, y0), (x1, y1)
    return kp.tolist()


def test_landmark_box_is_the_tight_box():
    assert landmark_box(hand_landmarks(10, 20, 50, 90)) == [10.0, 20.0, 50.0, 90.0]
    with pytest.raises(ValueError, match="21"):
        landmark_box([[0, 0]] * 5)


def test_missing_detector_says_how_to_set_it_up(tmp_path):
    with pytest.raises(DetectorUnavailable, match="mediapipe==0.10.14"):
        detect_boxes([tmp_path / "a.png"], venv=tmp_path / "none")


def test_boxes_per_image_from_the_detector(tmp_path):
    venv = fake_venv(tmp_path / "v", {"a.png": hand_landmarks(5, 6, 40, 60), "b.png": None})
    got = detect_boxes([tmp_path / "a.png", tmp_path / "b.png"], venv=venv)
    assert got == {str(tmp_path / "a.png"): [5.0, 6.0, 40.0, 60.0], str(tmp_path / "b.png"): None}


def test_predict_detect_crops_each_image_at_its_detected_hand(tiny_ds, tmp_path, monkeypatch, capsys):
    from train.cli import main as train_main
    from train.predict import main as predict_main

    run = tmp_path / "run"
    assert train_main(["--data", str(tiny_ds), "--out", str(run), "--encoder", "ghoststack", "--batch-size", "2",
                       "--workers", "0", "--split-fractions", "0.7", "0.3", "0", "--samples-per-epoch", "2",
                       "--max-steps", "1", "--val-every", "0", "--threads", "1", "--no-progress"]) == 0
    imgs = []
    for name in ("corner.png", "empty.png"):
        imgs.append(tmp_path / name)
        cv2.imwrite(str(imgs[-1]), np.full((240, 320, 3), 90, np.uint8))
    monkeypatch.setenv("HANDSYNTH_MEDIAPIPE_VENV", str(fake_venv(tmp_path / "v", {
        "corner.png": hand_landmarks(220, 140, 300, 230), "empty.png": None})))
    out = tmp_path / "pred"
    status = predict_main([*map(str, imgs), "--checkpoint", str(run / "model.pt"), "--out", str(out), "--detect"])
    err = capsys.readouterr().err
    assert status == 1 and "empty.png: MediaPipe Hands finds no hand" in err
    meta = json.loads((out / "corner.json").read_text())
    assert meta["box"] == [220.0, 140.0, 300.0, 230.0] and meta["box_source"] == "detect"
    assert not (out / "empty.json").exists()
    assert predict_main([str(imgs[0]), "--checkpoint", str(run / "model.pt"), "--detect", "--box", "0", "0", "9",
                         "9"]) == 2
    assert "give one" in capsys.readouterr().err
    # --hand auto: each image's hand from the detector's handedness (a left one is flipped, predicted, flipped back)
    for name in ("left.png", "right.png"):
        cv2.imwrite(str(tmp_path / name), np.full((240, 320, 3), 90, np.uint8))
    monkeypatch.setenv("HANDSYNTH_MEDIAPIPE_VENV", str(fake_venv(tmp_path / "v2", {
        "left.png": {"kp": hand_landmarks(20, 30, 120, 150), "hand": "Left"},
        "right.png": {"kp": hand_landmarks(20, 30, 120, 150), "hand": "Right"}})))
    assert predict_main([str(tmp_path / "left.png"), str(tmp_path / "right.png"), "--checkpoint", str(run / "model.pt"),
                         "--out", str(out), "--detect", "--hand", "auto"]) == 0
    left, right = (json.loads((out / f"{n}.json").read_text()) for n in ("left", "right"))
    assert (left["hand"], left["flipped"], left["hand_source"]) == ("left", True, "detect")
    assert (right["hand"], right["flipped"]) == ("right", False)
    assert predict_main([str(tmp_path / "left.png"), "--checkpoint", str(run / "model.pt"), "--hand", "auto"]) == 2
    assert "--detect" in capsys.readouterr().err


def test_detections_carry_the_unmirrored_handedness(tmp_path):
    venv = fake_venv(tmp_path / "v", {"a.png": {"kp": hand_landmarks(5, 6, 40, 60), "hand": "Left"},
                                      "b.png": hand_landmarks(1, 2, 30, 40), "c.png": None})
    got = detect_hands([tmp_path / n for n in ("a.png", "b.png", "c.png")], venv=venv)
    assert got[str(tmp_path / "a.png")] == Detection([5.0, 6.0, 40.0, 60.0], "left")
    assert got[str(tmp_path / "b.png")].handedness is None and got[str(tmp_path / "c.png")] is None


@pytest.mark.skipif(not (REPO / ".venv-mediapipe" / "bin" / "python").exists(),
                    reason="no .venv-mediapipe (created by benchmarks/realism_bench.py)")
def test_real_mediapipe_finds_no_hand_in_a_flat_image(tmp_path):
    img = tmp_path / "flat.png"
    cv2.imwrite(str(img), np.full((256, 256, 3), 128, np.uint8))
    assert detect_boxes([img], venv=REPO / ".venv-mediapipe") == {str(img): None}
