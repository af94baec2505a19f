"""One render worker per GPU: which device each worker sees, and the environment that pins it.

Cycles renders on every enabled device of the chosen type.  N workers started with the same
environment therefore each grab ALL GPUs and fight over them (the most common multi-GPU
complaint about Blender pipelines).  The driver instead gives worker i exactly one device by
the vendor's visibility variable, so inside the worker that GPU is the only one Cycles can
see, and the renderer enables "all visible devices of the type" = that one:

    device        variable                    value for GPU k
    CUDA, OPTIX   CUDA_VISIBLE_DEVICES        "k"
    HIP           HIP_VISIBLE_DEVICES         "k"
    ONEAPI        ONEAPI_DEVICE_SELECTOR      "level_zero:k"
    METAL         (none: one Apple GPU per machine; one worker)

GPU ids are the driver's ids (what `nvidia-smi -L` lists), or, when the scheduler already
restricted the job (SLURM/Kubernetes/Ray set CUDA_VISIBLE_DEVICES), the ids in that variable.
Array jobs (`--shard`) usually get one GPU per task from the scheduler: then the default is
one worker on it.  Ray tasks ask for `num_gpus=1` and Ray sets the variable itself.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass

from datagen.config import DEVICES

log = logging.getLogger(__name__)

GPU_DEVICES = tuple(d for d in DEVICES if d != "CPU")  # the Cycles devices of datagen.config but the CPU
VISIBILITY_ENV = {"CUDA": "CUDA_VISIBLE_DEVICES", "OPTIX": "CUDA_VISIBLE_DEVICES", "HIP": "HIP_VISIBLE_DEVICES",
                  "ONEAPI": "ONEAPI_DEVICE_SELECTOR", "METAL": None}


class GpuError(ValueError):
    """A --gpus value or a GPU layout that cannot work; the message says what to give instead."""


@dataclass(frozen=True)
class GpuSlot:
    """What worker `index` is given: its GPU id, its environment additions and its CPU threads."""

    index: int
    gpu: str | None
    env: tuple[tuple[str, str], ...]
    threads: int


def parse_gpus(text: str) -> list[str]:
    """'0,1,3' -> ['0', '1', '3'].  Ids are non-negative integers, each at most once."""
    ids = [t.strip() for t in str(text).split(",")]
    if not ids or any(not t for t in ids):
        raise GpuError(f"--gpus {text!r}: give GPU ids separated by commas, e.g. 0,1")
    for t in ids:
        if not t.isdigit():
            raise GpuError(f"--gpus {text!r}: {t!r} is not a GPU id (a whole number >= 0)")
    if len(set(ids)) != len(ids):
        raise GpuError(f"--gpus {text!r}: an id appears twice (each GPU gets one worker)")
    return ids


def _env_value(device: str, gpu: str) -> str:
    return f"level_zero:{gpu}" if device == "ONEAPI" else gpu


def _ids_from_env(device: str, env: dict) -> list[str] | None:
    """GPU ids a scheduler already restricted this job to (None: no restriction set)."""
    var = VISIBILITY_ENV.get(device)
    value = env.get(var) if var else None
    if value is None or not value.strip():
        return None
    if device == "ONEAPI":
        # "level_zero:0,1" or "level_zero:0;level_zero:1"
        ids = [p.split(":", 1)[-1] for part in value.split(";") for p in [part] if p]
        return [i for chunk in ids for i in chunk.split(",") if i]
    return [i.strip() for i in value.split(",") if i.strip()]


def _nvidia_smi_count(run=subprocess.run) -> int | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = run([exe, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def visible_gpus(device: str, env: dict, count_nvidia=_nvidia_smi_count) -> list[str]:
    """The GPUs the job may use when --gpus is not given.

    Order of preference: the scheduler's visibility variable (keeps its ids as they are: with
    CUDA_VISIBLE_DEVICES=2,5 the workers get "2" and "5", which the CUDA runtime maps to the
    right cards); else `nvidia-smi -L` for CUDA/OPTIX; else one worker on the default device.
    """
    device = device.upper()
    if device == "METAL":
        return ["0"]
    ids = _ids_from_env(device, env)
    if ids is not None:
        return ids
    if device in ("CUDA", "OPTIX"):
        n = count_nvidia()
        if n:
            return [str(i) for i in range(n)]
        if n == 0:
            raise GpuError(f"--device {device}: nvidia-smi lists no GPU on this machine")
    log.warning("--device %s: cannot count the GPUs here (no %s set, no nvidia-smi); using one worker on the "
                "default device - give --gpus 0,1,... to use more", device, VISIBILITY_ENV.get(device) or "variable")
    return ["0"]


def assign(device: str, gpus: list[str], cpus: int, threads_per_worker: int | None = None) -> list[GpuSlot]:
    """One slot per GPU, each seeing only its own device, with the CPU threads that feed it.

    `threads_per_worker` None shares the CPUs evenly (at least 1 each): a GPU worker still
    spends CPU time on scene updates, label rasterisation and PNG encoding (~0.035 s/item
    measured outside Cycles), and Cycles' GPU path uses one host thread per device.
    """
    device = device.upper()
    if device not in GPU_DEVICES:
        raise GpuError(f"--device {device}: not a GPU device ({', '.join(GPU_DEVICES)})")
    if not gpus:
        raise GpuError("no GPU to assign")
    if device == "METAL" and len(gpus) > 1:
        raise GpuError("--device METAL: Metal has one GPU per machine; give no --gpus")
    var = VISIBILITY_ENV[device]
    threads = threads_per_worker if threads_per_worker else max(1, cpus // len(gpus))
    return [GpuSlot(i, g, ((var, _env_value(device, g)),) if var else (), threads) for i, g in enumerate(gpus)]
