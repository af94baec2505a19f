"""Camera samplers: the registry, the `Views` they return, and `views_for` (numpy only).

To add a camera sampler: write `sample(cfg: CameraConfig, hand) -> Views` (hand: the prepared
hand - HandAsset or HandTables - with `palm_centre` and the hand frame's wrist at the origin)
and decorate it with `register_camera_sampler("name", options={...})`; select it with
`[cameras] sampler = "name"` and give its parameters in `[cameras.options]` (the entry's
`options` declares their names and defaults; config validation checks them).  Per-view
metadata a sampler wants to keep (the hemisphere's longitude/latitude, a ring index, a jitter)
goes in `Views.columns`: one array per name with one row per view.  The renderer writes them
to views.npz, the packer to tables.h5 `views/<name>`, and the reader returns them with the
`view_columns` field - no other module needs to know them.

The renderer calls this inside Blender's own Python: numpy only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import numpy as np

from datagen.registry import Registry

CAMERA_SAMPLERS: Registry[CameraSampler] = Registry(
    "camera sampler", builtins="datagen.cameras.hemisphere",
    how_to_add="register one with datagen.cameras.register_camera_sampler; modules outside datagen load "
               "through the HANDSYNTH_PLUGINS environment variable")

# views.npz / tables.h5 names a sampler's columns must not take.
RESERVED = ("K", "R", "t", "centres", "width", "height", "view_id")
_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Views:
    """The dataset's cameras: one K, and per view R, t (world = hand frame -> OpenCV camera),
    the camera centre, and the sampler's own per-view metadata columns."""

    K: np.ndarray  # (3, 3)
    R: np.ndarray  # (V, 3, 3) world-to-camera rotations
    t: np.ndarray  # (V, 3)
    centres: np.ndarray  # (V, 3) camera centres, hand frame
    width: int
    height: int
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (V, ...) per-view metadata

    def __len__(self) -> int:
        return len(self.R)

    @property
    def longitude_deg(self) -> np.ndarray:
        return self._column("longitude_deg")

    @property
    def latitude_deg(self) -> np.ndarray:
        return self._column("latitude_deg")

    def _column(self, name: str) -> np.ndarray:
        try:
            return self.columns[name]
        except KeyError:
            raise AttributeError(f"these views have no {name!r} column (columns: {list(self.columns)})") from None

    def arrays(self) -> dict[str, Any]:
        """What views.npz holds: K, R, t, centres, the columns, width and height."""
        return dict(K=self.K, R=self.R, t=self.t, centres=self.centres, **self.columns,
                    width=np.int64(self.width), height=np.int64(self.height))


@dataclass(frozen=True)
class CameraSampler:
    """One registered camera sampler (see the module docstring)."""

    name: str
    sample: Callable[..., Views]  # (CameraConfig, hand) -> Views
    options: dict[str, Any] = field(default_factory=dict)  # [cameras.options] names and defaults
    validate: Callable[..., None] | None = None  # (CameraConfig) -> None, raises ValueError naming the key
    description: str = ""

    def option_values(self, cfg) -> dict[str, Any]:
        """The sampler's options for `cfg`: declared defaults, overridden by [cameras.options]."""
        return {**self.options, **(getattr(cfg, "options", None) or {})}


def register_camera_sampler(name: str, *, options: dict[str, Any] | None = None,
                            validate: Callable[..., None] | None = None, description: str = "",
                            replace: bool = False):
    """Decorator: register `sample(cfg, hand) -> Views` as camera sampler `name`."""
    def deco(sample):
        CAMERA_SAMPLERS.register(name, CameraSampler(name, sample, dict(options or {}), validate, description),
                                 replace=replace)
        return sample

    return deco


def check_views(views: Views, sampler: str = "?") -> Views:
    """Refuse views that the renderer and packer could not store: named by sampler and array."""
    where = f"camera sampler {sampler!r}"
    if not isinstance(views, Views):
        raise ValueError(f"{where} returned {type(views).__name__}, not Views")
    n = len(views.R)
    if n < 1:
        raise ValueError(f"{where} returned no views")
    for name, arr, shape in (("K", views.K, (3, 3)), ("R", views.R, (n, 3, 3)), ("t", views.t, (n, 3)),
                             ("centres", views.centres, (n, 3))):
        if np.shape(arr) != shape:
            raise ValueError(f"{where}: {name} has shape {np.shape(arr)}, expected {shape}")
    for name, col in views.columns.items():
        if name in RESERVED or not _COLUMN_NAME.match(name):
            raise ValueError(f"{where}: column name {name!r} is reserved or not an identifier")
        if np.ndim(col) < 1 or len(col) != n:
            raise ValueError(f"{where}: column {name!r} has {np.shape(col)}, expected one row per view ({n})")
        if np.asarray(col).dtype.kind not in "biuf":
            raise ValueError(f"{where}: column {name!r} must hold numbers or booleans, got {np.asarray(col).dtype}")
    return views


def views_for(cfg, hand) -> Views:
    """The dataset's views for config section `cfg` ([cameras]) and a prepared hand."""
    sampler = CAMERA_SAMPLERS.get(cfg.sampler)
    return check_views(sampler.sample(cfg, hand), cfg.sampler)
