"""Numpy-only geometry kernel: one operation per module, shapes and units in each docstring.

Safe inside Blender's own Python (numpy only, no scipy/torch at import time); the network
(`mobrecon`) and training (`train`) use it too - it depends on nothing else in `datagen`.
"""
