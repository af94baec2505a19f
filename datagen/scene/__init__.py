"""What surrounds the hand in an item: HDRI environments, skin appearance, and each item's
seeded random draws.  numpy only (imported inside Blender).
"""
