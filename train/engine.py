"""The training loop shared by ``python -m pretrain`` and ``python -m train``.

* Data: a :class:`~train.data.MixedDataset` driven by a :class:`~train.data.PlanSampler`
  (order and augmentation depend on the seed and epoch only).
* Adam + MultiStepLR (stepped per epoch), optional gradient clipping.
* Checkpoints (``OUT/last.pt``, atomic): model, optimiser, scheduler, torch/numpy/python RNG
  states, epoch, batch within the epoch, global step, config - a resumed run continues
  bit-identically (tested).  Written every ``checkpoint_every`` steps, at every epoch end and
  when ``max_steps`` stops the run; the one it replaces is kept as ``OUT/last.prev.pt``.
  ``--resume auto`` takes ``last.pt``, or - when that one is damaged (a kill during a copy, a
  full disk) - ``last.prev.pt``, saying so; a bad ``--resume PATH`` is refused naming the file
  and what is wrong (:class:`~train.model_io.CheckpointError`).
* TensorBoard scalars (``OUT/tb``), a tqdm bar over the whole run with ETA, per-epoch
  validation (``OUT/metrics.jsonl``).
* Multi-process: launched with ``torchrun --nproc_per_node N -m train ...`` it runs DDP (gloo
  on CPU, NCCL on CUDA); each process takes its share of every epoch's plan; rank 0 logs,
  validates and writes checkpoints.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .config import to_toml
from .model_io import CheckpointError, load_checkpoint, previous_path, save_atomic, unwrap

__all__ = ["Task", "fit", "dist_info", "pick_device", "load_resume", "error_line"]

RESUME_KEYS = ("model", "optimizer", "scheduler", "epoch", "batch", "step", "rng")


def error_line(exc: BaseException) -> str:
    """One line for an error, also one re-raised by a DataLoader worker (whose message carries
    the worker's whole traceback: its last line is the original error)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].startswith("Caught ") and len(lines) > 1:  # "package.module.SomeError: message"
        head, sep, rest = lines[-1].partition(": ")
        return rest if sep and " " not in head else lines[-1]
    return " ".join(lines)


def fit_command(cfg: dict, task: Task, dataset, sizes: list[int]) -> int:
    """`fit` for a command line: exit status 0, 2 for a bad --resume (refused before any step),
    1 for a damaged sample or a checkpoint that could not be written; one line on stderr each."""
    from datagen.dataset.shards import DatasetError

    from .model_io import CheckpointWriteError

    try:
        res = fit(cfg, task, dataset, sizes)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (CheckpointWriteError, DatasetError) as exc:
        print(f"error: {error_line(exc)}", file=sys.stderr)
        return 1
    if dist_info()[0] == 0:
        print(f"done: {res['step']} steps, {res['epoch']} epochs, last loss {res['last_loss']:.4f}, "
              f"{res['seconds']:.1f} s", file=sys.stderr)
    return 0


def load_resume(path, kind: str, map_location="cpu") -> dict:
    """A training checkpoint that can resume a ``kind`` run; CheckpointError naming what is wrong."""
    ck = load_checkpoint(path, map_location=map_location)
    if ck.get("format") != kind:
        raise CheckpointError(f"{path} is a {ck.get('format')!r} checkpoint, this run needs {kind!r}")
    missing = [k for k in RESUME_KEYS if k not in ck]
    if "model" in ck and "optimizer" in missing:
        raise CheckpointError(f"{path} holds weights only (an inference checkpoint such as OUT/model.pt: no optimiser, "
                              f"scheduler or position); --resume needs a run's OUT/last.pt")
    if missing:
        raise CheckpointError(f"{path}: incomplete training checkpoint, missing {missing}")
    return ck


def _auto_resume(out: Path, kind: str, device, rank: int):
    """(checkpoint, path) for ``--resume auto``: OUT/last.pt, else OUT/last.prev.pt when last.pt is
    damaged; (None, "") when neither exists; CheckpointError when both exist and are bad."""
    errors = []
    for p in (out / "last.pt", previous_path(out / "last.pt")):
        if not p.exists():
            continue
        try:
            ck = load_resume(p, kind, device)
        except CheckpointError as exc:
            errors.append(str(exc))
            bad = p
            continue
        if errors:  # keep the damaged file for inspection, out of the way of the next save
            aside = bad.with_name(bad.stem + ".damaged" + bad.suffix)
            if rank == 0:
                try:
                    os.replace(bad, aside)
                except OSError:
                    aside = bad
            _log(f"warning: {errors[0]}; resuming from the previous checkpoint {p} instead (the damaged file is "
                 f"now {aside})", rank)
        return ck, str(p)
    if errors:
        raise CheckpointError("--resume auto: " + "; ".join(errors) + " - delete them to start afresh, or pass "
                              "--resume PATH")
    return None, ""


@dataclass
class Task:
    """What differs between pretraining and training."""

    kind: str  # checkpoint "format"
    build: Callable[[], nn.Module]
    loss: Callable  # (model, batch, epoch, device) -> (loss tensor, {name: float})
    validate: Callable | None = None  # (bare model, device) -> {name: float}
    finalize: Callable | None = None  # (bare model, out_dir) -> None
    extra: dict = field(default_factory=dict)  # stored in every checkpoint (template, ...)
    find_unused: bool = False  # DDP: some parameters get no gradient (pretraining: the latent branch)


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment (0, 1, 0 without it)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda asked for, but this torch has no usable CUDA device")
        if name == "cuda":
            return torch.device("cuda", local_rank)
    return torch.device(name)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def _log(msg: str, rank: int) -> None:
    if rank == 0:
        print(msg, file=sys.stderr, flush=True)


def fit(cfg: dict, task: Task, dataset, sizes: list[int]) -> dict:
    """Train per ``cfg``; returns {"step", "epoch", "last_loss", "stopped_early", "seconds"}."""
    run, opt_cfg, data = cfg["run"], cfg["optim"], cfg["data"]
    rank, world, local = dist_info()
    ddp = world > 1
    device = pick_device(run["device"], local)
    if ddp and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if run["threads"]:
        torch.set_num_threads(run["threads"])
    out = Path(run["out"])
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.toml").write_text(to_toml(cfg))

    # identical initialisation on every rank
    torch.manual_seed(run["seed"])
    np.random.seed(run["seed"] % 2**32)
    random.seed(run["seed"])
    model = task.build().to(device)
    optim = torch.optim.Adam(model.parameters(), lr=opt_cfg["lr"], weight_decay=opt_cfg["weight_decay"])
    sched = torch.optim.lr_scheduler.MultiStepLR(optim, milestones=opt_cfg["milestones"], gamma=opt_cfg["gamma"])
    epoch, batch0, step = 0, 0, 0
    resume = run["resume"]
    ck = None
    if resume == "auto":
        ck, resume = _auto_resume(out, task.kind, device, rank)
    elif resume:
        ck = load_resume(resume, task.kind, device)
    if ck is not None:
        try:
            unwrap(model).load_state_dict(ck["model"])
            optim.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            epoch, batch0, step = int(ck["epoch"]), int(ck["batch"]), int(ck["step"])
            _set_rng_state(ck["rng"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{resume} does not fit this run ({type(exc).__name__}: "
                                  f"{(str(exc).strip().splitlines() or [''])[0][:200]}); was it written with another "
                                  f"model config?") from None
        _log(f"resumed {resume}: epoch {epoch}, batch {batch0}, step {step}", rank)
    if ddp:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                                    find_unused_parameters=task.find_unused)

    B = opt_cfg["batch_size"]
    sampler = PlanSamplerFactory(sizes, data, run["seed"], B, rank, world)
    steps_per_epoch = sampler.batches
    total = steps_per_epoch * opt_cfg["epochs"]
    if run["max_steps"]:
        total = min(total, run["max_steps"])
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"), purge_step=step if step else None)
    pbar = None
    if rank == 0 and run["progress"]:
        from tqdm import tqdm

        pbar = tqdm(total=total, initial=min(step, total), unit="step", dynamic_ncols=True, file=sys.stderr,
                    mininterval=1.0, smoothing=0.1)

    def save(ep, b):
        if rank != 0:
            return
        save_atomic({"format": task.kind, "model": unwrap(model).state_dict(), "optimizer": optim.state_dict(),
                     "scheduler": sched.state_dict(), "epoch": ep, "batch": b, "step": step, "rng": _rng_state(),
                     "config": cfg, "world_size": world, **task.extra}, out / "last.pt", keep_previous=True)

    t_start = time.time()
    # Without a bar (logs, the demo) a line every progress_every_s keeps a long run from looking hung.
    every_s = run.get("progress_every_s", 0.0) if rank == 0 and pbar is None else 0.0
    next_line = t_start + every_s
    step_start = step
    last_loss = float("nan")
    stopped = False
    pin = device.type == "cuda"
    while epoch < opt_cfg["epochs"] and not stopped:
        sampler.set_epoch(epoch, batch0)
        loader = torch.utils.data.DataLoader(dataset, batch_size=B, sampler=sampler, num_workers=data["workers"],
                                             pin_memory=pin, drop_last=True,
                                             persistent_workers=False, prefetch_factor=4 if data["workers"] else None)
        model.train()
        b = batch0
        for batch in loader:
            loss, logs = task.loss(model, batch, epoch, device)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            if opt_cfg["grad_clip"]:
                logs["grad_norm"] = float(nn.utils.clip_grad_norm_(model.parameters(), opt_cfg["grad_clip"]))
            optim.step()
            step += 1
            b += 1
            last_loss = float(loss.detach())
            if not np.isfinite(last_loss):
                raise FloatingPointError(f"loss became {last_loss} at step {step} (epoch {epoch}); "
                                         "lower --lr or check the data")
            if rank == 0:
                if pbar is not None:
                    pbar.set_description(f"epoch {epoch + 1}/{opt_cfg['epochs']}", refresh=False)
                    pbar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{optim.param_groups[0]['lr']:.1e}", refresh=False)
                    pbar.update(1)
                elif every_s and time.time() >= next_line:
                    next_line = time.time() + every_s
                    _log(progress_line(step, total, step - step_start, time.time() - t_start, epoch,
                                       opt_cfg["epochs"], last_loss), 0)
                if step % run["log_every"] == 0 or step == 1:
                    writer.add_scalar("train/loss", last_loss, step)
                    writer.add_scalar("train/lr", optim.param_groups[0]["lr"], step)
                    for k, v in logs.items():
                        writer.add_scalar(f"train/{k}", v, step)
            if run["max_steps"] and step >= run["max_steps"]:
                stopped = True
                save(epoch, b)
                break
            if run["checkpoint_every"] and step % run["checkpoint_every"] == 0 and b < steps_per_epoch:
                save(epoch, b)
        if stopped:
            break
        epoch += 1
        batch0 = 0
        sched.step()
        save(epoch, 0)
        if task.validate is not None and run["val_every"] and (epoch % run["val_every"] == 0
                                                               or epoch == opt_cfg["epochs"]):
            if rank == 0:
                res = task.validate(unwrap(model), device)
                model.train()
                for k, v in res.items():
                    if isinstance(v, (int, float)) and np.isfinite(v):
                        writer.add_scalar(f"val/{k}", v, step)
                with open(out / "metrics.jsonl", "a") as fh:
                    fh.write(json.dumps({"epoch": epoch, "step": step, **res}) + "\n")
                msg = ", ".join(f"{k} {v:.4g}" for k, v in res.items() if isinstance(v, float))
                (pbar.write if pbar is not None else (lambda s: _log(s, 0)))(f"epoch {epoch} val: {msg}")
            if ddp:
                dist.barrier()
    if pbar is not None:
        pbar.close()
    if writer is not None:
        writer.close()
    if rank == 0 and task.finalize is not None:
        task.finalize(unwrap(model), out)
    if ddp:
        dist.barrier()
    return {"step": step, "epoch": epoch, "last_loss": last_loss, "stopped_early": stopped,
            "seconds": time.time() - t_start}


def progress_line(step: int, total: int, steps_run: int, seconds: float, epoch: int, epochs: int,
                  loss: float) -> str:
    """'step 120/1080 (11%), epoch 2/20, loss 0.1234, 2.10 steps/s, ETA 7m37s' (ETA from this run's rate)."""
    rate = steps_run / seconds if seconds > 0 else 0.0
    eta = (total - step) / rate if rate > 0 else float("nan")
    eta_txt = f"{int(eta) // 60}m{int(eta) % 60:02d}s" if np.isfinite(eta) else "?"
    return (f"step {step}/{total} ({100 * step / max(total, 1):.0f}%), epoch {epoch + 1}/{epochs}, "
            f"loss {loss:.4f}, {rate:.2f} steps/s, ETA {eta_txt}")


def PlanSamplerFactory(sizes, data: dict, seed: int, batch_size: int, rank: int, world: int):
    from .data import PlanSampler

    return PlanSampler(sizes, data["weights"], data["samples_per_epoch"], seed, batch_size, rank, world)
