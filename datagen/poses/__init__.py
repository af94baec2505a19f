"""Pose space: the paper's 32 base finger states, 496 pairs, 1520 poses; interpenetration check;
the prepared (cached) hand + pose tables.  `python -m datagen.poses --report`.
"""
