"""The bpy side of the Blender version layer: every call that differs between 3.4 and 5.0.

The facts (which view transforms, Principled BSDF sockets, Cycles settings exist where) live in
`datagen.render.blender_versions` (pure Python, tested without Blender); this module applies them to
the running Blender and probes what the build really offers, because a build can differ from
its version's stock: Debian's 3.4.1 has no OpenImageDenoise, a custom OCIO config changes the
view transforms.

Whatever cannot be applied as configured falls back, and the fallback is logged once per
process and recorded (`RenderChoice.fallbacks`: run.json's and every item's `render` record),
while the record's own fields (view_transform, look, denoise, denoiser settings) hold what was applied,
never a setting that was not.  A value with no fallback raises
`blender_versions.UnsupportedSetting` from `check_config`, before any work (render.py turns it
into exit status 2).
"""

from __future__ import annotations

import ast
import logging
import re

import bpy

from datagen.render import blender_versions as bv
from datagen.render.blender_versions import Fallback, UnsupportedSetting  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

VERSION = bv.parse_version(bpy.app.version)
VERSION_STRING = bpy.app.version_string

_said: set[Fallback] = set()


def note(fb: Fallback | None, sink: list | None = None) -> None:
    """Add a fallback to `sink` (a renderer's record); log it the first time this process sees it."""
    if fb is None:
        return
    if fb not in _said:
        _said.add(fb)
        log.warning("Blender %s: %s", VERSION_STRING, fb.message())
    if sink is not None and fb not in sink:
        sink.append(fb)


# ----------------------------------------------------------------------------- probing

def enum_choices(owner, prop: str) -> tuple[str, ...] | None:
    """The values a dynamic enum property accepts, or None if they cannot be read.

    View transforms, looks and Cycles' denoiser are enums whose items come from callbacks (the
    OCIO config, the build); `bl_rna.properties[...].enum_items` lists only the static
    placeholder ("NONE", or nothing).  An assignment of an impossible value is refused with a
    TypeError that lists the accepted items (3.4.1 .. 5.0.1 alike:
    ``enum "x" not found in ('Standard', 'Filmic', ...)``), and changes nothing.
    """
    try:
        setattr(owner, prop, "\u2400handsynth-probe")
    except TypeError as exc:
        m = re.search(r"not found in (\(.*\))\s*$", str(exc))
        if not m:
            return None
        try:
            items = ast.literal_eval(m.group(1))
        except (ValueError, SyntaxError):
            return None
        if isinstance(items, str):  # a one-item tuple is printed without its comma
            items = (items,)
        return tuple(items)
    return None


def available_view_transforms(scene=None) -> tuple[str, ...]:
    scene = scene or bpy.context.scene
    got = enum_choices(scene.view_settings, "view_transform")
    return got if got is not None else bv.view_transforms_in(VERSION)


def has_openimagedenoise(scene=None) -> bool:
    """Whether this build can denoise with OpenImageDenoise (a build option, not a version)."""
    try:
        import _cycles

        flag = getattr(_cycles, "with_openimagedenoise", None)
    except ImportError:
        flag = None
    if flag is not None:
        return bool(flag)
    scene = scene or bpy.context.scene
    got = enum_choices(scene.cycles, "denoiser")
    return got is None or "OPENIMAGEDENOISE" in got


# ----------------------------------------------------------------------------- config

class RenderChoice:
    """What the renderer applies for the config's [render] section in this Blender, and the
    fallbacks that took (apply_view / apply_cycles add theirs)."""

    def __init__(self, view: bv.ViewChoice, denoise: bool, fallbacks: list[Fallback], samples: int):
        self.view_transform = view.view_transform
        self.look = view.look
        self.denoise = denoise
        self.samples = samples
        self.fallbacks = fallbacks

    def records(self) -> list[dict]:
        return [fb.record() for fb in self.fallbacks]


def check_config(cfg, scene=None) -> RenderChoice:
    """Check the config's Blender-dependent values against the running Blender; returns what
    will be used, notes fallbacks, raises UnsupportedSetting (naming the key) otherwise."""
    bv.check_supported(VERSION)
    scene = scene or bpy.context.scene
    rc = cfg.render
    view = bv.resolve_view_transform(rc.view_transform, VERSION, available_view_transforms(scene))
    sink: list[Fallback] = []
    note(view.fallback, sink)
    denoise = bool(rc.denoise)
    samples = int(rc.samples)
    if denoise:
        fb = bv.denoise_fallback(True, has_openimagedenoise(scene))
        note(fb, sink)
        denoise = fb is None
        if not denoise:
            note(bv.samples_fallback(samples, rc.samples_without_denoiser), sink)
            samples = max(samples, int(rc.samples_without_denoiser))
    return RenderChoice(view, denoise, sink, samples)


def apply_view(scene, choice: RenderChoice) -> None:
    vs = scene.view_settings
    vs.view_transform = choice.view_transform
    try:
        vs.look = choice.look
    except TypeError:
        looks = enum_choices(vs, "look")
        note(Fallback("look", choice.look, "None", f"view transform {choice.view_transform!r} of Blender "
                      f"{VERSION_STRING} has no look {choice.look!r} (looks: {looks})"), choice.fallbacks)
        choice.look = "None"
        vs.look = "None"


def apply_cycles(cycles, settings: dict, choice: RenderChoice) -> dict:
    """Set Cycles scene settings; returns the ones applied (what the records hold).

    Denoiser settings are applied only while denoising; a setting newer than this Blender
    (blender_versions.CYCLES_SETTINGS_SINCE) is skipped with a fallback note; any other unknown
    setting is a bug and raises.
    """
    applied = {}
    for k, v in settings.items():
        if k in bv.DENOISER_SETTINGS and not choice.denoise:
            continue
        if not hasattr(cycles, k):
            if not bv.has_cycles_setting(k, VERSION):
                note(Fallback(f"cycles.{k}", v, None, f"Cycles of Blender {VERSION_STRING} has no {k!r} "
                              f"(from {bv.fmt(bv.CYCLES_SETTINGS_SINCE[k])}); its default applies"), choice.fallbacks)
                continue
            raise RuntimeError(f"Cycles setting {k!r} does not exist in Blender {VERSION_STRING}")
        setattr(cycles, k, v)
        applied[k] = v
    return applied


# ----------------------------------------------------------------------------- mesh, material

def shade_smooth(mesh) -> None:
    """Smooth shading on every face: `Mesh.shade_smooth()` from 4.1, `use_smooth` before."""
    if hasattr(mesh, "shade_smooth"):
        mesh.shade_smooth()
        return
    mesh.polygons.foreach_set("use_smooth", [True] * len(mesh.polygons))
    mesh.update()


class Principled:
    """The Principled BSDF sockets the skin sets, under the names of this Blender.

    Before 4.0 there is no "Subsurface Scale": Cycles 3.x scales the radius by the "Subsurface"
    factor itself and mixes the albedo from "Subsurface Color" by the same factor, so weight w
    and scale s become Subsurface = w * s with Subsurface Color fed the base colour (the
    albedo then equals the base colour, as from 4.0).  "Specular" is set to give the F0 of the
    IOR (bv.specular_from_ior).
    """

    def __init__(self, bsdf, subsurface_method: str):
        self.bsdf = bsdf
        self.v2 = VERSION >= bv.PRINCIPLED_V2_SINCE
        self._weight = 0.0
        self._scale = 1.0
        self._factor_node = None  # link_subsurface_factor: a Math node that takes the value
        if subsurface_method != "NONE":
            bsdf.subsurface_method = bv.subsurface_method(subsurface_method, VERSION)

    def _input(self, logical: str):
        return self.bsdf.inputs[bv.principled_input(logical, VERSION)]

    def _update_subsurface(self) -> None:
        weight = self._weight if self.v2 else self._weight * self._scale
        if self._factor_node is not None:
            self._factor_node.inputs[1].default_value = weight
        else:
            self._input("subsurface_weight").default_value = weight
        if self.v2:
            self._input("subsurface_scale").default_value = self._scale

    def link_subsurface_factor(self, nodes, links, socket) -> None:
        """Multiply the subsurface weight by `socket` (0..1, per shading point): where it is 0 the
        surface has no subsurface closure at all (Cycles skips a zero-weight BSSRDF)."""
        node = self._factor_node = nodes.new("ShaderNodeMath")
        node.operation = "MULTIPLY"
        node.use_clamp = True
        links.new(socket, node.inputs[0])
        links.new(node.outputs[0], self._input("subsurface_weight"))
        self._update_subsurface()

    def set_subsurface_weight(self, w: float) -> None:
        self._weight = float(w)
        self._update_subsurface()

    def set_subsurface_scale(self, s: float) -> None:
        self._scale = float(s)
        self._update_subsurface()

    def set_subsurface_radius(self, rgb) -> None:
        self._input("subsurface_radius").default_value = tuple(float(x) for x in rgb)

    def set_specular(self, ior: float, level: float = 0.5) -> None:
        self._input("ior").default_value = ior
        self._input("specular").default_value = level if self.v2 else bv.specular_from_ior(ior, level)

    def link_base_color(self, links, socket) -> None:
        links.new(socket, self._input("base_color"))
        if not self.v2:
            links.new(socket, self.bsdf.inputs["Subsurface Color"])

    def input(self, logical: str):
        """A socket that has the same meaning in every version (Roughness, Normal, ...)."""
        return self._input(logical)
