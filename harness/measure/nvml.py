"""NVML (nvidia-ml-py) readings for the GPU torch uses, matched by UUID, never by index.

Per-process memory is unavailable in many containers (no PID namespace access): the reading then says so
with a reason instead of reporting 0.
"""

from __future__ import annotations

import os
from typing import Any

import torch


def _uuid_of_torch_device(index: int) -> str | None:
    props = torch.cuda.get_device_properties(index)
    uuid = getattr(props, "uuid", None)
    if uuid is None:
        return None
    text = str(uuid)
    return text if text.startswith("GPU-") else f"GPU-{text}"


class Nvml:
    def __init__(self, torch_index: int):
        self.available = False
        self.reason = ""
        self.handle: Any = None
        self.uuid: str | None = None
        try:
            import pynvml

            self.pynvml = pynvml
            pynvml.nvmlInit()
        except Exception as exc:  # no driver, no library
            self.reason = f"NVML init failed: {exc}"
            return
        wanted = _uuid_of_torch_device(torch_index)
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
            if wanted is not None and uuid == wanted:
                self.handle, self.uuid, self.available = handle, uuid, True
                return
        self.reason = f"no NVML device has the UUID of torch cuda:{torch_index} ({wanted})"

    def device_used_bytes(self) -> int | None:
        if not self.available:
            return None
        return int(self.pynvml.nvmlDeviceGetMemoryInfo(self.handle).used)

    def processes(self) -> tuple[dict[int, int | None], str]:
        """pid -> bytes for compute processes on this GPU; '' or the reason the list is unusable."""
        if not self.available:
            return {}, self.reason
        try:
            procs = self.pynvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
        except Exception as exc:
            return {}, f"nvmlDeviceGetComputeRunningProcesses failed: {exc}"
        return {int(p.pid): (int(p.usedGpuMemory) if p.usedGpuMemory is not None else None) for p in procs}, ""

    def reading(self) -> dict:
        """This process's and the whole device's memory now, and who else holds memory on the device."""
        procs, reason = self.processes()
        mine, others, why = attribute_processes(procs, os.getpid()) if not reason else (None, None, reason)
        return {
            "nvml_device_bytes": self.device_used_bytes(),
            "nvml_process_bytes": mine,
            "nvml_process_unavailable_reason": why,
            "other_processes": others,
        }


def attribute_processes(procs: dict[int, int | None], own_pid: int) -> tuple[int | None, list | None, str | None]:
    """(this process's bytes, [{pid, bytes}] of the others, why either is unknown) from NVML's process list.

    Only where our own PID is in the list can the rest be called other processes. Inside a container the
    driver lists host PIDs, which never equal ours: then nothing in the list can be attributed, neither our
    usage nor anyone else's, and both are unavailable rather than every PID (ours included) reported as
    another process."""
    if own_pid not in procs:
        listed = f"{len(procs)} process(es) listed, none with this PID" if procs else "no process listed"
        return (
            None,
            None,
            (
                f"NVML's process list cannot be matched to this process ({listed}: a container's "
                "PID namespace, or a driver that does not report per-process usage)"
            ),
        )
    mine = procs[own_pid]
    others = [{"pid": pid, "bytes": b} for pid, b in sorted(procs.items()) if pid != own_pid]
    return mine, others, None if mine is not None else "the driver reports no usage for this process"
