"""Hand models behind one interface (`HandModel`), their registry, and the dense mesh built on them.

To add a hand model: write a `HandModel` subclass (datagen.hand.base: a rig with the five
three-bone finger chains, faces with one open wrist loop, rest vertices, skinning weights and
`skin`) and decorate it with `register_hand_model("name", title=..., licence=..., versions=...)`.
Select it with `[hand] model = "name"` in the config.  Its entry is where everything else
looks the model up: config validation (the names and the phenotypes it accepts), the
prepared-cache key (its version strings and, if it brings them, its own pose-angle tables) and
run.json's `hand` record (its title and licence).  A model defined outside datagen is loaded
in every process through HANDSYNTH_PLUGINS (datagen.registry); tests/toy_plugins.py is a
complete example.

Import-light: this package's registration imports numpy only (the models' heavy libraries -
torch, anny - load when a model is built), since Blender's Python reads the registry too.
"""

from __future__ import annotations

from .base import FINGERS, KEYPOINT_NAMES, HandModel, HandRig, forward_kinematics
from .registry import HAND_MODELS, HandModelEntry, hand_model_entry, load_hand_model, register_hand_model
from . import anny_hand  # noqa: F401 - registers the built-in model (light: anny loads when built)

__all__ = ["FINGERS", "KEYPOINT_NAMES", "HAND_MODELS", "HandModel", "HandModelEntry", "HandRig",
           "forward_kinematics", "hand_model_entry", "load_hand_model", "register_hand_model"]
