"""Where a number came from: code, lock, software, hardware, time."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import re
import subprocess
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path

import torch

from harness import __version__, repo_root

LOCK_FILE = "requirements.lock"


def lock_sha256(root: Path | None = None) -> str | None:
    path = (root or repo_root()) / LOCK_FILE
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


GIT_SHA_ENV = "BENCH_GIT_SHA"
_SHA = re.compile(r"[0-9a-f]{7,40}")


def _git(root: Path, *args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _git_owns(root: Path) -> bool:
    """Git speaks for the checkout only when the checkout is the top of its work tree: a copy of the tree
    without .git placed inside some other repository must not be stamped with that repository's HEAD."""
    top = _git(root, "rev-parse", "--show-toplevel")
    try:
        return top is not None and Path(top).resolve() == root.resolve()
    except OSError:
        return False


def sha_from_env(value: str | None) -> tuple[str | None, str | None]:
    """(sha, why it was refused) for BENCH_GIT_SHA: 7-40 hex digits, else nothing — a sha is never invented
    or guessed from a malformed value."""
    if value is None or not value.strip():
        return None, None
    sha = value.strip().lower()
    if _SHA.fullmatch(sha):
        return sha, None
    return None, f"{GIT_SHA_ENV}={value[:80]!r} is not 7-40 hex digits; ignored"


# The results folder in the checkout: data that `make submit` / `make report` rewrite, not code. A change under it
# does not make a record "measured from a modified working tree".
DATA_DIR = "results"


def code_pathspec(root: Path) -> list[str]:
    """What git_dirty looks at: the whole tree but the results folder (the checkout's, and BENCH_RESULTS_DIR's
    where that lies inside the checkout)."""
    from harness.records.folder import resolve

    excluded = {DATA_DIR}
    try:
        chosen = resolve().resolve().relative_to(root.resolve())
        if chosen.parts:  # the whole checkout as a results folder would exclude the code itself
            excluded.add(chosen.as_posix())
    except (ValueError, OSError):  # outside the checkout: git does not see it
        pass
    return [".", *(f":(top,exclude){path}" for path in sorted(excluded))]


def git_state(root: Path | None = None, env: dict | None = None) -> dict:
    """The commit that ran. Git decides when the checkout is a git work tree; otherwise (a copy of the tree
    without .git on a GPU host, a container image) BENCH_GIT_SHA stands in, and the record says which one
    spoke (`git_sha_source`). A BENCH_GIT_SHA that was set but not used is kept with the reason
    (`git_sha_env_ignored`), so a disagreement is visible instead of silently resolved."""
    root = root or repo_root()
    env_sha, refused = sha_from_env((os.environ if env is None else env).get(GIT_SHA_ENV))
    sha = _git(root, "rev-parse", "HEAD") if _git_owns(root) else None
    if sha:
        status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", *code_pathspec(root))
        if env_sha and not sha.startswith(env_sha):
            refused = f"{GIT_SHA_ENV}={env_sha} differs from git's HEAD {sha}; git's is recorded"
        return {
            "git_sha": sha,
            "git_dirty": bool(status) if status is not None else None,
            "git_sha_source": "git",
            "git_sha_env_ignored": refused,
        }
    if env_sha:
        return {"git_sha": env_sha, "git_dirty": None, "git_sha_source": GIT_SHA_ENV, "git_sha_env_ignored": None}
    return {"git_sha": None, "git_dirty": None, "git_sha_source": None, "git_sha_env_ignored": refused}


_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)\s*(?:;(.*))?$")


def normalize_name(name: str) -> str:
    """PEP 503: typing_extensions, typing-extensions and Typing.Extensions are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _marker_applies(marker: str | None) -> bool:
    """`name==1.0 ; sys_platform == "linux"` pins nothing elsewhere; unreadable markers count as applying."""
    if not marker or not marker.strip():
        return True
    try:
        from packaging.markers import Marker

        return Marker(marker.strip()).evaluate()
    except Exception:
        return True


def lock_pins(lock_text: str) -> list[tuple[str, str]]:
    """(name as written, version) for every `name==version` line that applies here; comments, blanks and
    pip options (`--hash`, `-e`) are not pins, and a name pinned twice counts once (the first)."""
    pins, seen = [], set()
    for line in lock_text.splitlines():
        match = _PIN.match(line.split("#", 1)[0].split("--hash", 1)[0].rstrip(" \\"))
        if not match or not _marker_applies(match.group(3)):
            continue
        if normalize_name(match.group(1)) not in seen:
            seen.add(normalize_name(match.group(1)))
            pins.append((match.group(1), match.group(2)))
    return pins


def same_release(installed: str, pinned: str) -> bool:
    """torch 2.13.0+cpu and 2.13.0+cu130 are the lock's torch==2.13.0: a local build label (after `+`) only
    counts when the lock pins one itself."""
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # an environment without packaging: compare the text before any local label
        return (installed if "+" in pinned else installed.split("+", 1)[0]) == pinned
    try:
        inst, pin = Version(installed), Version(pinned)
    except InvalidVersion:
        return installed == pinned
    return inst == pin if pin.local else Version(inst.public) == pin


def compare_with_lock(lock_text: str, installed: Mapping[str, str | None] | Callable[[str], str | None]) -> dict:
    """Every package pinned in the lock whose installed version is another release (or that is not installed),
    in the lock's order. A pure function of the lock's text and a version lookup (a dict, or a function of a
    PEP 503 name), so that what counts as a difference can be tested by hand."""
    if isinstance(installed, Mapping):
        table = {normalize_name(k): v for k, v in installed.items()}
        lookup = table.get
    else:
        lookup = installed
    pins = lock_pins(lock_text)
    differences = []
    for name, pinned in pins:
        version = lookup(normalize_name(name))
        if version is None or not same_release(version, pinned):
            differences.append({"package": name, "lock": pinned, "installed": version})
    return {"matches_lock": not differences, "differences": differences, "packages_compared": len(pins)}


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment(root: Path | None = None) -> dict:
    """The software that ran, against requirements.lock: runs from a cluster's PyTorch or a container image
    say how they differ from the lock, so they are never averaged with lock runs. Reads the metadata of the
    pinned packages only (tens of milliseconds; it runs in every case's process)."""
    path = (root or repo_root()) / LOCK_FILE
    try:
        text = path.read_text()
    except OSError as exc:
        return {
            "lock_file": None,
            "matches_lock": None,
            "differences": None,
            "packages_compared": 0,
            "reason": f"no readable {LOCK_FILE} beside the harness package ({exc.strerror or exc})",
        }
    compared = compare_with_lock(text, installed_version)
    if not compared["packages_compared"]:  # nothing pinned: "matches" would be vacuous
        return {
            "lock_file": LOCK_FILE,
            **compared,
            "matches_lock": None,
            "differences": None,
            "reason": f"{LOCK_FILE} pins no package (no `name==version` line)",
        }
    return {"lock_file": LOCK_FILE, **compared, "reason": None}


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
    info = {
        "gpu_name": props.name,
        "gpu_memory_bytes": int(props.total_memory),
        "gpu_uuid": str(getattr(props, "uuid", "")) or None,
        "gpu_capability": f"{props.major}.{props.minor}",
        "cuda_device_order": os.environ.get("CUDA_DEVICE_ORDER"),
    }
    try:
        import pynvml

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        info["driver"] = driver.decode() if isinstance(driver, bytes) else driver
    except Exception as exc:
        info["driver"] = None
        info["driver_unavailable_reason"] = str(exc)
    return info


# Set by a SLURM job (harness/run/jobs.py) for the case it runs: whether it asked for its node alone (1) or
# shared it (0). SLURM exports no variable that says so.
SLURM_EXCLUSIVE_ENV = "BENCH_SLURM_EXCLUSIVE"


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:  # SLURM_JOB_CPUS_PER_NODE-like forms such as "2(x3)": not one number
        return None


def slurm_allocation(env: Mapping[str, str] | None = None) -> dict | None:
    """The SLURM job a case ran in, from the job's environment (None outside one): its id, node and partition,
    the CPUs its task holds (and the node's share of the job), the GPUs it was given, and whether the node was
    the job's alone."""
    env = os.environ if env is None else env
    if "SLURM_JOB_ID" not in env:
        return None
    gpus = env.get("SLURM_GPUS_ON_NODE")
    if gpus is None and env.get("SLURM_JOB_GPUS"):
        gpus = str(len(env["SLURM_JOB_GPUS"].split(",")))
    exclusive = env.get(SLURM_EXCLUSIVE_ENV)
    return {
        "job_id": env["SLURM_JOB_ID"],
        "node": env.get("SLURMD_NODENAME"),
        "partition": env.get("SLURM_JOB_PARTITION"),
        "cpus": _int(env.get("SLURM_CPUS_PER_TASK")) or _int(env.get("SLURM_CPUS_ON_NODE")),
        "cpus_on_node": _int(env.get("SLURM_CPUS_ON_NODE")),
        "gpus": _int(gpus) if gpus is not None else 0,
        "exclusive": None if exclusive is None else exclusive == "1",
    }


def case_threads(device: torch.device) -> int:
    """The cores the case itself keeps busy: torch's intra-op threads on a CPU; on a GPU, the one thread that
    launches its kernels."""
    return torch.get_num_threads() if device.type == "cpu" else 1


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota (a container's
    `cpu.max`, rounded up) where one is set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):  # no cgroup v2 quota here
        pass
    return max(1, cores)


def running_elsewhere(proc: Path = Path("/proc"), own_group: int | None = None) -> int | None:
    """How many processes outside this run's process group are running or waiting for a CPU (state R) now: what
    competes with the case for the cores. This run's own processes (`bench run`, the forkserver, the case, its
    ranks) share its process group and are not counted. None where /proc cannot be read (not Linux)."""
    own_group = os.getpgid(0) if own_group is None else own_group
    try:
        entries = [e for e in os.scandir(proc) if e.name.isdigit()]
    except OSError:
        return None
    running = 0
    for entry in entries:
        try:
            # the name (field 2) is in parentheses and may hold spaces or ')': fields are counted after the last ')'
            fields = (proc / entry.name / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # the process ended meanwhile
            continue
        if fields[0] == "R" and int(fields[2]) != own_group:
            running += 1
    return running


def load_sample() -> dict:
    """The machine's load now, cheaply (one read of /proc/loadavg and of each /proc/<pid>/stat): the load
    averages, the processes running outside this run, and the cores this process may use."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        one = five = fifteen = None
    return {
        "utc_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_1m": one,
        "loadavg_5m": five,
        "loadavg_15m": fifteen,
        "running_elsewhere": running_elsewhere(),
        "usable_cores": usable_cores(),
    }


def collect(device: torch.device) -> dict:
    prov = {
        "harness_version": __version__,
        **git_state(),
        "lock_sha256": lock_sha256(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "bitsandbytes": installed_version("bitsandbytes"),
        "peft": installed_version("peft"),
        "transformers": installed_version("transformers"),
        "hydra_core": installed_version("hydra-core"),
        "environment": environment(),
        "device_type": device.type,
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_bytes": _ram_bytes(),
        "os": platform.platform(),
        "hostname_sha256": hashlib.sha256(platform.node().encode()).hexdigest()[:12],
        "utc_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "slurm": slurm_allocation(),
        # the end sample is added when the case ends (harness/measure/case.py); flags.contended reads both
        "load": {"start": load_sample(), "end": None, "case_threads": case_threads(device)},
    }
    prov.update(_gpu(device))
    return prov
