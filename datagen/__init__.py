"""Pure-Python dataset logic: hand, pose space, cameras, labels, packing (no Blender needed)."""
