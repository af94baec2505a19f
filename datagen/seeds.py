"""Every random draw of a dataset comes from a seed derived here (numpy only; runs in Blender).

Item draws: ``SeedSequence([config seed, pose_id, view_id])`` and its child streams (child k
of a SeedSequence depends only on k, so adding a stream leaves the others as they were):

====== ========================================================== ==============================
stream what it draws                                              where
====== ========================================================== ==============================
0-5    environment, skin, Cycles seed, handedness, background,     datagen.scene.items.make_spec
       extra lights
6      occluders (only with ``[occluders] share > 0``)             datagen.scene.occluders.place
7      the arm's direction (only with ``[hand] wrist_draw =        datagen.scene.arm
       "item"``)
16     camera jitter (only with ``[cameras.jitter]``)              datagen.cameras.jitter
====== ========================================================== ==============================

Per-pose draws use ``SeedSequence([config seed, pose id, tag])`` with their own tag: the wrist
angles (datagen.poses.wrist), splay (datagen.poses.splay) and hand shape (datagen.hand.shape).
"""

from __future__ import annotations

import numpy as np

OCCLUDER_STREAM = 6
ARM_STREAM = 7
CAMERA_JITTER_STREAM = 16


def item_seed(config_seed: int, pose_id: int, view_id: int) -> np.random.SeedSequence:
    """The item's SeedSequence: everything random about item (pose_id, view_id)."""
    return np.random.SeedSequence([int(config_seed), int(pose_id), int(view_id)])


def item_stream(config_seed: int, pose_id: int, view_id: int, stream: int) -> np.random.SeedSequence:
    """Child `stream` of the item's SeedSequence: ``item_seed(...).spawn(stream + 1)[stream]``,
    without making the children before it."""
    return np.random.SeedSequence([int(config_seed), int(pose_id), int(view_id)], spawn_key=(int(stream),))
