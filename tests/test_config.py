"""Config loading: paper defaults, and clear errors that name the offending key."""

import pytest

from datagen.config import Config, ConfigError, config_from_dict, load_config


def test_embedded_default_matches_paper():
    cfg = load_config()
    assert cfg == Config()  # the TOML file and the dataclass defaults agree
    c = cfg.cameras
    assert c.longitudes * c.latitudes == 216
    assert c.longitude_step_deg == pytest.approx(180 / 18) and c.latitude_step_deg == pytest.approx(180 / 12)
    assert (c.width, c.height, c.focal_px) == (256, 256, 373.3511425)
    assert cfg.poses.interpolation_steps == 3


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"cameras": {"radius_m": -1.0}}, "cameras.radius_m"),
        ({"cameras": {"latitudes": 8, "latitude_step_deg": 15.0}}, "cameras"),
        ({"cameras": {"pole": "sideways"}}, "cameras.pole"),
        ({"cameras": {"pole": [0, 0, 0]}}, "cameras.pole"),
        ({"hand": {"phenotype": {"age": 1.5}}}, "hand.phenotype.age"),
        ({"hand": {"phenotype": {"wingspan": 0.5}}}, "hand.phenotype.wingspan"),
        ({"hdri": {"strength": [2.0, 1.0]}}, "hdri.strength"),
        ({"hdri": {"exposure": "auto"}}, "hdri.exposure"),
        ({"skin": {"creases": 1}}, "skin.creases"),
        ({"render": {"device": "TPU"}}, "render.device"),
        ({"render": {"samples": "many"}}, "render.samples"),
        ({"render": {"denoise": 1}}, "render.denoise"),
        ({"render": {"denoise_quality": "fast"}}, "render.denoise_quality"),
        ({"render": {"smaples": 16}}, "render.smaples"),
        ({"lighting": {}}, "lighting"),
        ({"seed": -3}, "seed"),
    ],
)
def test_bad_values_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_from_dict(raw)


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[cameras\nradius_m = 1")
    with pytest.raises(ConfigError, match="bad.toml.*TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_partial_file_keeps_defaults(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("seed = 7\n[cameras]\nradius_m = 0.4\npole = [0, 0, -1]\n")
    cfg = load_config(f)
    assert cfg.seed == 7 and cfg.cameras.radius_m == 0.4 and cfg.cameras.pole == (0.0, 0.0, -1.0)
    assert cfg.cameras.focal_px == 373.3511425
    assert cfg.digest() != Config().digest()
