"""The bpy side of the renderer: one scene, built once, updated per item.

`SceneRenderer(cfg, tables, views, hdris)` builds a Cycles scene with the dense hand mesh, the
skin material, an HDRI world and a camera; `render_item(spec, out_dir)` then only
- replaces the mesh's vertex positions when the pose changes (foreach_set; items come
  pose-major), and writes that pose's mesh file once,
- sets the hand/camera transform, the world's HDRI image and strength, the skin's values and
  the Cycles seed,
- computes the labels (the run's label passes, datagen.labels.passes, pure numpy), renders,
  and writes the item's files atomically, the label JSON last.

A long-lived worker can call `render_item` for any list of items without rebuilding anything
(blender_scripts/render.py's --items-file and --stdin modes do).

Camera: Blender's camera is made to equal K, R, t exactly: sensor fit horizontal, sensor
width W (so 1 mm = 1 px), lens = f, shift from the principal point, pixel aspect 1, and the
OpenCV -> Blender axis flip diag(1, -1, -1).  K, R, t are the item's (`item_camera`): the
view's, or with [cameras.jitter] the item's own jittered camera (datagen.cameras.jitter).  tests/test_render.py proves it by comparing
Cycles' own coverage and depth with the rasterised labels.

Render settings come from the config's [render] section plus the measured fixed choices in
`CYCLES_FIXED` (see docs/RENDERING.md for the study behind them).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from blender_scripts import compat
from datagen import atomic
from datagen.cameras.framing import camera_for_item
from datagen.cameras.jitter import ItemCamera, jitter_on, view_camera
from datagen.scene.hdri import (
    ENV_UP_HAND,
    Hdri,
    HdriError,
    LightProbe,
    hand_to_world,
    subject_exposure,
    visible_normal_weights,
)
from datagen.scene.backgrounds import Background, background_pixels, composite, decode, prepare
from datagen.scene.items import ItemSpec, make_spec
from datagen.scene.lights import blackbody_rgb, exposure_factor, light_watts
from datagen.render.layout import item_paths, mesh_path
from datagen.labels.handedness import handed_mesh, handed_points
from datagen.labels.passes import ItemContext, compute_passes, passes_for, write_passes
from datagen.labels.item import label_item
from datagen.scene.arm import draw_item_arm
from datagen.scene.occluders import Placement
from datagen.scene.skin import (
    CREASE_FIELDS,
    CREASE_MELANIN,
    CREASE_REDNESS,
    PALM_MELANIN,
    PALM_REDNESS,
    SSS_RADIUS,
    WRINKLE_PERIOD_M,
    SkinParams,
    crease_fields,
    nail_weights,
    tone,
    tone_exposure_factor,
    vertex_weights,
)

# Fixed Cycles choices (measured in benchmarks/render_bench.py; docs/RENDERING.md).
CYCLES_FIXED = {
    "max_bounces": 4,
    "diffuse_bounces": 2,
    "glossy_bounces": 2,
    "transmission_bounces": 0,
    "volume_bounces": 0,
    "transparent_max_bounces": 0,
    "caustics_reflective": False,
    "caustics_refractive": False,
    "sample_clamp_indirect": 10.0,
    "denoiser": "OPENIMAGEDENOISE",
    "denoising_input_passes": "RGB_ALBEDO_NORMAL",
    "denoising_prefilter": "FAST",
    "denoising_quality": "HIGH",  # replaced by the config's [render] denoise_quality
    "adaptive_min_samples": 0,
    "pixel_filter_type": "BLACKMAN_HARRIS",
    "filter_width": 1.5,
    "use_persistent_data": True,
}
# Subsurface method of the skin: Christensen-Burley looks the same as the random walk at
# 256x256 and costs ~1/3 less CPU (docs/RENDERING.md, "Skin").
SUBSURFACE_METHOD = "BURLEY"
# Colour-management look per view transform, and what each Blender version has:
# datagen/render/blender_versions.py (VIEW_CONTRAST), applied by blender_scripts/compat.py.
# Exposure, like a camera's subject-priority auto exposure (config [hdri] exposure = "skin", the
# default): each item's film exposure makes the predicted brightness of the visible skin - the
# environment's irradiance on every camera-facing face of the posed hand, weighted by its
# projected area (datagen.scene.hdri.visible_normal_weights / LightProbe.skin_irradiance) -
# equal `[hdri] exposure_target` (default 0.9), times the drawn strength, within
# SKIN_EXPOSURE_STOPS of the exposure that normalises the HDRI's mean luminance to the same
# target.  Measured on 240 renders of the old rule, this prediction correlates 0.68 with the
# rendered skin's luminance over its albedo (the old camera-side direction: 0.13), and the old
# rule let the skin's brightness vary by sd 0.6 stops for the same tone (0.45 now).  At 0.9
# the skin renders on average at its own albedo's lightness (-0.06 stops over 120 items: the
# prediction's missing specular/subsurface light and AgX's lift of dark tones cancel the
# 10% under-exposure), and the realism benchmark detected most hands at 0.9 (0.408, against
# 0.375 at 1.3 and 0.342 at 2.0; docs/REALISM.md "Skin and exposure").  "camera_side" is the
# previous rule (TARGET_LUMINANCE = 1 on the light falling on the side facing the camera,
# within SUBJECT_EXPOSURE_STOPS = 2 of the HDRI's mean), kept for comparisons and for resuming
# older RENDER_DIRs.
EXPOSURE_RULES = ("skin", "camera_side")
SKIN_EXPOSURE_STOPS = 2.5
TARGET_LUMINANCE = 1.0
SUBJECT_EXPOSURE_STOPS = 2.0
# Crease grooves: bump distance (m) at full height and the strength per unit `creases`;
# colour: the crease colour is mixed in by CREASE_COLOUR_MIX x intensity.
CREASE_BUMP_DISTANCE_M = 0.0003
CREASE_BUMP_STRENGTH = 0.6
CREASE_COLOUR_MIX = 0.8
# Resolution of the environment's light importance map (manual; Cycles' automatic choice
# makes every HDRI switch cost ~1 CPU-second); see docs/RENDERING.md.
WORLD_MAP_RESOLUTION = 512
HDRI_EXPOSURE_LIMITS = (0.02, 50.0)
FOREARM_PART = 6  # datagen.hand.forearm.ARM_PART (that module does not load in Blender)


def _versions(tables) -> dict:
    import tomllib

    from datagen.config import REPO_ROOT

    try:
        project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    except (OSError, KeyError, ValueError):
        project = "unknown"
    # The hand model's own package versions (anny: {"anny": ...}), as hand.npz recorded them.
    return {"bpy": bpy.app.version_string, **{str(k): str(v) for k, v in tables.versions.items()},
            "project": project}


def _mix_rgb(N, L, fac, a, b):
    """A colour Mix node (clamped factor) in node tree (nodes N, links L); fac/a/b: a value or a
    socket.  Returns (node, its colour output)."""
    m = N.new("ShaderNodeMix")
    m.data_type = "RGBA"
    m.clamp_factor = True
    for sock, val in (("Factor_Float", fac), ("A_Color", a), ("B_Color", b)):
        target = next(i for i in m.inputs if i.identifier == sock)
        if isinstance(val, (int, float)):
            target.default_value = val
        else:
            L.new(val, target)
    return m, next(o for o in m.outputs if o.identifier == "Result_Color")


def opencv_to_blender_camera(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """4x4 Blender camera matrix_world (in the hand frame) for an OpenCV world-to-camera R, t."""
    M = np.eye(4)
    M[:3, :3] = R.T @ np.diag([1.0, -1.0, -1.0])
    M[:3, 3] = -R.T @ t
    return M


class SceneRenderer:
    """One Cycles scene for many items; see the module docstring."""

    def __init__(self, cfg, tables, views, hdris: list[Hdri], device: str | None = None,
                 threads: int | None = None, cycles_overrides: dict | None = None, fsync: bool = False,
                 subsurface_method: str = SUBSURFACE_METHOD, exposure_rule: str | None = None,
                 creases: bool | None = None, backgrounds: list[Background] = ()):
        self.cfg = cfg
        self.tables = tables
        self.views = views
        self.hdris = hdris
        self.backgrounds = list(backgrounds)
        self._bg_cache: dict[int, np.ndarray] = {}
        self._lights: list = []
        self.device = (device or cfg.render.device).upper()
        self.threads = cfg.render.threads if threads is None else int(threads)
        # [render] denoise_quality replaces the fixed "HIGH"; explicit overrides (benchmarks) win.
        self.cycles = dict(CYCLES_FIXED, denoising_quality=cfg.render.denoise_quality)
        self.cycles.update(cycles_overrides or {})
        self.fsync = fsync
        if subsurface_method not in ("BURLEY", "RANDOM_WALK", "RANDOM_WALK_SKIN", "NONE"):
            raise ValueError(f"subsurface_method {subsurface_method!r}: BURLEY, RANDOM_WALK, RANDOM_WALK_SKIN or NONE")
        self.subsurface_method = subsurface_method
        exposure_rule = cfg.hdri.exposure if exposure_rule is None else exposure_rule
        if exposure_rule not in EXPOSURE_RULES:
            raise ValueError(f"exposure_rule {exposure_rule!r}: one of {', '.join(EXPOSURE_RULES)}")
        self.exposure_rule = exposure_rule
        self.creases = bool(cfg.skin.creases if creases is None else creases)
        # [skin] forearm_detail = false: the arm (dense part 6) in a plainer, cheaper material
        self._plain_arm = bool(not cfg.skin.forearm_detail and (np.asarray(tables.dense_part) == FOREARM_PART).any())
        self.versions = _versions(tables)
        self._pose = None
        self._dense = None
        self._hdri_images = []
        self._probes = []
        self._env_index = None
        self.hdri_stats: list[dict] = []
        self.timings: dict[str, float] = {}
        self._build()

    # ------------------------------------------------------------------ scene construction
    def _build(self) -> None:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        self.scene = scene = bpy.context.scene
        scene.render.engine = "CYCLES"
        self._setup_device()
        self._setup_render()
        self._load_hdris()
        self._build_world()
        self._build_hand()
        self._build_camera()
        self._occluder = None  # the current item's object (bpy object), None without one
        self._item_world = Matrix()  # set_view: the item's labelled frame -> Blender's world
        self._occluder_material = self._occluder_obj = None
        if self.cfg.occluders.share > 0:
            self._occluder_material = self._build_occluder_material()
            self._occluder_obj = bpy.data.objects.new("occluder", bpy.data.meshes.new("occluder"))
            self._occluder_obj.hide_render = True
            self.scene.collection.objects.link(self._occluder_obj)

    def _setup_device(self) -> None:
        scene = self.scene
        if self.device == "CPU":
            scene.cycles.device = "CPU"
            return
        prefs = bpy.context.preferences.addons["cycles"].preferences
        try:
            prefs.compute_device_type = self.device
        except TypeError:
            raise RuntimeError(f"--device {self.device}: this Blender build has no {self.device} support") from None
        prefs.refresh_devices()
        found = [d for d in prefs.devices if d.type == self.device]
        if not found:
            have = sorted({d.type for d in prefs.devices})
            raise RuntimeError(f"--device {self.device}: no {self.device} device found (available: {have}); "
                               f"check the driver, or render on CPU")
        for d in prefs.devices:
            d.use = d.type == self.device
        scene.cycles.device = "GPU"

    def _setup_render(self) -> None:
        scene, r, c, rc = self.scene, self.scene.render, self.scene.cycles, self.cfg.render
        r.resolution_x, r.resolution_y = self.views.width, self.views.height
        r.resolution_percentage = 100
        r.pixel_aspect_x = r.pixel_aspect_y = 1.0
        r.film_transparent = False
        r.use_persistent_data = bool(self.cycles["use_persistent_data"])
        r.threads_mode = "FIXED" if self.threads > 0 else "AUTO"
        if self.threads > 0:
            r.threads = self.threads
        r.use_compositing = False
        r.use_sequencer = False
        r.use_file_extension = False
        r.image_settings.file_format = "PNG"
        r.image_settings.color_mode = "RGB"
        r.image_settings.color_depth = "8"
        r.image_settings.compression = rc.png_compression
        # What this Blender can do with the config (fallbacks logged once and recorded).
        self._choice = compat.check_config(self.cfg, scene)
        compat.apply_view(scene, self._choice)
        scene.view_settings.exposure = 0.0
        scene.view_settings.gamma = 1.0
        scene.display_settings.display_device = "sRGB"
        c.samples = self._choice.samples
        c.use_adaptive_sampling = rc.adaptive_threshold > 0
        if rc.adaptive_threshold > 0:
            c.adaptive_threshold = rc.adaptive_threshold
        c.use_denoising = self._choice.denoise
        c.use_animated_seed = False
        c.use_auto_tile = False
        c.tile_size = max(self.views.width, self.views.height)
        self._applied = compat.apply_cycles(
            c, {k: v for k, v in self.cycles.items() if k != "use_persistent_data"}, self._choice)
        self._applied["use_persistent_data"] = r.use_persistent_data

    def configure(self, samples: int | None = None, adaptive_threshold: float | None = None,
                  denoise: bool | None = None, **cycles) -> None:
        """Change sampling settings of the built scene (benchmarks, studies); no rebuild."""
        import dataclasses

        rc = self.cfg.render
        rc = dataclasses.replace(rc, **{k: v for k, v in dict(samples=samples, adaptive_threshold=adaptive_threshold,
                                                                denoise=denoise).items() if v is not None})
        self.cfg = dataclasses.replace(self.cfg, render=rc)
        self.cycles.update(cycles)
        self._setup_render()

    def render_settings(self) -> dict:
        rc = self.cfg.render
        # What was applied in this Blender (config values that fell back are in "fallbacks").
        out = {"engine": "CYCLES", "device": self.device, "samples": self._choice.samples,
               "adaptive_threshold": rc.adaptive_threshold, "denoise": self._choice.denoise,
               "view_transform": self._choice.view_transform, "look": self._choice.look,
               "png_compression": rc.png_compression, "subsurface_method": self.subsurface_method}
        out.update(self._applied)
        out["fallbacks"] = self._choice.records()
        return out

    def _load_hdris(self) -> None:
        """Load every HDRI once (fails naming the file) and measure its mean luminance."""
        for h in self.hdris:
            try:
                img = bpy.data.images.load(h.path, check_existing=True)
            except RuntimeError as exc:
                raise HdriError(f"HDRI {h.path}: Blender cannot load it: {exc}") from None
            w, hh = img.size
            if w <= 0 or hh <= 0 or not img.has_data:
                raise HdriError(f"HDRI {h.path}: Blender loaded no pixels (corrupt or unsupported file)")
            px = np.empty(w * hh * img.channels, np.float32)
            img.pixels.foreach_get(px)
            px = px.reshape(hh, w, img.channels)
            if not np.all(np.isfinite(px[..., :3])):
                raise HdriError(f"HDRI {h.path}: contains NaN or infinite pixels")
            probe = LightProbe.from_pixels(px)
            lum = probe.mean()
            if not lum > 0:
                raise HdriError(f"HDRI {h.path}: is completely black")
            scale = float(np.clip(TARGET_LUMINANCE / lum, *HDRI_EXPOSURE_LIMITS))
            self._hdri_images.append(img)
            self._probes.append(probe)
            self.hdri_stats.append({"mean_luminance": lum, "exposure_scale": scale, "loaded_size": [w, hh]})

    def _build_world(self) -> None:
        world = bpy.data.worlds.new("hdri")
        self.scene.world = world
        nt = self._node_tree(world)
        out = nt.nodes.new("ShaderNodeOutputWorld")
        bg = nt.nodes.new("ShaderNodeBackground")
        env = nt.nodes.new("ShaderNodeTexEnvironment")
        env.interpolation = "Linear"
        env.image = self._hdri_images[0]
        self._env_index = 0
        bg.inputs["Strength"].default_value = 1.0
        world.cycles.sampling_method = "MANUAL"  # AUTOMATIC picks a map so large a switch costs ~1 CPU-s
        world.cycles.sample_map_resolution = WORLD_MAP_RESOLUTION
        nt.links.new(env.outputs["Color"], bg.inputs["Color"])
        nt.links.new(bg.outputs["Background"], out.inputs["Surface"])
        self._env, self._bg = env, bg

    @staticmethod
    def _node_tree(idblock):
        nt = idblock.node_tree
        if nt is None:  # Blender < 5 created node trees only on request
            idblock.use_nodes = True
            nt = idblock.node_tree
        nt.nodes.clear()
        return nt

    def _build_hand(self) -> None:
        T = self.tables
        rest_dense = T.dense(T.rest_base_vertices)
        mesh = bpy.data.meshes.new("hand")
        mesh.from_pydata(rest_dense.tolist(), [], T.dense_faces.tolist())
        mesh.validate(verbose=False)
        if len(mesh.vertices) != T.n_dense or len(mesh.polygons) != len(T.dense_faces):
            raise RuntimeError("Blender changed the hand mesh while building it (validate removed elements)")
        compat.shade_smooth(mesh)
        weights = vertex_weights(rest_dense, T.dense_faces, T.finger_joint_centres())
        if self.creases:
            weights.update(crease_fields(rest_dense, T.dense_faces, T.dense_part, T.finger_joint_centres(),
                                         T.rest_tips(rest_dense)))
        else:  # the shader reads these names; zero weights draw nothing
            weights.update({k: np.zeros(len(rest_dense), np.float32) for k in CREASE_FIELDS})
        weights["nail"] = nail_weights(rest_dense, T.dense_part, T.distal_joint_centres(), T.rest_tips(rest_dense))
        arm_vertex = np.asarray(T.dense_part) == FOREARM_PART
        if self._plain_arm:  # [skin] forearm_detail = false: the arm's vertices
            weights["forearm"] = arm_vertex.astype(np.float32)
        for name, w in weights.items():
            attr = mesh.attributes.new(name, "FLOAT", "POINT")
            attr.data.foreach_set("value", w.astype(np.float32))
        rest = mesh.attributes.new("rest_position", "FLOAT_VECTOR", "POINT")
        rest.data.foreach_set("vector", rest_dense.astype(np.float32).ravel())
        self.mesh = mesh
        self.hand = bpy.data.objects.new("hand", mesh)
        self.scene.collection.objects.link(self.hand)
        self.material = bpy.data.materials.new("skin")
        self._skins = [self._build_skin(self.material)]  # (material, Principled, nodes set per item)
        mesh.materials.append(self.material)
        if self._plain_arm:
            # Faces with only arm vertices: material 1, the plain arm; the one row of faces that
            # joins hand and arm keeps the skin, its subsurface weight ramping to 0 on the arm.
            self.arm_material = bpy.data.materials.new("skin_arm")
            self._skins.append(self._build_skin(self.arm_material, plain=True))
            mesh.materials.append(self.arm_material)
            on_arm = arm_vertex[np.asarray(T.dense_faces)].all(axis=1)
            mesh.polygons.foreach_set("material_index", on_arm.astype(np.int32))
            mesh.update()

    def _build_skin(self, mat, plain: bool = False):
        """Principled BSDF (skin subsurface) with procedural variation; returns (material,
        Principled, the nodes whose values `_set_skin` sets per item).  plain: the arm's material
        with [skin] forearm_detail = false - the same tones and mottling and the item's
        roughness, but no subsurface scattering, no bump (pores), no freckles and no roughness
        noise: the skin's costliest parts per pixel (docs/RENDERING.md "The forearm's cost")."""
        nt = self._node_tree(mat)
        N, L = nt.nodes, nt.links
        out = N.new("ShaderNodeOutputMaterial")
        bsdf = N.new("ShaderNodeBsdfPrincipled")
        principled = compat.Principled(bsdf, "NONE" if plain else self.subsurface_method)
        principled.set_subsurface_weight(0.0 if plain or self.subsurface_method == "NONE" else 1.0)
        principled.set_specular(ior=1.4, level=0.5)
        L.new(bsdf.outputs["BSDF"], out.inputs["Surface"])

        rest = N.new("ShaderNodeAttribute")
        rest.attribute_type = "GEOMETRY"
        rest.attribute_name = "rest_position"

        def attr(name):
            a = N.new("ShaderNodeAttribute")
            a.attribute_type = "GEOMETRY"
            a.attribute_name = name
            return a.outputs["Fac"]

        if self._plain_arm and not plain and self.subsurface_method != "NONE":
            # The subsurface weight times 1 on the hand, 0 on the arm: a ramp across the one row
            # of faces that joins them (the faces beyond are the plain arm's).
            no_arm = N.new("ShaderNodeMath")
            no_arm.operation = "SUBTRACT"
            no_arm.inputs[0].default_value = 1.0
            L.new(attr("forearm"), no_arm.inputs[1])
            principled.link_subsurface_factor(N, L, no_arm.outputs[0])

        def noise(scale_default, detail=3.0):
            n = N.new("ShaderNodeTexNoise")
            n.noise_dimensions = "4D"
            n.inputs["Detail"].default_value = detail
            n.inputs["Roughness"].default_value = 0.55
            n.inputs["Scale"].default_value = scale_default
            L.new(rest.outputs["Vector"], n.inputs["Vector"])
            return n

        def rgb():
            node = N.new("ShaderNodeRGB")
            return node, node.outputs[0]

        def mix(fac, a, b):
            return _mix_rgb(N, L, fac, a, b)

        def math_node(op, a, b=None):
            m = N.new("ShaderNodeMath")
            m.operation = op
            for i, val in enumerate((a, b)):
                if val is None:
                    continue
                if isinstance(val, (int, float)):
                    m.inputs[i].default_value = val
                else:
                    L.new(val, m.inputs[i])
            return m

        # Low-frequency mottling: mix between a lighter and a darker version of the tone.
        blotch = noise(80.0)
        d_light, d_light_o = rgb()
        d_dark, d_dark_o = rgb()
        p_light, p_light_o = rgb()
        p_dark, p_dark_o = rgb()
        _, dorsal = mix(blotch.outputs["Fac"], d_light_o, d_dark_o)
        _, palmar = mix(blotch.outputs["Fac"], p_light_o, p_dark_o)
        _, base = mix(attr("palmar"), dorsal, palmar)
        if plain:
            principled.link_base_color(L, base)
            r_final = math_node("ADD", 0.0, 0.45)  # per item: the skin's roughness
            r_final.use_clamp = True
            L.new(r_final.outputs[0], bsdf.inputs["Roughness"])
            return mat, principled, dict(bsdf=bsdf, blotch=blotch, d_light=d_light, d_dark=d_dark,
                                         p_light=p_light, p_dark=p_dark, r_final=r_final)
        # Knuckles: darker, redder skin over the dorsal finger joints.
        knuckle_col, knuckle_col_o = rgb()
        kn_amount = math_node("MULTIPLY", attr("knuckles"), 0.0)
        _, base = mix(kn_amount.outputs[0], base, knuckle_col_o)
        # Freckles: small Voronoi spots gated by a cluster noise, mostly on light skin.
        vor = N.new("ShaderNodeTexVoronoi")
        vor.voronoi_dimensions = "4D"
        vor.feature = "F1"
        vor.inputs["Scale"].default_value = 450.0
        L.new(rest.outputs["Vector"], vor.inputs["Vector"])
        spot = math_node("LESS_THAN", vor.outputs["Distance"], 0.18)
        cluster = noise(25.0, detail=1.0)
        gate = math_node("GREATER_THAN", cluster.outputs["Fac"], 0.55)
        fr = math_node("MULTIPLY", spot.outputs[0], gate.outputs[0])
        fr_amount = math_node("MULTIPLY", fr.outputs[0], 0.0)
        fr_amount2 = math_node("MULTIPLY", fr_amount.outputs[0], math_node("SUBTRACT", 1.0, attr("palmar")).outputs[0])
        freckle_col, freckle_col_o = rgb()
        _, base = mix(fr_amount2.outputs[0], base, freckle_col_o)
        # Creases: palmar flexion creases and palm lines (thin lines from the signed distance
        # `crease_s`, doubled by `crease_h`) and dorsal knuckle wrinkles (parallel lines),
        # darker and redder than the skin around; see datagen.scene.skin.crease_fields.
        cr_abs = math_node("ABSOLUTE", attr("crease_s"))
        cr_off = math_node("SUBTRACT", cr_abs.outputs[0], attr("crease_h"))
        cr_x = math_node("DIVIDE", cr_off.outputs[0], 0.0005)  # per item: crease_width_m
        cr_sq = math_node("MULTIPLY", cr_x.outputs[0], cr_x.outputs[0])
        cr_neg = math_node("MULTIPLY", cr_sq.outputs[0], -1.0)
        cr_line = math_node("EXPONENT", cr_neg.outputs[0])
        cr_pal = math_node("MULTIPLY", cr_line.outputs[0], attr("crease_w"))
        cr_amount = math_node("MULTIPLY", cr_pal.outputs[0], 0.0)  # per item: creases
        wr_phase = math_node("MULTIPLY", attr("crease_s"), 2 * math.pi / WRINKLE_PERIOD_M)
        wr_cos = math_node("COSINE", wr_phase.outputs[0])
        wr_half = math_node("MULTIPLY_ADD", wr_cos.outputs[0], 0.5)
        wr_half.inputs[2].default_value = 0.5
        wr_pow = math_node("POWER", wr_half.outputs[0], 4.0)
        wr_w = math_node("MULTIPLY", wr_pow.outputs[0], attr("wrinkle_w"))
        wr_amount = math_node("MULTIPLY", wr_w.outputs[0], 0.0)  # per item: wrinkles
        crease = math_node("ADD", cr_amount.outputs[0], wr_amount.outputs[0])
        crease.use_clamp = True
        crease_col, crease_col_o = rgb()
        cr_mix = math_node("MULTIPLY", crease.outputs[0], CREASE_COLOUR_MIX)
        _, base = mix(cr_mix.outputs[0], base, crease_col_o)
        # Fingernails: a sharpened per-vertex weight; paler, pinker and glossier.
        nail = N.new("ShaderNodeMapRange")
        nail.clamp = True
        L.new(attr("nail"), nail.inputs["Value"])
        nail.inputs["From Min"].default_value = 0.35
        nail.inputs["From Max"].default_value = 0.6
        nail_col, nail_col_o = rgb()
        _, base = mix(nail.outputs["Result"], base, nail_col_o)
        principled.link_base_color(L, base)
        # Roughness variation and fine pores (bump).
        rnoise = noise(300.0, detail=2.0)
        r_centered = math_node("SUBTRACT", rnoise.outputs["Fac"], 0.5)
        r_scaled = math_node("MULTIPLY", r_centered.outputs[0], 0.0)
        r_final = math_node("ADD", r_scaled.outputs[0], 0.45)
        r_final.use_clamp = True
        r_nail = N.new("ShaderNodeMix")  # float mix: nails are smoother than skin
        r_nail.data_type = "FLOAT"
        r_nail.clamp_factor = True
        fac = next(i for i in r_nail.inputs if i.identifier == "Factor_Float")
        L.new(nail.outputs["Result"], fac)
        L.new(r_final.outputs[0], next(i for i in r_nail.inputs if i.identifier == "A_Float"))
        next(i for i in r_nail.inputs if i.identifier == "B_Float").default_value = 0.22
        L.new(next(o for o in r_nail.outputs if o.identifier == "Result_Float"), bsdf.inputs["Roughness"])
        pores = noise(2500.0, detail=2.0)
        bump = N.new("ShaderNodeBump")
        bump.inputs["Distance"].default_value = 0.0002
        L.new(pores.outputs["Fac"], bump.inputs["Height"])
        # Crease grooves: a second bump on top of the pores (inverted: the lines are valleys).
        cr_bump = N.new("ShaderNodeBump")
        cr_bump.invert = True
        cr_bump.inputs["Distance"].default_value = CREASE_BUMP_DISTANCE_M
        cr_bump.inputs["Strength"].default_value = 0.0
        L.new(crease.outputs[0], cr_bump.inputs["Height"])
        L.new(bump.outputs["Normal"], cr_bump.inputs["Normal"])
        L.new(cr_bump.outputs["Normal"], bsdf.inputs["Normal"])
        return mat, principled, dict(bsdf=bsdf, blotch=blotch, d_light=d_light, d_dark=d_dark, p_light=p_light,
                                     p_dark=p_dark, knuckle_col=knuckle_col, kn_amount=kn_amount, vor=vor,
                                     cluster=cluster, fr_amount=fr_amount, freckle_col=freckle_col, rnoise=rnoise,
                                     nail_col=nail_col, r_scaled=r_scaled, r_final=r_final, pores=pores, bump=bump,
                                     cr_x=cr_x, cr_amount=cr_amount, wr_amount=wr_amount, crease_col=crease_col,
                                     cr_bump=cr_bump)

    def _set_skin(self, s: SkinParams) -> None:
        for material, principled, nodes in self._skins:  # the skin; the plain arm's
            self._set_skin_values(s, principled, nodes)
            # Values on RGB nodes' outputs do not tag the material for Cycles by themselves.
            material.update_tag()

    def _set_skin_values(self, s: SkinParams, principled, n: dict) -> None:
        """The item's skin values on one material's nodes `n` (the plain arm's has only the
        tones, the mottling and the roughness)."""
        m, h = s.melanin, s.redness
        rv = s.redness_variation
        w = s.pattern_offset

        def col(key, m_, h_):
            c = tone(m_, h_)
            n[key].outputs[0].default_value = (float(c[0]), float(c[1]), float(c[2]), 1.0)

        col("d_light", m * (1 - s.blotch), max(0.0, h - rv / 2))
        col("d_dark", min(1.0, m * (1 + s.blotch) + 0.04 * s.blotch), min(1.0, h + rv / 2))
        mp, hp = m * PALM_MELANIN, min(1.0, h + PALM_REDNESS)
        col("p_light", mp * (1 - s.blotch), max(0.0, hp - rv / 2))
        col("p_dark", min(1.0, mp * (1 + s.blotch)), min(1.0, hp + rv / 2))
        n["blotch"].inputs["W"].default_value = w
        n["blotch"].inputs["Scale"].default_value = s.blotch_scale_per_m
        n["r_final"].inputs[1].default_value = s.roughness
        principled.set_subsurface_radius(SSS_RADIUS)
        principled.set_subsurface_scale(s.subsurface_scale_m)
        if "bump" not in n:  # the plain arm
            return
        col("knuckle_col", min(1.0, m + 0.12), min(1.0, h + 0.35))
        n["kn_amount"].inputs[1].default_value = s.knuckles
        col("freckle_col", min(1.0, m + 0.3), h)
        nc = s.nail_colour()
        n["nail_col"].outputs[0].default_value = (float(nc[0]), float(nc[1]), float(nc[2]), 1.0)
        n["fr_amount"].inputs[1].default_value = s.freckle_amount
        # Creases: the palmar tone's melanin plus CREASE_MELANIN, redder; off when the config
        # turns skin detail off ([skin] creases = false).
        on = 1.0 if self.creases else 0.0
        col("crease_col", min(1.0, mp + CREASE_MELANIN), min(1.0, hp + CREASE_REDNESS))
        n["cr_x"].inputs[1].default_value = s.crease_width_m
        n["cr_amount"].inputs[1].default_value = on * s.creases
        n["wr_amount"].inputs[1].default_value = on * s.wrinkles
        n["cr_bump"].inputs["Strength"].default_value = on * CREASE_BUMP_STRENGTH * s.creases
        for key in ("vor", "cluster", "rnoise", "pores"):
            n[key].inputs["W"].default_value = w
        n["pores"].inputs["Scale"].default_value = s.pore_scale_per_m
        n["bump"].inputs["Strength"].default_value = 0.12 * s.pores
        n["r_scaled"].inputs[1].default_value = 2.0 * s.roughness_variation

    def _build_occluder_material(self):
        """The occluders' material: Principled BSDF whose base colour mixes two colours by a
        noise texture in object coordinates; the values are set per item (set_occluders)."""
        mat = bpy.data.materials.new("occluder")
        nt = self._node_tree(mat)
        N, L = nt.nodes, nt.links
        out = N.new("ShaderNodeOutputMaterial")
        bsdf = N.new("ShaderNodeBsdfPrincipled")
        p = compat.Principled(bsdf, "NONE")
        p.set_specular(ior=1.5, level=0.5)
        L.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
        coord = N.new("ShaderNodeTexCoord")
        noise = N.new("ShaderNodeTexNoise")
        noise.inputs["Detail"].default_value = 4.0
        L.new(coord.outputs["Object"], noise.inputs["Vector"])
        amount = N.new("ShaderNodeMath")
        amount.operation = "MULTIPLY"
        L.new(noise.outputs["Fac"], amount.inputs[0])
        c1, c2 = N.new("ShaderNodeRGB"), N.new("ShaderNodeRGB")
        _, base = _mix_rgb(N, L, amount.outputs[0], c1.outputs[0], c2.outputs[0])
        p.link_base_color(L, base)
        self._occ_nodes = {"noise": noise, "amount": amount, "c1": c1, "c2": c2, "principled": p}
        return mat

    def set_occluders(self, placement: Placement | None) -> None:
        """Replace the previous item's object by this item's (datagen.scene.occluders.Placement;
        None or an empty placement: no object).  Its vertices are in the item's labelled hand
        frame (mirrored for a left hand), so it takes set_view's world transform without the
        hand's mirror; call set_view first."""
        # One object for the whole run (adding and removing objects costs Blender relation
        # updates): its mesh data is replaced per item, and it is hidden when there is none.
        obj = self._occluder_obj
        mesh = placement.mesh() if placement is not None else None
        if mesh is None:
            obj.hide_render = True
            self._occluder = None
            return
        V, F = mesh
        me = bpy.data.meshes.new("occluder")
        me.from_pydata(V.tolist(), [], F.tolist())
        me.validate(verbose=False)
        if placement.objects[0].kind != "box":
            compat.shade_smooth(me)
        me.materials.append(self._occluder_material)
        old, obj.data = obj.data, me
        bpy.data.meshes.remove(old)
        obj.hide_render = False
        obj.matrix_world = self._item_world
        self._occluder = obj
        m, n = placement.objects[0].material, self._occ_nodes
        n["c1"].outputs[0].default_value = (*m["colour"], 1.0)
        n["c2"].outputs[0].default_value = (*m["colour2"], 1.0)
        n["noise"].inputs["Scale"].default_value = m["noise_scale_per_m"]
        n["amount"].inputs[1].default_value = m["noise_mix"]
        n["principled"].input("roughness").default_value = m["roughness"]
        n["principled"].input("metallic").default_value = m["metallic"]
        self._occluder_material.update_tag()

    def _build_camera(self) -> None:
        cam = bpy.data.cameras.new("camera")
        cam.type = "PERSP"
        cam.sensor_fit = "HORIZONTAL"
        cam.sensor_width = float(self.views.width)  # 1 mm of sensor = 1 pixel
        cam.lens_unit = "MILLIMETERS"
        cam.clip_start = 0.005
        cam.clip_end = 100.0
        self.camera = bpy.data.objects.new("camera", cam)
        self.scene.collection.objects.link(self.camera)
        self.scene.camera = self.camera
        self._K = None
        self._set_intrinsics(self.views.K)

    def _set_intrinsics(self, K: np.ndarray) -> None:
        """Blender's lens and shift for K (per item with [cameras.jitter]; no-op if unchanged)."""
        K = np.asarray(K, np.float64)
        if self._K is not None and np.array_equal(K, self._K):
            return
        W, H = self.views.width, self.views.height
        if abs(K[0, 0] - K[1, 1]) > 1e-9 * K[0, 0] or abs(K[0, 1]) > 0:
            raise ValueError("Blender cameras need fx == fy and no skew (pixel aspect 1)")
        cam = self.camera.data
        cam.lens = float(K[0, 0])
        # Shifts are in units of the larger image side; +x moves the view window right (the
        # optical axis then projects left of the centre), +y moves it up (axis projects lower).
        cam.shift_x = float((W / 2 - K[0, 2]) / max(W, H))
        cam.shift_y = float((K[1, 2] - H / 2) / max(W, H))
        self._K = K.copy()

    # ------------------------------------------------------------------ per item
    def set_pose(self, pose_id: int, out_dir: str | Path | None = None, show: bool = True) -> np.ndarray:
        """Put pose `pose_id` (the pose table's mesh) on the mesh (no-op if already there) and
        return its dense vertices; write its mesh file once.  show=False: only compute it."""
        if self._pose != pose_id:
            self._pose, self._dense = pose_id, self.tables.dense_vertices(pose_id)
        if out_dir is not None:
            self._write_pose_mesh(pose_id, out_dir)
        if show:
            self._show(self._dense)
        return self._dense

    def _show(self, dense: np.ndarray) -> None:
        """Put dense vertices (Nd, 3) on the Blender mesh (no-op if they are already there)."""
        if getattr(self, "_shown", None) is dense:
            return
        self.mesh.vertices.foreach_set("co", dense.astype(np.float32).ravel())
        self.mesh.update()
        self._shown = dense

    def item_mesh(self, spec: ItemSpec, camera: ItemCamera, out_dir: str | Path | None = None):
        """Put the item's hand on the mesh: its pose, and with [hand] wrist_draw = "item" its own
        forearm direction (datagen.scene.arm, drawn with the item's camera).  Returns the right
        hand's dense vertices and the arm record (None with per-pose wrists)."""
        if not self.cfg.hand.arm_per_item:
            return self.set_pose(spec.pose_id, out_dir), None
        self.set_pose(spec.pose_id, out_dir, show=False)
        arm = draw_item_arm(self.cfg, self.tables, spec.pose_id, spec.view_id, camera, self.views.width,
                            self.views.height, left=spec.left)
        dense = self.tables.dense(arm.base)
        self._show(dense)
        return dense, arm

    def _write_pose_mesh(self, pose_id: int, out_dir: str | Path) -> None:
        """meshes/pose_NNNNN.npz (the pose table's mesh: with per-item wrists, the straight arm),
        once: the file system is asked once per pose and folder, not per item."""
        mp = mesh_path(out_dir, pose_id)
        if getattr(self, "_mesh_written", None) == mp:
            return
        self._mesh_written = mp
        if not mp.exists():
            mp.parent.mkdir(parents=True, exist_ok=True)
            atomic.save_npz(mp, fsync=self.fsync, dense=self._dense.astype(np.float32),
                            base=self.tables.base_vertices[pose_id].astype(np.float32),
                            keypoints=self.tables.keypoints[pose_id].astype(np.float32))

    def item_camera(self, spec: ItemSpec) -> ItemCamera:
        """The item's camera: its view's, or jittered per item ([cameras.jitter], drawn from the
        item seed and fitted to the item's posed hand - mirrored for a left hand -:
        datagen.cameras.jitter)."""
        if not jitter_on(self.cfg.cameras):
            return view_camera(self.views, spec.view_id)
        self.set_pose(spec.pose_id)
        return camera_for_item(self.cfg.cameras, self.views, self.tables, self.cfg.seed, spec.pose_id,
                               spec.view_id, points=handed_points(self._hand_points(), spec.handedness),
                               aim=self.palm_centre(spec.handedness))

    def _hand_points(self) -> np.ndarray:
        """The current pose's hand vertices (not the forearm): what the jittered camera frames."""
        part = np.asarray(self.tables.dense_part)
        return self._dense[part != 6] if (part == 6).any() else self._dense

    def set_view(self, view_id: int, rotation_deg: float, left: bool = False) -> np.ndarray:
        """Place hand and camera of view `view_id` (its own camera, no jitter); see set_camera."""
        return self.set_camera(view_camera(self.views, view_id), rotation_deg, left)

    def set_camera(self, camera: ItemCamera, rotation_deg: float, left: bool = False) -> np.ndarray:
        """Place hand and camera in Blender's world: hand frame rotated by M (datagen.hdri).

        `camera`: the item's (`item_camera`).  `left`: the item's world is the mirrored hand
        frame (datagen.labels.handedness): the mesh object gets the reflection S = diag(-1, 1, 1)
        in its matrix; Cycles renders a negatively scaled object with its faces' orientation and
        normals flipped accordingly (tests/test_left_hands.py checks silhouette, depth and front
        faces against the labels)."""
        M4 = np.eye(4)
        M = hand_to_world(rotation_deg)
        M4[:3, :3] = M
        self._set_intrinsics(camera.K)
        cam = M4 @ opencv_to_blender_camera(camera.R, camera.t)
        hand = M4 @ np.diag([-1.0, 1.0, 1.0, 1.0]) if left else M4
        # mathutils.Matrix takes rows; a bare nested list would be read column-major.
        self.hand.matrix_world = Matrix([list(map(float, row)) for row in hand])
        self.camera.matrix_world = Matrix([list(map(float, row)) for row in cam])
        # The item's world (the labelled, possibly mirrored, hand frame) -> Blender's: occluders'
        # vertices are in the labelled frame, so they take M4 without the mirror.
        self._item_world = Matrix([list(map(float, row)) for row in M4])
        if self._occluder is not None:
            self._occluder.matrix_world = self._item_world
        return M

    def exposure(self, index: int, strength: float, centre: np.ndarray, M: np.ndarray,
                 handedness: str = "right", lights_factor: float = 1.0,
                 tone_factor: float = 1.0) -> tuple[float, float, float]:
        """(effective strength, camera-side luminance, predicted skin irradiance) for HDRI
        `index` seen from the camera centre `centre` (hand frame; the item camera's), with the
        current pose on the mesh (the rule: [hdri] exposure, self.exposure_rule).
        `lights_factor` (>= 1): the extra lights' share of the predicted light on the skin
        (datagen.scene.lights.exposure_factor); the rule exposes for the sum.  `tone_factor`
        (>= 1, "skin" rule): the skin tone's share of the target ([hdri] exposure_tone)."""
        probe = self._probes[index]
        side = probe.facing(M @ (centre - handed_points(self.tables.palm_centre, handedness)))
        normals, weights = self.visible_normals(centre, handedness)
        skin = probe.skin_irradiance(normals @ M.T, weights)
        mean = self.hdri_stats[index]["mean_luminance"]
        if self.exposure_rule == "skin":
            scale = subject_exposure(skin * lights_factor, mean, self.cfg.hdri.exposure_target * tone_factor,
                                     SKIN_EXPOSURE_STOPS)
        else:
            base = self.hdri_stats[index]["exposure_scale"]
            lim = 2.0 ** SUBJECT_EXPOSURE_STOPS
            scale = float(np.clip(TARGET_LUMINANCE / max(side * lights_factor, 1e-9), base / lim, base * lim))
        return strength * scale, side, skin

    def set_environment(self, index: int, effective_strength: float) -> None:
        """Select the HDRI and apply the effective strength.

        The world only changes when the HDRI does (Cycles then rebuilds the environment's
        importance map; callers order items by HDRI within a pose).  The strength is applied as
        the film exposure, 2**exposure: the world is the only light, so scaling it scales the
        linear image exactly, and a colour-management change costs Cycles nothing.
        """
        if self._env_index != index:
            self._env.image = self._hdri_images[index]
            self._env_index = index
        self.scene.view_settings.exposure = math.log2(max(effective_strength, 1e-8))

    def hdri_record(self, spec: ItemSpec, M: np.ndarray, effective: float, side: float,
                    skin_irradiance: float | None = None) -> dict:
        h = self.hdris[spec.hdri_index]
        st = self.hdri_stats[spec.hdri_index]
        return {"name": h.name, "file": h.file, "index": spec.hdri_index, "rotation_deg": spec.hdri_rotation_deg,
                "strength": spec.hdri_strength, "mean_luminance": st["mean_luminance"],
                "camera_side_luminance": side, "skin_irradiance": skin_irradiance,
                "exposure_rule": self.exposure_rule, "exposure_scale": effective / spec.hdri_strength
                if spec.hdri_strength > 0 else None, "strength_effective": effective, "film_exposure_stops": math.log2(max(effective, 1e-8)),
                "up_axis_hand": list(ENV_UP_HAND),
                "hand_to_world": [[float(x) for x in row] for row in M]}

    def spec(self, pose_id: int, view_id: int) -> ItemSpec:
        """The item's seeded draws (datagen.scene.items.make_spec) for this scene's HDRIs and
        background images."""
        return make_spec(self.cfg, len(self.hdris), pose_id, view_id, len(self.views), len(self.backgrounds))

    def palm_centre(self, handedness: str = "right") -> np.ndarray:
        """The item's palm centre in the hand frame (mirrored for a left hand): the lights' centre."""
        return np.asarray(handed_points(self.tables.palm_centre, handedness), np.float64)

    def to_camera(self, centre: np.ndarray, handedness: str = "right") -> np.ndarray:
        """Unit hand-frame direction palm centre -> camera centre `centre` (the lights' axis)."""
        d = np.asarray(centre, np.float64) - self.palm_centre(handedness)
        return d / np.linalg.norm(d)

    def visible_normals(self, centre: np.ndarray, handedness: str = "right") -> tuple[np.ndarray, np.ndarray]:
        """(unit face normals, projected-area weights) of the current pose's hand seen from the
        camera centre `centre` (hand frame; datagen.scene.hdri.visible_normal_weights), computed
        once per pose, camera and hand."""
        key = (self._pose, tuple(float(x) for x in centre), handedness)
        if getattr(self, "_visible_key", None) != key:
            dense = self._dense if self._dense is not None else self.tables.dense(self.tables.rest_base_vertices)
            dense, faces = handed_mesh(dense, self.tables.dense_faces, handedness)
            self._visible = visible_normal_weights(dense, faces, centre)
            self._visible_key = key
        return self._visible

    def lights_factor(self, spec: ItemSpec, centre: np.ndarray) -> tuple[float, list[float]]:
        """The exposure factor of the item's extra lights (datagen.scene.lights.exposure_factor),
        with the item's pose on the mesh."""
        if not spec.lights:
            return 1.0, []
        normals, weights = self.visible_normals(centre, spec.handedness)
        return exposure_factor(spec.lights, normals, weights, self.to_camera(centre, spec.handedness))

    def set_lights(self, spec: ItemSpec, M: np.ndarray, skin_irradiance: float, centre: np.ndarray) -> list[dict]:
        """Set the extra lights to the item's (datagen.scene.lights), placed in Blender's world by
        the hand-to-world rotation M; returns their item-JSON records.  Light objects are kept
        and reused (type and values changed in place; unused ones hidden from the render)."""
        for obj in self._lights[len(spec.lights):]:
            obj.hide_render = True
        records = []
        to_cam = self.to_camera(centre, spec.handedness)
        centre = self.palm_centre(spec.handedness)
        for i, li in enumerate(spec.lights):
            d = li.direction(to_cam)
            watts = light_watts(li, skin_irradiance)
            if i == len(self._lights):
                obj = bpy.data.objects.new(f"extra_{i}", bpy.data.lights.new(f"extra_{i}", li.type.upper()))
                self.scene.collection.objects.link(obj)
                self._lights.append(obj)
            obj = self._lights[i]
            obj.hide_render = False
            obj.data.type = li.type.upper()
            light = obj.data  # fetched after the type change: its Python class follows the type
            light.energy = watts
            light.color = tuple(float(c) for c in blackbody_rgb(li.temperature_k))
            if li.type == "area":
                light.shape = "SQUARE"
                light.size = max(li.size_m, 1e-4)
            else:
                light.shadow_soft_size = li.size_m / 2
            if li.type == "spot":
                light.spot_size = math.radians(li.spot_deg)
                light.spot_blend = 0.15
            pos = M @ (np.asarray(centre, np.float64) + li.distance_m * d)
            # Blender lights shine down their local -z: local +z points from the palm centre to the light.
            z = M @ d
            up = np.array([0.0, 0.0, 1.0]) if abs(z[2]) < 0.99 else np.array([0.0, 1.0, 0.0])
            x = np.cross(up, z)
            x /= np.linalg.norm(x)
            y = np.cross(z, x)
            m4 = np.eye(4)
            m4[:3, 0], m4[:3, 1], m4[:3, 2], m4[:3, 3] = x, y, z, pos
            obj.matrix_world = Matrix([list(map(float, row)) for row in m4])
            records.append(dict(li.record(to_cam), watts=watts))
        return records

    def background_image(self, index: int) -> np.ndarray:
        """Background image `index`, decoded and reduced for the output size
        (datagen.scene.backgrounds.prepare; a few kept in memory)."""
        img = self._bg_cache.get(index)
        if img is None:
            img = prepare(decode(self.backgrounds[index].path), (self.views.width, self.views.height),
                          self.cfg.backgrounds.scale[0])
            if len(self._bg_cache) >= 16:
                self._bg_cache.pop(next(iter(self._bg_cache)))
            self._bg_cache[index] = img
        return img

    @staticmethod
    def _image_pixels(path: str | Path) -> np.ndarray:
        """The RGBA pixels of an image file as Blender loads them, float32 (H, W, 4), top row
        first (Blender's rows run bottom-up); the image is removed from bpy.data again."""
        img = bpy.data.images.load(str(path), check_existing=False)
        try:
            w, h = img.size
            px = np.empty(w * h * 4, np.float32)
            img.pixels.foreach_get(px)
        finally:
            bpy.data.images.remove(img)
        return px.reshape(h, w, 4)[::-1].copy()

    def _read_rgba(self, path: Path) -> np.ndarray:
        """An 8-bit RGBA PNG Blender wrote, as uint8 (H, W, 4), top row first."""
        return np.clip(np.rint(self._image_pixels(path) * 255.0), 0, 255).astype(np.uint8)

    def render_over(self, path: str | Path, background: np.ndarray) -> tuple[float, float]:
        """Render the hand on a transparent film (the HDRI still lights it) and write the PNG
        composited over `background` (H, W, 3 in [0, 255]) to `path` (no rename)."""
        r = self.scene.render
        path = Path(path)
        tmp = path.with_name(path.name + ".rgba.png")
        r.film_transparent = True
        r.image_settings.color_mode = "RGBA"
        r.image_settings.compression = 0  # a temporary file: written and read at once
        try:
            dt, dc = self.render_to(tmp)
            rgba = self._read_rgba(tmp)
        finally:
            r.film_transparent = False
            r.image_settings.color_mode = "RGB"
            r.image_settings.compression = self.cfg.render.png_compression
            tmp.unlink(missing_ok=True)
        # zlib level from Blender's compression percent (15 % -> 1, 100 % -> 9)
        level = max(1, min(9, round(self.cfg.render.png_compression * 9 / 100)))
        path.write_bytes(atomic.png_bytes(composite(rgba, background), level))
        return dt, dc

    def render_to(self, path: str | Path) -> tuple[float, float]:
        """Render the current state and save the colour-managed PNG to `path` (no rename).
        Returns (wall seconds, process CPU seconds) of Cycles' render call alone."""
        t0, c0 = time.perf_counter(), time.process_time()
        bpy.ops.render.render(write_still=False)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        bpy.data.images["Render Result"].save_render(filepath=str(path))
        return dt, dc

    def render_linear(self, path: str | Path, samples: int = 4, transparent: bool = False,
                      material=None) -> np.ndarray:
        """Render the current state to a float EXR and return its pixels (H, W, 4), top row
        first: scene-linear, no view transform, no exposure, no denoising, and point sampling at
        pixel centres (box filter of width 0.01 px).  `material` temporarily replaces the
        skin.  Every setting it touches is restored."""
        scene, c, r = self.scene, self.scene.cycles, self.scene.render
        saved = [(c, dict(samples=c.samples, use_adaptive_sampling=c.use_adaptive_sampling,
                          use_denoising=c.use_denoising, pixel_filter_type=c.pixel_filter_type,
                          filter_width=c.filter_width)),
                 (r, dict(film_transparent=r.film_transparent)),
                 (r.image_settings, dict(file_format=r.image_settings.file_format,
                                         color_mode=r.image_settings.color_mode,
                                         color_depth=r.image_settings.color_depth)),
                 (scene.view_settings, dict(view_transform=scene.view_settings.view_transform,
                                            look=scene.view_settings.look, exposure=scene.view_settings.exposure))]
        path = Path(path)
        if material is not None:
            for i in range(len(self._skins)):  # the skin and the plain arm's
                self.mesh.materials[i] = material
            if self._occluder is not None:
                self._occluder.data.materials[0] = material
        try:
            c.samples, c.use_adaptive_sampling, c.use_denoising = samples, False, False
            c.pixel_filter_type, c.filter_width = "BOX", 0.01
            r.film_transparent = transparent
            r.image_settings.file_format = "OPEN_EXR"
            r.image_settings.color_mode = "RGBA"
            r.image_settings.color_depth = "32"
            scene.view_settings.view_transform = "Standard"
            scene.view_settings.look = "None"
            scene.view_settings.exposure = 0.0
            self.render_to(path)
            px = self._image_pixels(path)
        finally:
            for i, (skin, _, _) in enumerate(self._skins):
                self.mesh.materials[i] = skin
            if self._occluder is not None:
                self._occluder.data.materials[0] = self._occluder_material
            for obj, values in saved:
                for k, v in values.items():
                    setattr(obj, k, v)
            path.unlink(missing_ok=True)
        return px

    def cycles_coverage_depth(self, spec: ItemSpec, workdir: str | Path) -> tuple[np.ndarray, np.ndarray]:
        """Cycles' own view of an item's geometry, for checking the labels (and the camera).

        Renders the item's pose and view with a camera-depth emission material on a
        transparent film, sampled at pixel centres, and returns (alpha (H, W) in [0, 1],
        camera-z depth (H, W), 0 where alpha is 0).  With an exact camera these equal the
        rasterised mask and depth.
        """
        cam = self.item_camera(spec)
        self.item_mesh(spec, cam)
        self.set_camera(cam, spec.hdri_rotation_deg, spec.left)
        if getattr(self, "_depth_material", None) is None:
            mat = bpy.data.materials.new("camera_depth")
            nt = self._node_tree(mat)
            out = nt.nodes.new("ShaderNodeOutputMaterial")
            em = nt.nodes.new("ShaderNodeEmission")
            camdata = nt.nodes.new("ShaderNodeCameraData")
            nt.links.new(camdata.outputs["View Z Depth"], em.inputs["Color"])
            nt.links.new(em.outputs["Emission"], out.inputs["Surface"])
            self._depth_material = mat
        px = self.render_linear(Path(workdir) / f"cycles_check_{spec.pose_id}_{spec.view_id}.exr",
                                transparent=True, material=self._depth_material)
        alpha = px[..., 3]
        depth = np.where(alpha > 1e-6, px[..., 0] / np.maximum(alpha, 1e-6), 0.0)
        return alpha, depth.astype(np.float32)

    def render_item(self, spec: ItemSpec, out_dir: str | Path) -> dict:
        """Render one item into out_dir (RENDER_DIR layout); returns per-stage seconds (wall)
        plus the CPU seconds of the whole item and of Cycles' render call."""
        t0, c0 = time.perf_counter(), time.process_time()
        paths = item_paths(out_dir, spec.pose_id, spec.view_id)
        paths.label.parent.mkdir(parents=True, exist_ok=True)
        cam = self.item_camera(spec)
        right_dense, arm = self.item_mesh(spec, cam, out_dir)
        M = self.set_camera(cam, spec.hdri_rotation_deg, spec.left)
        factor, facing = self.lights_factor(spec, cam.centre)
        tone_f = tone_exposure_factor(spec.skin.melanin, spec.skin.redness, self.cfg.hdri.exposure_tone)
        eff, side, skin_e = self.exposure(spec.hdri_index, spec.hdri_strength, cam.centre, M, spec.handedness,
                                          factor, tone_f)
        self.set_environment(spec.hdri_index, eff)
        scene_blocks = {}
        if arm is not None:  # only with [hand] wrist_draw = "item"
            scene_blocks["wrist"] = arm.record()
        if cam.jitter is not None:  # only with [cameras.jitter] on: default items stay as they were
            scene_blocks["camera_jitter"] = cam.jitter
        if self.cfg.lights.count[1] > 0 or self._lights:
            lights = self.set_lights(spec, M, skin_e, cam.centre)
            for rec, f in zip(lights, facing):
                rec["facing"] = f
            scene_blocks["lights"] = lights
        background = None
        if self.cfg.backgrounds.share > 0:
            scene_blocks["background"] = None
            if spec.background is not None:
                bg = self.backgrounds[spec.background.index]
                background = background_pixels(self.background_image(spec.background.index),
                                                (self.views.width, self.views.height), spec.background)
                scene_blocks["background"] = dict(spec.background.record(bg), licence=bg.licence)
        self._set_skin(spec.skin)
        self.scene.cycles.seed = spec.cycles_seed
        t1 = time.perf_counter()
        v = self.views
        # The item's hand (mirrored for a left item), its objects and its labels (datagen.labels.item).
        geo = label_item(self.cfg, self.tables, spec, right_dense, cam, v.width, v.height)
        if self.cfg.occluders.share > 0:
            self.set_occluders(geo.placement)
        dense, faces, labels = geo.dense, geo.faces, geo.labels
        # Every label pass of the run (datagen.labels.passes), computed before Cycles runs.
        passes = passes_for(self.cfg.render.label_passes)
        values = compute_passes(passes, ItemContext(
            spec, labels, dense, self.tables, cam.K, cam.R, cam.t, v.width, v.height,
            hdri=dict(self.hdri_record(spec, M, eff, side, skin_e), **({"lights_factor": factor} if spec.lights else {}),
                      **({"exposure_tone_factor": tone_f} if self.cfg.hdri.exposure_tone else {})),
            render=dict(self.render_settings(), cycles_seed=spec.cycles_seed), versions=self.versions, faces=faces,
            scene=scene_blocks))
        t2 = time.perf_counter()
        tmp_rgb = atomic.temp_path(paths.rgb)
        try:
            if background is None:
                render_s, render_cpu = self.render_to(tmp_rgb)
            else:
                render_s, render_cpu = self.render_over(tmp_rgb, background)
            t3 = time.perf_counter()
            atomic.commit(tmp_rgb, paths.rgb, self.fsync)
        except BaseException:
            tmp_rgb.unlink(missing_ok=True)
            raise
        write_passes(passes, values, out_dir, spec.pose_id, spec.view_id, self.fsync)  # the labels JSON last
        t4 = time.perf_counter()
        return {"scene_s": t1 - t0, "labels_s": t2 - t1, "render_s": render_s,
                "save_png_s": t3 - t2 - render_s, "write_s": t4 - t3, "total_s": t4 - t0,
                "render_cpu_s": render_cpu, "total_cpu_s": time.process_time() - c0}
