"""Shared fixtures, built once per test session.

The prepared hand and pose table use the real anny hand (its first construction on a machine
compiles Warp kernels, about a minute) and are cached in a session temp folder so tests never
touch cache/.  `template`/`mesh` are the network's 778-vertex template and its sampling
hierarchy; `tiny_ds` is a real packed dataset of the toy hand for the training tests.
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
    from datagen.poses.prepared import prepare_poses

    return prepare_poses(config, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def hand(config):
    """The hand model (with its forearm, as the default config has it) in the dataset's hand
    frame (build_asset fixes the frame in place)."""
    from datagen.hand import load_hand_model
    from datagen.hand.asset import build_asset

    h = load_hand_model(config.hand.model, config.hand.phenotype,
                        config.hand.forearm_length_m if config.hand.forearm else None)
    build_asset(h, config.hand.subdivision_levels)
    return h


@pytest.fixture(scope="session")
def template(tmp_path_factory):
    from mobrecon.template import dev_template

    return dev_template(cache_dir=tmp_path_factory.mktemp("tpl"))


@pytest.fixture(scope="session")
def mesh(template, tmp_path_factory):
    from mobrecon.mesh_prep import prepare_mesh

    return prepare_mesh(template.vertices, template.faces, cache_dir=tmp_path_factory.mktemp("mp"))


TINY_POSES, TINY_VIEWS, TINY_SIZE = 6, 6, 96


@pytest.fixture(scope="session")
def tiny_ds(tmp_path_factory):
    """A real packed dataset: 6 poses x 6 views of the toy hand, 96x96, open778 topology."""
    from support.toy_data import make_render_dir, run_pack

    root = tmp_path_factory.mktemp("tiny")
    render = make_render_dir(root / "render", n_poses=TINY_POSES, n_views=TINY_VIEWS, size=TINY_SIZE)
    run_pack(render, root / "ds")
    return root / "ds"
