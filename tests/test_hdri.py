"""HDRI discovery, header checks, licences and the environment orientation (no Blender needed)."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from datagen.config import REPO_ROOT
from datagen.scene.hdri import (
    UNKNOWN_LICENCE,
    HdriError,
    builtin_dir,
    check_header,
    discover,
    hand_to_world,
    mean_luminance,
)
from support.renders import write_hdr


@pytest.fixture(scope="module")
def builtin():
    hdris, warnings = discover(["builtin"], REPO_ROOT)
    return hdris, warnings


def test_builtin_set_is_found_checked_and_cc0(builtin):
    hdris, warnings = builtin
    assert len(hdris) >= 8 and not warnings
    names = [h.name for h in hdris]
    assert names == sorted(names) and "builtin/city.exr" in names
    for h in hdris:
        assert h.licence == "CC0-1.0" and h.licence_file.endswith("license.txt")
        assert (h.width, h.height) == (1024, 512)
        assert h.file.startswith("<bpy>/") and "city" not in h.file or h.name.endswith(h.file.rsplit("/", 1)[1])
        rec = h.record()
        assert "path" not in rec and rec["licence"] == "CC0-1.0"
    assert {h.name: h.origin for h in hdris}["builtin/courtyard.exr"].startswith("https://polyhaven.com/")


def test_builtin_dir_does_not_import_bpy():
    code = ("import sys; from datagen.scene.hdri import builtin_dir; d = builtin_dir(); "
            "assert 'bpy' not in sys.modules; print(d)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("studiolights/world")


def test_truncated_exr_is_refused_naming_the_file(tmp_path):
    src = builtin_dir() / "city.exr"
    bad = tmp_path / "cut.exr"
    data = src.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(HdriError) as e:
        check_header(bad)
    assert str(bad) in str(e.value) and "truncated" in str(e.value)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x76\x2f\x31\x01" + b"\x02\x00\x00\x00" + b"junk",
                                     b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 100 +X 200\n" + b"\x02" * 10])
def test_garbage_is_refused(tmp_path, content):
    f = tmp_path / "x.hdr"
    f.write_bytes(content)
    with pytest.raises(HdriError, match="x.hdr"):
        check_header(f)


def test_user_folder_licences_and_warnings(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    write_hdr(d / "a.hdr")
    write_hdr(d / "b.hdr", 16, 8)
    (d / "b.hdr.license").write_text("CC-BY-4.0 by Someone\nhttps://example.org\n")
    (d / ".hidden.hdr").write_bytes(b"junk")  # hidden files are ignored
    hdris, warnings = discover([str(d)], REPO_ROOT)
    by = {h.name.rsplit("/", 1)[1]: h for h in hdris}
    assert set(by) == {"a.hdr", "b.hdr"}
    assert by["a.hdr"].licence == UNKNOWN_LICENCE and by["a.hdr"].licence_file is None
    assert by["b.hdr"].licence == "CC-BY-4.0 by Someone" and (by["b.hdr"].width, by["b.hdr"].height) == (16, 8)
    assert len(warnings) == 1 and "a.hdr" in warnings[0]
    (d / "LICENSE").write_text("All mine, CC0\n")
    hdris, warnings = discover([str(d)], REPO_ROOT)
    assert not warnings and {h.licence for h in hdris} == {"All mine, CC0", "CC-BY-4.0 by Someone"}


def test_bad_sources(tmp_path):
    with pytest.raises(HdriError, match="does not exist"):
        discover([str(tmp_path / "nope")], REPO_ROOT)
    with pytest.raises(HdriError, match="no HDRI found"):
        discover([str(tmp_path)], REPO_ROOT)
    (tmp_path / "x.png").write_bytes(b"png")
    with pytest.raises(HdriError, match="not a .hdr or .exr"):
        discover([str(tmp_path / "x.png")], REPO_ROOT)
    shutil.copy(builtin_dir() / "city.exr", tmp_path / "ok.exr")
    (tmp_path / "broken.exr").write_bytes((builtin_dir() / "city.exr").read_bytes()[:5000])
    with pytest.raises(HdriError, match="broken.exr"):
        discover([str(tmp_path)], REPO_ROOT)


def test_environment_up_is_the_hand_distal_axis():
    for rot in (0.0, 37.0, 200.0):
        M = hand_to_world(rot)
        assert np.allclose(M @ M.T, np.eye(3)) and np.isclose(np.linalg.det(M), 1.0)
        assert np.allclose(M @ [0, 1, 0], [0, 0, 1])  # hand +y = the environment's up
    a = np.radians(37.0)
    assert np.allclose(hand_to_world(37.0) @ [1, 0, 0], [np.cos(a), np.sin(a), 0])  # rotation about world z


def test_mean_luminance_weights_by_solid_angle():
    img = np.zeros((180, 360, 3))
    img[:90] = 1.0  # upper half white
    assert np.isclose(mean_luminance(img), 0.5, atol=1e-3)
    img = np.zeros((180, 360, 3))
    img[:10] = 1.0  # a polar cap covers little solid angle
    assert mean_luminance(img) < 0.01
