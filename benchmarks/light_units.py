"""Measure Cycles' light units: the linear value of a white diffuse surface facing a light.

For each light type (point, spot, area) of power 100 W at 1 m from a white Lambertian plane
facing it, renders the plane's centre (no world light, Standard view, linear EXR) and prints
W = P / (value x d^2), the constant datagen.scene.lights.WATTS_PER_UNIT_IRRADIANCE holds:

    .venv/bin/python benchmarks/light_units.py
"""
from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bpy
import numpy as np


def measure(kind: str, power: float = 100.0, d: float = 1.0) -> float:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 64
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = 16
    scene.view_settings.view_transform = "Standard"
    world = bpy.data.worlds.new("black")
    scene.world = world
    world.color = (0.0, 0.0, 0.0)
    if world.node_tree is not None:
        bg = world.node_tree.nodes.get("Background")
        if bg is not None:
            bg.inputs["Strength"].default_value = 0.0
    mesh = bpy.data.meshes.new("plane")
    s = 0.01
    mesh.from_pydata([(-s, -s, 0), (s, -s, 0), (s, s, 0), (-s, s, 0)], [], [(0, 1, 2, 3)])
    mat = bpy.data.materials.new("white")
    try:
        mat.use_nodes = True
    except AttributeError:
        pass
    nt = mat.node_tree
    nt.nodes.clear()
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    diff = nt.nodes.new("ShaderNodeBsdfDiffuse")
    diff.inputs["Color"].default_value = (1, 1, 1, 1)
    nt.links.new(diff.outputs[0], out.inputs["Surface"])
    mesh.materials.append(mat)
    plane = bpy.data.objects.new("plane", mesh)
    scene.collection.objects.link(plane)
    cam = bpy.data.cameras.new("cam")
    cam.type = "ORTHO"
    cam.ortho_scale = 0.01
    camo = bpy.data.objects.new("cam", cam)
    camo.location = (0, 0, 0.5)
    scene.collection.objects.link(camo)
    scene.camera = camo
    light = bpy.data.lights.new("l", kind.upper())
    light.energy = power
    if kind == "area":
        light.size = 0.001
    else:
        light.shadow_soft_size = 0.0
    if kind == "spot":
        light.spot_size = math.radians(170)
        light.spot_blend = 0.0
    lo = bpy.data.objects.new("l", light)
    lo.location = (0, 0, d)  # lights point down their -z: straight at the plane
    scene.collection.objects.link(lo)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "x.exr")
        scene.render.image_settings.file_format = "OPEN_EXR"
        scene.render.filepath = path
        bpy.ops.render.render(write_still=True)
        img = bpy.data.images.load(path)
        px = np.empty(img.size[0] * img.size[1] * 4, np.float32)
        img.pixels.foreach_get(px)
    v = float(px.reshape(-1, 4)[:, 0].mean())
    return power / (v * d * d)


if __name__ == "__main__":
    for kind in ("point", "spot", "area"):
        w = measure(kind)
        print(f"{kind}: W = {w:.3f}  (pi^2 = {math.pi ** 2:.3f}, 4 pi^2 = {4 * math.pi ** 2:.3f})")
