"""Building MobRecon from a dataset template; checkpoints in and out.

A training checkpoint (``OUT/last.pt``) holds everything for an exact resume; the final
``OUT/model.pt`` only what inference needs.  Both carry the template (rest vertices, faces,
joint regressor, topology) so ``train.evaluate`` / ``train.predict`` rebuild the network
without the dataset.  A pretraining checkpoint (``encoder.pt``) holds the encoder and MapReg
weights under the same names as in :class:`mobrecon.model.MobRecon`.

Damage: a checkpoint is written to a temporary, checked (its zip directory readable) and
renamed, so a final name never holds a partial file; ``save_atomic(..., keep_previous=True)``
keeps the file it replaces as ``<name>.prev.pt`` (``--resume auto`` falls back to it).  A
checkpoint that is missing, empty, truncated or not ours raises :class:`CheckpointError`
naming the file and what is wrong; a failed write raises :class:`CheckpointWriteError`.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from datagen import atomic

from .data import Template

__all__ = ["build_model", "build_from_config", "Encoder2D", "save_atomic", "load_checkpoint", "model_from_checkpoint",
           "load_pretrained_encoder", "unwrap", "CheckpointError", "CheckpointWriteError", "previous_path"]

FORMAT = "handsynth-mobrecon"
ENCODER_FORMAT = "handsynth-mobrecon-encoder"


class CheckpointError(ValueError):
    """A checkpoint cannot be used: missing, empty, truncated, damaged, or not the kind asked
    for.  The message names the file and what is wrong."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. no space left); nothing replaced the old file."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def previous_path(path) -> Path:
    """Where ``save_atomic(..., keep_previous=True)`` keeps the file it replaced."""
    path = Path(path)
    return path.with_name(path.stem + ".prev" + path.suffix)


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


def save_atomic(obj, path: Path, keep_previous: bool = False) -> None:
    """torch.save to a temporary, check it, rename it to ``path`` (the old file, if any, becomes
    ``previous_path(path)`` with ``keep_previous``).  CheckpointWriteError if that fails."""
    path = Path(path)
    tmp = atomic.temp_path(path)  # datagen.atomic's naming: remove_stale_temps knows it
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            written = f.tell()
        with zipfile.ZipFile(tmp) as z:  # the directory sits at the end: a short write cannot pass
            if not z.namelist():
                raise zipfile.BadZipFile("no entries")
        if keep_previous and path.exists():
            os.replace(path, previous_path(path))
        atomic.commit(tmp, path, expected_size=written)
    except (OSError, RuntimeError, zipfile.BadZipFile) as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        free = atomic.free_bytes(path.parent) if path.parent.exists() else None
        if getattr(exc, "errno", None) in atomic.NO_SPACE_ERRNOS or (free is not None and free < atomic.FULL_DEVICE_BYTES):
            why = f"no space left on device ({atomic.human_bytes(free)} free)"
        else:
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else exc}"
        raise CheckpointWriteError(f"cannot write checkpoint {path}: {why}; the previous file is unchanged") from None


def load_checkpoint(path, map_location="cpu") -> dict:
    """The checkpoint dict in ``path``; CheckpointError (one line naming the file) if it is
    missing, empty, truncated, damaged or not a checkpoint."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc.strerror or exc}") from None
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file (OUT/last.pt or OUT/model.pt?)")
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): its write never completed; use another "
                              f"checkpoint ({previous_path(path)}, if present, is the one before) or start afresh")
    try:
        ck = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, AttributeError,
            ImportError, KeyError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "central directory" in first or isinstance(exc, EOFError):
            first = "the file is truncated (its zip directory is missing)"
        raise CheckpointError(f"checkpoint {path} ({size:,} bytes) is damaged or not a torch checkpoint: "
                              f"{first[:200]}") from None
    if not isinstance(ck, dict) or "format" not in ck:
        raise CheckpointError(f"{path} is not a handsynth checkpoint (no 'format' entry; written by "
                              f"python -m train / python -m pretrain?)")
    return ck


def model_from_checkpoint(path, device="cpu") -> tuple[nn.Module, Template, dict]:
    """(model in eval mode, template, checkpoint dict) from OUT/model.pt or OUT/last.pt."""
    ck = load_checkpoint(path)
    if ck.get("format") != FORMAT:
        hint = " (a pretraining checkpoint: pass it to python -m train --pretrained)" \
            if ck.get("format") == ENCODER_FORMAT else ""
        raise CheckpointError(f"{path} is not a MobRecon training checkpoint{hint}")
    missing = [k for k in ("template", "config", "model") if k not in ck]
    if missing:
        raise CheckpointError(f"{path}: incomplete MobRecon checkpoint, missing {missing}")
    try:
        tpl = Template.from_dict(ck["template"])
        model = build_from_config(tpl, ck["config"]["model"])
        model.load_state_dict(ck["model"])
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: the weights do not build a model ({type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''})") from None
    return model.to(device).eval(), tpl, ck


def load_pretrained_encoder(model: nn.Module, path, load_mapreg: bool = True, encoder: str | None = None) -> list[str]:
    """Copy encoder (and MapReg) weights of a pretraining checkpoint into ``model``; returns the keys."""
    ck = load_checkpoint(path)
    if ck.get("format") != ENCODER_FORMAT:
        raise CheckpointError(f"{path} is not a pretraining checkpoint (python -m pretrain writes OUT/encoder.pt)")
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
