"""MobRecon training on handsynth shards: ``python -m train`` (training), ``python -m train.evaluate``,
``python -m train.predict``.  Modules: config/schema (validated TOML + flags), data (sources, mixing,
deterministic plan), augment/geometry (crops, crop intrinsics, root recovery), losses, metrics,
engine (loop, checkpoints, DDP), model_io.  See docs/TRAINING.md.
"""
