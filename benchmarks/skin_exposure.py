"""Rendered skin colour and exposure per HDRI and skin-tone band, measured on a RENDER_DIR.

    .venv/bin/python benchmarks/skin_exposure.py out/realism/default/renders [--json out.json]

For every item with an RGB image, a mask and a label JSON: the hand's pixels (mask eroded by
2 px, so the anti-aliased silhouette edge and the background do not leak in) give the mean
rendered skin colour (8-bit sRGB), its mean luminance Y (sRGB decoded to linear Rec.709, the
mean of the per-pixel Y) and CIE lightness L* of that Y, and the share of clipped skin pixels
(any channel >= 250: washed out), and the skin's exposure in stops over its albedo
(log2 of Y over the luminance of the mean of the item's dorsal and palmar albedo: 0 = the
skin shows its own albedo; the sd within a group measures how much the exposure varies).  Items are grouped by HDRI (label `hdri.name`) and by skin
tone band of `skin.melanin` (light [0, 1/3), medium [1/3, 2/3), dark [2/3, 1], as the realism
benchmark).  The exposure band (docs/RENDERING.md, "Exposure") is L* in [SKIN_LSTAR_BAND]:
an item outside it counts as washed out (above) or black (below).

Only numpy and Pillow; reads only the files the renderer writes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TONE_BANDS = (("light", 0.0, 1 / 3), ("medium", 1 / 3, 2 / 3), ("dark", 2 / 3, 1.0001))
# Realistic rendered skin lightness (CIE L*, D65) of a whole hand in a photo.  Skin colour
# surveys measure L* ~ 25-75 from the darkest to the lightest skin under controlled light
# (the tone model's albedos span L* 19-75); auto-exposed phone photos of hands put the
# lit skin mostly within that, and skin above L* ~85 reads as blown out, below ~15 as a
# silhouette.  An item whose mean skin L* leaves [15, 85] is "washed out" or "black".
SKIN_LSTAR_BAND = (15.0, 85.0)
CLIP_LEVEL = 250


def srgb_to_linear(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64) / 255.0
    return np.where(s <= 0.04045, s / 12.92, ((s + 0.055) / 1.055) ** 2.4)


def lstar(y: float | np.ndarray) -> np.ndarray:
    """CIE 1976 lightness of relative luminance Y in [0, 1]."""
    y = np.asarray(y, dtype=np.float64)
    f = np.where(y > (6 / 29) ** 3, np.cbrt(y), y / (3 * (6 / 29) ** 2) + 4 / 29)
    return 116 * f - 16


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(r):
        m = out.copy()
        m[1:] &= out[:-1]
        m[:-1] &= out[1:]
        m[:, 1:] &= out[:, :-1]
        m[:, :-1] &= out[:, 1:]
        out = m
    return out


def band_of(melanin: float) -> str:
    for name, lo, hi in TONE_BANDS:
        if lo <= melanin < hi:
            return name
    return TONE_BANDS[-1][0]


def measure_item(rgb: np.ndarray, mask: np.ndarray) -> dict | None:
    """Skin statistics of one image (H, W, 3) uint8 with a boolean mask; None if too few pixels."""
    m = erode(mask, 2)
    if m.sum() < 30:
        m = mask
    if m.sum() < 10:
        return None
    px = rgb[m][:, :3].astype(np.float64)
    lin = srgb_to_linear(px)
    y = lin @ np.array([0.2126, 0.7152, 0.0722])
    ymean = float(y.mean())
    return {"srgb": [float(x) for x in px.mean(axis=0)], "Y": ymean, "Lstar": float(lstar(ymean)),
            "clipped": float((px.max(axis=1) >= CLIP_LEVEL).mean()), "pixels": int(m.sum())}


def measure_dir(render_dir: Path) -> list[dict]:
    from PIL import Image

    items = []
    for js in sorted((render_dir / "items").glob("*/*.json")):
        png = js.with_suffix(".png")
        mpng = js.with_name(js.stem + ".mask.png")
        if not (png.is_file() and mpng.is_file()):
            continue
        lab = json.loads(js.read_text())
        rgb = np.asarray(Image.open(png).convert("RGB"))
        mask = np.asarray(Image.open(mpng)) > 127
        st = measure_item(rgb, mask)
        if st is None:
            continue
        h = lab.get("hdri", {})
        sk = lab["skin"]
        if "albedo_dorsal_linear" in sk and "albedo_palmar_linear" in sk:
            alb = 0.5 * np.asarray(sk["albedo_dorsal_linear"]) + 0.5 * np.asarray(sk["albedo_palmar_linear"])
            st["stops_over_albedo"] = float(np.log2(st["Y"] / float(alb @ [0.2126, 0.7152, 0.0722])))
        st.update(pose_id=lab["pose_id"], view_id=lab["view_id"], melanin=float(lab["skin"]["melanin"]),
                  band=band_of(float(lab["skin"]["melanin"])), hdri=h.get("name", "?"),
                  strength=h.get("strength"), film_exposure_stops=h.get("film_exposure_stops"))
        items.append(st)
    return items


def summarise(items: list[dict], key) -> dict:
    groups: dict[str, list[dict]] = {}
    for it in items:
        groups.setdefault(key(it), []).append(it)
    lo, hi = SKIN_LSTAR_BAND
    out = {}
    for k in sorted(groups, key=str):
        g = groups[k]
        L = np.array([it["Lstar"] for it in g])
        out[k] = {"n": len(g), "srgb": np.mean([it["srgb"] for it in g], axis=0).round(0).astype(int).tolist(),
                  "Y": float(np.mean([it["Y"] for it in g])), "Lstar": float(L.mean()),
                  "Lstar_min": float(L.min()), "Lstar_max": float(L.max()),
                  "washed": int((L > hi).sum()), "black": int((L < lo).sum()),
                  "clipped": float(np.mean([it["clipped"] for it in g]))}
        st = [it["stops_over_albedo"] for it in g if "stops_over_albedo" in it]
        out[k]["stops"] = float(np.mean(st)) if st else float("nan")
        out[k]["stops_sd"] = float(np.std(st)) if st else float("nan")
    return out


def table(title: str, summary: dict) -> str:
    lines = [f"| {title} | n | mean skin sRGB | Y | L* | L* min-max | >85 | <15 | clipped px | stops over albedo (sd) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for k, s in summary.items():
        lines.append(f"| {k} | {s['n']} | ({', '.join(str(x) for x in s['srgb'])}) | {s['Y']:.3f} | {s['Lstar']:.1f} | "
                     f"{s['Lstar_min']:.0f}-{s['Lstar_max']:.0f} | {s['washed']} | {s['black']} | {100 * s['clipped']:.1f}% | "
                     f"{s['stops']:+.2f} ({s['stops_sd']:.2f}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("render_dir", type=Path)
    ap.add_argument("--json", type=Path, default=None, help="write every item's numbers here")
    args = ap.parse_args(argv)
    if not (args.render_dir / "items").is_dir():
        print(f"skin_exposure: {args.render_dir} has no items/ folder (not a RENDER_DIR)", file=sys.stderr)
        return 2
    items = measure_dir(args.render_dir)
    if not items:
        print(f"skin_exposure: no rendered items in {args.render_dir}", file=sys.stderr)
        return 2
    all_ = summarise(items, lambda it: "all")
    print(table("all", all_))
    print()
    print(table("tone band", summarise(items, lambda it: it["band"])))
    print()
    print(table("HDRI", summarise(items, lambda it: it["hdri"].split("/")[-1])))
    print()
    bands = [b[0] for b in TONE_BANDS]
    cross = summarise(items, lambda it: (it["hdri"].split("/")[-1], it["band"]))
    print("| HDRI | " + " | ".join(f"{b}: n, sRGB, L*" for b in bands) + " |")
    print("|---|" + "---|" * len(bands))
    for h in sorted({k[0] for k in cross}):
        cells = []
        for b in bands:
            c = cross.get((h, b))
            cells.append(f"{c['n']}, ({', '.join(str(x) for x in c['srgb'])}), {c['Lstar']:.0f}" if c else "-")
        print(f"| {h} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"band": list(SKIN_LSTAR_BAND), "items": items}, indent=1))
    a = all_["all"]
    print(f"skin_items={a['n']} Lstar_mean={a['Lstar']:.1f} washed={a['washed']} black={a['black']} "
          f"clipped={a['clipped']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
