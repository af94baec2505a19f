"""Dataset configuration: one TOML file, defaults that reproduce the MobRecon paper.

Every value a run depends on lives here, so a config file plus a seed fully determines the
labels.  Validation happens at load time and names the offending key, so a typo never
surfaces hours into a render.  Only the standard library is imported with this module (it is
imported inside Blender's own Python too); validation asks the registries (datagen.registry)
for the known hand models, camera samplers and label passes, importing them (numpy) then.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datagen.errors import ConfigError  # raised here; the hand model raises it too
from datagen.render.blender_versions import VIEW_TRANSFORM_NAMES

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = REPO_ROOT / "configs" / "default.toml"

POLE_PRESETS = ("egocentric", "frontal", "dorsal", "palmar")
DEVICES = ("CPU", "CUDA", "OPTIX", "HIP", "ONEAPI", "METAL")
# Every name some supported Blender has; which ones the running Blender has (and the fallbacks
# for the others) is checked by the renderer before work (datagen/render/blender_versions.py).
VIEW_TRANSFORMS = VIEW_TRANSFORM_NAMES


def _default_phenotype() -> dict[str, float]:
    """The default hand model's (anny's) phenotypes, each at 0.5 (its registry entry lists them;
    imported here lazily: this module loads without numpy, for Blender's own Python)."""
    from datagen.hand.anny_hand import PHENOTYPES

    return {k: 0.5 for k in PHENOTYPES}


@dataclass(frozen=True)
class HandConfig:
    model: str = "anny"  # a name in datagen.hand.HAND_MODELS
    phenotype: dict[str, float] = field(default_factory=_default_phenotype)
    subdivision_levels: int = 1
    # The forearm (datagen.hand.forearm; docs/ARCHITECTURE.md "Keypoints").  On by default since
    # the realism benchmark measured it (docs/REALISM.md, "Forearm"), for hand models that have
    # one (others default to false); false = the hand alone, cut at the wrist (label_version 1).
    # With it, the wrist keypoint is the wrist joint centre (label_version 2) and the wrist
    # angles are drawn within these ranges (degrees):
    forearm: bool = True
    forearm_length_m: float = 0.23  # wrist joint centre -> cut plane (the elbow joint is ~0.243 m away)
    wrist_flexion_deg: tuple[float, float] = (-60.0, 30.0)  # + flexion (palmar), - extension (dorsal)
    wrist_deviation_deg: tuple[float, float] = (-10.0, 20.0)  # + ulnar, - radial
    # "item": the pose table keeps the arm straight and every item draws its own pair within the
    # ranges, pointing the arm away from its camera so that the cut end is never in frame
    # (datagen.scene.arm); "pose": one pair per pose, from [seed, pose_id] (datagen.poses.wrist).
    wrist_draw: str = "item"
    # Share of items rendered as left hands (the mirrored right hand; docs/ARCHITECTURE.md
    # "Frames and conventions"), drawn per item from its own seed (datagen.scene.items).  A
    # render-time choice: the hand and pose tables (and their cache keys) do not depend on it.
    left_share: float = 0.0
    # Shape diversity ([hand.shape], datagen.hand.shape; docs/POSES.md "Hand shapes"): phenotype =
    # [low, high] ranges; every canonical pose draws its hand's phenotypes uniformly within them
    # (phenotypes not listed keep their [hand.phenotype] value).  Empty (the default) = one hand.
    shape: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def arm_per_item(self) -> bool:
        """The forearm is on and every item draws its own wrist angles (datagen.scene.arm)."""
        return self.forearm and self.wrist_draw == "item"


# Human ranges of motion of the wrist (degrees; AAOS: flexion 80, extension 70, radial
# deviation 20, ulnar deviation 30-35): config ranges must stay inside them.
WRIST_FLEXION_LIMITS_DEG = (-70.0, 80.0)
WRIST_DEVIATION_LIMITS_DEG = (-20.0, 35.0)
WRIST_DRAWS = ("pose", "item")  # [hand] wrist_draw


@dataclass(frozen=True)
class PoseConfig:
    # Three poses strictly between each pair of base poses: t = 1/4, 1/2, 3/4 (paper, supp. 6).
    interpolation_steps: int = 3
    # Options beyond the paper (docs/POSES.md); at these values the table is the paper's, bit
    # for bit, and the keys are left out of digests and cache keys (LATER_KEYS).
    splay: bool = False  # per-pose MCP / thumb-CMC abduction of the paper's poses (datagen.poses.splay)
    splay_scale: float = 1.0  # share of the abduction ranges used, 0..1
    # Pose families after the paper's ids: name = number of poses (datagen.poses.families).
    families: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CameraJitterConfig:
    """[cameras.jitter]: per-item camera variety around each view (datagen.cameras.jitter,
    docs/RENDERING.md "Camera variety").  These defaults are "off": every item keeps its view's
    camera (and the key is left out of digests, LATER_KEYS)."""

    distance_scale: tuple[float, float] = (1.0, 1.0)  # camera distance to the aim, times U(lo, hi)
    focal_scale: tuple[float, float] = (1.0, 1.0)  # focal length times U(lo, min(hi, framing cap))
    roll_deg: tuple[float, float] = (0.0, 0.0)  # in-plane roll about the optical axis
    shift: float = 0.0  # principal point moved up to this fraction of the width / height
    margin_px: float = 4.0  # the hand's silhouette keeps this distance from every border


@dataclass(frozen=True)
class CameraConfig:
    longitudes: int = 36
    latitudes: int = 6
    longitude_step_deg: float = 10.0  # pi/18
    latitude_step_deg: float = 15.0  # pi/12
    latitude_start_deg: float = 0.0
    radius_m: float = 0.34
    # Hemisphere pole in the hand frame: a preset name or an [x, y, z] direction.
    pole: str | tuple[float, float, float] = "egocentric"
    width: int = 256
    height: int = 256
    focal_px: float = 373.3511425  # the released complement data's K
    # The camera sampler (datagen.cameras.CAMERA_SAMPLERS); the fields above from longitudes to
    # pole are the hemisphere's.  Other samplers take their own parameters from [cameras.options]
    # (their entry declares the names and defaults); K, the image size and the radius are shared.
    sampler: str = "hemisphere"
    options: dict[str, Any] = field(default_factory=dict)
    # Per-item variety around every view (distance, focal, roll, off-centre): off by default.
    jitter: CameraJitterConfig = field(default_factory=CameraJitterConfig)


@dataclass(frozen=True)
class HdriConfig:
    # "builtin" = the CC0 studio lights shipped inside the bpy package; other entries are
    # files or folders (relative to the repo root) holding .hdr/.exr files.
    sources: tuple[str, ...] = ("builtin", "hdri")
    strength: tuple[float, float] = (0.7, 1.4)
    rotation_deg: tuple[float, float] = (0.0, 360.0)
    # Exposure rule (docs/RENDERING.md, "Exposure"): "skin" exposes for the visible skin's
    # predicted irradiance; "camera_side" is the earlier rule (light on the camera-facing side).
    exposure: str = "skin"
    # "skin" rule: predicted skin radiance over albedo the exposure aims at (docs/RENDERING.md).
    exposure_target: float = 0.9
    # "skin" rule: share (0..1) of the skin tone's darkness the exposure makes up, in stops
    # (datagen.scene.skin.tone_exposure_factor); 0 = expose relative to the albedo (docs/REALISM.md).
    exposure_tone: float = 0.0


@dataclass(frozen=True)
class BackgroundConfig:
    # Ordinary images (PNG/JPEG) shown behind the hand instead of the HDRI's own background
    # (datagen/scene/backgrounds.py; docs/RENDERING.md "Backgrounds"): folders (searched
    # recursively) or files, relative to the repo root or absolute.  The HDRI still lights the
    # hand.  Off by default (no sources, share 0): the keys are then left out of digests.
    sources: tuple[str, ...] = ()
    share: float = 0.0  # fraction of items (drawn per item) with an image background
    scale: tuple[float, float] = (0.5, 1.0)  # crop side over the image's shorter side
    flip: bool = True  # mirror the crop left-right with probability 1/2


LIGHT_TYPES = ("area", "spot", "point")


@dataclass(frozen=True)
class LightsConfig:
    # Extra light sources per item besides the HDRI (datagen/scene/lights.py; docs/RENDERING.md
    # "Extra lights").  Off by default (count [0, 0]).
    count: tuple[int, int] = (0, 0)  # number of lights, uniform in [low, high]
    types: tuple[str, ...] = LIGHT_TYPES  # each light's type, uniform among these
    # Irradiance a light gives a surface at the hand facing it, over the HDRI's predicted skin
    # irradiance (so it stays relative to the environment; the exposure rule counts it).
    power: tuple[float, float] = (0.25, 1.0)
    temperature_k: tuple[float, float] = (2700.0, 6500.0)  # colour temperature
    distance_m: tuple[float, float] = (0.4, 1.2)  # from the palm centre
    cone_deg: float = 90.0  # direction within this angle of the palm-centre -> camera direction
    size_m: tuple[float, float] = (0.05, 0.3)  # area light side; point/spot radius (soft shadows)
    spot_deg: tuple[float, float] = (30.0, 60.0)  # spot cone (full angle)


@dataclass(frozen=True)
class SkinConfig:
    # Melanin fraction 0 (very light) .. 1 (very dark); see datagen/skin.py for the palette.
    melanin: tuple[float, float] = (0.0, 1.0)
    redness: tuple[float, float] = (0.0, 1.0)
    roughness: tuple[float, float] = (0.35, 0.6)
    subsurface_scale_m: tuple[float, float] = (0.002, 0.006)
    # Skin creases (palm lines, finger flexion creases, dorsal knuckle wrinkles) in the shader;
    # chosen by the realism benchmark (docs/REALISM.md, "Skin and exposure").
    creases: bool = False
    # With [hand] forearm: false (the default) renders the arm (dense part 6) in a plain material
    # - the item's tones, mottling and roughness; no subsurface scattering, pore bump, freckles or
    # roughness noise -, the hand unchanged: 1.08x the hand alone's CPU per image instead of 1.21x,
    # realism unchanged within its interval (docs/RENDERING.md "The forearm's cost").
    forearm_detail: bool = False


@dataclass(frozen=True)
class RenderConfig:
    device: str = "CPU"
    samples: int = 2  # + OIDN: as good as 16 on the realism benchmark at ~1/3 the CPU (docs/RENDERING.md)
    # Used instead when the Blender build cannot denoise (Debian's blender has no OpenImageDenoise):
    # 2 undenoised samples are grainy; 16 is the old default's noise level before denoising.
    samples_without_denoiser: int = 16
    adaptive_threshold: float = 0.05  # 0 disables adaptive sampling
    denoise: bool = True
    # OpenImageDenoise's quality (Blender >= 4.2; older ones keep their only mode, a recorded
    # fallback): "HIGH", "BALANCED" (the same on CPU) or "FAST" (~0.1 CPU-s less per 256x256
    # image; docs/RENDERING.md "The forearm's cost").
    denoise_quality: str = "HIGH"
    view_transform: str = "AgX"
    threads: int = 0  # 0 = all cores
    png_compression: int = 15  # percent; Blender's default
    # Label passes written next to the four every item has (image, mask, depth, labels): names
    # in datagen.labels.passes.LABEL_PASSES.  Packed, verified and read like the built-in ones.
    # The part mask (hand / forearm / object) is added whenever the forearm or occluders are on.
    label_passes: tuple[str, ...] = ("part_mask",)


@dataclass(frozen=True)
class OccluderConfig:
    # Objects in front of the hand or held by it (datagen/scene/occluders.py, docs/RENDERING.md
    # "Occluders").  Off by default (share 0): then no item draws or renders anything new.
    share: float = 0.0  # share of the items that get an object (seeded per item)
    held_share: float = 0.5  # of those, the share held / touching the hand (the rest: in front of it)
    kinds: tuple[str, ...] = ("box", "sphere", "cylinder", "stick", "torus", "cup", "capsule")
    coverage: tuple[float, float] = (0.10, 0.60)  # share of the hand's silhouette an object hides
    max_attempts: int = 32  # placements drawn per item before giving up (an item without an object)


@dataclass(frozen=True)
class Config:
    seed: int = 0
    hand: HandConfig = field(default_factory=HandConfig)
    poses: PoseConfig = field(default_factory=PoseConfig)
    cameras: CameraConfig = field(default_factory=CameraConfig)
    hdri: HdriConfig = field(default_factory=HdriConfig)
    skin: SkinConfig = field(default_factory=SkinConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    backgrounds: BackgroundConfig = field(default_factory=BackgroundConfig)
    lights: LightsConfig = field(default_factory=LightsConfig)
    occluders: OccluderConfig = field(default_factory=OccluderConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self, *sections: str) -> str:
        """Short stable hash of the whole config or of some sections (cache keys)."""
        data = canonical_dict(self.to_dict())
        if sections:
            data = {k: data[k] for k in sections}
        blob = json.dumps(data, sort_keys=True, default=list).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


EXPOSURE_RULES = ("skin", "camera_side")
DENOISE_QUALITIES = ("HIGH", "BALANCED", "FAST")  # Cycles' denoising_quality

# Keys added after the first run.json format, with the value that means "as before they existed".
# At that value they are left out of digests and run compatibility checks: a RENDER_DIR whose
# run.json predates a key was made with that value, and must stay resumable.
LATER_KEYS = {("cameras", "sampler"): "hemisphere", ("cameras", "options"): {}, ("render", "label_passes"): [],
              ("render", "samples_without_denoiser"): 16, ("render", "denoise_quality"): "HIGH",
              ("hand", "forearm"): False, ("hand", "forearm_length_m"): 0.20,
              ("hand", "wrist_flexion_deg"): [-30.0, 30.0], ("hand", "wrist_deviation_deg"): [-10.0, 20.0],
              ("hand", "wrist_draw"): "pose",
              ("poses", "splay"): False, ("poses", "splay_scale"): 1.0, ("poses", "families"): {},
              ("skin", "creases"): False, ("skin", "forearm_detail"): True, ("hdri", "exposure"): "camera_side",
              ("hdri", "exposure_target"): 0.9, ("hdri", "exposure_tone"): 0.0, ("hand", "left_share"): 0.0, ("hand", "shape"): {},
              ("backgrounds", "sources"): [], ("backgrounds", "share"): 0.0, ("backgrounds", "scale"): [0.5, 1.0],
              ("backgrounds", "flip"): True,
              ("lights", "count"): [0, 0], ("lights", "types"): list(LIGHT_TYPES), ("lights", "power"): [0.25, 1.0],
              ("lights", "temperature_k"): [2700.0, 6500.0], ("lights", "distance_m"): [0.4, 1.2],
              ("lights", "cone_deg"): 90.0, ("lights", "size_m"): [0.05, 0.3], ("lights", "spot_deg"): [30.0, 60.0],
              ("cameras", "jitter"): {"distance_scale": [1.0, 1.0], "focal_scale": [1.0, 1.0],
                                      "roll_deg": [0.0, 0.0], "shift": 0.0, "margin_px": 4.0},
              ("occluders", "share"): 0.0, ("occluders", "held_share"): 0.5,
              ("occluders", "kinds"): ["box", "sphere", "cylinder", "stick", "torus", "cup", "capsule"],
              ("occluders", "coverage"): [0.1, 0.6], ("occluders", "max_attempts"): 32}
# Sections added after the first run.json format: left out of digests when every key in them is
# at its LATER_KEYS value (an empty section then means "as before it existed").
LATER_SECTIONS = ("backgrounds", "lights", "occluders")
# [hand] keys that only change what is rendered, not the hand or pose tables: left out of the
# prepared cache's keys (datagen.poses.prepared, datagen.poses.tables).
RENDER_ONLY_HAND_KEYS = ("left_share",)
# Keys that only mean something with the forearm on (left out of digests without it).
FOREARM_ONLY_KEYS = (("hand", "forearm_length_m"), ("hand", "wrist_flexion_deg"), ("hand", "wrist_deviation_deg"),
                     ("hand", "wrist_draw"), ("skin", "forearm_detail"))


def tables_config(cfg: Config) -> Config:
    """`cfg` with the render-only [hand] keys at their defaults: what the prepared tables
    (and their cache keys) depend on."""
    return dataclasses.replace(cfg, hand=dataclasses.replace(
        cfg.hand, **{k: getattr(HandConfig, k) for k in RENDER_ONLY_HAND_KEYS}))


def canonical_dict(cfg_dict: dict) -> dict:
    """A config dict (Config.to_dict() or run.json's) in JSON types, without the `LATER_KEYS`
    at their original meaning: what digests and compatibility checks compare."""
    d = json.loads(json.dumps(cfg_dict, default=list))
    for (section, key), value in LATER_KEYS.items():
        sec = d.get(section)
        if isinstance(sec, dict) and key in sec and sec[key] == value:
            del sec[key]
    for section in LATER_SECTIONS:
        if d.get(section) == {}:
            del d[section]
    hand = d.get("hand")
    if isinstance(hand, dict) and not hand.get("forearm", False):
        for section, key in FOREARM_ONLY_KEYS:  # no effect without the forearm: a hand-only config's
            sec = d.get(section)  # digest stays what it was before these keys existed
            if isinstance(sec, dict):
                sec.pop(key, None)
    return d


def _check_range(key: str, value: float, lo: float, hi: float) -> None:
    if not (lo <= value <= hi) or (isinstance(value, float) and math.isnan(value)):
        raise ConfigError(f"{key} = {value!r} is outside [{lo}, {hi}]")


def _check_interval(key: str, value: Any, lo: float, hi: float) -> tuple[float, float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise ConfigError(f"{key} must be a [low, high] pair, got {value!r}")
    a, b = (float(v) for v in value)
    _check_range(key + "[0]", a, lo, hi)
    _check_range(key + "[1]", b, lo, hi)
    if a > b:
        raise ConfigError(f"{key} = {list(value)!r}: low is greater than high")
    return a, b


def _build(cls, raw: dict[str, Any], prefix: str):
    """Instantiate a dataclass from a dict, refusing unknown keys and wrong types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(prefix + k for k in unknown)}; "
            f"known in [{prefix.rstrip('.') or 'top level'}]: {', '.join(fields)}"
        )
    defaults = cls()
    values = {}
    for name, value in raw.items():
        default = getattr(defaults, name)
        key = prefix + name
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{key} must be true or false, got {value!r}")
        elif isinstance(default, int) and not isinstance(default, bool):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{key} must be an integer, got {value!r}")
        elif isinstance(default, float):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"{key} must be a number, got {value!r}")
            value = float(value)
        elif isinstance(default, tuple) and name != "pole":
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{key} must be a list, got {value!r}")
            value = tuple(value)
        values[name] = value
    return dataclasses.replace(defaults, **values)


def _entry(registry, key: str, name: Any):
    """`registry`'s entry for `name` (ConfigError naming the config key if unknown)."""
    from datagen.registry import UnknownName

    if not isinstance(name, str):
        raise ConfigError(f"{key} must be a name, got {name!r}")
    try:
        return registry.get(name)
    except UnknownName as exc:
        raise ConfigError(f"{key} = {name!r}: {exc}") from None


def _hand_model(name: Any):
    """The registry entry of hand model `name` (ConfigError naming hand.model if unknown)."""
    from datagen.hand import HAND_MODELS

    return _entry(HAND_MODELS, "hand.model", name)


def _camera_sampler(name: Any):
    from datagen.cameras import CAMERA_SAMPLERS

    return _entry(CAMERA_SAMPLERS, "cameras.sampler", name)


def _sampler_options(c: CameraConfig) -> dict[str, Any]:
    """[cameras.options] checked against the sampler's declared options, defaults filled in."""
    sampler = _camera_sampler(c.sampler)
    if not isinstance(c.options, dict):
        raise ConfigError("cameras.options must be a table of option = value")
    declared = dict(sampler.options)
    unknown = sorted(set(c.options) - set(declared))
    if unknown:
        raise ConfigError(f"cameras.options.{unknown[0]}: not an option of camera sampler {c.sampler!r}; "
                          f"known: {', '.join(declared) or 'none'}")
    out = {}
    for k, default in declared.items():
        v = c.options.get(k, default)
        key = f"cameras.options.{k}"
        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise ConfigError(f"{key} must be true or false, got {v!r}")
        elif isinstance(default, (int, float)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or (isinstance(default, int) and
                                                                         not isinstance(v, int)):
                raise ConfigError(f"{key} must be {'an integer' if isinstance(default, int) else 'a number'}, "
                                  f"got {v!r}")
            v = type(default)(v)
        elif isinstance(default, str) and not isinstance(v, str):
            raise ConfigError(f"{key} must be a string, got {v!r}")
        elif isinstance(default, (list, tuple)):
            if not isinstance(v, (list, tuple)):
                raise ConfigError(f"{key} must be a list, got {v!r}")
            v = list(v)
        out[k] = v
    if sampler.validate is not None:
        try:
            sampler.validate(dataclasses.replace(c, options=out))
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError(f"cameras (sampler {c.sampler!r}): {exc}") from None
    return out


def _label_passes(names: tuple) -> tuple[str, ...]:
    from datagen.labels.passes import BUILTIN_PASSES, LABEL_PASSES

    seen = set()
    for name in names:
        if not isinstance(name, str):
            raise ConfigError(f"render.label_passes: {name!r} is not a label pass name")
        if name in BUILTIN_PASSES:
            raise ConfigError(f"render.label_passes: {name!r} is written for every item anyway; list only "
                              f"passes beyond {', '.join(BUILTIN_PASSES)}")
        if name not in LABEL_PASSES:
            raise ConfigError(f"render.label_passes: {LABEL_PASSES.unknown_message(name)}")
        if name in seen:
            raise ConfigError(f"render.label_passes: {name!r} is listed twice")
        seen.add(name)
    return tuple(names)


def _check_distinct_views(c: CameraConfig) -> None:
    """Refuse a camera grid that repeats views: a ring at a pole (all its longitudes coincide),
    a zero latitude step, or longitudes that wrap around onto each other."""
    for i in range(c.latitudes):
        lat = c.latitude_start_deg + i * c.latitude_step_deg
        if c.longitudes > 1 and abs(abs(lat) - 90.0) < 1e-6:
            where = (f"ring {i} of cameras.latitudes = {c.latitudes} lies at latitude {lat:g} deg, the pole, where "
                     f"all {c.longitudes} longitudes are one and the same view")
            if i == 0:
                raise ConfigError(f"cameras.latitude_start_deg = {c.latitude_start_deg:g}: {where}; start below the "
                                  f"pole, or use cameras.longitudes = 1 for one view there")
            fit = (90.0 - c.latitude_start_deg) / c.latitudes
            raise ConfigError(f"cameras.latitude_step_deg = {c.latitude_step_deg:g}: {where}; keep every ring below "
                              f"90 deg (e.g. cameras.latitude_step_deg = {fit:g}) or use fewer cameras.latitudes")
    if c.latitudes > 1 and c.latitude_step_deg == 0:
        raise ConfigError(f"cameras.latitude_step_deg = 0 with cameras.latitudes = {c.latitudes}: every ring would "
                          f"repeat the first; use a step > 0 or cameras.latitudes = 1")
    for d in range(1, c.longitudes):
        turn = (d * c.longitude_step_deg) % 360.0
        if min(turn, 360.0 - turn) < 1e-6:
            raise ConfigError(f"cameras.longitude_step_deg = {c.longitude_step_deg:g} with cameras.longitudes = "
                              f"{c.longitudes}: longitudes {d * c.longitude_step_deg:g} deg apart coincide (a full "
                              f"turn), repeating views; use a step <= {360.0 / c.longitudes:g} or fewer longitudes")


# Limits of [cameras.jitter]: the camera stays outside the hand (distance), the focal within a
# factor 2, a half turn of roll either way, the principal point inside the middle of the image.
JITTER_DISTANCE_LIMITS = (0.7, 3.0)
JITTER_FOCAL_LIMITS = (0.5, 2.0)


def _camera_jitter(raw: Any) -> CameraJitterConfig:
    """[cameras.jitter] checked (a table; ranges inside their limits; names the key)."""
    if isinstance(raw, CameraJitterConfig):
        raw = dataclasses.asdict(raw)
    if not isinstance(raw, dict):
        raise ConfigError(f"cameras.jitter must be a table ([cameras.jitter]), got {raw!r}")
    j = _build(CameraJitterConfig, raw, "cameras.jitter.")
    d = _check_interval("cameras.jitter.distance_scale", j.distance_scale, *JITTER_DISTANCE_LIMITS)
    f = _check_interval("cameras.jitter.focal_scale", j.focal_scale, *JITTER_FOCAL_LIMITS)
    r = _check_interval("cameras.jitter.roll_deg", j.roll_deg, -180.0, 180.0)
    _check_range("cameras.jitter.shift", j.shift, 0.0, 0.5)
    _check_range("cameras.jitter.margin_px", j.margin_px, 0.0, 1000.0)
    return dataclasses.replace(j, distance_scale=d, focal_scale=f, roll_deg=r)


def _pose_options(p: PoseConfig) -> PoseConfig:
    """[poses] splay, splay_scale and families checked (family names: datagen.poses.angles.FAMILY_NAMES)."""
    _check_range("poses.splay_scale", p.splay_scale, 0.0, 1.0)
    if not isinstance(p.families, dict):
        raise ConfigError(f"poses.families must be a table of family = number of poses, got {p.families!r}")
    from datagen.poses.angles import FAMILY_NAMES

    for name, n in p.families.items():
        if name not in FAMILY_NAMES:
            raise ConfigError(f"poses.families.{name}: unknown pose family; known: {', '.join(FAMILY_NAMES)}")
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 100_000:
            raise ConfigError(f"poses.families.{name} = {n!r}: must be an integer number of poses, 0..100000")
    # The documented family order, not the file's: ids do not depend on how the table was written.
    families = {name: p.families[name] for name in FAMILY_NAMES if p.families.get(name)}
    return dataclasses.replace(p, families=families)


def _backgrounds(b: BackgroundConfig) -> None:
    if not all(isinstance(x, str) and x for x in b.sources):
        raise ConfigError(f"backgrounds.sources must be a list of folders or image files, got {list(b.sources)!r}")
    _check_range("backgrounds.share", b.share, 0.0, 1.0)
    if b.share > 0 and not b.sources:
        raise ConfigError(f"backgrounds.share = {b.share:g} but backgrounds.sources is empty: list folders of "
                          f"images (PNG/JPEG)")
    if b.sources and b.share == 0:
        raise ConfigError("backgrounds.sources are given but backgrounds.share = 0: no item would use them; set "
                          "the share of items with an image background (0 < share <= 1)")
    _check_interval("backgrounds.scale", b.scale, 0.01, 1.0)
    if b.scale[0] <= 0:
        raise ConfigError(f"backgrounds.scale = {list(b.scale)!r}: must be > 0")


def _lights(li: LightsConfig) -> None:
    c = li.count
    if not (isinstance(c, (list, tuple)) and len(c) == 2 and all(isinstance(x, int) and not isinstance(x, bool)
                                                                 for x in c)):
        raise ConfigError(f"lights.count must be a [low, high] pair of integers, got {c!r}")
    _check_interval("lights.count", c, 0, 8)
    if not li.types or not all(isinstance(t, str) for t in li.types):
        raise ConfigError(f"lights.types must be a non-empty list of {', '.join(LIGHT_TYPES)}")
    for t in li.types:
        if t not in LIGHT_TYPES:
            raise ConfigError(f"lights.types: {t!r} is not a light type; use {', '.join(LIGHT_TYPES)}")
    _check_interval("lights.power", li.power, 0.0, 100.0)
    _check_interval("lights.temperature_k", li.temperature_k, 1000.0, 25000.0)
    _check_interval("lights.distance_m", li.distance_m, 0.1, 100.0)
    _check_range("lights.cone_deg", li.cone_deg, 0.0, 180.0)
    _check_interval("lights.size_m", li.size_m, 0.0, 10.0)
    _check_interval("lights.spot_deg", li.spot_deg, 1.0, 180.0)


def _occluder_options(cfg: Config) -> Config:
    """[occluders] checked; with share > 0 the part_mask pass (3 = object) travels with every item."""
    o = cfg.occluders
    _check_range("occluders.share", o.share, 0.0, 1.0)
    _check_range("occluders.held_share", o.held_share, 0.0, 1.0)
    from datagen.scene.occluders import KINDS

    if not o.kinds:
        raise ConfigError("occluders.kinds must list at least one kind")
    for k in o.kinds:
        if k not in KINDS:
            raise ConfigError(f"occluders.kinds: unknown kind {k!r}; known: {', '.join(KINDS)}")
    if len(set(o.kinds)) != len(o.kinds):
        raise ConfigError("occluders.kinds lists a kind twice")
    lo, hi = _check_interval("occluders.coverage", o.coverage, 0.0, 1.0)
    if hi <= 0:
        raise ConfigError("occluders.coverage: the upper bound must be > 0")
    _check_range("occluders.max_attempts", o.max_attempts, 1, 1000)
    cfg = dataclasses.replace(cfg, occluders=dataclasses.replace(o, coverage=(lo, hi)))
    if o.share > 0 and "part_mask" not in cfg.render.label_passes:
        cfg = dataclasses.replace(cfg, render=dataclasses.replace(
            cfg.render, label_passes=tuple(cfg.render.label_passes) + ("part_mask",)))
    return cfg


def _shape_ranges(h: HandConfig, entry) -> dict[str, tuple[float, float]]:
    """[hand.shape] checked: phenotype names of the hand model, [low, high] ranges in [0, 1];
    returned in the model's phenotype order (the order of the draws, datagen.hand.shape)."""
    if not isinstance(h.shape, dict):
        raise ConfigError(f"hand.shape must be a table of phenotype = [low, high], got {h.shape!r}")
    for k in h.shape:
        if k not in entry.phenotypes:
            raise ConfigError(f"hand.shape.{k}: unknown phenotype of hand model {h.model!r}; known: "
                              f"{', '.join(entry.phenotypes) or 'none'}")
    return {k: _check_interval(f"hand.shape.{k}", h.shape[k], 0.0, 1.0) for k in entry.phenotypes if k in h.shape}


def _validate(cfg: Config) -> Config:
    h = cfg.hand
    entry = _hand_model(h.model)
    if not isinstance(h.phenotype, dict):
        raise ConfigError("hand.phenotype must be a table of phenotype = value")
    for k, v in h.phenotype.items():
        if k not in entry.phenotypes:
            raise ConfigError(f"hand.phenotype.{k}: unknown phenotype of hand model {h.model!r}; known: "
                              f"{', '.join(entry.phenotypes) or 'none'}")
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise ConfigError(f"hand.phenotype.{k} must be a number in [0, 1], got {v!r}")
        _check_range(f"hand.phenotype.{k}", float(v), 0.0, 1.0)
    if h.subdivision_levels not in (0, 1, 2):
        raise ConfigError(f"hand.subdivision_levels = {h.subdivision_levels}: must be 0, 1 or 2")
    # 0.05 .. 0.23: a forearm; 0.29 .. 0.39 (anny's average adult): through the extended elbow into the
    # upper arm; the hand model checks its own limits when it builds the arm (datagen.hand.forearm).
    _check_range("hand.forearm_length_m", h.forearm_length_m, 0.05, 0.40)
    _check_interval("hand.wrist_flexion_deg", h.wrist_flexion_deg, *WRIST_FLEXION_LIMITS_DEG)
    _check_interval("hand.wrist_deviation_deg", h.wrist_deviation_deg, *WRIST_DEVIATION_LIMITS_DEG)
    _check_range("hand.left_share", h.left_share, 0.0, 1.0)
    if h.wrist_draw not in WRIST_DRAWS:
        raise ConfigError(f"hand.wrist_draw = {h.wrist_draw!r}: must be one of {', '.join(map(repr, WRIST_DRAWS))}")
    cfg = dataclasses.replace(cfg, hand=dataclasses.replace(h, shape=_shape_ranges(h, entry)))
    h = cfg.hand
    if h.shape and cfg.poses.families:
        raise ConfigError("hand.shape cannot be combined with poses.families yet: the per-pose shapes are drawn for "
                          "the paper's pose table (with or without splay) only (docs/POSES.md, \"Hand shapes\")")
    if h.forearm and entry.forearm is None:
        raise ConfigError(f"hand.forearm = true: hand model {h.model!r} has no forearm")
    if h.forearm and "part_mask" not in cfg.render.label_passes:
        # The forearm's part mask (hand vs arm) travels with every item (datagen.labels.passes).
        cfg = dataclasses.replace(cfg, render=dataclasses.replace(
            cfg.render, label_passes=tuple(cfg.render.label_passes) + ("part_mask",)))

    if not 1 <= cfg.poses.interpolation_steps <= 15:
        raise ConfigError(f"poses.interpolation_steps = {cfg.poses.interpolation_steps}: must be 1..15")
    cfg = dataclasses.replace(cfg, poses=_pose_options(cfg.poses))

    c = cfg.cameras
    if not 1 <= c.longitudes <= 720:
        raise ConfigError(f"cameras.longitudes = {c.longitudes}: must be 1..720")
    if not 1 <= c.latitudes <= 180:
        raise ConfigError(f"cameras.latitudes = {c.latitudes}: must be 1..180")
    _check_range("cameras.longitude_step_deg", c.longitude_step_deg, 0.0, 360.0)
    _check_range("cameras.latitude_step_deg", c.latitude_step_deg, 0.0, 90.0)
    top = c.latitude_start_deg + (c.latitudes - 1) * c.latitude_step_deg
    if c.latitude_start_deg < -90 or top > 90:
        raise ConfigError(
            f"cameras: latitudes span {c.latitude_start_deg}..{top} deg, must stay within -90..90"
        )
    if c.sampler == "hemisphere":  # the grid keys are the hemisphere's (other samplers: [cameras.options])
        _check_distinct_views(c)
    _check_range("cameras.radius_m", c.radius_m, 0.05, 100.0)
    if isinstance(c.pole, str):
        if c.pole not in POLE_PRESETS:
            raise ConfigError(f"cameras.pole = {c.pole!r}: use one of {POLE_PRESETS} or [x, y, z]")
    else:
        pole = tuple(c.pole) if isinstance(c.pole, (list, tuple)) else None
        if pole is None or len(pole) != 3 or not all(isinstance(x, (int, float)) for x in pole):
            raise ConfigError(f"cameras.pole = {c.pole!r}: use a preset name or [x, y, z]")
        if math.sqrt(sum(x * x for x in pole)) < 1e-9:
            raise ConfigError("cameras.pole must not be the zero vector")
        cfg = dataclasses.replace(cfg, cameras=dataclasses.replace(c, pole=tuple(float(x) for x in pole)))
    for key in ("width", "height"):
        _check_range(f"cameras.{key}", getattr(c, key), 16, 8192)
    _check_range("cameras.focal_px", c.focal_px, 1.0, 1e6)
    cfg = dataclasses.replace(cfg, cameras=dataclasses.replace(cfg.cameras, options=_sampler_options(cfg.cameras),
                                                               jitter=_camera_jitter(cfg.cameras.jitter)))

    d = cfg.hdri
    if not d.sources or not all(isinstance(s, str) for s in d.sources):
        raise ConfigError("hdri.sources must be a non-empty list of 'builtin', files or folders")
    _check_interval("hdri.strength", d.strength, 0.0, 100.0)
    _check_interval("hdri.rotation_deg", d.rotation_deg, -360.0, 720.0)
    if d.exposure not in EXPOSURE_RULES:
        raise ConfigError(f"hdri.exposure = {d.exposure!r}: use one of {EXPOSURE_RULES}")
    _check_range("hdri.exposure_target", d.exposure_target, 0.01, 100.0)
    _check_range("hdri.exposure_tone", d.exposure_tone, 0.0, 1.0)

    s = cfg.skin
    _check_interval("skin.melanin", s.melanin, 0.0, 1.0)
    _check_interval("skin.redness", s.redness, 0.0, 1.0)
    _check_interval("skin.roughness", s.roughness, 0.0, 1.0)
    _check_interval("skin.subsurface_scale_m", s.subsurface_scale_m, 0.0, 0.05)

    _backgrounds(cfg.backgrounds)
    _lights(cfg.lights)
    cfg = _occluder_options(cfg)

    r = cfg.render
    if r.device not in DEVICES:
        raise ConfigError(f"render.device = {r.device!r}: use one of {DEVICES}")
    _check_range("render.samples", r.samples, 1, 65536)
    _check_range("render.samples_without_denoiser", r.samples_without_denoiser, 1, 65536)
    _check_range("render.adaptive_threshold", r.adaptive_threshold, 0.0, 1.0)
    if r.denoise_quality not in DENOISE_QUALITIES:
        raise ConfigError(f"render.denoise_quality = {r.denoise_quality!r}: use one of {DENOISE_QUALITIES}")
    if r.view_transform not in VIEW_TRANSFORMS:
        raise ConfigError(f"render.view_transform = {r.view_transform!r}: use one of {VIEW_TRANSFORMS} "
                          f"(which of them a Blender version has: datagen/render/blender_versions.py)")
    _check_range("render.threads", r.threads, 0, 1024)
    _check_range("render.png_compression", r.png_compression, 0, 100)
    _label_passes(r.label_passes)
    if not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError(f"seed = {cfg.seed!r}: must be a non-negative integer")
    return cfg


SECTIONS = {
    "hand": HandConfig,
    "poses": PoseConfig,
    "cameras": CameraConfig,
    "hdri": HdriConfig,
    "skin": SkinConfig,
    "render": RenderConfig,
    "backgrounds": BackgroundConfig,
    "lights": LightsConfig,
    "occluders": OccluderConfig,
}


def config_from_dict(raw: dict[str, Any]) -> Config:
    unknown = sorted(set(raw) - set(SECTIONS) - {"seed"})
    if unknown:
        raise ConfigError(
            f"unknown section(s) {unknown}; known: seed, {', '.join('[' + s + ']' for s in SECTIONS)}"
        )
    values: dict[str, Any] = {}
    if "seed" in raw:
        values["seed"] = raw["seed"]
    for name, cls in SECTIONS.items():
        section = raw.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"[{name}] must be a table")
        if name == "hand":
            # Every phenotype the model knows, at 0.5 unless given (the model decides the names).
            section = dict(section)
            given = section.get("phenotype", {})
            if not isinstance(given, dict):
                raise ConfigError("hand.phenotype must be a table of phenotype = value")
            entry = _hand_model(section.get("model", HandConfig.model))
            pheno = {k: 0.5 for k in entry.phenotypes}
            pheno.update(given)
            section["phenotype"] = pheno
            if "forearm" not in section and entry.forearm is None:
                section["forearm"] = False  # the default forearm, where the model has one
        values[name] = _build(cls, section, name + ".")
    return _validate(Config(**values))


def config_from_run(cfg_dict: dict) -> Config:
    """The Config of a run.json / manifest config dict.  A key the dict lacks was added after
    the run was made, so it had the value that means "as before it existed" (LATER_KEYS), not
    today's default: a run from before the forearm was a hand alone, not a forearm."""
    d = json.loads(json.dumps(cfg_dict, default=list))
    for (section, key), value in LATER_KEYS.items():
        d.setdefault(section, {})
        if isinstance(d[section], dict):
            d[section].setdefault(key, value)
    return config_from_dict(d)


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a TOML config; None gives the embedded default."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
