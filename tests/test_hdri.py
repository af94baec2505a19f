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


# ---------------------------------------------------------------------------------------------
# Subject exposure: the visible skin's irradiance
# ---------------------------------------------------------------------------------------------

def _probe(fn, h=64, w=128):
    """A probe of an environment whose radiance is fn(direction) (rows bottom-up)."""
    from datagen.scene.hdri import LightProbe, equirect_directions

    d = equirect_directions(h, w)
    rgb = np.repeat(fn(d)[..., None], 3, axis=-1)
    return LightProbe.from_pixels(rgb)


def test_skin_irradiance_of_a_uniform_sky_is_its_radiance():
    p = _probe(lambda d: np.full(d.shape[:2], 0.5))
    rng = np.random.default_rng(0)
    n = rng.normal(size=(500, 3))
    got = p.skin_irradiance(n, rng.random(500))
    assert got == pytest.approx(0.5, rel=0.02)
    assert p.skin_irradiance(n, np.zeros(500)) == 0.0


def test_irradiance_table_matches_the_exact_cosine_integral():
    # light from the upper hemisphere only, brighter towards the zenith
    p = _probe(lambda d: np.clip(d[..., 2], 0, None) * 2.0)
    rng = np.random.default_rng(1)
    for n in rng.normal(size=(40, 3)):
        exact = p.facing(n)
        table = p.skin_irradiance(n[None], [1.0])
        assert abs(table - exact) < 0.06 * max(p.facing([0, 0, 1]), 1e-9), (n, exact, table)
    assert p.skin_irradiance([[0, 0, 1.0]], [1.0]) > 5 * p.skin_irradiance([[0, 0, -1.0]], [1.0])


def test_visible_normal_weights_project_the_area_towards_the_camera():
    from datagen.scene.hdri import visible_normal_weights

    # unit cube, outward triangles
    v = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    centre = v.mean(0)
    tri = v[faces]
    nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert np.all(((tri.mean(1) - centre) * nrm).sum(1) > 0)  # outward
    unit, w = visible_normal_weights(v, faces, centre + np.array([0, 0, 1e6]))
    assert w.sum() == pytest.approx(1.0, rel=1e-6)  # one face's area, seen head-on
    assert np.allclose(unit[w > 0], [0, 0, 1])
    _, w = visible_normal_weights(v, faces, centre + np.array([1e6, 1e6, 0]))
    assert w.sum() == pytest.approx(np.sqrt(2), rel=1e-6)  # two faces at 45 degrees


def test_subject_exposure_targets_the_skin_within_limits():
    from datagen.scene.hdri import subject_exposure

    assert subject_exposure(0.5, 0.5, 1.3, 2.5) == pytest.approx(2.6)
    # a backlit hand (skin irradiance 1/8 of the mean) is lifted by 3 stops ...
    assert subject_exposure(0.125, 1.0, 1.0, 2.5 + 1) == pytest.approx(8.0)
    # ... but never by more than max_stops from the mean's exposure
    assert subject_exposure(0.01, 1.0, 1.0, 2.5) == pytest.approx(2 ** 2.5)
    assert subject_exposure(100.0, 1.0, 1.0, 2.5) == pytest.approx(2 ** -2.5)
