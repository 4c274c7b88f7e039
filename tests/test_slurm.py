"""launcher=slurm against a real one-node SLURM (issue 22): the module's fixture brings the cluster up with
../shared/slurm/start-slurm.sh (Debian's slurm-wlm, munge, slurmdbd on MariaDB; root) and stops it with
stop-slurm.sh; where it cannot (not root, no script, no apt-get to install the packages) the `slurm` tests skip
and say why. The request checks and the parsing of SLURM's output are also tested by hand, without a cluster.

Every case is the tiniest the other tests use, and every wait is bounded: the cluster's node has the machine's
few CPUs, and the jobs run one after another (each holds the node alone unless launcher.exclusive=false)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import SMALL_CASE

from harness import repo_root
from harness.config.compose import make_case, plan_cases, plan_launcher
from harness.config.groups import ConfigError
from harness.run import slurm_queue
from harness.run.slurm_queue import Node, Partition, gpu_count, parse_minutes
from harness.run.slurm_request import check_request, default_cpus, job_request

KIT = Path(os.environ.get("BENCH_SLURM_KIT", repo_root().parent / "shared" / "slurm"))
TINY = [*SMALL_CASE, "measure.flops=false"]
# A case that runs until it is ended: a million timed repetitions of the tiny mlp.
ENDLESS = [*TINY, "measure.repeats=1000000"]
SHARED = ["launcher=slurm", "launcher.exclusive=false", "launcher.cpus_per_task=1"]  # two such jobs fit the node
COMMAND_TIMEOUT_S = 240  # no bench command here may take longer; a hang fails the test instead of the CI


# --- by hand, no cluster ------------------------------------------------------------------------------------


def _partition(**kw) -> Partition:
    nodes = kw.pop("nodes", [Node("g1", 64, 512_000, 8), Node("c1", 32, 256_000, 0)])
    return Partition(**{"name": "gpu", "state": "UP", "max_time_min": 2880, "max_cpus_per_node": None,
                        "max_mem_per_node_mb": None, "nodes": nodes, **kw})  # fmt: skip


def _launcher(*overrides: str) -> dict:
    return plan_launcher(["launcher=slurm", *overrides], [make_case(TINY)])


@pytest.mark.parametrize(
    "text, minutes",
    [("UNLIMITED", None), ("30", 30), ("1:30", 2), ("02:00:00", 120), ("1-00:00:00", 1440), ("2-12", 3600)],
)
def test_slurm_time_format(text, minutes):
    assert parse_minutes(text) == minutes


def test_gpus_in_sinfo_gres():
    assert gpu_count("(null)") == 0 and gpu_count("gpu:8") == 8
    assert gpu_count("gpu:a100:4(S:0-1)") == 4 and gpu_count("gpu:a100:4,gpu:v100:2") == 6


def test_default_cpus_are_a_gpu_share_or_a_whole_node():
    part = _partition()
    two_ranks = make_case([*TINY, "device=cuda", "parallel=ddp", "parallel.nproc=2"])
    request = job_request(two_ranks, _launcher(), part)
    assert request["gpus_per_node"] == 2 and request["cpus_per_task"] == 2 * 64 // 8
    cpu = job_request(make_case(TINY), _launcher(), part)
    assert cpu["gpus_per_node"] == 0 and cpu["cpus_per_task"] == 32  # the smallest node, whole
    assert default_cpus(0, _partition(nodes=[Node("a", 4, 1000, 0)])) == 4
    # device=auto takes no GPU where the partition has none (it runs on the CPU there)
    auto = make_case([*SMALL_CASE[1:], "device=auto"])
    assert job_request(auto, _launcher(), _partition(nodes=[Node("a", 4, 1000, 0)]))["gpus_per_node"] == 0
    assert job_request(auto, _launcher(), part)["gpus_per_node"] == 1


@pytest.mark.parametrize(
    "overrides, case, key, says",
    [
        (["launcher.cpus_per_task=65"], TINY, "launcher.cpus_per_task", "has 64"),
        (["launcher.mem_gb=600"], TINY, "launcher.mem_gb", "500"),
        (["launcher.timeout_min=3000"], TINY, "launcher.timeout_min", "MaxTime is 2880 min"),
        (["launcher.gpus_per_node=9"], TINY, "launcher.gpus_per_node", "at most 8"),
        ([], [*TINY, "device=cuda", "parallel=ddp", "parallel.nproc=9"], "launcher.gpus_per_node", "one per rank"),
        ([], [*TINY, "parallel=ddp", "parallel.nnodes=3"], "parallel.nnodes", "has 2"),
    ],
)
def test_a_request_no_node_can_hold_names_its_key(overrides, case, key, says):
    cases = plan_cases(case, multirun=False)
    launcher = plan_launcher(["launcher=slurm", *overrides], cases)
    part = _partition()
    with pytest.raises(ConfigError) as err:
        check_request(job_request(cases[0], launcher, part), part, launcher)
    assert err.value.key == key and says in str(err.value), str(err.value)


def test_launcher_values_are_checked():
    for override, key in [
        ("launcher.cpus_per_task=0", "launcher.cpus_per_task"),
        ("launcher.mem_gb=0", "launcher.mem_gb"),
    ]:
        with pytest.raises(ConfigError) as err:
            _launcher(override)
        assert err.value.key == key


# --- against the cluster ------------------------------------------------------------------------------------


def _up() -> bool:
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "UP" in out


@pytest.fixture(scope="module")
def cluster():
    """A running one-node SLURM for this module: started here (and stopped after) unless it was already up."""
    start, stop = KIT / "start-slurm.sh", KIT / "stop-slurm.sh"
    if not start.exists():
        pytest.skip(f"{start} is missing: the one-node SLURM kit sits beside the checkout in CI (../shared/slurm)")
    if os.geteuid() != 0:
        pytest.skip("start-slurm.sh needs root (it installs Debian's slurm-wlm and starts its daemons)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and there is no apt-get to install Debian's slurm-wlm")
    was_up = _up()
    started = time.monotonic()
    env = {**os.environ, "SLURM_KIT_SMOKE": "0"}
    done = subprocess.run(["bash", str(start)], capture_output=True, text=True, timeout=900, env=env)
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-2000:]
        if shutil.which("slurmctld") is None:  # the packages could not be installed here
            pytest.skip(f"SLURM could not be installed: {output}")
        pytest.fail(f"start-slurm.sh failed ({done.returncode}):\n{output}")
    print(f"\nSLURM up in {time.monotonic() - started:.1f} s", file=sys.stderr)
    try:
        yield slurm_queue.partition(None)
    finally:
        if not was_up:
            subprocess.run(["bash", str(stop)], capture_output=True, timeout=120)


def bench(*args: str, timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", *args],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def submitted(out: Path) -> list[str]:
    """Every job submitit submitted into this run's job folder (one sbatch script each, kept after the job)."""
    return sorted((p.name.split("_")[0] for p in (out / "jobs").glob("*_submission.sh")), key=int)


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


def marker(out: Path, case_overrides: list[str]) -> dict:
    return json.loads((out / "jobs" / f"{make_case(case_overrides).config_hash}.json").read_text())


def windows(job_ids: list[str]) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    """Each job's start and end, as accounting holds them."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", ",".join(job_ids), "-o", "JobID,Start,End"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        job_id, start, end = line.split("|")
        found[job_id] = (dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end))
    return found


def assert_names_its_job(record: dict, partition: str = "debug") -> dict:
    slurm = record["provenance"]["slurm"]
    assert slurm["job_id"] and slurm["node"] and slurm["partition"] == partition, slurm
    return slurm


def wait_for_state(job_id: str, states: tuple[str, ...], timeout_s: float = 90) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = slurm_queue.job_states([job_id])[job_id].state
        if state in states:
            return state
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not reach {states} in {timeout_s} s (last: {state})")


@pytest.mark.slurm
def test_one_case_is_one_job_on_a_node_of_its_own(cluster, tmp_path):
    done = bench(*TINY, "launcher=slurm", f"output_dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    [record] = records(tmp_path)
    assert record["status"] == "ok"
    slurm = assert_names_its_job(record)
    assert submitted(tmp_path) == [slurm["job_id"]] == [marker(tmp_path, TINY)["job_id"]]
    cpus = min(n.cpus for n in cluster.nodes)
    assert slurm["exclusive"] is True and slurm["cpus"] == cpus  # a CPU case: every core of the node, alone
    assert record["provenance"]["torch_threads"] == cpus  # threads follow the allocation
    assert record["config_hash"] == make_case(TINY).config_hash  # the same case as launcher=local
    # the queue, case by case, in the progress display
    assert f"job {slurm['job_id']}: running on {slurm['node']}" in done.stderr
    assert f"job {slurm['job_id']}: completed" in done.stderr


@pytest.mark.slurm
def test_a_request_above_the_partition_exits_2_naming_the_key(cluster, tmp_path):
    cpus = max(n.cpus for n in cluster.nodes)
    done = bench(*TINY, "launcher=slurm", f"launcher.cpus_per_task={cpus + 1}", f"output_dir={tmp_path}")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "launcher.cpus_per_task" in done.stderr and f"has {cpus}" in done.stderr and "debug" in done.stderr
    assert submitted(tmp_path) == []


@pytest.mark.slurm
def test_no_wait_then_a_rerun_submits_each_case_once(cluster, tmp_path):
    """A sweep of a one-process case and a 2-rank FSDP case: `--no-wait`, then at once the same command, which
    waits: one job per case, one record per config hash; timed one after another; a rerun after they ended
    submits nothing."""
    sweep = ["-m", *TINY, "parallel=none,fsdp", "launcher=slurm", f"output_dir={tmp_path}"]
    first = bench(*sweep, "--no-wait")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 job(s) submitted" in first.stderr
    second = bench(*sweep)  # while the jobs are still pending or running
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stderr.count("(submitted earlier)") + second.stderr.count("completed") >= 2
    jobs = submitted(tmp_path)
    assert len(jobs) == 2, (jobs, second.stderr[-3000:])
    found = records(tmp_path)
    assert len(found) == len({r["config_hash"] for r in found}) == 2
    assert all(r["status"] == "ok" for r in found), [r.get("error") for r in found]
    assert sorted(assert_names_its_job(r)["job_id"] for r in found) == jobs
    fsdp = next(r for r in found if r["config"]["parallel"]["name"] == "fsdp")
    assert [rank["rank"] for rank in fsdp["metrics"]["ranks"]] == [0, 1]
    assert fsdp["config_hash"] == make_case([*TINY, "parallel=fsdp"]).config_hash
    # timed cases never share the node: the jobs' windows do not overlap
    (a_start, a_end), (b_start, b_end) = sorted(windows(jobs).values())
    assert a_end <= b_start, (a_start, a_end, b_start, b_end)
    third = bench(*sweep)
    assert third.returncode == 0 and "0 ran" in third.stdout and "2 skipped" in third.stdout, third.stdout
    assert submitted(tmp_path) == jobs


@pytest.mark.slurm
def test_a_suite_with_changed_settings_cancels_its_pending_jobs(cluster, tmp_path):
    """suite=scale-out-cpu (16 cases, 12 of them 2 ranks) submitted, rerun at once, then rerun with another
    memory request: never two jobs for a case, the pending ones replaced and the output saying so. The suite's
    jobs are cancelled at the end (running all 16 here would take minutes)."""
    suite = ["suite=scale-out-cpu", "launcher=slurm", f"output_dir={tmp_path}", "--no-wait"]
    try:
        first = bench(*suite)
        assert first.returncode == 0, first.stderr[-3000:]
        assert len(submitted(tmp_path)) == 16
        again = bench(*suite)
        assert again.returncode == 0, again.stderr[-3000:]
        assert len(submitted(tmp_path)) == 16, again.stderr[-3000:]
        changed = bench(*suite, "launcher.mem_gb=1")
        assert changed.returncode == 0, changed.stderr[-3000:]
        replaced = changed.stderr.count("was pending with other launcher settings (mem_gb: None -> 1)")
        assert replaced >= 14, changed.stderr[-3000:]  # all but the one or two running or done by now
        assert len(submitted(tmp_path)) == 16 + replaced
        markers = [json.loads(p.read_text()) for p in (tmp_path / "jobs").glob("*.json")]
        live = slurm_queue.job_states([m["job_id"] for m in markers])
        assert len(markers) == 16 and sum(s.active for s in live.values()) >= 14
        cancelled = [j for j in submitted(tmp_path) if j not in live]
        assert all(s.state == "CANCELLED" for s in slurm_queue.job_states(cancelled).values())
    finally:
        slurm_queue.cancel(submitted(tmp_path))


def start_bench(out: Path, *args: str) -> subprocess.Popen:
    """A waiting `bench run` in the background; its stderr goes to <out>.err."""
    err = open(f"{out}.err", "w")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "harness", "run", *ENDLESS, *SHARED, *args, f"output_dir={out}"],
            cwd=repo_root(),
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
    finally:
        err.close()  # the child holds its own copy


def job_processes(job_id: str) -> list[tuple[int, list[bytes]]]:
    """The job's processes on this node (scontrol listpids), each with its command line."""
    out = subprocess.run(["scontrol", "listpids", job_id], capture_output=True, text=True, timeout=30).stdout
    found = []
    for line in out.splitlines()[1:]:
        pid = int(line.split()[0])
        try:
            found.append((pid, Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")))
        except OSError:  # ended meanwhile
            continue
    return found


def measuring(out: Path, not_job: str | None = None, timeout_s: float = 90) -> str:
    """The id of the job (other than `not_job`) running the case in `out`, once the case's own process exists
    (a job spawns it: harness/run/jobs.py)."""
    deadline = time.monotonic() + timeout_s
    marker_file = out / "jobs" / f"{make_case(ENDLESS).config_hash}.json"
    job_id = None
    while time.monotonic() < deadline:
        if marker_file.exists() and (job_id := json.loads(marker_file.read_text())["job_id"]) != not_job:
            if any(b"--multiprocessing-fork" in argv for _, argv in job_processes(job_id)):
                time.sleep(1)
                return job_id
        time.sleep(0.5)
    raise AssertionError(f"no case of {out} started measuring in {timeout_s} s (job {job_id})")


def job_python(job_id: str) -> int:
    """The pid of the job's Python process (submitit's, which runs the case and writes its record; srun's
    command line names the same module, so the program itself is matched)."""
    for pid, argv in job_processes(job_id):
        if Path(argv[0].decode()).name.startswith("python") and b"submitit.core._submit" in argv:
            return pid
    raise AssertionError(f"no submitit process in job {job_id}: {job_processes(job_id)}")


@pytest.mark.slurm
def test_a_job_past_its_limit_a_cancelled_job_and_a_killed_job_leave_records(cluster, tmp_path):
    """Endless cases on a shared node (launcher.exclusive=false, one CPU each, so two run side by side and the
    test waits for the time limit only once). One past launcher.timeout_min=1 ends with the case's own
    CaseTimeout record naming the limit. Another, cancelled while measuring (scancel), writes its record saying
    so; rerun, it is submitted again, and that job, killed outright (SIGKILL: nothing in it can write), gets a
    record from the command that waited for it, ending with the end of the job's log."""
    slow, stopped = tmp_path / "slow", tmp_path / "stopped"
    procs = [start_bench(slow, "launcher.timeout_min=1"), start_bench(stopped)]
    try:
        cancelled = measuring(stopped)
        slurm_queue.cancel([cancelled])
        assert procs[1].wait(90) == 1
        [record] = records(stopped)
        assert record["status"] == "error", record
        assert f"the SLURM job {cancelled} was sent SIGTERM" in record["error"]["message"], record["error"]
        assert assert_names_its_job(record)["job_id"] == cancelled
        assert record["provenance"]["slurm"]["exclusive"] is False  # marked: measured on a shared node

        procs.append(start_bench(stopped))  # the error record is no result: the case is submitted again
        killed = measuring(stopped, not_job=cancelled)
        assert killed != cancelled and submitted(stopped) == sorted([cancelled, killed], key=int)
        os.kill(job_python(killed), 9)
        assert procs[2].wait(90) == 1
        record = next(r for r in records(stopped) if r["provenance"]["slurm"]["job_id"] == killed)
        assert record["error"]["type"] == "JobEnded" and record["error"]["phase"] == "job", record["error"]
        message = record["error"]["message"]
        assert message.startswith(f"SLURM job {killed} ") and "ended FAILED without a record" in message, message
        log = (stopped / "jobs" / f"{killed}_0_log.err").read_text().strip()
        assert "task 0: Killed" in message and message.endswith(log.splitlines()[-1]), message  # the log's end
        assert record["provenance"]["slurm"]["recorded_by"] == "the command that collected the job"

        assert procs[0].wait(150) == 1
        [record] = records(slow)
        assert record["error"]["type"] == "CaseTimeout", record["error"]
        assert "launcher.timeout_min=1" in record["error"]["message"], record["error"]["message"]
        slurm = assert_names_its_job(record)
        assert slurm["exclusive"] is False and slurm["cpus"] == 1 == record["provenance"]["torch_threads"]
        assert slurm_queue.job_states([slurm["job_id"]])[slurm["job_id"]].state == "COMPLETED"  # before the kill
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        slurm_queue.cancel(submitted(slow) + submitted(stopped))
