"""The renderer under a real `blender` binary, the version tables, honest exit codes.

- `blender -b -P blender_scripts/render.py -- ...` (whatever Blender is on PATH: Debian's 3.4.1
  here, installed by .ci/run) renders the same items as the venv's bpy module (5.0.1) with
  identical labels: 2D keypoints to 1e-9 px, masks and visibility exactly, depth to 1e-6 m;
  what it could not apply as configured (AgX before 4.0, denoising without OpenImageDenoise)
  is recorded as a fallback, and the record holds what was applied;
- exit statuses inside Blender: a config value this Blender cannot honour -> 2 naming the
  key, numpy missing -> 2 with a one-line hint (Blender itself exits 0 after an exception);
- the tables of datagen/render/blender_versions.py (no Blender) and against the running builds;
- the job driver's workers: a worker that exits without its "done" line fails the job.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
RENDER = REPO / "blender_scripts" / "render.py"
BLENDER = shutil.which("blender")
needs_binary = pytest.mark.skipif(BLENDER is None, reason="no `blender` executable on PATH (apt-get install blender)")

ITEMS = ["--poses", "0", "--views", "0-2"]


def write_config(path: Path, extra: str = "") -> Path:
    """64 px, 1 sample: labels do not depend on the image, the test should be fast."""
    path.write_text(f"[cameras]\nwidth = 64\nheight = 64\nfocal_px = {373.3511425 * 64 / 256}\n"
                    f"[hdri]\nsources = [\"builtin\"]\n"
                    f"[render]\nsamples = 1\nsamples_without_denoiser = 2\nthreads = 2\n{extra}")
    return path


def blender(*args, timeout=300, pre: str | None = None) -> subprocess.CompletedProcess:
    """`blender -b [--python-expr PRE] -P render.py -- ARGS`: exactly the user's command."""
    cmd = [BLENDER, "-b", "--factory-startup", "-noaudio"]
    if pre:
        cmd += ["--python-expr", pre]
    cmd += ["-P", str(RENDER), "--"] + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=timeout,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))


def blender_version() -> tuple[int, int]:
    from datagen.render.blender_versions import parse_version

    out = subprocess.run([BLENDER, "--version"], capture_output=True, text=True, timeout=60).stdout
    return parse_version(out.split("Blender", 1)[1])


# ----------------------------------------------------------------------------- the binary

@pytest.fixture(scope="module")
def both_renders(cache_dir, prepared, tmp_path_factory):
    """The same 3 items rendered by the venv's bpy module and by `blender -b -P`."""
    from blender_scripts.render import main

    root = tmp_path_factory.mktemp("binary")
    cfg = write_config(root / "c.toml")
    ref = root / "module"
    # The module route also writes the cache index the Blender route follows.
    assert main(["--config", str(cfg), "--out", str(ref), "--cache", str(cache_dir), "--no-progress"] + ITEMS) == 0
    out = root / "binary"
    r = blender("--config", cfg, "--out", out, "--cache", cache_dir, "--no-progress", *ITEMS)
    return ref, out, r


LABEL_FIELDS_EXACT = ("pose_id", "view_id", "item_id", "seed", "image_size", "in_frame", "visible", "crossings",
                      "bbox_xyxy", "mask_area_px", "skin")


@pytest.mark.blender
@needs_binary
def test_blender_binary_labels_equal_the_bpy_module(both_renders):
    ref, out, r = both_renders
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "rendered=3" in r.stderr and "failed=0" in r.stderr
    worst = {"kp2d": 0.0, "kp3d": 0.0, "depth": 0.0}
    jsons = sorted((ref / "items").glob("*/v*.json"))
    assert len(jsons) == 3
    for j in jsons:
        a = json.loads(j.read_text())
        bpath = out / j.relative_to(ref)
        b = json.loads(bpath.read_text())
        for k in LABEL_FIELDS_EXACT:
            assert a[k] == b[k], (j.name, k)
        for k in ("K", "R", "t"):
            assert np.allclose(a[k], b[k], rtol=0, atol=1e-12), k
        worst["kp2d"] = max(worst["kp2d"], np.abs(np.subtract(a["keypoints_2d"], b["keypoints_2d"])).max())
        worst["kp3d"] = max(worst["kp3d"], np.abs(np.subtract(a["keypoints_3d_cam"], b["keypoints_3d_cam"])).max())
        for k in ("skin_distance_m", "depth_gap_m"):
            assert [x is None for x in a[k]] == [x is None for x in b[k]], k
            assert np.allclose([x or 0 for x in a[k]], [x or 0 for x in b[k]], rtol=0, atol=1e-9), k
        for k in ("name", "index", "rotation_deg", "strength"):  # the same draw of the same builtin set
            assert a["hdri"][k] == b["hdri"][k], k
        stem = j.name[:-5]
        ma = (j.parent / f"{stem}.mask.png").read_bytes()
        mb = (bpath.parent / f"{stem}.mask.png").read_bytes()
        assert ma == mb, "mask PNGs differ"
        da, db = np.load(j.parent / f"{stem}.depth.npy"), np.load(bpath.parent / f"{stem}.depth.npy")
        assert np.array_equal(da > 0, db > 0)
        worst["depth"] = max(worst["depth"], float(np.abs(da - db).max()))
        assert (bpath.parent / f"{stem}.png").stat().st_size > 1000  # an image was rendered
    assert worst["kp2d"] < 1e-9 and worst["kp3d"] < 1e-12 and worst["depth"] < 1e-6, worst
    ma, mb = np.load(ref / "meshes/pose_00000.npz"), np.load(out / "meshes/pose_00000.npz")
    assert all(np.array_equal(ma[k], mb[k]) for k in ("dense", "base", "keypoints"))
    print(f"labels module vs binary: max |d kp2d| {worst['kp2d']:.3g} px, |d kp3d| {worst['kp3d']:.3g} m, "
          f"|d depth| {worst['depth']:.3g} m")


@pytest.mark.blender
@needs_binary
def test_blender_binary_records_what_it_applied(both_renders):
    from datagen.render.blender_versions import resolve_view_transform

    ref, out, r = both_renders
    assert r.returncode == 0, r.stderr[-3000:]
    version = blender_version()
    run = json.loads((out / "run.json").read_text())
    item = json.loads((out / "items/00000/v000.json").read_text())
    assert run["versions"]["bpy"].startswith(f"{version[0]}.{version[1]}")
    choice = resolve_view_transform("AgX", version, None)
    for rec in (run["render"], item["render"]):
        assert rec["view_transform"] == choice.view_transform and rec["look"] == choice.look
        keys = {f["key"] for f in rec["fallbacks"]}
        assert ("render.view_transform" in keys) == (choice.fallback is not None)
        if not rec["denoise"]:  # no OpenImageDenoise in this build (Debian's): said, and nothing recorded
            assert "render.denoise" in keys
            # ... and more samples instead (render.samples_without_denoiser), recorded as applied
            assert "render.samples" in keys and rec["samples"] == 2
            assert not any(k.startswith("denoising_") or k == "denoiser" for k in rec)
        if version < (4, 2):
            assert "denoising_quality" not in rec
    for f in run["render"]["fallbacks"]:  # each said once, on stderr
        assert r.stderr.count(f["reason"]) == 1, f
    # the module route applied the config as written
    mod = json.loads((ref / "items/00000/v000.json").read_text())["render"]
    assert mod["view_transform"] == "AgX" and mod["denoise"] is True and mod["fallbacks"] == []


@pytest.mark.blender
@needs_binary
def test_blender_binary_bad_config_exits_2_naming_the_key(tmp_path):
    from datagen.render.blender_versions import VIEW_TRANSFORM_NAMES, allowed_view_transforms

    version = blender_version()
    # a plain config error (any Blender): exit 2, the key named, nothing rendered
    r = blender("--config", write_config(tmp_path / "a.toml", "adaptive_threshold = 2.0\n"),
                "--out", tmp_path / "a", *ITEMS)
    assert r.returncode == 2 and "render.adaptive_threshold" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "a").exists()
    # a view transform this Blender lacks, without a fallback: checked against the running Blender
    missing = [n for n in VIEW_TRANSFORM_NAMES if n not in allowed_view_transforms(version)]
    if missing:
        r = blender("--config", write_config(tmp_path / "b.toml", f"view_transform = {json.dumps(missing[0])}\n"),
                    "--out", tmp_path / "b", *ITEMS)
        assert r.returncode == 2, r.stderr[-2000:]
        line = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert line and "render.view_transform" in line[0] and "'Standard'" in line[0], r.stderr[-2000:]
        assert not (tmp_path / "b").exists()


@pytest.mark.blender
@needs_binary
def test_blender_binary_missing_cache_names_the_command_with_the_users_cache(tmp_path):
    cache = tmp_path / "my cache"
    r = blender("--out", tmp_path / "x", "--cache", cache, *ITEMS, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    cmd = [ln for ln in r.stderr.splitlines() if "--prepare-only" in ln]
    assert cmd and f"--cache '{cache}'" in cmd[0], r.stderr[-2000:]


@pytest.mark.blender
@needs_binary
def test_blender_binary_without_numpy_exits_2_with_a_hint(tmp_path):
    """Blender's own Python without numpy (Debian's blender without python3-numpy): before, a
    traceback and exit status 0."""
    r = blender("--out", tmp_path / "x", *ITEMS, pre="import sys; sys.modules['numpy'] = None", timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "python3-numpy" in errors[0] and "blender.org" in errors[0]
    assert "Traceback" not in r.stderr


@pytest.mark.blender
@needs_binary
def test_running_blender_matches_the_version_tables():
    """The tables against the Blender on PATH (scripts/blender_compat_check.py; also run with the
    bpy wheels 4.2.0 / 4.5.0 and the venv's 5.0.1)."""
    r = subprocess.run([BLENDER, "-b", "--factory-startup", "-noaudio", "-P", str(REPO / "scripts/blender_compat_check.py")],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "compat check: ok" in r.stdout


@pytest.mark.blender
def test_bpy_module_matches_the_version_tables():
    r = subprocess.run([sys.executable, str(REPO / "scripts/blender_compat_check.py")], capture_output=True,
                       text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "compat check: ok" in r.stdout


# ----------------------------------------------------------------------------- tables (no Blender)

def test_view_transforms_fall_back_by_version():
    from datagen.render.blender_versions import UnsupportedSetting, resolve_view_transform

    c = resolve_view_transform("AgX", (3, 4, 1))
    assert (c.view_transform, c.look) == ("Filmic", "Medium High Contrast")
    assert c.fallback.key == "render.view_transform" and c.fallback.used == "Filmic"
    assert "4.0" in c.fallback.reason
    for v in ((4, 0), (4, 2), (4, 5), (5, 0)):
        c = resolve_view_transform("AgX", v)
        assert (c.view_transform, c.look, c.fallback) == ("AgX", "AgX - Medium High Contrast", None)
    assert resolve_view_transform("Khronos PBR Neutral", "4.1").view_transform == "Standard"
    assert resolve_view_transform("Khronos PBR Neutral", "4.2.0 LTS").fallback is None
    assert resolve_view_transform("Filmic", (3, 4)).look == "None"
    assert resolve_view_transform("Standard", (5, 0)).look == "None"
    with pytest.raises(UnsupportedSetting) as e:
        resolve_view_transform("ACES 2.0", (4, 5))
    msg = str(e.value)
    assert "render.view_transform" in msg and "'AgX'" in msg and "5.0" in msg and "'ACES 2.0'" not in msg.split("here:")[1]
    # the running build decides: a custom OCIO config without Filmic leaves AgX nowhere to go
    with pytest.raises(UnsupportedSetting):
        resolve_view_transform("AgX", (3, 4), available=("Standard", "Raw"))
    assert resolve_view_transform("AgX", (3, 4), available=("Standard", "AgX")).fallback is None


def test_version_tables():
    from datagen.render import blender_versions as bv

    assert bv.parse_version("3.4.1") == (3, 4) and bv.parse_version((5, 0, 1)) == (5, 0)
    with pytest.raises(ValueError):
        bv.parse_version("blender")
    bv.check_supported((3, 4, 1))
    with pytest.raises(bv.UnsupportedSetting, match="3.4"):
        bv.check_supported((3, 3))
    assert bv.view_transforms_in((3, 4)) == ("Standard", "Filmic")
    assert bv.view_transforms_in((4, 5)) == ("Standard", "Filmic", "AgX", "Khronos PBR Neutral")
    assert set(bv.allowed_view_transforms((3, 4))) == {"Standard", "Filmic", "AgX", "Khronos PBR Neutral"}
    assert bv.allowed_view_transforms((5, 0)) == bv.VIEW_TRANSFORM_NAMES
    assert bv.principled_input("subsurface_weight", (3, 4)) == "Subsurface"
    assert bv.principled_input("subsurface_weight", (4, 0)) == "Subsurface Weight"
    assert bv.principled_input("specular", (3, 4)) == "Specular"
    assert bv.principled_input("specular", (5, 0)) == "Specular IOR Level"
    assert bv.principled_input("subsurface_scale", (3, 4)) is None
    assert bv.subsurface_method("RANDOM_WALK_SKIN", (3, 4)) == "RANDOM_WALK"
    assert bv.subsurface_method("RANDOM_WALK", (3, 4)) == "RANDOM_WALK_FIXED_RADIUS"
    assert bv.subsurface_method("BURLEY", (3, 4)) == bv.subsurface_method("BURLEY", (4, 2)) == "BURLEY"
    assert bv.specular_from_ior(1.5) == pytest.approx(0.5)  # F0 4 %: 3.x's default Specular
    assert bv.specular_from_ior(1.4) == pytest.approx(0.3472, abs=1e-4)
    assert not bv.has_cycles_setting("denoising_quality", (4, 1)) and bv.has_cycles_setting("denoising_quality", (4, 2))
    assert bv.has_cycles_setting("samples", (3, 4))
    assert bv.denoise_fallback(True, False).used is False
    assert bv.denoise_fallback(True, True) is None and bv.denoise_fallback(False, False) is None
    assert bv.look_name("AgX", "Punchy") == "AgX - Punchy" and bv.look_name("Filmic", None) == "None"


def test_config_accepts_every_known_view_transform_and_names_the_key():
    from datagen.render.blender_versions import VIEW_TRANSFORM_NAMES
    from datagen.config import ConfigError, config_from_dict

    for name in VIEW_TRANSFORM_NAMES:
        assert config_from_dict({"render": {"view_transform": name}}).render.view_transform == name
    with pytest.raises(ConfigError, match="render.view_transform"):
        config_from_dict({"render": {"view_transform": "Agx"}})


def test_blender_versions_needs_only_the_standard_library():
    code = textwrap.dedent("""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {"numpy", "bpy", "scipy", "torch"}:
                    raise ImportError(name)
        sys.meta_path.insert(0, Block())
        sys.path.insert(0, sys.argv[1])
        import datagen.render.blender_versions, datagen.config
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code, str(REPO)], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "ok", r.stderr


# ----------------------------------------------------------------------------- the job driver

FAKE_WORKER = """#!/bin/sh
# A render worker that answers like render.py --stdin; MODE=clean ends with its "done" line.
[ "$MODE" = bad-input ] && { echo "error: config: render.samples ..." >&2; exit 2; }
echo '@@handsynth {"status": "ready", "n_poses": 1, "n_views": 2}'
while read pose view; do
  echo "@@handsynth {\\"item_id\\": $view, \\"pose_id\\": $pose, \\"view_id\\": $view, \\"status\\": \\"ok\\"}"
done
[ "$MODE" = clean ] && echo '@@handsynth {"status": "done", "rendered": 2, "skipped": 0, "failed": 0}'
exit 0
"""


class _Tracker:
    def __init__(self):
        self.events, self.outcomes = [], []

    def event(self, kind, **kw):
        self.events.append((kind, kw))

    def outcome(self, o, worker, extra=None):
        self.outcomes.append(o)


@pytest.mark.parametrize("mode", ["clean", "no-done", "bad-input"])
def test_worker_that_exits_without_done_line_fails_the_job(tmp_path, mode):
    from datagen.render.workers import LocalPool, Policy, WorkerSpec

    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_WORKER)
    fake.chmod(0o755)
    spec = WorkerSpec(out=str(tmp_path), python=str(fake), extra_env=(("MODE", mode),))
    tracker = _Tracker()
    pool = LocalPool(spec, Policy(stop_grace=10), 1, tmp_path / "logs", "", tmp_path, tracker)

    class Block:
        items = [(0, 0), (0, 1)]

    pool.run([Block()])
    bad = [kw for kind, kw in tracker.events if kw.get("what") == "bad-exit"]
    if mode == "bad-input":  # reported by the start-up check alone
        assert "status 2 before it was ready" in pool.fatal and not bad and not tracker.outcomes
        return
    assert [o.status for o in tracker.outcomes] == ["ok", "ok"]
    if mode == "clean":
        assert pool.fatal is None and not bad
    else:
        assert pool.fatal and 'without its "done" line' in pool.fatal and "exit status 0" in pool.fatal
        assert len(bad) == 1


def test_blender_worker_command_sets_python_exit_code():
    from datagen.render.workers import WorkerSpec

    cmd = WorkerSpec(out="o", blender="/usr/bin/blender").command()
    i = cmd.index("--python-exit-code")
    assert cmd[i + 1] != "0" and cmd.index("-P") > i


def test_without_a_denoiser_more_samples_are_used_and_said():
    from datagen.render.blender_versions import samples_fallback

    fb = samples_fallback(2, 16)
    assert fb.key == "render.samples" and fb.requested == 2 and fb.used == 16
    assert samples_fallback(32, 16) is None  # already more than the floor: unchanged
