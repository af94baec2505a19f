"""Skin tone model, per-item draws and the per-vertex weights (pure numpy)."""

import json

import numpy as np
import pytest

from datagen.config import load_config
from datagen.scene.skin import SkinParams, VARIATION_RANGES, draw_skin, linear_to_srgb8, tone, vertex_weights


def lightness(rgb):
    return float(np.asarray(rgb) @ [0.2126, 0.7152, 0.0722])


def test_tone_range_light_to_dark():
    ms = np.linspace(0, 1, 11)
    lum = [lightness(tone(m, 0.5)) for m in ms]
    assert all(a > b for a, b in zip(lum, lum[1:]))  # strictly darker with melanin
    assert lum[0] / lum[-1] > 15  # very light to very dark
    light, dark = linear_to_srgb8(tone(0, 0.5)), linear_to_srgb8(tone(1, 0.5))
    assert light.min() > 150 and dark.max() < 80
    for m in ms:  # always skin-like: red > green > blue
        r, g, b = tone(m, 0.5)
        assert r > g > b > 0


def test_redness_raises_red_over_green():
    for m in (0.0, 0.5, 1.0):
        a, b = tone(m, 0.0), tone(m, 1.0)
        assert b[0] / b[1] > a[0] / a[1]


def test_palms_are_lighter():
    s = draw_skin(load_config().skin, np.random.default_rng(3))
    dorsal, palmar = s.colours()
    assert lightness(palmar) > lightness(dorsal)


def test_draws_are_seeded_and_within_ranges():
    cfg = load_config().skin
    a = draw_skin(cfg, np.random.default_rng(5))
    assert a == draw_skin(cfg, np.random.default_rng(5))
    draws = [draw_skin(cfg, np.random.default_rng(i)) for i in range(200)]
    for s in draws:
        assert cfg.melanin[0] <= s.melanin <= cfg.melanin[1]
        assert cfg.subsurface_scale_m[0] <= s.subsurface_scale_m <= cfg.subsurface_scale_m[1]
        for k, (lo, hi) in VARIATION_RANGES.items():
            assert lo <= getattr(s, k) <= hi
    # the texture parameters differ between items: no two items share a pattern
    assert len({round(s.pattern_offset, 6) for s in draws}) == len(draws)
    rec = a.record()
    json.dumps(rec, allow_nan=False)
    assert rec["albedo_dorsal_linear"] == [float(x) for x in tone(a.melanin, a.redness)]
    assert isinstance(a, SkinParams) and 0 <= a.freckle_amount <= a.freckles


def test_vertex_weights(prepared):
    asset = prepared.asset
    rest = asset.dense(asset.rest_base_vertices)
    joints = asset.rest_heads[asset.joint_bones[1:]]
    w = vertex_weights(rest, asset.dense_faces, joints)
    assert set(w) == {"palmar", "knuckles"}
    for v in w.values():
        assert v.shape == (len(rest),) and v.min() >= 0 and v.max() <= 1
    c = asset.palm_centre
    near = np.linalg.norm(rest[:, :2] - c[:2], axis=1) < 0.025  # over the middle of the palm
    palm_side, back_side = near & (rest[:, 2] > c[2]), near & (rest[:, 2] < c[2])
    assert palm_side.sum() > 50 and back_side.sum() > 50
    assert w["palmar"][palm_side].mean() > 0.8 and w["palmar"][back_side].mean() < 0.2
    assert w["knuckles"][back_side].mean() > w["knuckles"][palm_side].mean()
    d = np.linalg.norm(rest[:, None] - joints[None], axis=2).min(axis=1)
    assert w["knuckles"][d > 0.03].max() < 0.05  # only near the joints


def test_nails_sit_on_the_back_of_each_fingertip(config, cache_dir, prepared):
    from datagen.poses.tables import ensure_tables
    from datagen.scene.skin import nail_weights

    T = ensure_tables(config, cache_dir)
    rest = T.dense(T.rest_base_vertices)
    tips = T.rest_tips(rest)
    dips = T.distal_joint_centres()
    w = nail_weights(rest, T.dense_part, dips, tips)
    assert w.min() >= 0 and w.max() <= 1
    for f in range(5):
        on = (w > 0.5) & (T.dense_part == f + 1)
        assert 5 <= on.sum() <= 0.25 * (T.dense_part == f + 1).sum(), (f, on.sum())
        # nails are near the tip, not at the joint ...
        d_tip = np.linalg.norm(rest[on] - tips[f], axis=1)
        d_dip = np.linalg.norm(rest[on] - dips[f], axis=1)
        assert np.median(d_tip) < np.median(d_dip)
        # ... and on the back of the finger (-z); the pronated thumb's nail faces radially (+x)
        ax = (tips[f] - dips[f]) / np.linalg.norm(tips[f] - dips[f])
        x = rest[on] - dips[f]
        radial = x - np.outer(x @ ax, ax)
        if f:
            assert np.median(radial[:, 2]) < 0
        else:
            assert np.median(radial[:, 0]) > 0
    assert w[T.dense_part == 0].max() == 0  # none on the palm


def test_crease_draws_leave_the_earlier_draws_unchanged():
    """The crease parameters are drawn last: every item keeps the tone and texture it had."""
    cfg = load_config().skin
    for seed in range(5):
        s = draw_skin(cfg, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        old = [float(lo + (hi - lo) * rng.random()) for lo, hi in
               (cfg.melanin, cfg.redness, cfg.roughness, cfg.subsurface_scale_m)]
        keys = list(VARIATION_RANGES)
        old += [float(lo + (hi - lo) * rng.random()) for lo, hi in (VARIATION_RANGES[k] for k in keys[:10])]
        assert [s.melanin, s.redness, s.roughness, s.subsurface_scale_m] + [getattr(s, k) for k in keys[:10]] == old
        assert keys[10:] == ["creases", "crease_width_m", "wrinkles"]
        assert 0.5 <= s.creases <= 1 and 0.0004 <= s.crease_width_m <= 0.0007


def test_crease_fields_sit_on_the_joints_and_palm(config, cache_dir, prepared):
    from datagen.poses.tables import ensure_tables
    from datagen.scene.skin import CREASE_FIELDS, crease_fields, crease_profile

    T = ensure_tables(config, cache_dir)
    rest = T.dense(T.rest_base_vertices)
    J = T.finger_joint_centres()
    F = crease_fields(rest, T.dense_faces, T.dense_part, J, T.rest_tips(rest))
    assert tuple(F) == CREASE_FIELDS
    for k, v in F.items():
        assert v.shape == (len(rest),) and v.dtype == np.float32 and np.all(np.isfinite(v)), k
    for k in ("crease_w", "wrinkle_w"):
        assert F[k].min() >= 0 and F[k].max() <= 1
    line, wrinkle = crease_profile(F["crease_s"], F["crease_h"], 0.0005)
    palmar_line = F["crease_w"] * line
    # creases are drawn: a few percent of the vertices, on the palmar side of the hand ...
    on = palmar_line > 0.5
    assert 0.005 * len(rest) < on.sum() < 0.1 * len(rest)
    w = vertex_weights(rest, T.dense_faces, J)
    assert w["palmar"][on].mean() > 0.7  # the pronated thumb's creases face radially, not +z
    # ... on every finger (flexion creases) and on the palm (palm lines)
    for part in range(6):
        assert (on & (T.dense_part == part)).sum() >= 3, part
    # the finger creases lie near the finger joints (within ~half a phalanx)
    fingers = on & (T.dense_part > 0)
    d = np.linalg.norm(rest[fingers][:, None] - J[None], axis=2).min(axis=1)
    assert np.median(d) < 0.012
    # dorsal wrinkles: on the back of the hand, over the PIP/DIP joints only
    dorsal = F["wrinkle_w"] > 0.5
    assert dorsal.sum() > 20 and w["palmar"][dorsal].mean() < 0.2
    assert F["wrinkle_w"][T.dense_part == 0].max() == 0
    # on a line: within its half-separation (<= 1.1 mm) + ~1 width of the centre; the mesh's
    # edges are ~2.3 mm, the lines are drawn from the interpolated signed distance
    assert np.abs(F["crease_s"][on]).max() < 0.002


def test_crease_profile_is_a_line_or_a_double_line():
    from datagen.scene.skin import crease_profile

    s = np.linspace(-0.003, 0.003, 601)
    single, _ = crease_profile(s, 0.0, 0.0005)
    double, _ = crease_profile(s, 0.001, 0.0005)
    assert single[300] == 1.0 and single[0] < 1e-10
    assert double[300] < 0.02 and double[400] == pytest.approx(1.0) and double[200] == pytest.approx(1.0)
    _, wr = crease_profile(s, 0.0, 0.0005, wrinkle_period_m=0.0016)
    assert wr.max() == pytest.approx(1.0) and wr.min() == pytest.approx(0.0, abs=1e-12)


def test_tone_exposure_factor_makes_up_the_chosen_share_of_the_tone():
    # [hdri] exposure_tone: 0 leaves the exposure as it was; 1 brings every tone's dorsal albedo
    # luminance to the lightest tone's; in between, that share of the difference in stops.
    from datagen.config import ConfigError, config_from_dict
    from datagen.scene.skin import REC709_LUMA, tone, tone_exposure_factor

    assert tone_exposure_factor(0.9, 0.4, 0.0) == 1.0 and tone_exposure_factor(0.0, 0.4, 0.7) == pytest.approx(1.0)
    lum = lambda m, h: float(tone(m, h) @ REC709_LUMA)  # noqa: E731
    for m, h in ((0.3, 0.2), (0.8, 0.6), (1.0, 1.0)):
        assert lum(m, h) * tone_exposure_factor(m, h, 1.0) == pytest.approx(lum(0.0, h))
        assert tone_exposure_factor(m, h, 0.5) == pytest.approx(tone_exposure_factor(m, h, 1.0) ** 0.5)
    f = [tone_exposure_factor(m, 0.5, 0.5) for m in np.linspace(0, 1, 11)]
    assert all(b > a for a, b in zip(f, f[1:]))  # darker skin, more exposure
    assert config_from_dict({}).hdri.exposure_tone == 0.0
    with pytest.raises(ConfigError, match="hdri.exposure_tone"):
        config_from_dict({"hdri": {"exposure_tone": 1.5}})
