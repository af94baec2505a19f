"""Topology: the pose-agnostic dense -> 778-vertex matrix (open778 or a user's MANO file).
`python -m datagen.mapping --report`.
"""
