"""Skin creases and the skin exposure rule in real Cycles renders (small, few samples)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def setup(cache_dir, prepared, tmp_path_factory):
    from datagen.cameras.hemisphere import views_for
    from datagen.config import load_config
    from datagen.poses.tables import ensure_tables
    from datagen.scene.hdri import discover

    path = tmp_path_factory.mktemp("cfg") / "skin.toml"
    path.write_text('[hdri]\nsources = ["builtin"]\n[render]\nsamples = 8\nthreads = 2\n')
    cfg = load_config(path)
    tables = ensure_tables(cfg, cache_dir)
    views = views_for(cfg.cameras, tables)
    hdris, _ = discover(cfg.hdri.sources, REPO)
    c = views.centres - tables.palm_centre
    palm_view = int(np.argmax(c[:, 2] / np.linalg.norm(c, axis=1)))  # looks at the palm
    return cfg, tables, views, hdris, palm_view


def _render(renderer, spec, out):
    from PIL import Image

    renderer.render_item(spec, out)
    stem = out / "items" / f"{spec.pose_id:05d}" / f"v{spec.view_id:03d}"
    rgb = np.asarray(Image.open(f"{stem}.png").convert("RGB"))
    mask = np.asarray(Image.open(f"{stem}.mask.png")) > 127
    return rgb, mask


def _spec(cfg, hdris, views, pose, view, hdri_name, **skin):
    from datagen.scene.items import make_spec

    spec = make_spec(cfg, len(hdris), pose, view, len(views.R))
    index = [h.name for h in hdris].index(hdri_name)
    return dataclasses.replace(spec, hdri_index=index, hdri_strength=1.0,
                               skin=dataclasses.replace(spec.skin, **skin))


def test_creases_darken_thin_lines_on_the_palm(setup, tmp_path):
    from blender_scripts.scene import SceneRenderer

    cfg, tables, views, hdris, view = setup
    spec = _spec(cfg, hdris, views, 0, view, "builtin/studio.exr", melanin=0.3, creases=1.0, wrinkles=0.8,
                 crease_width_m=0.0006)
    lum = {}
    for on in (False, True):
        r = SceneRenderer(cfg, tables, views, hdris, creases=on)
        rgb, mask = _render(r, spec, tmp_path / f"c{int(on)}")
        lum[on] = rgb.astype(float) @ [0.2126, 0.7152, 0.0722] / 255
    diff = (lum[False] - lum[True])[mask]  # > 0: darker with creases
    darker, lighter = (diff > 0.04).sum(), (diff < -0.04).sum()
    assert darker >= 40, darker  # lines of pixels on the palm and fingers
    assert lighter < darker / 4, (darker, lighter)
    assert darker < 0.25 * mask.sum()  # thin lines, not an overall darkening
    assert np.median(np.abs(diff)) < 0.02  # elsewhere the skin is unchanged


def test_skin_exposure_lands_in_the_band_under_dim_and_bright_hdris(setup, tmp_path):
    from blender_scripts.scene import SceneRenderer
    from skin_exposure import SKIN_LSTAR_BAND, measure_item

    cfg, tables, views, hdris, view = setup
    r = SceneRenderer(cfg, tables, views, hdris)
    assert r.exposure_rule == "skin"
    lo, hi = SKIN_LSTAR_BAND
    for name in ("builtin/night.exr", "builtin/sunrise.exr", "builtin/city.exr"):
        for melanin in (0.05, 0.95):
            rgb, mask = _render(r, _spec(cfg, hdris, views, 700, 100, name, melanin=melanin),
                                tmp_path / f"{Path(name).stem}_{melanin}")
            st = measure_item(rgb, mask)
            assert lo <= st["Lstar"] <= hi, (name, melanin, st)
            assert st["clipped"] < 0.1, (name, melanin, st)  # specular highlights may clip, not the skin


def test_plain_arm_changes_the_arm_only(setup, tmp_path):
    """[skin] forearm_detail = false: the faces of dense part 6 (the forearm; here the palm stands
    in for it) render in the plain material (no subsurface scattering, no pore bump), the rest of
    the hand as before."""
    from scipy.ndimage import binary_erosion, distance_transform_edt

    from blender_scripts.scene import FOREARM_PART, SceneRenderer
    from datagen.labels.visibility import compute_labels

    cfg, tables, views, hdris, view = setup
    part = np.asarray(tables.dense_part).copy()
    part[part == 0] = FOREARM_PART  # the palm plays the arm
    arm_tables = dataclasses.replace(tables, dense_part=part)
    spec = _spec(cfg, hdris, views, 0, view, "builtin/studio.exr", melanin=0.3)
    on = dataclasses.replace(cfg, skin=dataclasses.replace(cfg.skin, forearm_detail=True))
    off = dataclasses.replace(cfg, skin=dataclasses.replace(cfg.skin, forearm_detail=False))
    lum = {}
    for name, c in (("on", on), ("off", off)):
        r = SceneRenderer(c, arm_tables, views, hdris)
        assert r._plain_arm == (name == "off") and len(r.mesh.materials) == (2 if name == "off" else 1)
        rgb, mask = _render(r, spec, tmp_path / name)
        lum[name] = rgb.astype(float) @ [0.2126, 0.7152, 0.0722]
    L = compute_labels(tables.dense_vertices(0), tables.dense_faces, tables.keypoints[0], views.K, views.R[view],
                       views.t[view], views.width, views.height)
    face_part = part[tables.dense_faces[:, 0]]
    seen = np.where(L.face >= 0, face_part[np.maximum(L.face, 0)], -1)
    arm = binary_erosion(seen == FOREARM_PART, iterations=2)
    far_hand = (seen >= 0) & (seen != FOREARM_PART) & (distance_transform_edt(seen != FOREARM_PART) > 12)
    assert arm.sum() > 500 and far_hand.sum() > 300, (arm.sum(), far_hand.sum())
    d = np.abs(lum["on"] - lum["off"])
    assert d[arm].mean() > 1.0, d[arm].mean()  # grey levels (1.7 measured): the arm looks different ...
    assert d[far_hand].mean() < d[arm].mean() / 4, (d[far_hand].mean(), d[arm].mean())  # ... the hand hardly (0.23)
    # Cycles' own depth check replaces both materials: the arm's depth is the label's too
    alpha, cdepth = r.cycles_coverage_depth(spec, tmp_path)
    assert [m.name for m in r.mesh.materials] == ["skin", "skin_arm"]  # restored afterwards
    inner = arm & (alpha > 0.999)
    assert np.median(np.abs(cdepth[inner] - L.depth[inner])) < 2e-4
