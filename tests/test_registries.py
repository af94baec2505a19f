"""The registries (hand models, camera samplers, label passes) and the toy plugins that use them.

The toy hand model, camera sampler and label pass are defined in one file, tests/toy_plugins.py,
and nothing else: these tests show they go through the prepared tables, the renderer (real
bpy), the packer, verify and the reader - and that the built-in entries still produce exactly
what the code wrote before the registries (digests, cache keys, file bytes).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import toy_plugins
from support.config_errors import assert_config_error
from support.mapping import ToyMapping
from datagen import atomic
from datagen.cameras import CAMERA_SAMPLERS, Views, check_views, views_for
from datagen.config import LATER_KEYS, LATER_SECTIONS, Config, canonical_dict, config_from_dict
from datagen.hand import HAND_MODELS, hand_model_entry
from datagen.labels.passes import (
    BUILTIN_PASSES,
    LABEL_PASSES,
    RESERVED_NAMES,
    ItemContext,
    LabelPass,
    compute_passes,
    passes_for,
    register_label_pass,
    write_passes,
)
from datagen.registry import PLUGINS_ENV, PluginError, Registry, UnknownName, load_plugins, resolve
from datagen.render.layout import item_paths
from datagen.render.resume import config_fingerprint

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def toy_config(**sections) -> Config:
    raw = {"hand": {"model": "toy"}, "cameras": {"sampler": "ring", "width": 64, "height": 64,
                                                  "focal_px": 373.3511425 / 4, "options": {"views": 4}},
           "render": {"label_passes": ["part"]}}
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v}
    return config_from_dict(raw)


def plugin_env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]), **{PLUGINS_ENV: "toy_plugins"})


# ---------------------------------------------------------------------------------------------
# The generic registry
# ---------------------------------------------------------------------------------------------


def test_registry_names_entries_and_refuses_silent_overrides():
    reg: Registry = Registry("widget", how_to_add="see the widget docs")

    @reg.register("round")
    def round_widget():
        return "round"

    reg.register("square", "square")
    assert reg.names() == ("round", "square") and "round" in reg and reg.get("round") is round_widget
    with pytest.raises(UnknownName) as e:
        reg.get("hexagonal")
    assert "unknown widget 'hexagonal'" in str(e.value) and "'round', 'square'" in str(e.value)
    assert "see the widget docs" in str(e.value)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("square", "another square")
    reg.register("square", "another square", replace=True)
    with reg.temporarily("square", "third"):
        assert reg.get("square") == "third"
    assert reg.get("square") == "another square"
    with pytest.raises(ValueError, match="non-empty"):
        reg.register(" padded ", 1)
    assert resolve("datagen.registry:resolve") is resolve and resolve(None) is None


def test_plugins_load_from_the_environment(monkeypatch):
    monkeypatch.setenv(PLUGINS_ENV, "toy_plugins, no_such_plugin_module")
    with pytest.raises(PluginError, match="no_such_plugin_module"):
        load_plugins()
    monkeypatch.setenv(PLUGINS_ENV, "toy_plugins")
    load_plugins()  # already imported by this module: importing it again registers nothing twice
    assert hand_model_entry("toy").title == "toy procedural right hand"


def test_a_fresh_process_finds_plugins_through_the_environment():
    code = ("from datagen.config import config_from_dict; c = config_from_dict({'hand': {'model': 'toy'}, "
            "'render': {'label_passes': ['part']}}); print(c.hand.model, c.hand.phenotype, c.render.label_passes)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=plugin_env(), cwd=REPO)
    assert r.returncode == 0 and "toy {'finger_length': 0.5} ('part',)" in r.stdout, r.stderr
    env = dict(plugin_env())
    env.pop(PLUGINS_ENV)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert r.returncode != 0 and "hand.model = 'toy'" in r.stderr and "'anny'" in r.stderr
    assert PLUGINS_ENV in r.stderr  # the message says how a plugin is loaded


# ---------------------------------------------------------------------------------------------
# Config: names and parameters come from the registries
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, words", [
    ({"hand": {"model": "mano"}}, ["hand.model = 'mano'", "'anny'", "'toy'"]),
    ({"hand": {"model": "toy", "phenotype": {"age": 0.3}}}, ["hand.phenotype.age", "hand model 'toy'",
                                                              "finger_length"]),
    ({"hand": {"phenotype": {"finger_length": 0.3}}}, ["hand.phenotype.finger_length", "'anny'"]),
    ({"cameras": {"sampler": "grid"}}, ["cameras.sampler = 'grid'", "'hemisphere'", "'ring'"]),
    ({"cameras": {"options": {"views": 4}}}, ["cameras.options.views", "'hemisphere'"]),
    ({"cameras": {"sampler": "ring", "options": {"views": 0}}}, ["cameras.options.views = 0"]),
    ({"cameras": {"sampler": "ring", "options": {"views": 2.5}}}, ["cameras.options.views", "integer"]),
    ({"cameras": {"sampler": "ring", "options": "many"}}, ["cameras.options must be a table"]),
    ({"render": {"label_passes": ["normals"]}}, ["render.label_passes", "'normals'", "'part'"]),
    ({"render": {"label_passes": ["depth"]}}, ["render.label_passes", "'depth'", "anyway"]),
    ({"render": {"label_passes": ["part", "part"]}}, ["twice"]),
])
def test_config_takes_names_and_parameters_from_the_registries(raw, words):
    assert_config_error(raw, words)


def test_toy_config_fills_the_entries_defaults():
    cfg = toy_config()
    assert cfg.hand.phenotype == {"finger_length": 0.5}
    assert cfg.cameras.options == {"views": 4, "elevation_deg": 20.0}
    assert config_from_dict({}).cameras.options == {} and config_from_dict({}) == Config()


def test_new_keys_keep_old_digests_and_old_render_dirs_resumable():
    """A run.json written before sampler/options/label_passes (or the pose options splay,
    splay_scale, families) existed means the default values:
    same config digest (cache index, job keys), same compatibility fingerprint."""
    new = Config().to_dict()
    old = json.loads(json.dumps(new))
    # every later key whose default means "as before it existed" (sampler, options, label_passes,
    # samples_without_denoiser, the pose options, skin.creases off); the exposure keys' defaults
    # do not (the "skin" exposure renders other images)
    for (section, key), value in LATER_KEYS.items():
        if old[section].get(key, object()) == value:
            del old[section][key]
    for section in LATER_SECTIONS:  # added later ([backgrounds], [lights], [occluders]): absent when off
        if old[section] == {}:
            del old[section]
    legacy_digest = hashlib.sha256(json.dumps(old, sort_keys=True, default=list).encode()).hexdigest()[:16]
    assert Config().digest() == legacy_digest
    assert config_fingerprint(old) == config_fingerprint(new)
    assert canonical_dict(new) == old
    toy = toy_config().to_dict()
    assert config_fingerprint(toy) != config_fingerprint(new) and toy_config().digest() != Config().digest()


def test_a_run_from_before_the_skin_exposure_rule_resumes_only_with_the_old_rule():
    """run.json written before [hdri] exposure existed was exposed by the camera-side rule: the
    default ("skin") renders other images, so it must not resume into it; "camera_side" may."""
    import dataclasses

    new = Config().to_dict()
    old = json.loads(json.dumps(new))
    del old["hdri"]["exposure"], old["hdri"]["exposure_target"], old["skin"]["creases"]
    assert config_fingerprint(old) != config_fingerprint(new)
    legacy = Config(hdri=dataclasses.replace(Config().hdri, exposure="camera_side"))
    assert config_fingerprint(old) == config_fingerprint(legacy.to_dict())


# ---------------------------------------------------------------------------------------------
# Hand models
# ---------------------------------------------------------------------------------------------


def test_anny_entry_carries_what_run_json_and_the_cache_key_used_to_hard_code():
    from datagen.poses import construction as P
    from datagen.poses.prepared import _pose_space_digest

    entry = hand_model_entry("anny")
    assert entry.record()["name"] == "anny right hand" and "Apache-2.0" in entry.record()["licence"]["licence"]
    assert entry.package_versions() == {"anny": importlib.metadata.version("anny")}
    cfg = config_from_dict({"hand": {"forearm": False}})  # the hand alone: the default before the forearm
    hand = {k: v for k, v in cfg.hand.__dict__.items() if k in ("model", "phenotype", "subdivision_levels")}
    legacy = {"hand": hand, "poses": {"interpolation_steps": 3}, "extended": P.EXTENDED, "bent": P.BENT,
              "thumb": [P.THUMB_EXTENDED, P.THUMB_BENT], "version": 4, "anny": importlib.metadata.version("anny")}
    expect = hashlib.sha256(json.dumps(legacy, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert _pose_space_digest(cfg) == expect  # prepared caches and run.json prepared_key stay valid
    assert set(HAND_MODELS.names()) >= {"anny", "toy"}


def test_the_cache_key_takes_the_toy_entrys_versions_and_angles(monkeypatch):
    from datagen.poses.angles import DEFAULT_ANGLES
    from datagen.poses.prepared import _pose_space_digest

    cfg = toy_config()
    key = _pose_space_digest(cfg)
    entry = hand_model_entry("toy")
    with HAND_MODELS.temporarily("toy", entry.__class__(**{**entry.__dict__, "pose_angles": DEFAULT_ANGLES})):
        assert _pose_space_digest(cfg) != key  # other angle tables, other pose table
    with HAND_MODELS.temporarily("toy", entry.__class__(**{**entry.__dict__, "versions": lambda: {"toy_hand": "2"}})):
        assert _pose_space_digest(cfg) != key  # a new version of the model rebuilds the tables
    assert _pose_space_digest(cfg) == key


@pytest.fixture(scope="module")
def toy_tables(cache_dir):
    from datagen.poses.tables import ensure_tables

    return ensure_tables(toy_config(), cache_dir)


def test_toy_hand_model_goes_through_the_prepared_tables(toy_tables):
    T = toy_tables
    assert T.n_poses == 1520 and T.keypoints.shape == (1520, 21, 3) and T.base_vertices.shape[1] == 923
    assert T.licence == toy_plugins.TOY_LICENCE and T.versions == {"toy_hand": toy_plugins.TOY_VERSION}
    kp = T.keypoints
    assert np.allclose(kp[:, 0], 0, atol=1e-9)  # the wrist is the origin of the hand frame
    palm = kp[0, [0, 5, 9, 13, 17]].mean(0)
    for tip in (8, 12, 16, 20):  # the toy fist closes (its own, gentler, angle tables)
        assert np.linalg.norm(kp[31, tip] - palm) < 0.8 * np.linalg.norm(kp[0, tip] - palm)
    assert set(np.unique(T.dense_part)) == set(range(6))


def test_ring_sampler_views_and_columns(toy_tables):
    cfg = toy_config()
    views = views_for(cfg.cameras, toy_tables)
    assert len(views) == 4 and set(views.columns) == {"azimuth_deg", "slot"}
    assert np.allclose(views.columns["azimuth_deg"], [0, 90, 180, 270])
    for i in range(4):  # aimed at the palm centre, at the configured radius from it
        cam = views.R[i] @ toy_tables.palm_centre + views.t[i]
        assert np.allclose(cam[:2], 0, atol=1e-9) and cam[2] == pytest.approx(cfg.cameras.radius_m)
    assert set(views.arrays()) == {"K", "R", "t", "centres", "azimuth_deg", "slot", "width", "height"}
    with pytest.raises(AttributeError, match="longitude_deg"):
        _ = views.longitude_deg
    hemi = views_for(config_from_dict({}).cameras, toy_tables)
    assert len(hemi) == 216 and list(hemi.columns) == ["longitude_deg", "latitude_deg"]
    assert set(CAMERA_SAMPLERS.names()) >= {"hemisphere", "ring"}


@pytest.mark.parametrize("columns, words", [({"R": np.zeros(4)}, "reserved"), ({"a": np.zeros(3)}, "one row per view"),
                                            ({"a b": np.zeros(4)}, "identifier"),
                                            ({"a": np.array(["x"] * 4)}, "numbers")])
def test_sampler_columns_are_checked(columns, words):
    v = Views(np.eye(3), np.tile(np.eye(3), (4, 1, 1)), np.zeros((4, 3)), np.zeros((4, 3)), 8, 8, columns)
    with pytest.raises(ValueError, match=words):
        check_views(v, "test")


def test_view_columns_pass_through_views_npz_to_tables_and_reader(tmp_path):
    from datagen.dataset.reader import ShardDataset
    from support.toy_data import make_render_dir, run_pack

    render = make_render_dir(tmp_path / "render", n_poses=2, n_views=3)
    with np.load(render / "views.npz") as z:
        views = dict(z)
    views["ring_slot"] = np.array([7, 8, 9], np.int32)  # a sampler's own column
    np.savez(render / "views.npz", **views)
    run_pack(render, tmp_path / "ds")
    with h5py.File(tmp_path / "ds" / "tables.h5") as f:
        assert f["views/ring_slot"][()].tolist() == [7, 8, 9] and f["views/ring_slot"].dtype == np.int32
        assert f["views/longitude_deg"].dtype == np.float64
    ds = ShardDataset(tmp_path / "ds", fields=("ids", "view_columns"))
    s = ds.read_sample(4)
    assert s["view_ring_slot"] == 7 + s["view_id"] and "view_longitude_deg" in s
    assert "view_ring_slot" not in ShardDataset(tmp_path / "ds").read_sample(0)  # opt-in field


# ---------------------------------------------------------------------------------------------
# Label passes
# ---------------------------------------------------------------------------------------------


def test_reserved_pass_names_cover_every_dataset_key():
    from datagen.dataset.reader import ALL_FIELDS
    from datagen.dataset.shards import SAMPLE_COLUMNS

    assert set(SAMPLE_COLUMNS) | {"skin", "extra_json"} <= RESERVED_NAMES
    assert set(ALL_FIELDS) - set(BUILTIN_PASSES) <= RESERVED_NAMES
    assert [p.name for p in passes_for(("part",))] == ["image", "mask", "depth", "part", "labels"]


@pytest.mark.parametrize("kw, words", [
    ({"name": "visible"}, "dataset's own keys"), ({"name": "Part"}, "lower_case"),
    ({"suffix": ".mask.png"}, "already label pass 'mask'"), ({"suffix": "png"}, "suffix"),
    ({"codecs": None}, "needs load, shape, codecs"), ({"compute": None}, "needs compute and save"),
])
def test_label_pass_registration_refuses_clashes(kw, words):
    base = dict(name="probe", suffix=".probe.png", description="", compute=lambda c: None, save=lambda *a: None,
                load=lambda *a: {}, shape=lambda h, w: (h, w), codecs=toy_plugins.PART_CODECS, default_codec="u8-gzip")
    with pytest.raises(ValueError, match=words):
        register_label_pass(LabelPass(**{**base, **kw}))
    assert "probe" not in LABEL_PASSES


def test_builtin_passes_write_the_bytes_the_renderer_always_wrote(toy_tables, tmp_path):
    """mask/depth/labels through the registry = the renderer's former direct writes."""
    from datagen.labels.visibility import compute_labels, label_record
    from datagen.scene.items import make_spec

    cfg = toy_config()
    views = views_for(cfg.cameras, toy_tables)
    spec = make_spec(cfg, 2, 31, 1, len(views))
    dense = toy_tables.dense_vertices(31)
    L = compute_labels(dense, toy_tables.dense_faces, toy_tables.keypoints[31], views.K, views.R[1], views.t[1], 64, 64)
    hdri, render, versions = {"name": "studio"}, {"samples": 1}, {"toy_hand": "1.0"}
    passes = passes_for(cfg.render.label_passes)
    values = compute_passes(passes, ItemContext(spec, L, dense, toy_tables, views.K, views.R[1], views.t[1], 64, 64,
                                                hdri=hdri, render=render, versions=versions))
    assert list(values) == ["mask", "depth", "part", "labels"]  # the image is Cycles'
    write_passes(passes, values, tmp_path / "new", 31, 1)
    old = item_paths(tmp_path / "old", 31, 1)
    old.label.parent.mkdir(parents=True)
    atomic.write_png(old.mask, L.mask.astype(np.uint8) * 255, level=6)
    atomic.save_npy(old.depth, L.depth.astype(np.float32))
    atomic.write_json(old.label, label_record(spec, L, views.K, views.R[1], views.t[1], hdri, render, versions))
    new = item_paths(tmp_path / "new", 31, 1)
    for a, b in ((old.mask, new.mask), (old.depth, new.depth), (old.label, new.label)):
        assert a.read_bytes() == b.read_bytes(), b.name
    part = toy_plugins.load_part(new.mask.with_name("v001.part.png"), 64, 64)["part"]
    assert np.array_equal(part > 0, L.mask) and len(np.unique(part[part > 0])) >= 3
    assert toy_plugins.check_part({"part": part, "mask": L.mask}) == []


# ---------------------------------------------------------------------------------------------
# End to end: render (real bpy) -> pack -> verify -> read, with all three toys
# ---------------------------------------------------------------------------------------------


@pytest.mark.blender
@pytest.mark.slow
def test_toy_plugins_render_pack_verify_read(tmp_path, cache_dir):
    from datagen.dataset.pack import pack
    from datagen.dataset.reader import HandShards
    from datagen.dataset.verify import verify
    from support.toy_data import rehash_manifest as _rehash

    cfg = tmp_path / "toy.toml"
    cfg.write_text('[hand]\nmodel = "toy"\n[hand.phenotype]\nfinger_length = 0.5\n'
                   '[cameras]\nsampler = "ring"\nwidth = 64\nheight = 64\nfocal_px = 93.33778562\n'
                   '[cameras.options]\nviews = 4\nelevation_deg = 30.0\n'
                   '[hdri]\nsources = ["builtin"]\n'
                   '[render]\nsamples = 1\ndenoise = false\nthreads = 2\nlabel_passes = ["part"]\n')
    render = tmp_path / "render"
    # A separate process that knows the toys only through HANDSYNTH_PLUGINS, like a render worker.
    r = subprocess.run([sys.executable, str(REPO / "blender_scripts" / "render.py"), "--config", str(cfg),
                        "--out", str(render), "--poses", "0,31", "--views", "0,3", "--cache", str(cache_dir),
                        "--no-progress"], capture_output=True, text=True, cwd=REPO, env=plugin_env(), timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    run = json.loads((render / "run.json").read_text())
    assert run["hand"] == hand_model_entry("toy").record() and run["n_views"] == 4
    with np.load(render / "views.npz") as z:
        assert np.allclose(z["azimuth_deg"], [0, 90, 180, 270]) and z["slot"].tolist() == [0, 1, 2, 3]
    lab = json.loads((render / "items/00031/v003.json").read_text())
    assert lab["versions"]["toy_hand"] == toy_plugins.TOY_VERSION and "anny" not in lab["versions"]
    assert sorted(p.name for p in (render / "items/00031").iterdir()) == [
        f"v{v:03d}{s}" for v in (0, 3) for s in (".depth.npy", ".json", ".mask.png", ".part.png", ".png")]

    n_dense = int(np.load(render / "hand.npz")["dense_shape"][0])
    m = pack(render, tmp_path / "ds", mapping=ToyMapping(n_dense), progress=False, log=lambda *_: None)
    assert m["counts"]["samples"] == 4 and m["encodings"]["part"]["codec"] == "u8-gzip"
    assert m["licences"]["hand"] == toy_plugins.TOY_LICENCE
    rep = verify(tmp_path / "ds")
    assert rep.ok, rep.text()

    ds = HandShards(tmp_path / "ds", fields=None)
    for i in range(len(ds)):
        s = ds.read_sample(i)
        p, v = s["pose_id"], s["view_id"]
        import cv2

        png = cv2.imread(str(render / f"items/{p:05d}/v{v:03d}.part.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(s["part"], png) and np.array_equal(s["part"] > 0, s["mask"])
        assert s["mask"].any() and len(np.unique(s["part"])) >= 3
    assert ds[0]["part"].dtype.is_floating_point is False  # torch tensor through HandShards
    ds.close()
    with_cols = HandShards(tmp_path / "ds", fields=("ids", "view_columns"))
    cols = with_cols.read_sample(3)
    with_cols.close()
    assert cols["view_azimuth_deg"] == 90.0 * cols["view_id"] and cols["view_slot"] == cols["view_id"]

    # verify runs the pass's own check: a part image that leaves the silhouette is reported
    shard = sorted((tmp_path / "ds").glob("shard-*.h5"))[0]
    with h5py.File(shard, "r+") as f:
        part = f["part"][0]
        part[0, 0] = 3  # a corner pixel, background in every ring view
        f["part"][0] = part
    _rehash(tmp_path / "ds", shard.name)
    bad = verify(tmp_path / "ds")
    assert "part vs silhouette" in bad.problems, bad.text()


@pytest.mark.blender
@pytest.mark.slow
def test_toy_plugins_need_numpy_only_in_blenders_python(toy_tables, cache_dir, tmp_path):
    """The plugins load where `blender -b -P render.py` runs: torch, scipy, cv2, anny unimportable."""
    from support.renders import BLENDER_PATH_CHECK

    cfg = tmp_path / "toy.toml"
    cfg.write_text('[hand]\nmodel = "toy"\n[cameras]\nsampler = "ring"\nwidth = 64\nheight = 64\n'
                   'focal_px = 93.33778562\n[cameras.options]\nviews = 4\n[hdri]\nsources = ["builtin"]\n'
                   '[render]\nsamples = 1\ndenoise = false\nthreads = 2\nlabel_passes = ["part"]\n')
    out = tmp_path / "b"
    r = subprocess.run([sys.executable, "-c", BLENDER_PATH_CHECK, str(REPO), "--config", str(cfg), "--out", str(out),
                        "--poses", "2", "--views", "3", "--cache", str(cache_dir)], capture_output=True, text=True,
                       env=plugin_env(), cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "items/00002/v003.part.png").exists() and (out / "items/00002/v003.json").exists()
