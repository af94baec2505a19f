"""Render benchmark: seconds per 256x256 image at the default settings, and a settings study.

    .venv/bin/python benchmarks/render_bench.py              # default settings (~2-4 min)
    .venv/bin/python benchmarks/render_bench.py --study      # + samples/adaptive/denoise/bounces grid
                                                              #   with PSNR/SSIM against a high-sample reference
    .venv/bin/python benchmarks/render_bench.py --study --study-samples 1,2,4,8,16 --study-items 8
                                                              # only sample counts (OIDN on): the samples study
    .venv/bin/python benchmarks/render_bench.py --config configs/quality-high.toml   # another config's cost

Every image is rendered by the real renderer (blender_scripts/scene.py SceneRenderer: the same
`render_item` the dataset runs use - scene update, labels, Cycles, PNG, mask, depth, JSON) into
out/bench/.  Per image it measures wall time and process CPU time, split into Cycles' own
render call (`bpy.ops.render.render`, which includes Cycles' scene sync and denoising) and
everything else (our scene updates, label computation, PNG encoding, file writes).
The scene build and the first render of the process (kernel loading) are reported apart:
they are paid once per worker process, not per image.

Core-hours for the whole dataset (1520 poses x 216 views = 328,320 images) are estimated from
the CPU seconds per image, which - unlike wall time - do not depend on how many cores the
process got on a shared machine.  The last line is machine-readable:
    render_s_per_image=X overhead_share=Y core_hours_full=Z
(X = wall seconds per image with the config's thread count; Y = share of the wall time per
image spent outside Cycles' render call; Z = CPU core-hours for 328,320 images).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

FULL_IMAGES = 1520 * 216


def pick_items(n_poses: int, n_views: int, n: int, seed: int = 7) -> list[tuple[int, int]]:
    """n items spread over poses and views (deterministic), pose-major."""
    rng = np.random.default_rng(seed)
    poses = rng.choice(n_poses, size=max(1, n // 4), replace=False)
    per = -(-n // len(poses))
    items = []
    for p in poses:
        items += [(int(p), int(v)) for v in rng.choice(n_views, size=per, replace=False)]
    return sorted(items[:n])


def run_setting(renderer, cfg, specs, out: Path, warmup_spec=None) -> dict:
    from blender_scripts.render import quiet_stdout

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if warmup_spec is not None:
        with quiet_stdout(True):
            renderer.render_item(warmup_spec, out / "warmup")
    rows = []
    for spec in specs:
        with quiet_stdout(True):
            rows.append(renderer.render_item(spec, out))
    keys = rows[0].keys()
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    mean["n"] = len(rows)
    return mean


def run_repose(renderer, specs, out: Path) -> tuple[dict, dict, float, float]:
    """What setting the mesh's vertices before every item costs (foreach_set + update, as a
    per-item wrist angle will; today they change only with the pose).  Every item is rendered
    twice, as it is and after re-posing, in alternating order (the first render of an item pays
    its HDRI switch).  Returns the mean timings of both and the mean paired difference of CPU
    seconds per image with its standard error."""
    from blender_scripts.render import quiet_stdout

    if out.exists():
        shutil.rmtree(out)
    rows = {False: [], True: []}
    for i, spec in enumerate(specs):
        for repose in ((False, True) if i % 2 == 0 else (True, False)):
            if repose:
                renderer._pose = None  # set_pose then writes the vertices again; Cycles re-syncs the mesh
            with quiet_stdout(True):
                rows[repose].append(renderer.render_item(spec, out / ("repose" if repose else "as_is")))
    mean = {k: {x: float(np.mean([r[x] for r in v])) for x in v[0]} for k, v in rows.items()}
    d = np.array([b["total_cpu_s"] - a["total_cpu_s"] for a, b in zip(rows[False], rows[True])])
    return mean[False], mean[True], float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    mse = d[mask].mean() if mask is not None else d.mean()
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def luminance(img_bgr: np.ndarray) -> np.ndarray:
    """Rec. 601 luma (0-255, float64) of an 8-bit BGR image (OpenCV's channel order)."""
    b, g, r = (img_bgr[..., i].astype(np.float64) for i in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


def ssim_map(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Per-pixel SSIM (Wang et al. 2004) of two 2D images on a 0-255 scale.

    Gaussian window sigma 1.5 truncated at 3.5 sigma (the paper's 11x11 window), K1 = 0.01,
    K2 = 0.03, L = 255; borders by reflection.  Mean of the map = the usual SSIM.
    """
    from scipy.ndimage import gaussian_filter

    a = a.astype(np.float64)
    b = b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    f = lambda x: gaussian_filter(x, sigma, truncate=3.5, mode="reflect")  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    var_a = f(a * a) - mu_a ** 2
    var_b = f(b * b) - mu_b ** 2
    cov = f(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))


def image_quality(out: Path, ref: Path, specs) -> tuple[float, float, float, float]:
    """Mean over items of PSNR (dB) and SSIM (luma) against the reference: whole image, and the
    hand (silhouette dilated by 2 px; SSIM = mean of the SSIM map over those pixels)."""
    import cv2
    from scipy.ndimage import binary_dilation

    from datagen.render.layout import item_paths

    full, hand, sfull, shand = [], [], [], []
    for s in specs:
        a = cv2.imread(str(item_paths(out, s.pose_id, s.view_id).rgb))
        b = cv2.imread(str(item_paths(ref, s.pose_id, s.view_id).rgb))
        m = cv2.imread(str(item_paths(ref, s.pose_id, s.view_id).mask), cv2.IMREAD_GRAYSCALE) > 127
        m = binary_dilation(m, iterations=2)
        full.append(psnr(a, b))
        hand.append(psnr(a, b, np.repeat(m[..., None], 3, axis=2)))
        sm = ssim_map(luminance(a), luminance(b))
        sfull.append(float(sm.mean()))
        shand.append(float(sm[m].mean()))
    return float(np.mean(full)), float(np.mean(hand)), float(np.mean(sfull)), float(np.mean(shand))


def fmt_row(name, m, quality=None) -> str:
    over = m["total_s"] - m["render_s"]
    share = over / m["total_s"]
    core_h = m["total_cpu_s"] * FULL_IMAGES / 3600
    q = (f"{quality[0]:7.2f} {quality[1]:7.2f} {quality[2]:7.4f} {quality[3]:7.4f}" if quality
         else f"{'-':>7s} {'-':>7s} {'-':>7s} {'-':>7s}")
    return (f"{name:<40s} {m['total_s']:7.3f} {m['render_s']:7.3f} {over:7.3f} {share:7.1%} "
            f"{m['labels_s']:7.3f} {m['total_cpu_s']:7.3f} {core_h:9.0f} {q}")


HEADER = (f"{'setting':<40s} {'s/img':>7s} {'cycles':>7s} {'other':>7s} {'other%':>7s} "
          f"{'labels':>7s} {'cpu_s':>7s} {'core_h':>9s} {'PSNR':>7s} {'PSNRh':>7s} {'SSIM':>7s} {'SSIMh':>7s}")


def study_rows(rc, ref_samples: int, samples_only=None):
    """(name, SceneRenderer kwargs, configure kwargs) of the settings study, reference first.

    samples_only: a list of sample counts - then the study is only those counts, each with the
    config's adaptive threshold and OIDN on (the samples study of docs/RENDERING.md)."""
    rows = [(f"reference s={ref_samples} ad=0 dn=on", {}, dict(samples=ref_samples, adaptive_threshold=0.0, denoise=True))]
    if samples_only:
        for s in samples_only:
            rows.append((f"s={s} ad={rc.adaptive_threshold:g} dn=on", {},
                         dict(samples=s, adaptive_threshold=rc.adaptive_threshold, denoise=True)))
        return rows
    for s in (8, 16, 32):
        for a in (0.05, 0.0):
            for d in (True, False):
                rows.append((f"s={s} ad={a:g} dn={'on' if d else 'off'}", {},
                             dict(samples=s, adaptive_threshold=a, denoise=d)))
    default = dict(samples=rc.samples, adaptive_threshold=rc.adaptive_threshold, denoise=rc.denoise)
    for label, extra in (("bounces max=2 diff=1 gloss=1", dict(max_bounces=2, diffuse_bounces=1, glossy_bounces=1)),
                         ("bounces max=8 diff=4 gloss=4", dict(max_bounces=8, diffuse_bounces=4, glossy_bounces=4)),
                         ("denoise prefilter ACCURATE", dict(denoising_prefilter="ACCURATE")),
                         ("denoise quality BALANCED", dict(denoising_quality="BALANCED")),
                         ("denoise quality FAST", dict(denoising_quality="FAST")),
                         ("persistent data off", dict(use_persistent_data=False)),
                         ("adaptive min samples 4", dict(adaptive_min_samples=4)),
                         ("adaptive 0.1 min samples 4", dict(adaptive_threshold=0.1, adaptive_min_samples=4))):
        rows.append((f"default + {label}", {}, dict(default, **extra)))
    for s, a, m in ((32, 0.1, 4), (64, 0.1, 4), (64, 0.05, 0)):
        rows.append((f"s={s} ad={a:g} min={m or 'auto'} dn=on", {},
                     dict(samples=s, adaptive_threshold=a, adaptive_min_samples=m, denoise=True)))
    for method in ("RANDOM_WALK_SKIN", "NONE"):
        rows.append((f"default + subsurface {method}", dict(subsurface_method=method), default))
    rows.append(("default (study items)", {}, default))
    return rows


def run_study(args, cfg, tables, views, hdris, out, warm, specs_for) -> None:
    """Every row on a fresh scene: Cycles keeps sampling tables sized for the largest sample
    count a process rendered, which would tie a row's noise to the rows before it."""
    from blender_scripts.scene import SceneRenderer

    study_specs = specs_for(pick_items(tables.n_poses, len(views), args.study_items, seed=11))
    ref = out / "reference"
    for i, (name, scene_kw, conf) in enumerate(study_rows(cfg.render, args.ref_samples, args.study_samples)):
        renderer = SceneRenderer(cfg, tables, views, hdris, threads=args.threads, **scene_kw)
        renderer.configure(**conf)
        o = ref if i == 0 else out / "study" / name.replace(" ", "_").replace("=", "")
        m = run_setting(renderer, cfg, study_specs, o, warmup_spec=warm)
        print(fmt_row(name, m, None if i == 0 else image_quality(o, ref, study_specs)), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=None)
    ap.add_argument("--items", type=int, default=12, help="images per setting (default 12)")
    ap.add_argument("--threads", type=int, default=None, help="override the config's render.threads")
    ap.add_argument("--study", action="store_true", help="also run the settings study with PSNR")
    ap.add_argument("--study-items", type=int, default=4)
    ap.add_argument("--study-samples", type=lambda t: [int(x) for x in t.split(",")], default=None,
                    metavar="N,N,...", help="with --study: only these sample counts (config's adaptive "
                    "threshold, OIDN on), e.g. 1,2,4,8,16")
    ap.add_argument("--ref-samples", type=int, default=512)
    ap.add_argument("--repose", action="store_true", help="also time the items with the mesh's vertices set "
                    "again before every item (foreach_set + update; what a per-item wrist angle costs), "
                    "paired item by item")
    ap.add_argument("--out", default=str(REPO / "out" / "bench"))
    args = ap.parse_args(argv)

    from blender_scripts.scene import SceneRenderer
    from datagen.cameras.hemisphere import views_for
    from datagen.config import load_config
    from datagen.scene.hdri import discover
    from datagen.poses.tables import ensure_tables
    from datagen.scene.items import make_spec

    cfg = load_config(args.config)
    tables = ensure_tables(cfg)
    views = views_for(cfg.cameras, tables)
    hdris, _ = discover(cfg.hdri.sources, REPO)
    backgrounds = []
    if cfg.backgrounds.share > 0:  # [backgrounds]: photos behind the hand (configs/backgrounds.toml)
        from datagen.scene.backgrounds import discover as discover_backgrounds

        backgrounds, _ = discover_backgrounds(cfg.backgrounds.sources, REPO)
    out = Path(args.out)
    n_v = len(views)

    def specs_for(items):
        s = [make_spec(cfg, len(hdris), p, v, n_v, len(backgrounds)) for p, v in items]
        return sorted(s, key=lambda x: (x.pose_id, x.hdri_index, x.view_id))

    load0 = os.getloadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    renderer = SceneRenderer(cfg, tables, views, hdris, threads=args.threads, backgrounds=backgrounds)
    build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    threads = renderer.scene.render.threads
    items = pick_items(tables.n_poses, n_v, args.items)
    specs = specs_for(items)
    warm = make_spec(cfg, len(hdris), 3, 5, n_v, len(backgrounds))
    from blender_scripts.render import quiet_stdout

    t0, c0 = time.perf_counter(), time.process_time()
    with quiet_stdout(True):
        renderer.render_item(warm, out / "first")
    first_s, first_cpu = time.perf_counter() - t0, time.process_time() - c0

    rc = cfg.render
    print(f"Render benchmark: {views.width}x{views.height}, Cycles {renderer.scene.cycles.device}, "
          f"{threads} thread(s), {len(specs)} images per setting, {len(hdris)} HDRIs, "
          f"load average at start {load0[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"once per process: scene build {build_s:.2f} s wall ({build_cpu:.2f} CPU), first render "
          f"{first_s:.2f} s wall ({first_cpu:.2f} CPU)")
    print("columns: wall seconds per image (total, Cycles' render call, everything else, its share, of which "
          "labels), CPU seconds per image, CPU core-hours for 328,320 images, PSNR vs reference (dB; "
          "whole image / hand region), SSIM of the luma vs reference (whole image / hand region)")
    print(HEADER)
    default_name = (f"default s={rc.samples} ad={rc.adaptive_threshold:g} "
                    f"dn={'on' if rc.denoise else 'off'}")
    default = run_setting(renderer, cfg, specs, out / "default")
    print(fmt_row(default_name, default), flush=True)

    if args.repose:
        as_is, repose, d, se = run_repose(renderer, specs, out / "repose")
        print(fmt_row("items as they come (paired run)", as_is))
        print(fmt_row("vertices set before every item", repose))
        print(f"vertices set before every item: {d:+.4f} CPU-s/image (paired, standard error {se:.4f})", flush=True)

    if args.study:
        run_study(args, cfg, tables, views, hdris, out, warm, specs_for)

    load1 = os.getloadavg()
    over_share = (default["total_s"] - default["render_s"]) / default["total_s"]
    core_h = default["total_cpu_s"] * FULL_IMAGES / 3600
    cpu_share = (default["total_cpu_s"] - default["render_cpu_s"]) / default["total_cpu_s"]
    print(f"default settings: {default['total_s']:.3f} s/image wall ({default['render_s']:.3f} in Cycles' render call), "
          f"{default['total_cpu_s']:.3f} CPU-s/image; outside Cycles: {over_share:.1%} of wall time, "
          f"{cpu_share:.1%} of CPU time")
    print(f"load average at end {load1[0]:.1f}; core-hours use CPU seconds (all threads of the process) "
          f"x {FULL_IMAGES} images")
    print(f"render_s_per_image={default['total_s']:.3f} overhead_share={over_share:.3f} core_hours_full={core_h:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
