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
