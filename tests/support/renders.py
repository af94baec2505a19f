"""Helpers for tests that render with real bpy: small configs, tiny HDR files, the import blocker
that proves the renderer's Blender path imports numpy only.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_hdr(path, w=8, h=4, value=(128, 128, 128, 129)):
    """A tiny flat (non-RLE) Radiance file."""
    head = f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\nEXPOSURE=1.0\n\n-Y {h} +X {w}\n".encode()
    path.write_bytes(head + bytes(value) * (w * h))
    return path


REPO = Path(__file__).resolve().parent.parent.parent
RENDER = REPO / "blender_scripts" / "render.py"


def write_render_config(path: Path, size=96, samples=4, denoise=True, sources=("builtin",), threads=2) -> Path:
    path.write_text(
        f"[cameras]\nwidth = {size}\nheight = {size}\nfocal_px = {373.3511425 * size / 256}\n"
        f"[hdri]\nsources = {json.dumps([str(s) for s in sources])}\n"
        f"[render]\nsamples = {samples}\ndenoise = {str(denoise).lower()}\nthreads = {threads}\n")
    return path


BLENDER_PATH_CHECK = r"""
import sys, importlib.abc
BLOCKED = {"torch", "anny", "scipy", "tqdm", "cv2", "imageio", "trimesh", "warp"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not available in Blender's own Python")
sys.meta_path.insert(0, Block())
sys.path.insert(0, sys.argv[1])
import blender_scripts.render as r
r.in_blender_binary = lambda: True  # take the path `blender -b -P` takes
sys.exit(r.main(sys.argv[2:]))
"""
