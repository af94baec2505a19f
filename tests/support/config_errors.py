"""The config-error check the tests share: a raw config is refused with a message holding every word."""

from __future__ import annotations

import pytest

from datagen.config import ConfigError, config_from_dict


def assert_config_error(raw: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw)
    assert all(w in str(e.value) for w in words), str(e.value)
