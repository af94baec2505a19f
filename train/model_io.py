"""Building MobRecon from a dataset template; checkpoints in and out.

A training checkpoint (``OUT/last.pt``) holds everything for an exact resume; the final
``OUT/model.pt`` only what inference needs.  Both carry the template (rest vertices, faces,
joint regressor, topology) so ``train.evaluate`` / ``train.predict`` rebuild the network
without the dataset.  A pretraining checkpoint (``encoder.pt``) holds the encoder and MapReg
weights under the same names as in :class:`mobrecon.model.MobRecon`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from datagen import atomic

from .data import Template

__all__ = ["build_model", "build_from_config", "Encoder2D", "save_atomic", "load_checkpoint", "model_from_checkpoint",
           "load_pretrained_encoder", "unwrap"]

FORMAT = "handsynth-mobrecon"
ENCODER_FORMAT = "handsynth-mobrecon-encoder"


def build_model(template: Template, encoder: str = "densestack", decoder: str = "dsconv",
                template_offset: bool = False) -> nn.Module:
    """MobRecon on the dataset's template; ``template_offset``: the decoder predicts offsets from the
    root-relative rest template (config ``model.template_offset``; not in the paper)."""
    from mobrecon.model import MobRecon

    return MobRecon(template.hand_template(), encoder, decoder, template_offset=template_offset)


def build_from_config(template: Template, model_cfg: dict) -> nn.Module:
    """The network a config's [model] section describes (checkpoints older than template_offset: off)."""
    return build_model(template, model_cfg["encoder"], model_cfg["decoder"], bool(model_cfg.get("template_offset", False)))


class Encoder2D(nn.Module):
    """The pretraining network (supplement Fig. 14): the stacked encoder and MapReg.

    Returns MapReg's positions (uv) and its 21 maps (heatmap supervision); parameter names
    match MobRecon's (``encoder.*``, ``mapreg.*``).
    """

    def __init__(self, encoder: str = "densestack", n_joints: int = 21):
        super().__init__()
        from mobrecon.lifting import MapReg
        from mobrecon.model import build_encoder

        self.encoder = build_encoder(encoder)
        self.mapreg = MapReg(self.encoder.feat2d_channels, n_joints)

    def forward(self, img: torch.Tensor) -> dict:
        enc = self.encoder(img)
        uv, maps = self.mapreg(enc["feat2d"])
        return {"uv": uv, "maps": maps}


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def save_atomic(obj, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_with(path, lambda f: torch.save(obj, f))


def load_checkpoint(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return torch.load(path, map_location=map_location, weights_only=False)


def model_from_checkpoint(path, device="cpu") -> tuple[nn.Module, Template, dict]:
    """(model in eval mode, template, checkpoint dict) from OUT/model.pt or OUT/last.pt."""
    ck = load_checkpoint(path)
    if ck.get("format") != FORMAT:
        hint = " (a pretraining checkpoint: pass it to python -m train --pretrained)" \
            if ck.get("format") == ENCODER_FORMAT else ""
        raise ValueError(f"{path} is not a MobRecon training checkpoint{hint}")
    tpl = Template.from_dict(ck["template"])
    model = build_from_config(tpl, ck["config"]["model"])
    model.load_state_dict(ck["model"])
    return model.to(device).eval(), tpl, ck


def load_pretrained_encoder(model: nn.Module, path, load_mapreg: bool = True, encoder: str | None = None) -> list[str]:
    """Copy encoder (and MapReg) weights of a pretraining checkpoint into ``model``; returns the keys."""
    ck = load_checkpoint(path)
    if ck.get("format") != ENCODER_FORMAT:
        raise ValueError(f"{path} is not a pretraining checkpoint (python -m pretrain writes OUT/encoder.pt)")
    if encoder is not None and ck["encoder"] != encoder:
        raise ValueError(f"{path} pretrained a {ck['encoder']} encoder but this model uses {encoder}; "
                         f"pass --encoder {ck['encoder']} or pretrain a {encoder}")
    prefixes = ("encoder.", "mapreg.") if load_mapreg else ("encoder.",)
    state = {k: v for k, v in ck["state"].items() if k.startswith(prefixes)}
    own = model.state_dict()
    bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if bad:
        raise ValueError(f"{path}: {len(bad)} tensors do not fit this model, e.g. {bad[:3]}")
    own.update(state)
    model.load_state_dict(own)
    return sorted(state)


def template_arrays_equal(a: Template, b: Template) -> bool:
    return a.faces.shape == b.faces.shape and np.array_equal(a.faces, b.faces) and a.topology == b.topology
