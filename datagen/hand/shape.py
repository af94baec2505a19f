"""Hand shapes: per-pose phenotypes drawn from the config's ranges, and how big the hands are.

`[hand.shape]` (datagen.config) gives [low, high] ranges for some of the hand model's
phenotypes (anny's gender, age, muscle, weight, height, proportions; each in [0, 1], 0.5 = the
average adult); the others keep their `[hand.phenotype]` value.  Every pose draws its hand:

- draws are per canonical pose (`SeedSequence([seed, canonical id, SHAPE_STREAM])`), so poses
  the paper's table repeats under two ids (datagen.poses.canonical_ids) stay identical, and
  nothing depends on how work is split;
- one uniform number per phenotype of the model, in the model's phenotype order, whether or
  not that phenotype has a range: widening one range never changes another phenotype's draw.

The measurements (`hand_measures`) are taken on a shape's open hand (base pose 0, all fingers
extended, hand frame): hand length = wrist keypoint to the middle fingertip; palm width = index
MCP to little MCP joint centres; palm breadth = the skin's width across the metacarpal heads
(palm and fingers, not the thumb) (what anthropometry calls hand breadth); bone lengths = distances between consecutive
keypoints of each finger.  The shape band (`shape_band`) names a hand by its hand length
against fixed edges (`BAND_EDGES_MM`), so an item's band depends on its own hand only.

numpy only (the renderer reads the bands inside Blender's own Python).
"""

from __future__ import annotations

import numpy as np

SHAPE_STREAM = 0x5AE  # third SeedSequence word: shape draws never reuse item, wrist or splay draws
# Hand length (mm, wrist keypoint -> middle fingertip, open hand) band edges: "small" below the
# first, "large" from the second: the terciles of configs/shapes.toml's 1235 drawn hands
# (177.4 and 188.1 mm, docs/POSES.md "Hand shapes").
BAND_EDGES_MM = (177.0, 188.0)
BAND_NAMES = ("small", "medium", "large")

# Published adult hand sizes (mm), 5th / 50th / 95th percentiles: Pheasant & Haslegrave,
# Bodyspace (3rd ed., 2006), British adults aged 19-65.  Hand length: distal wrist crease to the
# tip of the middle finger; hand breadth: across the palm at the metacarpal heads.
ANTHROPOMETRY_MM = {
    "hand_length": {"men": (173.0, 189.0, 205.0), "women": (159.0, 174.0, 189.0)},
    "hand_breadth": {"men": (78.0, 87.0, 95.0), "women": (69.0, 76.0, 83.0)},
}


def draw_phenotypes(canonical: np.ndarray, seed: int, names: tuple[str, ...], base: dict[str, float],
                    ranges: dict[str, tuple[float, float]]) -> np.ndarray:
    """(P, K) phenotype values per pose, K = len(names), from each pose's canonical id.

    `names`: the hand model's phenotypes (the draw order); `base`: their [hand.phenotype]
    values (used where `ranges` has no entry); `ranges`: [hand.shape]."""
    canonical = np.asarray(canonical, dtype=np.int64)
    out = np.empty((len(canonical), len(names)))
    drawn: dict[int, np.ndarray] = {}
    for i, c in enumerate(canonical.tolist()):
        if c not in drawn:
            drawn[c] = draw_phenotype(c, seed, names, base, ranges)
        out[i] = drawn[c]
    return out


def draw_phenotype(canonical_id: int, seed: int, names: tuple[str, ...], base: dict[str, float],
                   ranges: dict[str, tuple[float, float]], attempt: int = 0) -> np.ndarray:
    """(K,) one canonical pose's phenotypes; `attempt` k > 0 is the k-th redraw (from
    SeedSequence([seed, canonical id, SHAPE_STREAM, k]): datagen.poses.shapes redraws a hand
    that would make its pose interpenetrate)."""
    lo = np.array([ranges[n][0] if n in ranges else base[n] for n in names], dtype=np.float64)
    hi = np.array([ranges[n][1] if n in ranges else base[n] for n in names], dtype=np.float64)
    words = [int(seed), int(canonical_id), SHAPE_STREAM] + ([int(attempt)] if attempt else [])
    u = np.random.default_rng(np.random.SeedSequence(words)).random(len(names))
    return lo + u * (hi - lo)


FINGER_KEYPOINTS = {"thumb": (1, 2, 3, 4), "index": (5, 6, 7, 8), "middle": (9, 10, 11, 12),
                    "ring": (13, 14, 15, 16), "little": (17, 18, 19, 20)}
BONE_NAMES = tuple(f"{f}_{i}" for f in FINGER_KEYPOINTS for i in (1, 2, 3))


def hand_measures(keypoints: np.ndarray, dense_vertices: np.ndarray | None = None,
                  dense_part: np.ndarray | None = None) -> dict[str, float]:
    """Sizes (metres) of one open hand: keypoints (21, 3), optionally the dense mesh and parts
    (for the palm's skin breadth).  See the module docstring for the definitions."""
    k = np.asarray(keypoints, dtype=np.float64)
    out = {"hand_length_m": float(np.linalg.norm(k[12] - k[0])),
           "palm_width_m": float(np.linalg.norm(k[5] - k[17]))}
    for f, ids in FINGER_KEYPOINTS.items():
        for i in (1, 2, 3):
            out[f"{f}_{i}_m"] = float(np.linalg.norm(k[ids[i]] - k[ids[i - 1]]))
    if dense_vertices is not None and dense_part is not None:
        part = np.asarray(dense_part)
        V = np.asarray(dense_vertices)[(part == 0) | ((part >= 2) & (part <= 5))]  # palm and fingers, no thumb
        # Across the metacarpal heads: a 6 mm slab (along +y) around the index-little MCP line,
        # measured along the line's direction.
        a, b = k[5], k[17]
        u = (a - b) / np.linalg.norm(a - b)
        mid = 0.5 * (a + b)
        rel = V - mid
        along = rel @ u
        height = np.linalg.norm(rel - along[:, None] * u, axis=1)
        slab = np.abs(rel[:, 1]) < 0.003
        sel = slab & (height < 0.03)
        if sel.any():
            out["palm_breadth_m"] = float(along[sel].max() - along[sel].min())
    return out


def shape_band(hand_length_m: float) -> str:
    """The band name of a hand of this length (BAND_EDGES_MM)."""
    mm = 1000.0 * float(hand_length_m)
    return BAND_NAMES[int(np.searchsorted(np.asarray(BAND_EDGES_MM), mm, side="right"))]


def shape_record(names, values, hand_length_m: float, palm_width_m: float) -> dict:
    """The item JSON's `shape` record for one pose (docs/LABELS.md)."""
    return {"phenotype": {str(n): round(float(v), 6) for n, v in zip(names, values)},
            "band": shape_band(hand_length_m),
            "hand_length_m": round(float(hand_length_m), 6),
            "palm_width_m": round(float(palm_width_m), 6)}


__all__ = ["ANTHROPOMETRY_MM", "BAND_EDGES_MM", "BAND_NAMES", "BONE_NAMES", "SHAPE_STREAM", "draw_phenotype",
           "draw_phenotypes",
           "hand_measures", "shape_band", "shape_record"]
