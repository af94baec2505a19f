"""Per-item random draws: every choice of an item comes from its own seed.

Every random choice of an item (HDRI, rotation, strength, skin, Cycles seed) comes from
``SeedSequence([config seed, pose_id, view_id])``, so it does not depend on which worker,
shard or order renders it.  numpy only (imported inside Blender).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datagen.seeds import OCCLUDER_STREAM, item_seed, item_stream  # noqa: F401 (re-exported)
from datagen.scene.backgrounds import BackgroundDraw, draw_background
from datagen.scene.lights import LightDraw, draw_lights
from datagen.scene.skin import SkinParams, draw_skin


@dataclass(frozen=True)
class ItemSpec:
    pose_id: int
    view_id: int
    item_id: int
    seed: tuple[int, int, int]  # SeedSequence entropy: (config seed, pose_id, view_id)
    hdri_index: int
    hdri_rotation_deg: float
    hdri_strength: float
    skin: SkinParams
    cycles_seed: int
    handedness: str = "right"  # "right" | "left" (the mirrored right hand; [hand] left_share)
    background: BackgroundDraw | None = None  # [backgrounds]: None = the HDRI's own background
    lights: tuple[LightDraw, ...] = ()  # [lights]: extra light sources

    @property
    def left(self) -> bool:
        return self.handedness == "left"

    @property
    def key(self) -> str:
        return f"{self.pose_id:05d}/v{self.view_id:03d}"


def make_spec(cfg, n_hdris: int, pose_id: int, view_id: int, n_views: int, n_backgrounds: int = 0) -> ItemSpec:
    """Draw an item's random choices from its own seed.

    Independent child streams (SeedSequence.spawn): 0 = environment (HDRI index,
    rotation, strength), 1 = skin, 2 = the Cycles sampling seed, 3 = handedness (one uniform
    draw u, left when u < [hand] left_share; nothing is drawn at left_share 0), 4 = background
    image ([backgrounds], drawn only when its share is > 0), 5 = extra lights ([lights], drawn
    only when count allows any), 6 = occluders (OCCLUDER_STREAM: drawn by the renderer with the
    posed mesh, datagen.scene.occluders), 16 = the camera jitter ([cameras.jitter],
    datagen.cameras.jitter, drawn there); adding a draw to one stream never changes the others, and child
    k is the same whatever number of children is spawned, so items stay bit-identical with the
    options off.  The HDRI (background) index depends on how many HDRIs (images) the sources hold.
    """
    if n_hdris < 1:
        raise ValueError("no HDRIs to choose from")
    env_ss, skin_ss, render_ss, hand_ss, bg_ss, light_ss = item_seed(cfg.seed, pose_id, view_id).spawn(6)
    env = np.random.default_rng(env_ss)
    index = int(env.integers(n_hdris))
    r0, r1 = cfg.hdri.rotation_deg
    rotation = float(r0 + (r1 - r0) * env.random())
    s0, s1 = cfg.hdri.strength
    strength = float(s0 + (s1 - s0) * env.random())
    skin = draw_skin(cfg.skin, np.random.default_rng(skin_ss))
    cycles_seed = int(render_ss.generate_state(1, np.uint32)[0] & 0x7FFFFFFF)
    background = None
    bgc = getattr(cfg, "backgrounds", None)
    if bgc is not None and bgc.share > 0:
        if n_backgrounds < 1:
            raise ValueError("[backgrounds] share > 0 but no background images to choose from")
        background = draw_background(bgc, n_backgrounds, np.random.default_rng(bg_ss))
    lights = ()
    lc = getattr(cfg, "lights", None)
    if lc is not None and lc.count[1] > 0:
        lights = draw_lights(lc, np.random.default_rng(light_ss))
    return ItemSpec(pose_id, view_id, pose_id * n_views + view_id, (int(cfg.seed), int(pose_id), int(view_id)),
                    index, rotation, strength, skin, cycles_seed, draw_handedness(cfg.hand.left_share, hand_ss),
                    background, lights)


def draw_handedness(left_share: float, ss: np.random.SeedSequence) -> str:
    """"left" with probability `left_share` (one uniform draw from `ss`), else "right"."""
    if left_share <= 0.0:
        return "right"
    return "left" if np.random.default_rng(ss).random() < left_share else "right"
