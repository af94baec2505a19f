"""What differs between the Blender versions the renderer supports (3.4 .. 5.0), as pure data.

The renderer runs in the venv's bpy module (5.0.1) and inside real `blender` binaries: Debian
bookworm's 3.4.1 (`apt-get install blender`), blender.org's 4.2 / 4.5 LTS and 5.0.  Their Python
APIs differ in small ways that each stopped a render outright (measured with
``blender -b -P blender_scripts/render.py`` on 3.4.1 and with the bpy wheels 4.2.0, 4.5.0, 5.0.1):

- view transforms: "AgX" exists from 4.0, "Khronos PBR Neutral" from 4.2, "ACES 1.3" and
  "ACES 2.0" from 5.0 (3.4.1 has Standard, Filmic, Filmic Log, Raw, False Color); AgX's looks
  are named "AgX - <contrast>", the other transforms' looks plain "<contrast>";
- Principled BSDF (rewritten in 4.0): "Subsurface" became "Subsurface Weight", "Specular"
  became "Specular IOR Level", "Subsurface Scale" is new (before 4.0 the "Subsurface" factor
  itself scales the radius: Cycles 3.x sets radius = Subsurface Radius * Subsurface and albedo =
  mix(Base Color, Subsurface Color, Subsurface)); the subsurface methods were renamed
  (3.x RANDOM_WALK_FIXED_RADIUS / RANDOM_WALK = 4.x RANDOM_WALK / RANDOM_WALK_SKIN);
- `Mesh.shade_smooth()` exists from 4.1 (before: each polygon's `use_smooth`);
- Cycles' `denoising_quality` exists from 4.2 (added with OpenImageDenoise 2.3's "Fast" mode,
  May 2024; absent in 3.4.1, present in 4.2.0); whether a build has OpenImageDenoise at all is
  a build option, not a version: Debian's 3.4.1 has none (its `denoiser` enum is empty and
  `_cycles.with_openimagedenoise` is False), blender.org builds and the bpy wheels have it.
- the Mix node (ShaderNodeMix, used by the skin material) exists from 3.4: the oldest
  version supported.

This module is standard-library only: `datagen.config` uses it to check a config without any
Blender, `blender_scripts/compat.py` uses it inside Blender, and the tests use it without one.
The running Blender stays the final word: compat.py probes what the build really offers (a
custom OCIO config can change the view transforms) and these tables supply the fallbacks and
the messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Version = tuple[int, int]

# The Mix shader node (ShaderNodeMix, "Factor_Float"/"A_Color"/... sockets) is new in 3.4.
MIN_VERSION: Version = (3, 4)

# View transform -> (first Blender version that has it, fallback for older ones or None).
# Fallbacks keep the intent: AgX and Filmic are both filmic tone curves with a soft highlight
# roll-off (AgX replaced Filmic as the default in 4.0); Khronos PBR Neutral keeps base colours
# as they are, like Standard, and only compresses highlights.  ACES has no fallback.
VIEW_TRANSFORMS: dict[str, tuple[Version, str | None]] = {
    "Standard": ((2, 80), None),
    "Filmic": ((2, 80), None),
    "AgX": ((4, 0), "Filmic"),
    "Khronos PBR Neutral": ((4, 2), "Standard"),
    "ACES 1.3": ((5, 0), None),
    "ACES 2.0": ((5, 0), None),
}
# Names datagen.config accepts (any supported Blender has at least one way to honour them, or
# refuses them with a message naming the versions that have them).
VIEW_TRANSFORM_NAMES = tuple(VIEW_TRANSFORMS)
# The look (contrast) the renderer uses per requested view transform: AgX's base look is flat
# next to a camera's rendering; "Medium High Contrast" gives photographic contrast without
# clipping the sky (docs/RENDERING.md).  A fallback keeps the requested contrast.
VIEW_CONTRAST = {"AgX": "Medium High Contrast"}
# View transforms whose looks carry the transform's name as a prefix ("AgX - Medium High
# Contrast"), measured in 4.2.0, 4.5.0 and 5.0.1; Filmic's and Standard's are plain in all.
PREFIXED_LOOKS = ("AgX",)

# Cycles scene settings that appeared after MIN_VERSION: name -> first version.
CYCLES_SETTINGS_SINCE: dict[str, Version] = {
    "denoising_quality": (4, 2),
}
# Settings that only mean something while denoising: applied and recorded only when it is on
# (without OpenImageDenoise even `denoiser = "OPENIMAGEDENOISE"` is refused).
DENOISER_SETTINGS = ("denoiser", "denoising_input_passes", "denoising_prefilter", "denoising_quality",
                     "denoising_use_gpu")

SHADE_SMOOTH_SINCE: Version = (4, 1)
PRINCIPLED_V2_SINCE: Version = (4, 0)

# Principled BSDF inputs the skin uses: logical name -> (name from 4.0, name before 4.0 or None).
PRINCIPLED_INPUTS: dict[str, tuple[str, str | None]] = {
    "subsurface_weight": ("Subsurface Weight", "Subsurface"),
    "subsurface_scale": ("Subsurface Scale", None),  # folded into "Subsurface" before 4.0
    "subsurface_radius": ("Subsurface Radius", "Subsurface Radius"),
    "specular": ("Specular IOR Level", "Specular"),
    "ior": ("IOR", "IOR"),
    "base_color": ("Base Color", "Base Color"),
    "roughness": ("Roughness", "Roughness"),
    "normal": ("Normal", "Normal"),
    "metallic": ("Metallic", "Metallic"),
}
# Subsurface methods by their 4.0+ identifiers -> the 3.x identifier of the same method.
SUBSURFACE_METHODS_PRE_4: dict[str, str] = {
    "BURLEY": "BURLEY",
    "RANDOM_WALK": "RANDOM_WALK_FIXED_RADIUS",
    "RANDOM_WALK_SKIN": "RANDOM_WALK",
}


class UnsupportedSetting(ValueError):
    """A config value this Blender cannot honour, even with a fallback; names key and choices."""

    def __init__(self, key: str, value, allowed, blender: str, why: str = ""):
        self.key, self.value, self.allowed = key, value, tuple(allowed)
        msg = (f"{key} = {value!r} is not available in Blender {blender}"
               f"{' (' + why + ')' if why else ''}; allowed here: {', '.join(map(repr, self.allowed)) or 'none'}")
        super().__init__(msg)


@dataclass(frozen=True)
class Fallback:
    """One setting that could not be applied as configured, and what was used instead."""

    key: str
    requested: object
    used: object
    reason: str

    def record(self) -> dict:
        return {"key": self.key, "requested": self.requested, "used": self.used, "reason": self.reason}

    def message(self) -> str:
        return f"{self.key} = {self.requested!r} -> using {self.used!r}: {self.reason}"


def parse_version(v) -> Version:
    """(major, minor) of a version tuple or string: (3, 4, 1) / "3.4.1" / "4.2.0 LTS" -> (3, 4)."""
    if isinstance(v, str):
        m = re.match(r"\s*(\d+)\.(\d+)", v)
        if not m:
            raise ValueError(f"cannot read a Blender version from {v!r}")
        return int(m.group(1)), int(m.group(2))
    return int(v[0]), int(v[1])


def fmt(v) -> str:
    v = parse_version(v)
    return f"{v[0]}.{v[1]}"


def check_supported(version) -> None:
    """Refuse Blender versions older than MIN_VERSION (their node API lacks the Mix node)."""
    if parse_version(version) < MIN_VERSION:
        raise UnsupportedSetting("blender", fmt(version), [f">= {fmt(MIN_VERSION)}"], fmt(version),
                                 "the skin material needs the Mix node of Blender 3.4")


def view_transforms_in(version) -> tuple[str, ...]:
    """The VIEW_TRANSFORMS a stock build of `version` has (its bundled OCIO config)."""
    v = parse_version(version)
    return tuple(name for name, (since, _) in VIEW_TRANSFORMS.items() if v >= since)


def look_name(view_transform: str, contrast: str | None) -> str:
    """Blender's identifier of a look: "None", "AgX - Medium High Contrast", "Medium High Contrast"."""
    if not contrast or contrast == "None":
        return "None"
    return f"{view_transform} - {contrast}" if view_transform in PREFIXED_LOOKS else contrast


@dataclass(frozen=True)
class ViewChoice:
    view_transform: str
    look: str
    fallback: Fallback | None = None


def resolve_view_transform(requested: str, version, available=None) -> ViewChoice:
    """The view transform and look to use for `requested` in Blender `version`.

    `available` is what the running build offers (compat.py probes it); None means a stock
    build of `version`.  Raises UnsupportedSetting naming render.view_transform when neither the
    transform nor its fallback exists.
    """
    have = tuple(available) if available is not None else view_transforms_in(version)
    contrast = VIEW_CONTRAST.get(requested)
    if requested in have:
        return ViewChoice(requested, look_name(requested, contrast))
    entry = VIEW_TRANSFORMS.get(requested)
    fb = entry[1] if entry else None
    since = f"it exists from Blender {fmt(entry[0])}" if entry else "unknown name"
    if fb is not None and fb in have:
        return ViewChoice(fb, look_name(fb, contrast),
                          Fallback("render.view_transform", requested, fb,
                                   f"{requested!r} is not in Blender {fmt(version)} ({since}); {fb!r} is the closest"))
    raise UnsupportedSetting("render.view_transform", requested, allowed_view_transforms(version, have),
                             fmt(version), since)


def allowed_view_transforms(version, available=None) -> tuple[str, ...]:
    """Config values of render.view_transform that Blender `version` can honour (directly or by
    fallback)."""
    have = tuple(available) if available is not None else view_transforms_in(version)
    return tuple(name for name, (_, fb) in VIEW_TRANSFORMS.items() if name in have or (fb is not None and fb in have))


def has_cycles_setting(name: str, version) -> bool:
    since = CYCLES_SETTINGS_SINCE.get(name)
    return since is None or parse_version(version) >= since


def principled_input(logical: str, version) -> str | None:
    """The Principled BSDF socket name for `logical` in `version` (None: no such socket)."""
    new, old = PRINCIPLED_INPUTS[logical]
    return new if parse_version(version) >= PRINCIPLED_V2_SINCE else old


def subsurface_method(name: str, version) -> str:
    """Blender's identifier of subsurface method `name` (4.0+ spelling) in `version`."""
    if name not in SUBSURFACE_METHODS_PRE_4:
        raise UnsupportedSetting("subsurface_method", name, tuple(SUBSURFACE_METHODS_PRE_4), fmt(version))
    return name if parse_version(version) >= PRINCIPLED_V2_SINCE else SUBSURFACE_METHODS_PRE_4[name]


def specular_from_ior(ior: float, level: float = 0.5) -> float:
    """Pre-4.0 Principled "Specular" giving the normal-incidence reflectance that 4.0+ gets from
    `IOR` with "Specular IOR Level" `level`.

    Before 4.0 the dielectric F0 is 0.08 * Specular (the IOR input only drives transmission);
    from 4.0 F0 = ((ior - 1) / (ior + 1))**2, scaled by 2 * level (0.5 = unchanged).  IOR 1.4
    gives F0 0.0278 -> Specular 0.347.
    """
    f0 = ((ior - 1.0) / (ior + 1.0)) ** 2 * (2.0 * level)
    return f0 / 0.08


def samples_fallback(samples: int, samples_without_denoiser: int) -> Fallback | None:
    """More samples when the denoiser the default's 2 samples rely on is missing (they are grainy
    without it; `render.samples_without_denoiser`, default 16, is the old default)."""
    if samples_without_denoiser > samples:
        return Fallback("render.samples", samples, samples_without_denoiser,
                        "no denoiser in this build: render.samples_without_denoiser applies")
    return None


def denoise_fallback(requested: bool, has_oidn: bool) -> Fallback | None:
    """The fallback when denoising is asked for but the build has no OpenImageDenoise (Debian's
    3.4.1: every render failed with "Build without OpenImageDenoiser")."""
    if requested and not has_oidn:
        return Fallback("render.denoise", True, False,
                        "this Blender build has no OpenImageDenoise (Debian's blender package is built "
                        "without it; blender.org builds have it)")
    return None
