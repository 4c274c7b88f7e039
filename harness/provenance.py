"""Where a number came from: code, lock, software, hardware, time."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from harness import __version__
from harness.compose import repo_root

LOCK_FILE = "requirements.lock"


def lock_sha256(root: Path | None = None) -> str | None:
    path = (root or repo_root()) / LOCK_FILE
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def git_state(root: Path | None = None) -> dict:
    root = root or repo_root()

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_sha": sha, "git_dirty": bool(status) if status is not None else None}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _gpu(device: torch.device) -> dict:
    if device.type != "cuda":
        return {}
    props = torch.cuda.get_device_properties(device)
    info = {"gpu_name": props.name, "gpu_memory_bytes": int(props.total_memory),
            "gpu_uuid": str(getattr(props, "uuid", "")) or None,
            "gpu_capability": f"{props.major}.{props.minor}", "cuda_device_order": os.environ.get("CUDA_DEVICE_ORDER")}
    try:
        import pynvml

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        info["driver"] = driver.decode() if isinstance(driver, bytes) else driver
    except Exception as exc:
        info["driver"] = None
        info["driver_unavailable_reason"] = str(exc)
    return info


def collect(device: torch.device) -> dict:
    prov = {
        "harness_version": __version__,
        **git_state(),
        "lock_sha256": lock_sha256(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "bitsandbytes": _version("bitsandbytes"),
        "peft": _version("peft"),
        "transformers": _version("transformers"),
        "hydra_core": _version("hydra-core"),
        "device_type": device.type,
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_bytes": _ram_bytes(),
        "os": platform.platform(),
        "hostname_sha256": hashlib.sha256(platform.node().encode()).hexdigest()[:12],
        "utc_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    prov.update(_gpu(device))
    return prov


def hardware_label(prov: dict) -> str:
    return prov.get("gpu_name") or prov.get("cpu_model") or "unknown"
