"""Run MediaPipe Hands on a list of images; write 21 landmarks per image in our pixel convention.

Runs ONLY inside the MediaPipe venv (`.venv-mediapipe/`, created by
benchmarks/realism_bench.py on first use: Python 3.11 + mediapipe==0.10.14, whose legacy
`mp.solutions.hands` ships its models inside the wheel, so nothing is downloaded). The project's
own venv cannot import mediapipe (its OpenCV build and protobuf<5 pin clash with ours), which is
why the benchmark calls this script as a subprocess:

    .venv-mediapipe/bin/python benchmarks/mediapipe_detect.py --list images.txt --out det.json

`--list` names a text file with one image path per line.  Every image is read as RGB (the
renders are 256x256 8-bit RGB PNGs; MediaPipe expects RGB, OpenCV reads BGR, so we convert).
Detector settings: static_image_mode=True, max_num_hands=1, min_detection_confidence=0.5 (the
default).

Output: a JSON file {"mediapipe_version", "settings", "results": [...]} and, while running,
one stdout line per image ``@@mp {...}`` holding the same per-image record (the benchmark
reads these for its progress bar).  Per image:

- `image`: the path as listed;  `width`, `height`;  `detected`: bool;
- `keypoints_2d`: 21 x [u, v] in OUR convention (docs/ARCHITECTURE.md): continuous pixel
  coordinates, pixel (row i, col j) covers [j, j+1) x [i, i+1), its centre is (j+0.5, i+0.5).
  MediaPipe's landmarks are normalised by the image size with 0 at the left/top image EDGE and
  1 at the right/bottom edge, so u = x * width, v = y * height - no half-pixel shift (that
  shift, -0.5, would only be needed for a pixel-index convention with centres at integers).
  Order: MediaPipe's 21 landmarks, which is FreiHAND's order (0 wrist, 1-4 thumb, ... 17-20 little);
- `landmarks_norm`: MediaPipe's raw 21 x [x, y, z] (z: relative depth, wrist = 0);
- `handedness`: MediaPipe's label ("Left"/"Right") as returned.  MediaPipe assumes a mirrored
  (selfie) image: on an unmirrored image of a right hand the correct answer is "Left"; the
  benchmark swaps it (`handedness_unmirrored`);
- `score`: the handedness classification score (the legacy API exposes no other per-hand
  confidence; a hand is only reported when palm detection passed min_detection_confidence).

Only the standard library is imported at module level, so the project's tests can import
`normalized_to_pixels` without MediaPipe.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

PROTOCOL_PREFIX = "@@mp "
MP_VERSION_REQUIRED = "0.10.14"
SETTINGS = {"static_image_mode": True, "max_num_hands": 1, "min_detection_confidence": 0.5,
            "model_complexity": 1}


def normalized_to_pixels(landmarks, width: int, height: int) -> list[list[float]]:
    """MediaPipe normalised landmarks [(x, y[, z]), ...] -> [[u, v], ...] in our pixel convention.

    MediaPipe: x in [0, 1] spans the image from its left edge to its right edge (y: top to
    bottom).  Ours: continuous pixel coordinates, pixel centres at +0.5, image edges at 0 and W.
    The two agree up to the scale: u = x * W, v = y * H.
    """
    out = []
    for lm in landmarks:
        x, y = float(lm[0]), float(lm[1])
        out.append([x * width, y * height])
    return out


def swap_handedness(label: str | None) -> str | None:
    """MediaPipe's label is for the mirrored image; the unmirrored image's hand is the other one."""
    return {"Left": "Right", "Right": "Left"}.get(label, label) if label is not None else None


def read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise SystemExit(f"mediapipe_detect: cannot read image list {path}: {exc.strerror}") from None
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


def detect_one(hands, cv2, path: str) -> dict:
    img = cv2.imread(path, cv2.IMREAD_COLOR)  # BGR, alpha dropped, grey expanded
    if img is None:
        raise SystemExit(f"mediapipe_detect: cannot read image {path} (missing or not an image)")
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    res = hands.process(rgb)
    rec = {"image": path, "width": int(w), "height": int(h), "detected": False,
           "keypoints_2d": None, "landmarks_norm": None, "handedness": None,
           "handedness_unmirrored": None, "score": None}
    if res.multi_hand_landmarks:
        lms = res.multi_hand_landmarks[0].landmark
        norm = [[lm.x, lm.y, lm.z] for lm in lms]
        cls = res.multi_handedness[0].classification[0] if res.multi_handedness else None
        rec.update(detected=True, landmarks_norm=norm, keypoints_2d=normalized_to_pixels(norm, w, h),
                   handedness=cls.label if cls else None,
                   handedness_unmirrored=swap_handedness(cls.label) if cls else None,
                   score=float(cls.score) if cls else None)
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", required=True, type=Path, help="text file: one image path per line")
    ap.add_argument("--out", required=True, type=Path, help="JSON file to write")
    args = ap.parse_args(argv)

    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import cv2
        import mediapipe as mp
    except ImportError as exc:
        raise SystemExit(f"mediapipe_detect: {exc} - run this script with the MediaPipe venv's python "
                         f"(.venv-mediapipe/bin/python), not {sys.executable}") from None
    if mp.__version__ != MP_VERSION_REQUIRED:
        raise SystemExit(f"mediapipe_detect: mediapipe {mp.__version__} found in {sys.prefix}; "
                         f"{MP_VERSION_REQUIRED} is required (later versions download their models at run time)")

    paths = read_list(args.list)
    results = []
    with mp.solutions.hands.Hands(**SETTINGS) as hands:
        for p in paths:
            rec = detect_one(hands, cv2, p)
            results.append(rec)
            sys.stdout.write(PROTOCOL_PREFIX + json.dumps(rec) + "\n")
            sys.stdout.flush()
    doc = {"mediapipe_version": mp.__version__, "settings": SETTINGS, "results": results}
    tmp = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
