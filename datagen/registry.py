"""Name -> entry registries: the places the project grows (hand models, camera samplers, label passes).

Each registry maps a short name - the one a config file or a RENDER_DIR records - to an entry
object that carries everything the rest of the code needs about it, so adding an entry is
one file (plus, for code outside this package, one import).  The style follows kubric's
`@register`:

    from datagen.hand import register_hand_model

    @register_hand_model("myhand", title="my hand", licence={...}, versions=lambda: {...})
    class MyHand(HandModel):
        ...

Registries are import-light (standard library only) because the renderer uses them inside
Blender's own Python.  An entry defined outside the package reaches every process - render
workers, Blender, pack, verify - through the environment variable HANDSYNTH_PLUGINS: a
comma-separated list of importable module names, imported the first time any registry is
asked for a name (the module registers its entries when imported).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from contextlib import contextmanager
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

PLUGINS_ENV = "HANDSYNTH_PLUGINS"
_plugins_loaded: set[str] = set()
_plugins_lock = threading.RLock()


class UnknownName(ValueError):
    """A name no registry entry has; the message lists the known names and how to add one."""


class PluginError(ImportError):
    """A module named in HANDSYNTH_PLUGINS cannot be imported."""


def load_plugins() -> list[str]:
    """Import the modules named in HANDSYNTH_PLUGINS that are not imported yet; returns them.

    Called by every registry before it answers, so a worker process started with the same
    environment knows the same entries as its parent.  A module that fails to import is
    reported by name (a silently missing hand model would only surface as 'unknown name').
    """
    names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    new = []
    with _plugins_lock:
        for name in names:
            if name in _plugins_loaded:
                continue
            _plugins_loaded.add(name)  # before the import: a plugin importing a registry must not recurse
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - any failure is reported the same way
                _plugins_loaded.discard(name)
                raise PluginError(f"{PLUGINS_ENV} names module {name!r}, which cannot be imported: "
                                  f"{type(exc).__name__}: {exc}") from exc
            log.debug("loaded plugin module %s", name)
            new.append(name)
    return new


class Registry(Generic[T]):
    """Entries by name, in registration order.

    `kind` names the entries in messages ("hand model"); `builtins` is a module imported on
    first use that registers the built-in entries (so importing the registry stays cheap);
    `how_to_add` is appended to the unknown-name message.
    """

    def __init__(self, kind: str, builtins: str | None = None, how_to_add: str = ""):
        self.kind = kind
        self._builtins = builtins
        self._builtins_loaded = builtins is None
        self.how_to_add = how_to_add
        self._entries: dict[str, T] = {}

    def _ready(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            importlib.import_module(self._builtins)
        load_plugins()

    def register(self, name: str, entry: T | None = None, *, replace: bool = False):
        """Register `entry` under `name`; without `entry`, a decorator that registers what it decorates.

        Registering a taken name is refused unless `replace` (a plugin overriding a built-in
        must say so), because two modules silently fighting over a name would make a run's
        labels depend on import order.
        """
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"{self.kind} name must be a non-empty string without surrounding spaces, got {name!r}")

        def add(obj: T) -> T:
            if name in self._entries and not replace and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered; pass replace=True to override it")
            self._entries[name] = obj
            return obj

        if entry is None:
            return add
        return add(entry)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    @contextmanager
    def temporarily(self, name: str, entry: T) -> Iterator[T]:
        """Register `entry` for the duration of a `with` block (tests), restoring what was there."""
        old = self._entries.get(name)
        self._entries[name] = entry
        try:
            yield entry
        finally:
            if old is None:
                self._entries.pop(name, None)
            else:
                self._entries[name] = old

    def get(self, name: str) -> T:
        self._ready()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownName(self.unknown_message(name)) from None

    def unknown_message(self, name) -> str:
        known = ", ".join(repr(n) for n in self._entries) or "none"
        msg = f"unknown {self.kind} {name!r}; known: {known}"
        if self.how_to_add:
            msg += f" ({self.how_to_add})"
        return msg

    def names(self) -> tuple[str, ...]:
        self._ready()
        return tuple(self._entries)

    def items(self) -> list[tuple[str, T]]:
        self._ready()
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        self._ready()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"


def resolve(hook: Callable | str | None) -> Callable | None:
    """A callable, or 'package.module:attribute' imported on first use (keeps registration
    import-light: the heavy half of an entry - h5py, cv2 - loads only where it runs)."""
    if hook is None or callable(hook):
        return hook
    module, _, attr = str(hook).partition(":")
    if not module or not attr:
        raise ValueError(f"hook {hook!r} must be a callable or 'module:attribute'")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
