"""MobRecon (Chen et al., CVPR 2022) for the handsynth dataset.

Modules: ``mesh_prep`` (template -> sampling hierarchy + spirals), ``template``
and ``regressor`` (hand template, 21-joint regressor), ``blocks``,
``densestack``, ``ghoststack`` (2D encoders), ``lifting`` (MapReg, pose
pooling, PVL), ``dsconv`` / ``decoder`` (3D decoder), ``model`` (MobRecon),
``complexity`` (Mult-Adds / params), ``export`` (ONNX / ONNX Runtime).
Import what you need from the submodules; this package import stays light.
"""
