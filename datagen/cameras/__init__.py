"""Camera samplers (the paper's 216-view hemisphere is one) and the framing report.
`python -m datagen.cameras --report`.

The registry, `Views` and `views_for` are in datagen.cameras.samplers (how to add a sampler
is in its docstring); importing this package registers the built-in hemisphere.
"""

from .samplers import CAMERA_SAMPLERS, CameraSampler, Views, check_views, register_camera_sampler, views_for
from . import hemisphere  # noqa: E402,F401 - registers "hemisphere"

__all__ = ["CAMERA_SAMPLERS", "CameraSampler", "Views", "check_views", "register_camera_sampler", "views_for"]
