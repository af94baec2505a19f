"""Errors more than one stage raises (a leaf module: imports nothing of the project)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range; the message names the key."""
