"""Running from an environment not built from the lock: `python -m harness` from a checkout without .git,
BENCH_GIT_SHA standing in for git, every difference from requirements.lock recorded, tables that never group
such runs with lock runs, and `bench cite` that says what it does not know (a null sha, other software)."""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import git

from harness import repo_root
from harness.cli import main
from harness.measure import provenance
from harness.records.folder import read_folder
from harness.records.io import write_record
from harness.records.schema import record_id
from harness.records.submit import TAKEN, submit
from harness.report.frame import grouped, records_frame

REPO = repo_root()
SHA = "0123456789abcdef0123456789abcdef01234567"  # not a commit of this repository: only BENCH_GIT_SHA can name it
TINY = [
    "device=cpu",
    "model=mlp",
    "model.depth=2",
    "model.width=16",
    "workload.batch_size=1",
    "workload.seq_len=4",
    "measure.repeats=3",
    "measure.warmup=0",
    "measure.flops=false",
]

LOCK = """\
# a comment, then a blank line

torch==2.13.0
transformers==5.24.0
peft==0.21.2
typing_extensions==4.16.0
Jinja2==3.1.6
numpy==2.4.6  # an inline comment
-e .
"""


def test_lock_comparison_lists_exactly_the_differences():
    installed = {
        "torch": "2.13.0+cu130",  # a CUDA build of the pinned release: the same
        "transformers": "5.17.0",  # another release: a difference
        # peft: not installed           # a difference, installed null
        "typing-extensions": "4.16.0",  # the lock writes typing_extensions: one package (PEP 503)
        "jinja2": "3.1.6",  # the lock writes Jinja2
        "numpy": "2.4.6",
    }
    env = provenance.compare_with_lock(LOCK, installed)
    assert env == {
        "matches_lock": False,
        "packages_compared": 6,
        "differences": [
            {"package": "transformers", "lock": "5.24.0", "installed": "5.17.0"},
            {"package": "peft", "lock": "0.21.2", "installed": None},
        ],
    }


def test_another_torch_release_is_recorded_with_its_full_build_string():
    installed = {
        "torch": "2.11.0+cu130",
        "transformers": "5.24.0",
        "peft": "0.21.2",
        "typing_extensions": "4.16.0",
        "Jinja2": "3.1.6",
        "numpy": "2.4.6",
    }
    env = provenance.compare_with_lock(LOCK, installed)
    assert env["differences"] == [{"package": "torch", "lock": "2.13.0", "installed": "2.11.0+cu130"}]
    # a lock that pins a build label itself is held to it
    assert provenance.compare_with_lock("torch==2.13.0+cu130\n", {"torch": "2.13.0+cpu"})["differences"] == [
        {"package": "torch", "lock": "2.13.0+cu130", "installed": "2.13.0+cpu"}
    ]
    assert provenance.compare_with_lock("torch==2.13.0+cu130\n", {"torch": "2.13.0+cu130"})["matches_lock"] is True


def test_a_version_lookup_function_is_asked_by_normalised_name():
    asked = []

    def lookup(name):
        asked.append(name)
        return {"typing-extensions": "4.16.0", "jinja2": "3.1.6"}.get(name)

    env = provenance.compare_with_lock("typing_extensions==4.16.0\nJinja2==3.1.6\n", lookup)
    assert env == {"matches_lock": True, "packages_compared": 2, "differences": []}
    assert asked == ["typing-extensions", "jinja2"]


def test_the_venv_built_from_the_lock_matches_it():
    pinned = [
        line
        for line in (REPO / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    ]
    env = provenance.environment(REPO)
    assert env["differences"] == [], f"this .venv differs from requirements.lock: {env['differences']}"
    assert env["matches_lock"] is True and env["packages_compared"] == len(pinned) and env["reason"] is None
    assert env["lock_file"] == "requirements.lock"


def test_without_a_lock_file_whether_it_matches_is_not_known(tmp_path):
    env = provenance.environment(tmp_path)
    assert env["matches_lock"] is None and env["differences"] is None and "requirements.lock" in env["reason"]
    (tmp_path / "requirements.lock").write_text("# nothing pinned\n-e .\n")
    env = provenance.environment(tmp_path)
    assert env["matches_lock"] is None and env["differences"] is None and "pins no package" in env["reason"]


def test_bench_git_sha_stands_in_for_git_only_where_there_is_no_git(tmp_path):
    assert provenance.git_state(tmp_path, env={"BENCH_GIT_SHA": SHA.upper()}) == {
        "git_sha": SHA,
        "git_dirty": None,
        "git_sha_source": "BENCH_GIT_SHA",
        "git_sha_env_ignored": None,
    }
    assert provenance.git_state(tmp_path, env={}) == {
        "git_sha": None,
        "git_dirty": None,
        "git_sha_source": None,
        "git_sha_env_ignored": None,
    }
    for bad in ("HEAD", "abc123", "g" * 40, SHA + "0"):  # a ref, too short, not hex, too long: never a sha
        state = provenance.git_state(tmp_path, env={"BENCH_GIT_SHA": bad})
        assert state["git_sha"] is None and state["git_sha_source"] is None
        assert repr(bad) in state["git_sha_env_ignored"] and "not 7-40 hex digits" in state["git_sha_env_ignored"]


def _git_repo(path: Path) -> str:
    path.mkdir()
    git(path, "init", "-q")
    (path / "f.txt").write_text("x\n")
    git(path, "add", "f.txt")
    git(path, "commit", "-q", "-m", "one")
    return git(path, "rev-parse", "HEAD")


def test_git_wins_over_bench_git_sha_and_a_disagreement_is_kept(tmp_path):
    head = _git_repo(tmp_path / "repo")
    state = provenance.git_state(tmp_path / "repo", env={"BENCH_GIT_SHA": SHA})
    assert (state["git_sha"], state["git_dirty"], state["git_sha_source"]) == (head, False, "git")
    assert state["git_sha_env_ignored"] == f"BENCH_GIT_SHA={SHA} differs from git's HEAD {head}; git's is recorded"
    agreeing = provenance.git_state(tmp_path / "repo", env={"BENCH_GIT_SHA": head[:7]})
    assert agreeing["git_sha"] == head and agreeing["git_sha_env_ignored"] is None
    (tmp_path / "repo" / "f.txt").write_text("changed\n")
    assert provenance.git_state(tmp_path / "repo", env={})["git_dirty"] is True
    # a copy of the tree placed inside some other repository is not that repository's HEAD
    (tmp_path / "repo" / "copy").mkdir()
    inner = provenance.git_state(tmp_path / "repo" / "copy", env={"BENCH_GIT_SHA": SHA})
    assert (inner["git_sha"], inner["git_sha_source"]) == (SHA, "BENCH_GIT_SHA")


def _copy_without_git(dest: Path) -> Path:
    """What the GPU host gets: the tree's files, no .git."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("harness", "suites"):
        shutil.copytree(REPO / name, dest / name, ignore=skip)
    for name in ("requirements.lock", "pyproject.toml"):
        shutil.copy2(REPO / name, dest / name)
    return dest


def _bench(args: list[str], tree: Path, **extra_env) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("BENCH_RESULTS_DIR", "BENCH_SUITES_DIR", "BENCH_GIT_SHA")}
    env.update(PYTHONPATH=str(tree), **extra_env)
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=tree, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_python_m_harness_from_a_tree_without_git_records_bench_git_sha(tmp_path):
    tree = _copy_without_git(tmp_path / "tree")
    run_dir, results = tmp_path / "run", tmp_path / "results"
    done = _bench(["run", *TINY, f"output_dir={run_dir}"], tree, BENCH_GIT_SHA=SHA)
    assert done.returncode == 0, done.stderr[-3000:]
    [path] = run_dir.glob("*.json")
    record = json.loads(path.read_text())
    prov = record["provenance"]
    assert record["status"] == "ok"
    assert (prov["git_sha"], prov["git_sha_source"], prov["git_dirty"]) == (SHA, "BENCH_GIT_SHA", None)
    assert prov["environment"]["matches_lock"] is True and prov["environment"]["differences"] == []

    submitted = _bench(["submit", str(run_dir), "--to", str(results)], tree)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    cited = _bench(["cite", record["id"], "--results", str(results)], tree)
    assert cited.returncode == 0, cited.stderr[-3000:]
    assert f"git checkout {SHA}" in cited.stdout and "as given by BENCH_GIT_SHA" in cited.stdout
    assert "not from requirements.lock" not in cited.stdout


@pytest.fixture(scope="module")
def record():
    """One real measured case, made in this process."""
    from support import record_in_process

    made = record_in_process([*TINY, "method=full_adamw"])
    assert made["status"] == "ok", made.get("error")
    return made


def _variant(record: dict, utc_time: str, **prov) -> dict:
    """The record as if measured elsewhere: provenance changed, id recomputed, so it is a valid record."""
    r = copy.deepcopy(record)
    r["provenance"].update(prov, utc_time=utc_time)
    r["id"] = record_id(r["config"], r["provenance"])
    return r


def _submit(records: list[dict], tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for i, r in enumerate(records):
        write_record(r, tmp_path / f"run{i}")
        assert [o.status for o in submit([tmp_path / f"run{i}"], root)] == [TAKEN]
    return root


def test_cite_says_a_record_does_not_name_its_commit(record, tmp_path, capsys):
    unnamed = _variant(record, "2030-01-01T00:00:00+00:00", git_sha=None, git_dirty=None, git_sha_source=None)
    root = _submit([unnamed], tmp_path)
    assert main(["cite", unnamed["id"], "--results", str(root)]) == 0
    out = capsys.readouterr().out
    assert "**The record does not name its commit**" in out and "commit not recorded" in out
    assert "git checkout" not in out and "None" not in out


DIFFERENT = {
    "lock_file": "requirements.lock",
    "matches_lock": False,
    "packages_compared": 61,
    "reason": None,
    "differences": [
        {"package": "torch", "lock": "2.13.0", "installed": "2.11.0+cu130"},
        {"package": "peft", "lock": "0.21.2", "installed": None},
    ],
}


def test_cite_names_every_difference_from_the_lock(record, tmp_path, capsys):
    other = _variant(record, "2030-01-02T00:00:00+00:00", environment=DIFFERENT)
    root = _submit([other], tmp_path)
    assert main(["cite", other["id"], "--results", str(root)]) == 0
    out = capsys.readouterr().out
    assert (
        "**Software not from requirements.lock**: 2 pinned package(s) differ — torch 2.11.0+cu130 "
        "(lock 2.13.0), peft not installed (lock 0.21.2)."
    ) in out
    assert "PYTHONPATH=$PWD python -m harness run" in out


def test_tables_never_group_other_software_with_lock_runs(record, tmp_path):
    lock_runs = [_variant(record, f"2030-01-0{d}T00:00:00+00:00") for d in (3, 4)]
    other = _variant(record, "2030-01-05T00:00:00+00:00", environment=DIFFERENT)
    old = _variant(record, "2030-01-06T00:00:00+00:00")
    del old["provenance"]["environment"]  # a record from before the key existed
    old["id"] = record_id(old["config"], old["provenance"])
    root = _submit([*lock_runs, other, old], tmp_path)
    stored, problems = read_folder(root)
    assert problems == []
    groups = grouped(records_frame(stored, root))
    assert sorted(zip(groups["environment"], groups["n"])) == [
        ("differs: torch 2.11.0+cu130, peft not installed", 1),
        ("lock", 2),
        ("not recorded", 1),
    ]
    assert groups["config_hash"].nunique() == 1
