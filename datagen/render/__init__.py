"""Rendering at scale: RENDER_DIR layout, item selections, job planning and ledger, local and
Ray worker backends, and the job driver (`python -m datagen.render`).  The renderer itself is
`blender_scripts/render.py`.
"""
