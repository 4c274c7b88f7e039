"""Library messages that are not about the measurement go to the case's log, not the terminal
(harness/run/library_log.py): a real QLoRA case run through `bench run`, and the forkserver's import-time
messages (bitsandbytes logs "Failed to load CPU gemm_4bit_forward from kernels-community" as it is imported, on
CPUs with AVX512-BF16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BNB_LINE = "Failed to load CPU gemm_4bit_forward from kernels-community"
LIBRARY_LINES = (BNB_LINE, "FutureWarning", "warnings.warn(", "DeprecationWarning")


def _python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{cwd}", **env}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=environ, capture_output=True, text=True, timeout=120
    )


def test_what_an_import_prints_is_held_for_the_case_log_and_an_import_error_is_shown(tmp_path):
    # a module that prints at import the way bitsandbytes does (its module logger, no handler configured) and
    # the way transformers does (a FutureWarning)
    (tmp_path / "noisy_import.py").write_text(
        "import logging, warnings\n"
        f"logging.getLogger('bitsandbytes.backends.cpu.ops').warning('{BNB_LINE}: %s', 'no kernels package')\n"
        "warnings.warn('`x` is deprecated', FutureWarning)\n"
    )
    log = tmp_path / "case-000.log"
    done = _python(
        "import os\nfrom harness.run import library_log\nlibrary_log.import_holding('noisy_import')\n"
        f"fd = os.open({str(log)!r}, os.O_WRONLY | os.O_CREAT)\nlibrary_log.write_held(fd)\nprint('done')\n",
        tmp_path,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "done\n", "")  # nothing on the terminal
    text = log.read_text()
    assert text.startswith("[printed while the case server imported the libraries, before this case]\n")
    assert f"{BNB_LINE}: no kernels package" in text and "FutureWarning: `x` is deprecated" in text
    (tmp_path / "broken_import.py").write_text("print('half-way')\nraise ImportError('no such library')\n")
    done = _python("from harness.run import library_log\nlibrary_log.import_holding('broken_import')\n", tmp_path)
    assert done.returncode == 1 and "half-way" in done.stderr and "ImportError: no such library" in done.stderr


@pytest.fixture(scope="module")
def busy_qlora_run(tmp_path_factory):
    """One real smoke-sized QLoRA case through `bench run` on the CPU, with one process spinning in its own
    session beside it (someone else's work): (the command's terminal output, its exit code, its output_dir)."""
    out = tmp_path_factory.mktemp("qlora") / "run"
    # at the lowest priority: always runnable (state R, what the load sample counts), yet it takes only the cycles
    # nothing else wants, so the case and the tests beside this one (pytest-xdist) are not slowed by it
    spinner = subprocess.Popen(
        [sys.executable, "-c", "import os\nos.nice(19)\nwhile True: pass"], start_new_session=True
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "harness", "run", "device=cpu", "model=llama", "model.preset=tiny", "method=qlora"]
            + ["workload.batch_size=2", "workload.seq_len=16", "measure.warmup=0", "measure.repeats=3"]
            + ["measure.flops=false", f"output_dir={out}"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        spinner.kill()
        spinner.wait()
    return done.stdout, done.stderr, done.returncode, out


def test_a_qlora_case_on_cpu_prints_no_library_message_and_its_log_has_them(busy_qlora_run):
    stdout, stderr, code, out = busy_qlora_run
    terminal = stdout + stderr
    assert code == 0, terminal
    assert " ok " in stdout  # the case ran and its row is there
    assert not [line for line in terminal.splitlines() if any(s in line for s in LIBRARY_LINES)], terminal
    [log] = (out / "logs").glob("case-*.log")
    text = log.read_text()
    assert "FutureWarning" in text  # transformers' deprecation of is_gradient_checkpointing, on this stack
    # the CPUs bitsandbytes tries the kernels-community kernel on (its lib.has_avx512bf16_cpu(), as Linux says it)
    if "avx512_bf16" in Path("/proc/cpuinfo").read_text().split():
        assert BNB_LINE in text and "[printed while the case server imported the libraries" in text


def test_a_case_beside_a_busy_process_is_contended_and_the_summary_says_so(busy_qlora_run):
    """The load is sampled in the case's own process at its start and end; the spinner is counted at both."""
    from harness.records.schema import is_contended

    stdout, _, _, out = busy_qlora_run
    [path] = out.glob("*.json")
    record = json.loads(path.read_text())
    load = record["provenance"]["load"]
    cores = len(os.sched_getaffinity(0))
    assert load["start"]["usable_cores"] == cores == load["end"]["usable_cores"]
    assert load["start"]["running_elsewhere"] >= 1 and load["end"]["running_elsewhere"] >= 1
    assert load["case_threads"] >= 1 and all(isinstance(load["start"][f"loadavg_{m}m"], float) for m in (1, 5, 15))
    samples, threads = (load["start"], load["end"]), load["case_threads"]
    by_hand = any(s["running_elsewhere"] + threads > s["usable_cores"] for s in samples)
    assert record["flags"]["contended"] is by_hand is is_contended(load)
    if threads == cores:  # torch takes every core (this 2-core machine): one more process is contention
        assert by_hand and record["id"] in stdout and "not clean measurements" in stdout and "contended: " in stdout
        assert "submit them" not in stdout and "idle machine" in stdout
