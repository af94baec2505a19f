"""Check datagen/render/blender_versions.py against a running Blender, and smoke-test compat.py in it.

    blender -b --factory-startup -P scripts/blender_compat_check.py      # a Blender binary
    .venv/bin/python scripts/blender_compat_check.py                      # the venv's bpy module
    /tmp/bpy42/bin/python scripts/blender_compat_check.py                 # a side venv: pip install bpy==4.2.0 'numpy<2'

Compares, for the running version, the tables' view transforms, looks, Principled BSDF
sockets, subsurface methods, `Mesh.shade_smooth` and Cycles settings with what the build has,
then builds a tiny scene through compat.py (smooth shading, the skin's Principled settings,
view transform with fallback, Cycles settings).  Prints one line per finding and
``compat check: ok`` (exit 0) or ``compat check: N mismatches`` (exit 1).  Needs only bpy and
the standard library (numpy is not imported).

Run on the development machine: Blender 3.4.1 (Debian), bpy 4.2.0, 4.5.0 and 5.0.1: ok.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def check() -> int:
    import bpy

    from blender_scripts import compat
    from datagen.render import blender_versions as bv

    v = compat.VERSION
    problems = []

    def expect(ok: bool, what: str) -> None:
        print(f"  {'ok ' if ok else 'BAD'} {what}")
        if not ok:
            problems.append(what)

    print(f"Blender {bpy.app.version_string} ({'binary ' + bpy.app.binary_path if bpy.app.binary_path else 'bpy module'})")
    scene = bpy.context.scene
    have = compat.available_view_transforms(scene)
    print(f"  view transforms: {have}")
    for name in bv.VIEW_TRANSFORM_NAMES:
        expect((name in have) == (name in bv.view_transforms_in(v)),
               f"view transform {name!r}: table says {'present' if name in bv.view_transforms_in(v) else 'absent'}")
    for name in bv.VIEW_CONTRAST:  # the looks the renderer asks for (also after a fallback)
        choice = bv.resolve_view_transform(name, v, have)
        scene.view_settings.view_transform = choice.view_transform
        looks = compat.enum_choices(scene.view_settings, "look") or ()
        expect(choice.look in looks, f"look {choice.look!r} of {choice.view_transform!r} (for {name!r})")
    mat = bpy.data.materials.new("check")
    if mat.node_tree is None:
        mat.use_nodes = True
    bsdf = mat.node_tree.nodes.new("ShaderNodeBsdfPrincipled")
    sockets = {i.name for i in bsdf.inputs}
    for logical in bv.PRINCIPLED_INPUTS:
        name = bv.principled_input(logical, v)
        expect(name is None or name in sockets, f"Principled input {logical} -> {name!r}")
    methods = {i.identifier for i in bsdf.bl_rna.properties["subsurface_method"].enum_items}
    for m in bv.SUBSURFACE_METHODS_PRE_4:
        expect(bv.subsurface_method(m, v) in methods, f"subsurface method {m} -> {bv.subsurface_method(m, v)}")
    mesh = bpy.data.meshes.new("check")
    expect(hasattr(mesh, "shade_smooth") == (v >= bv.SHADE_SMOOTH_SINCE), "Mesh.shade_smooth availability")
    scene.render.engine = "CYCLES"
    for k in bv.CYCLES_SETTINGS_SINCE:
        expect(hasattr(scene.cycles, k) == bv.has_cycles_setting(k, v), f"Cycles setting {k} availability")
    for node in ("ShaderNodeMix", "ShaderNodeTexNoise", "ShaderNodeTexVoronoi", "ShaderNodeMapRange", "ShaderNodeBump"):
        try:
            mat.node_tree.nodes.new(node)
            expect(True, f"node {node}")
        except RuntimeError:
            expect(False, f"node {node}")
    print(f"  OpenImageDenoise in this build: {compat.has_openimagedenoise(scene)}")

    # compat.py end to end on a one-triangle mesh
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    compat.shade_smooth(mesh)
    expect(all(p.use_smooth for p in mesh.polygons), "compat.shade_smooth")
    for method in ("BURLEY", "RANDOM_WALK_SKIN", "NONE"):
        p = compat.Principled(mat.node_tree.nodes.new("ShaderNodeBsdfPrincipled"), method)
        p.set_subsurface_weight(1.0)
        p.set_subsurface_scale(0.004)
        p.set_subsurface_radius((1.0, 0.4, 0.2))
        p.set_specular(1.4, 0.5)
        rgb = mat.node_tree.nodes.new("ShaderNodeRGB")
        p.link_base_color(mat.node_tree.links, rgb.outputs[0])
    w = p._input("subsurface_weight").default_value
    expect(abs(w - (1.0 if v >= bv.PRINCIPLED_V2_SINCE else 0.004)) < 1e-6, f"subsurface weight socket = {w:.4g}")

    class Cfg:
        class render:
            view_transform = "AgX"
            denoise = True
            samples = 2
            samples_without_denoiser = 16

    choice = compat.check_config(Cfg, scene)
    compat.apply_view(scene, choice)
    applied = compat.apply_cycles(scene.cycles, {"samples": 1, "denoiser": "OPENIMAGEDENOISE",
                                                 "denoising_quality": "HIGH"}, choice)
    expect(scene.view_settings.view_transform == choice.view_transform, f"view transform applied: {choice.view_transform}")
    expect(("denoising_quality" in applied) == (choice.denoise and bv.has_cycles_setting("denoising_quality", v)),
           f"Cycles settings applied: {sorted(applied)}")
    print(f"  fallbacks: {choice.records()}")
    print(f"compat check: {'ok' if not problems else f'{len(problems)} mismatches'}")
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        code = check()
    except BaseException:  # noqa: BLE001 - Blender would exit 0 after an uncaught exception
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
