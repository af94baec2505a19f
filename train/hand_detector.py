"""Hand boxes from an off-the-shelf detector trained on real photos (MediaPipe Hands), for
`python -m train.predict --detect` when the hand is not centred in the image.

MediaPipe cannot share this venv (it brings its own OpenCV and pins protobuf<5), so it runs in
its own venv - `.venv-mediapipe/`, the one `benchmarks/realism_bench.py` creates on first use
(Python 3.11 + mediapipe==0.10.14, whose legacy `solutions.hands` ships its models inside the
wheel: nothing is downloaded at run time) - through the same runner script the benchmark uses,
`benchmarks/mediapipe_detect.py`, as a subprocess.  The box is the tight box of the 21
landmarks, in the image's own pixels - the same kind of box the training crops are built from
(`train.augment`: keypoint box squared and enlarged by augment.scale) - and with it the
detector's handedness, which `train.predict --hand auto` uses.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datagen.config import REPO_ROOT

log = logging.getLogger(__name__)

RUNNER = REPO_ROOT / "benchmarks" / "mediapipe_detect.py"
SETUP_HINT = ("MediaPipe Hands runs in its own venv: create it once with `.venv/bin/python benchmarks/realism_bench.py "
              "--sample 1` (or: python3.11 -m venv .venv-mediapipe && .venv-mediapipe/bin/pip install "
              "mediapipe==0.10.14)")


class DetectorUnavailable(RuntimeError):
    """The detector's venv or runner is missing or failed; the message says how to set it up."""


def landmark_box(keypoints_2d) -> list[float]:
    """[x0, y0, x1, y1] of 21 landmarks (pixels)."""
    kp = np.asarray(keypoints_2d, dtype=float)
    if kp.shape != (21, 2) or not np.all(np.isfinite(kp)):
        raise ValueError(f"expected 21 finite 2D landmarks, got shape {kp.shape}")
    return [float(kp[:, 0].min()), float(kp[:, 1].min()), float(kp[:, 0].max()), float(kp[:, 1].max())]


def default_venv() -> Path:
    """HANDSYNTH_MEDIAPIPE_VENV if set, else .venv-mediapipe/ at the repo root."""
    return Path(os.environ.get("HANDSYNTH_MEDIAPIPE_VENV") or REPO_ROOT / ".venv-mediapipe")


@dataclass(frozen=True)
class Detection:
    box: list[float]  # [x0, y0, x1, y1] of the 21 landmarks, pixels of the image as given
    handedness: str | None  # "left" / "right" as seen in the image as given (None: the detector did not say)


def hand_label(result: dict) -> str | None:
    """Our handedness from the runner's answer.  MediaPipe labels hands as if the image were
    mirrored (a selfie camera); the runner also reports the label for the image as given
    (`handedness_unmirrored`, benchmarks/mediapipe_detect.py), which is the one we use."""
    label = str(result.get("handedness_unmirrored") or "").lower()
    return label if label in ("left", "right") else None


def detect_hands(images: list[str | Path], venv: Path | None = None,
                 timeout_s: float = 600.0) -> dict[str, Detection | None]:
    """{image path as given: its Detection, or None where no hand was found}; one detector run for all."""
    venv = Path(venv) if venv is not None else default_venv()
    py = venv / "bin" / "python"
    if not py.exists():
        raise DetectorUnavailable(f"--detect: no MediaPipe venv at {venv}. {SETUP_HINT}")
    if not RUNNER.exists():
        raise DetectorUnavailable(f"--detect: the detector runner {RUNNER} is missing")
    with tempfile.TemporaryDirectory(prefix="handsynth-detect-") as tmp:
        lst, out = Path(tmp) / "images.txt", Path(tmp) / "det.json"
        lst.write_text("".join(f"{Path(p).absolute()}\n" for p in images))
        try:
            r = subprocess.run([str(py), str(RUNNER), "--list", str(lst), "--out", str(out)], capture_output=True,
                               text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DetectorUnavailable(f"--detect: MediaPipe did not run ({exc}). {SETUP_HINT}") from None
        if r.returncode != 0 or not out.exists():
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            raise DetectorUnavailable(f"--detect: MediaPipe failed (status {r.returncode}: {tail[0]}). {SETUP_HINT}")
        results = json.loads(out.read_text())["results"]
    hands: dict[str, Detection | None] = {}
    for given, res in zip(images, results):
        hands[str(given)] = Detection(landmark_box(res["keypoints_2d"]), hand_label(res)) if res.get("detected") else None
        log.debug("%s: %s", given, hands[str(given)])
    return hands


def detect_boxes(images: list[str | Path], venv: Path | None = None, timeout_s: float = 600.0) -> dict[str, list | None]:
    """{image path as given: landmark box, or None where no hand was found}; one detector run for all."""
    return {k: (d.box if d is not None else None) for k, d in detect_hands(images, venv, timeout_s).items()}
