"""Backgrounds, extra lights and training-time image effects (issue 14 parts 2 and 4).

Pure parts: config validation, image discovery and decoding (images made in the test), licences,
the crop and composite, the seeded draws (bit-identical items with the options off), light
units and colours, amplitude mixing and the sensor effects on real shards.  One real Blender
render (tiny): background pixels come from the image, the mask and labels are unchanged, the
lights are recorded as drawn.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from datagen.config import Config, config_from_dict
from datagen.scene import backgrounds as B
from datagen.scene import lights as L
from datagen.scene.items import item_seed, make_spec
from support.config_errors import assert_config_error

REPO = Path(__file__).resolve().parent.parent


def _save(path: Path, rgb: np.ndarray, **kw) -> Path:
    from PIL import Image

    Image.fromarray(rgb).save(path, **kw)
    return path


def _photo(h=60, w=90, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    img[: h // 2, :, 0] = 250
    return img


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize("raw, words", [
    ({"backgrounds": {"share": 0.5}}, ["backgrounds.share", "backgrounds.sources is empty"]),
    ({"backgrounds": {"sources": ["x"]}}, ["backgrounds.share = 0"]),
    ({"backgrounds": {"sources": ["x"], "share": 1.5}}, ["backgrounds.share", "outside"]),
    ({"backgrounds": {"sources": ["x"], "share": 1.0, "scale": [0.9, 0.2]}}, ["backgrounds.scale", "low"]),
    ({"backgrounds": {"colour": 1}}, ["backgrounds.colour"]),
    ({"lights": {"count": [1.5, 2]}}, ["lights.count", "integers"]),
    ({"lights": {"count": [0, 9]}}, ["lights.count[1]"]),
    ({"lights": {"count": [1, 1], "types": ["sun"]}}, ["lights.types", "'sun'"]),
    ({"lights": {"temperature_k": [500.0, 6000.0]}}, ["lights.temperature_k[0]"]),
    ({"lights": {"cone_deg": 200.0}}, ["lights.cone_deg"]),
])
def test_config_errors_name_the_key(raw, words):
    assert_config_error(raw, words)


def test_new_sections_at_their_defaults_keep_the_digest():
    cfg = Config()
    d = cfg.to_dict()
    assert "backgrounds" in d and "lights" in d
    on = config_from_dict({"lights": {"count": [1, 2]}})
    assert on.digest() != cfg.digest()
    assert config_from_dict({"lights": {"count": [0, 0], "power": [0.25, 1.0]}}).digest() == cfg.digest()


# ----------------------------------------------------------------------------- discovery, licences

def test_discovery_decodes_records_licences_and_names_a_corrupt_file(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    _save(folder / "a.png", _photo())
    _save(folder / "sub" / "b.jpg", _photo(40, 30, 1), quality=90)
    (folder / "notes.md").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"junk")  # hidden: skipped
    (folder / "LICENSE.txt").write_text("CC0-1.0 photos by the test\n")
    own = tmp_path / "single.png"
    _save(own, _photo(20, 20, 2))
    (tmp_path / "single.png.license").write_text("CC-BY-4.0 someone\n")
    loose = tmp_path / "loose"
    loose.mkdir()
    _save(loose / "c.png", _photo(10, 12, 3))
    bgs, warnings = B.discover([str(folder), str(own), str(loose)], tmp_path)
    by = {Path(b.name).name: b for b in bgs}
    assert sorted(by) == ["a.png", "b.jpg", "c.png", "single.png"]
    assert (by["a.png"].width, by["a.png"].height) == (90, 60) and (by["b.jpg"].width, by["b.jpg"].height) == (30, 40)
    assert by["a.png"].licence.startswith("CC0-1.0") and by["b.jpg"].licence == "unknown, user-supplied"
    assert by["single.png"].licence == "CC-BY-4.0 someone"
    assert by["c.png"].licence == "unknown, user-supplied" and any("c.png" in w for w in warnings)
    assert "path" not in by["a.png"].record() and by["a.png"].record()["file"] == "photos/a.png"
    # a truncated JPEG and a PNG that is not one: the error names the file, before anything else
    data = (folder / "sub" / "b.jpg").read_bytes()
    (folder / "sub" / "b.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(B.BackgroundError, match=r"b\.jpg"):
        B.discover([str(folder)], tmp_path)
    # the driver's workers (check=False) read sizes from the headers only: the driver decoded them
    half, _ = B.discover([str(folder)], tmp_path, check=False)
    assert [(b.width, b.height) for b in half] == [(bg.width, bg.height) for bg in bgs if bg.source == str(folder)]
    (folder / "sub" / "b.jpg").write_bytes(data)
    (folder / "z.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(B.BackgroundError, match=r"z\.png.*cannot be decoded"):
        B.discover([str(folder)], tmp_path)
    with pytest.raises(B.BackgroundError, match="does not exist"):
        B.discover([str(tmp_path / "nope")], tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(B.BackgroundError, match="no .png"):
        B.discover([str(tmp_path / "empty")], tmp_path)


def test_b_jpg_licence_is_the_folder_licence(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    _save(folder / "b.jpg", _photo(), quality=90)
    (folder / "licence.txt").write_text("public domain\n")
    (bg,), warnings = B.discover([str(folder)], tmp_path)
    assert bg.licence == "public domain" and bg.licence_file == "p/licence.txt" and not warnings


def test_render_refuses_a_corrupt_background_before_rendering(tmp_path, cache_dir, prepared, capsys):
    from blender_scripts.render import main

    folder = tmp_path / "photos"
    folder.mkdir()
    _save(folder / "good.png", _photo())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 64)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[hdri]\nsources = ["builtin"]\n[backgrounds]\nsources = ["{folder}"]\nshare = 1.0\n')
    out = tmp_path / "r"
    code = main(["--config", str(cfg), "--out", str(out), "--poses", "0", "--views", "0", "--cache", str(cache_dir),
                 "--no-progress"])
    assert code == 2
    assert "broken.jpg" in capsys.readouterr().err
    assert not (out / "run.json").exists() and not (out / "items").exists()


# ----------------------------------------------------------------------------- crop and composite

def test_crop_flip_and_composite():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :, 0] = np.arange(200)[None, :]  # red = column
    img[:, :, 1] = np.arange(100)[:, None]  # green = row
    full = B.BackgroundDraw(0, 1.0, 0.5, 0.5, False)
    x0, y0, cw, ch = B.crop_window(img.shape[:2], (50, 50), full)
    assert (cw, ch) == (100, 100) and (x0, y0) == (50, 0)  # the largest square, centred
    out = B.background_pixels(img, (50, 50), full)
    assert out.shape == (50, 50, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 0], 50 + 2 * np.arange(50) + 0.5, atol=1e-4)  # 2:1 box average
    flipped = B.background_pixels(img, (50, 50), dataclasses.replace(full, flip=True))
    np.testing.assert_array_equal(flipped, out[:, ::-1])
    corner = B.BackgroundDraw(0, 0.5, 0.0, 1.0, False)
    x0, y0, cw, ch = B.crop_window(img.shape[:2], (50, 50), corner)
    assert (x0, y0, cw, ch) == (0, 50, 50, 50)
    # a large photo is reduced once to what its smallest crop needs: the same crop, box-averaged
    big = np.repeat(np.repeat(img, 4, axis=0), 4, axis=1)
    small = B.prepare(big, (50, 50), 0.5)
    assert small.shape == (100, 200, 3)  # factor int(min(800/50, 400/50) x 0.5) = 4
    np.testing.assert_array_equal(small, img.astype(np.float32))
    np.testing.assert_array_equal(B.prepare(img, (50, 50), 0.5), img.astype(np.float32))  # factor 1
    fg = np.zeros((50, 50, 4), np.uint8)
    fg[10:20, 10:20] = (200, 100, 50, 255)
    fg[30, 30] = (255, 255, 255, 128)
    comp = B.composite(fg, out)
    bg_px = np.ones((50, 50), bool)
    bg_px[10:20, 10:20] = bg_px[30, 30] = False
    np.testing.assert_array_equal(comp[bg_px], np.rint(out[bg_px]).astype(np.uint8))
    assert (comp[10:20, 10:20] == (200, 100, 50)).all()
    np.testing.assert_allclose(comp[30, 30], 255 * 128 / 255 + out[30, 30] * (1 - 128 / 255), atol=0.51)


# ----------------------------------------------------------------------------- seeded draws

def test_options_off_keep_every_items_draws_and_on_are_seeded():
    base = Config()
    spec = make_spec(base, 8, 42, 123, 216)
    # the draws of the legacy three streams, computed the way they were before
    env_ss, skin_ss, render_ss = item_seed(0, 42, 123).spawn(3)
    env = np.random.default_rng(env_ss)
    assert spec.hdri_index == int(env.integers(8))
    assert spec.cycles_seed == int(render_ss.generate_state(1, np.uint32)[0] & 0x7FFFFFFF)
    assert spec.background is None and spec.lights == ()
    cfg = config_from_dict({"backgrounds": {"sources": ["x"], "share": 0.5}, "lights": {"count": [1, 3]}})
    on = make_spec(cfg, 8, 42, 123, 216, n_backgrounds=5)
    # the options draw from streams of their own: the environment, skin and Cycles seed are unchanged
    assert (on.hdri_index, on.hdri_rotation_deg, on.hdri_strength, on.skin, on.cycles_seed) == (
        spec.hdri_index, spec.hdri_rotation_deg, spec.hdri_strength, spec.skin, spec.cycles_seed)
    assert on == make_spec(cfg, 8, 42, 123, 216, n_backgrounds=5)
    specs = [make_spec(cfg, 8, p, v, 216, n_backgrounds=5) for p in range(0, 1520, 37) for v in range(0, 216, 23)]
    share = np.mean([s.background is not None for s in specs])
    assert 0.4 < share < 0.6
    assert {s.background.index for s in specs if s.background} == set(range(5))
    counts = [len(s.lights) for s in specs]
    assert set(counts) == {1, 2, 3}
    lights = [li for s in specs for li in s.lights]
    assert {li.type for li in lights} == {"area", "spot", "point"}
    assert all(0 <= li.polar_deg <= 90 + 1e-9 and 0.25 <= li.power <= 1.0 and 2700 <= li.temperature_k <= 6500
               for li in lights)
    with pytest.raises(ValueError, match="no background images"):
        make_spec(cfg, 8, 0, 0, 216, n_backgrounds=0)


def test_light_directions_colours_and_exposure_factor():
    cfg = config_from_dict({"lights": {"count": [2, 2], "cone_deg": 30.0}}).lights
    to_cam = np.array([0.0, 0.3, 1.0])
    for li in L.draw_lights(cfg, np.random.default_rng(5)):
        d = li.direction(to_cam)
        assert np.linalg.norm(d) == pytest.approx(1.0)
        angle = np.degrees(np.arccos(d @ to_cam / np.linalg.norm(to_cam)))
        assert angle == pytest.approx(li.polar_deg, abs=1e-6) and angle <= 30 + 1e-9
    warm, cool = L.blackbody_rgb(2700), L.blackbody_rgb(6500)
    lum = np.array([0.2126, 0.7152, 0.0722])
    assert warm @ lum == pytest.approx(1.0) and cool @ lum == pytest.approx(1.0)
    assert warm[0] / warm[2] > 2 and abs(cool[0] / cool[2] - 1) < 0.1  # 6500 K is near D65 white
    normals = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    weights = np.array([1.0, 1.0])
    front = L.LightDraw("point", 0.0, 0.0, 1.0, 0.1, 40.0, 5000.0, 0.5)
    factor, (f,) = L.exposure_factor([front], normals, weights, [0.0, 0.0, 1.0])
    assert f == pytest.approx(0.5) and factor == pytest.approx(1.25)
    # Cycles units: benchmarks/light_units.py measured these
    assert L.light_watts(front, 0.2) == pytest.approx(0.5 * 0.2 * 4 * np.pi ** 2)


# ----------------------------------------------------------------------------- Blender render

@pytest.mark.blender
@pytest.mark.slow
def test_background_render_keeps_labels_and_shows_the_image(tmp_path, cache_dir, prepared):
    from support.renders import write_render_config

    from blender_scripts.render import main

    folder = tmp_path / "photos"
    folder.mkdir()
    _save(folder / "p.png", _photo(80, 120, 7))
    (folder / "LICENSE").write_text("CC0-1.0\n")
    plain = write_render_config(tmp_path / "plain.toml", size=64, samples=2)
    extra = tmp_path / "bg.toml"
    extra.write_text(plain.read_text() + f'[backgrounds]\nsources = ["{folder}"]\nshare = 1.0\n'
                     f'[lights]\ncount = [2, 2]\n')
    args = ["--poses", "31", "--views", "100", "--cache", str(cache_dir), "--no-progress"]
    assert main(["--config", str(plain), "--out", str(tmp_path / "a"), *args]) == 0
    assert main(["--config", str(extra), "--out", str(tmp_path / "b"), *args]) == 0
    a, b = (tmp_path / x / "items" / "00031" for x in "ab")
    import cv2

    mask_a = cv2.imread(str(a / "v100.mask.png"), cv2.IMREAD_UNCHANGED)
    assert (mask_a == cv2.imread(str(b / "v100.mask.png"), cv2.IMREAD_UNCHANGED)).all() and mask_a.any()
    np.testing.assert_array_equal(np.load(a / "v100.depth.npy"), np.load(b / "v100.depth.npy"))
    la, lb = (json.loads((x / "v100.json").read_text()) for x in (a, b))
    for key in ("keypoints_2d", "visible", "bbox_xyxy", "K", "R", "t", "skin"):
        assert la[key] == lb[key], key
    assert "background" not in la and "lights" not in la
    # the background is the photo's crop, pixel for pixel, away from the hand's anti-aliased edge
    spec = make_spec(config_from_dict({"backgrounds": {"sources": ["x"], "share": 1.0},
                                       "lights": {"count": [2, 2]},
                                       "cameras": {"width": 64, "height": 64, "focal_px": 373.3511425 / 4}}),
                     8, 31, 100, 216, n_backgrounds=1)
    assert lb["background"]["name"].endswith("p.png") and lb["background"]["licence"] == "CC0-1.0"
    assert lb["background"]["scale"] == spec.background.scale and lb["background"]["flip"] == spec.background.flip
    photo = B.prepare(B.decode(folder / "p.png"), (64, 64), 0.5)
    expect = np.rint(B.background_pixels(photo, (64, 64), spec.background)).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.imread(str(b / "v100.png")), cv2.COLOR_BGR2RGB)
    far = cv2.dilate(mask_a, np.ones((7, 7), np.uint8)) == 0
    assert far.sum() > 1000
    np.testing.assert_array_equal(rgb[far], expect[far])
    # the lights: as drawn, in the record, and counted by the exposure
    assert [li["type"] for li in lb["lights"]] == [li.type for li in spec.lights]
    assert [li["power"] for li in lb["lights"]] == [li.power for li in spec.lights]
    assert all(li["watts"] > 0 and 0 <= li["facing"] <= 1 for li in lb["lights"])
    assert lb["hdri"]["lights_factor"] == pytest.approx(1 + sum(li["power"] * li["facing"] for li in lb["lights"]))
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert [r["name"] for r in run["backgrounds"]] == [lb["background"]["name"]]
    assert run["backgrounds"][0]["licence"] == "CC0-1.0" and "backgrounds" not in json.loads(
        (tmp_path / "a" / "run.json").read_text())


# ----------------------------------------------------------------------------- training-time effects

def test_amplitude_mix_keeps_the_phase():
    from train.augment import amplitude_mix

    rng = np.random.default_rng(0)
    a, b = rng.random((32, 32, 3)) * 255, rng.random((32, 32, 3)) * 255
    out = amplitude_mix(a, b, 0.4)
    fa, fo, fb = (np.fft.fft2(x, axes=(0, 1)) for x in (a, out, b))
    keep = np.abs(fo) > 1e-6 * np.abs(fo).max()
    phase_err = np.abs(np.angle(fo[keep] * np.conj(fa[keep])))
    assert phase_err.max() < 1e-6
    np.testing.assert_allclose(np.abs(fo), 0.6 * np.abs(fa) + 0.4 * np.abs(fb), rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(amplitude_mix(a, b, 0.0), a, atol=1e-9)


def test_sensor_effects_change_the_image_only(tiny_ds):
    from train.augment import AugmentParams, make_view, sensor_effects
    from train.data import MixedDataset, ShardSource

    src = ShardSource(tiny_ds, "all")
    raw = src.get(3)
    on = AugmentParams(amplitude_mix_prob=1.0, blur_prob=1.0, noise_prob=1.0, noise_photons=200.0,
                       white_balance=0.2, jpeg_prob=1.0)
    off = AugmentParams()
    img = np.full((16, 16, 3), 100.0, np.float32)
    x = sensor_effects(img, np.random.default_rng(1), on, partner=np.full((16, 16, 3), 50.0))
    assert x.shape == (16, 16, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 255
    assert not np.allclose(x, img)
    np.testing.assert_array_equal(sensor_effects(img, np.random.default_rng(1), off), img)
    v_off = make_view(raw, np.random.default_rng(4), off, 64)
    v_on = make_view(raw, np.random.default_rng(4), on, 64, np.random.default_rng(9), partner=np.zeros((64, 64, 3)))
    assert v_on["img"].shape == v_off["img"].shape and v_on["img"].dtype == np.float32
    assert not np.array_equal(v_on["img"], v_off["img"])
    for k in v_off:
        if k != "img":
            np.testing.assert_array_equal(v_on[k], v_off[k], err_msg=k)
    # in the dataset: deterministic per sample seed; labels as without the effects
    ds_on, ds_off = MixedDataset([src], on, 64), MixedDataset([src], off, 64)
    s1, s2, s0 = ds_on[(0, 3, 77)], ds_on[(0, 3, 77)], ds_off[(0, 3, 77)]
    assert all(np.array_equal(s1[k].numpy(), s2[k].numpy()) for k in s1)
    assert all(np.array_equal(s1[k].numpy(), s0[k].numpy()) for k in s1 if k != "img")
    assert not np.array_equal(s1["img"].numpy(), s0["img"].numpy())
    # older checkpoints' configs lack the keys: they take the defaults (off)
    assert AugmentParams.from_config({k: v for k, v in vars(AugmentParams()).items() if "jpeg" not in k}) == off


def test_augment_config_keys_are_validated():
    from train.config import ConfigError as TrainConfigError
    from train.config import load_config
    from train.schema import PRETRAIN_SCHEMA, TRAIN_SCHEMA

    for schema in (TRAIN_SCHEMA, PRETRAIN_SCHEMA):
        with pytest.raises(TrainConfigError, match="augment.jpeg_quality"):
            load_config(schema, None, {"augment": {"jpeg_quality": [90, 20]}})
        with pytest.raises(TrainConfigError, match="augment.amplitude_mix_prob"):
            load_config(schema, None, {"augment": {"amplitude_mix_prob": 1.5}})
        assert load_config(schema)["augment"]["amplitude_mix_prob"] == 0.0


def test_pack_records_the_background_licences_it_uses(tmp_path):
    from support.toy_data import make_render_dir, run_pack

    from datagen.dataset.pack import PackError

    render = make_render_dir(tmp_path / "r", n_poses=3, n_views=2, size=32)
    run = json.loads((render / "run.json").read_text())
    run["backgrounds"] = [{"name": "photos/a.png", "file": "photos/a.png", "licence": "CC0-1.0"},
                          {"name": "photos/b.png", "file": "photos/b.png", "licence": "unknown, user-supplied"},
                          {"name": "photos/c.png", "file": "photos/c.png", "licence": "public domain"}]
    (render / "run.json").write_text(json.dumps(run))
    labels = sorted((render / "items").glob("*/v*.json"))
    for i, f in enumerate(labels):
        rec = json.loads(f.read_text())
        rec["background"] = None if i % 2 else {"name": "photos/c.png" if i else "photos/a.png", "flip": False}
        f.write_text(json.dumps(rec))
    run_pack(render, tmp_path / "ds")
    m = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert [b["name"] for b in m["licences"]["backgrounds"]] == ["photos/a.png", "photos/c.png"]
    assert "backgrounds" not in m["render_run"]
    rec = json.loads(labels[0].read_text())
    rec["background"]["name"] = "photos/zzz.png"
    labels[0].write_text(json.dumps(rec))
    with pytest.raises(PackError, match="zzz.png"):
        run_pack(render, tmp_path / "ds2")


def test_job_driver_plans_with_backgrounds_and_refuses_a_corrupt_one(tmp_path, cache_dir, prepared, capsys):
    from support.driver import run_driver

    folder = tmp_path / "photos"
    folder.mkdir()
    _save(folder / "good.png", _photo())
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[hdri]\nsources = ["builtin"]\n[backgrounds]\nsources = ["{folder}"]\nshare = 0.5\n'
                   f'[lights]\ncount = [0, 2]\n')
    args = ["--config", cfg, "--out", tmp_path / "r", "--poses", "0-1", "--views", "0-3", "--cache", cache_dir,
            "--dry-run", "--no-progress"]
    assert run_driver(args) == 0
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\1" * 30)
    assert run_driver(args) == 2
    assert "bad.png" in capsys.readouterr().err


@pytest.mark.blender
def test_blenders_image_loader_decodes_like_pillow(tmp_path):
    """Inside a `blender` binary (no Pillow) discovery decodes with Blender's loader: same pixels."""
    png = _save(tmp_path / "a.png", _photo(30, 40, 4))
    np.testing.assert_array_equal(B._decode_bpy(png), B.decode(png))
    bad = tmp_path / "z.png"
    bad.write_bytes(b"junk")
    with pytest.raises(B.BackgroundError, match="z.png"):
        B._decode_bpy(bad)
