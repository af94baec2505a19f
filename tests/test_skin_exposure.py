"""benchmarks/skin_exposure.py: the rendered skin statistics (pure numpy, no Blender)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import skin_exposure as se  # noqa: E402


def test_lstar_and_srgb_decoding():
    assert se.lstar(1.0) == pytest.approx(100.0)
    assert se.lstar(0.18) == pytest.approx(49.5, abs=0.1)
    assert se.lstar(0.0) == pytest.approx(0.0)
    assert se.srgb_to_linear(np.array([0, 255]))[1] == pytest.approx(1.0)
    assert se.srgb_to_linear(np.array([118]))[0] == pytest.approx(0.181, abs=0.002)


def test_measure_item_reads_the_eroded_hand_pixels():
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[...] = (250, 250, 250)  # white background: must not leak in
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    rgb[16:48, 16:48] = (180, 140, 120)
    rgb[16, 16:48] = (255, 255, 255)  # an anti-aliased edge row, eroded away
    st = se.measure_item(rgb, mask)
    assert st["srgb"] == pytest.approx([180, 140, 120])
    assert st["clipped"] == 0.0 and st["pixels"] == 28 * 28
    y = float(se.srgb_to_linear(np.array([180, 140, 120])) @ [0.2126, 0.7152, 0.0722])
    assert st["Y"] == pytest.approx(y) and st["Lstar"] == pytest.approx(float(se.lstar(y)))
    assert se.measure_item(rgb, np.zeros((64, 64), bool)) is None


def test_bands_and_summary():
    assert [se.band_of(m) for m in (0.0, 0.34, 0.9, 1.0)] == ["light", "medium", "dark", "dark"]
    items = [dict(Lstar=L, srgb=[L, L, L], Y=0.1, clipped=0.0, band="light") for L in (10, 50, 90)]
    s = se.summarise(items, lambda it: it["band"])["light"]
    assert s["n"] == 3 and s["washed"] == 1 and s["black"] == 1 and s["Lstar"] == pytest.approx(50)
    json.dumps(s)
