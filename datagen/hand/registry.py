"""The hand-model registry: name -> entry (constructor, licence, versions, phenotypes, pose angles).

See the package docstring (datagen.hand) for how to add a model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

from datagen.registry import Registry

from .base import HandModel

log = logging.getLogger(__name__)

HAND_MODELS: Registry[HandModelEntry] = Registry(
    "hand model",
    how_to_add="register one with datagen.hand.register_hand_model; modules outside datagen load through "
               "the HANDSYNTH_PLUGINS environment variable")


@dataclass(frozen=True)
class HandModelEntry:
    """One registered hand model: how to build it and what a run records about it.

    `licence` and `title` go to run.json's `hand` record (and, through the model instance, into
    hand.npz and the dataset manifest); `versions()` returns the package versions the geometry
    depends on - they are part of the prepared-cache key, so upgrading the model's package
    rebuilds the tables instead of mixing two hands.  `versions` may fail to find its package
    (Blender's Python has no torch/anny): it then returns what it can and the key is only read.
    """

    name: str
    build: Callable[[dict[str, float] | None], HandModel]
    title: str
    licence: dict[str, str]
    versions: Callable[[], dict[str, str]] = dict
    phenotypes: tuple[str, ...] = ()  # the [hand.phenotype] keys the model accepts (values in [0, 1])
    pose_angles: Any = None  # datagen.poses.angles.PoseAngles tuned to this rig; None = the default tables
    description: str = ""
    # (hand model, length_m) -> the model continued by a forearm (datagen.hand.forearm); None: the
    # model has none and `[hand] forearm = true` is refused, naming the key.
    forearm: Callable[[HandModel, float], HandModel] | None = None

    def record(self) -> dict:
        """run.json's `hand` record."""
        return {"name": self.title, "licence": dict(self.licence)}

    def package_versions(self) -> dict[str, str]:
        try:
            return {str(k): str(v) for k, v in self.versions().items()}
        except Exception as exc:  # noqa: BLE001 - a missing package must not stop a reader of the cache
            log.debug("hand model %s: versions unavailable (%s)", self.name, exc)
            return {}


def register_hand_model(name: str, *, title: str, licence: dict[str, str],
                        versions: Callable[[], dict[str, str]] = dict, phenotypes: tuple[str, ...] = (),
                        pose_angles: Any = None, description: str = "", forearm: Any = None,
                        replace: bool = False):
    """Class (or factory) decorator: register a hand model under `name` (see the module docstring).

    The decorated callable is called as `build(phenotype)` with the config's phenotype table.
    """
    for key in ("name", "licence"):
        if key not in licence:
            raise ValueError(f"hand model {name!r}: licence needs a {key!r} entry (it goes to run.json and "
                             f"the dataset manifest)")

    def deco(build):
        if isinstance(build, type):
            build.name = name
        HAND_MODELS.register(name, HandModelEntry(name, build, title, dict(licence), versions, tuple(phenotypes),
                                                  pose_angles, description, forearm), replace=replace)
        return build

    return deco


def hand_model_entry(name: str) -> HandModelEntry:
    return HAND_MODELS.get(name)


def load_hand_model(name: str = "anny", phenotype: dict[str, float] | None = None,
                    forearm_length_m: float | None = None) -> HandModel:
    """Instantiate a registered hand model by name; with `forearm_length_m`, continued by its
    forearm cut that far from the wrist joint (the entry's `forearm` builder)."""
    entry = HAND_MODELS.get(name)
    hand = entry.build(phenotype)
    if forearm_length_m is None:
        return hand
    if entry.forearm is None:
        raise ValueError(f"hand model {name!r} has no forearm (hand.forearm = true needs one)")
    return entry.forearm(hand, float(forearm_length_m))
