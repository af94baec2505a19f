"""One render worker per GPU: the assignment logic and the environment each worker gets (no GPU needed)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from datagen.render.gpus import GpuError, assign, parse_gpus, visible_gpus
from datagen.render.workers import WorkerSpec

REPO = Path(__file__).resolve().parent.parent


def test_each_worker_sees_only_its_own_gpu():
    slots = assign("CUDA", ["0", "1", "3"], cpus=12)
    assert [s.gpu for s in slots] == ["0", "1", "3"]
    assert [dict(s.env) for s in slots] == [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"},
                                           {"CUDA_VISIBLE_DEVICES": "3"}]
    assert all(s.threads == 4 for s in slots)  # 12 CPUs shared by 3 GPU workers


def test_vendor_variables_and_thread_override():
    assert dict(assign("OPTIX", ["2"], cpus=8)[0].env) == {"CUDA_VISIBLE_DEVICES": "2"}
    assert dict(assign("HIP", ["0", "1"], cpus=1)[1].env) == {"HIP_VISIBLE_DEVICES": "1"}
    one = assign("ONEAPI", ["1"], cpus=4, threads_per_worker=3)[0]
    assert dict(one.env) == {"ONEAPI_DEVICE_SELECTOR": "level_zero:1"} and one.threads == 3
    assert assign("METAL", ["0"], cpus=8)[0].env == ()
    assert assign("CUDA", ["0", "1", "2", "3"], cpus=2)[3].threads == 1  # at least one thread each


def test_worker_environment_carries_the_pin_and_not_the_parents_list():
    slot = assign("CUDA", ["0", "1"], cpus=4)[1]
    spec = WorkerSpec(out="/tmp/x", threads=slot.threads, device="CUDA", extra_env=slot.env)
    env = spec.environment()
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["OMP_NUM_THREADS"] == "2"
    assert "--device" in spec.command() and "CUDA" in spec.command()


def test_visible_gpus_prefers_the_schedulers_restriction():
    assert visible_gpus("CUDA", {"CUDA_VISIBLE_DEVICES": "2,5"}, count_nvidia=lambda: 8) == ["2", "5"]
    assert visible_gpus("OPTIX", {}, count_nvidia=lambda: 3) == ["0", "1", "2"]
    assert visible_gpus("HIP", {"HIP_VISIBLE_DEVICES": "1"}) == ["1"]
    assert visible_gpus("ONEAPI", {"ONEAPI_DEVICE_SELECTOR": "level_zero:0,1"}) == ["0", "1"]
    assert visible_gpus("CUDA", {}, count_nvidia=lambda: None) == ["0"]  # cannot count: one worker
    with pytest.raises(GpuError, match="no GPU"):
        visible_gpus("CUDA", {}, count_nvidia=lambda: 0)


@pytest.mark.parametrize("bad", ["", "0,,1", "a", "0,0", "-1"])
def test_bad_gpu_lists_are_refused(bad):
    with pytest.raises(GpuError, match="--gpus"):
        parse_gpus(bad)


def test_metal_has_one_gpu():
    with pytest.raises(GpuError, match="METAL"):
        assign("METAL", ["0", "1"], cpus=4)


def _driver(*args, env=None):
    return subprocess.run([sys.executable, "-m", "datagen.render", *args], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ, **(env or {})), timeout=600)


def test_driver_plans_one_worker_per_gpu(tmp_path):
    r = _driver("--out", str(tmp_path / "r"), "--poses", "0", "--views", "0-3", "--device", "CUDA", "--gpus", "0,1",
                "--dry-run", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "2 workers" in r.stderr
    assert "worker-00 GPU 0: CUDA_VISIBLE_DEVICES=0" in r.stderr
    assert "worker-01 GPU 1: CUDA_VISIBLE_DEVICES=1" in r.stderr


def test_driver_refuses_gpus_on_cpu_and_mismatched_workers(tmp_path):
    r = _driver("--out", str(tmp_path / "r"), "--poses", "0", "--views", "0", "--gpus", "0", "--dry-run")
    assert r.returncode == 2 and "needs a GPU --device" in r.stderr
    r = _driver("--out", str(tmp_path / "r"), "--poses", "0", "--views", "0", "--device", "CUDA", "--gpus", "0,1",
                "--workers", "3", "--dry-run")
    assert r.returncode == 2 and "one worker per GPU" in r.stderr


def test_driver_help_documents_gpus():
    r = _driver("--help")
    assert r.returncode == 0 and "--gpus" in r.stdout
