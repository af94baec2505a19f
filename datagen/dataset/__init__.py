"""The packed dataset: RENDER_DIR -> HDF5 shards (pack), the shard format, the reader and
verify (`python -m datagen.pack`, `python -m datagen.verify`).
"""
