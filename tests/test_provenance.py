"""Provenance a reader relies on: which code ran (git_dirty ignores the results folder, which is data), and how
busy the machine was while a case ran (harness/measure/provenance.py)."""

from __future__ import annotations

from pathlib import Path

from support import git

from harness.measure import provenance


def _checkout(path: Path) -> Path:
    """A repository laid out like this one: code, and a tracked results folder that `make report` rewrites."""
    (path / "harness").mkdir(parents=True)
    (path / "results" / "tables").mkdir(parents=True)
    (path / "harness" / "code.py").write_text("X = 1\n")
    (path / "results" / "tables" / "results.md").write_text("| a |\n")
    (path / "results" / "claims.md").write_text("claims\n")
    git(path, "init", "-q")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "one")
    return path


def test_a_rewritten_results_folder_is_not_a_modified_tree_but_a_code_edit_is(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_RESULTS_DIR", raising=False)
    repo = _checkout(tmp_path / "repo")
    assert provenance.git_state(repo, env={})["git_dirty"] is False
    # what make submit / make report do: rewrite tracked files under results/, delete one
    (repo / "results" / "tables" / "results.md").write_text("| a | b |\n")
    (repo / "results" / "claims.md").unlink()
    assert len(git(repo, "status", "--porcelain").splitlines()) == 2  # git itself sees both changes
    state = provenance.git_state(repo, env={})
    assert state["git_dirty"] is False and state["git_sha"] == git(repo, "rev-parse", "HEAD")
    (repo / "harness" / "code.py").write_text("X = 2\n")
    assert provenance.git_state(repo, env={})["git_dirty"] is True
    # a staged code change counts too; putting the code back leaves only data changed
    git(repo, "add", "harness/code.py")
    assert provenance.git_state(repo, env={})["git_dirty"] is True
    git(repo, "checkout", "HEAD", "--", "harness/code.py")
    assert provenance.git_state(repo, env={})["git_dirty"] is False


def test_a_results_folder_named_by_bench_results_dir_inside_the_checkout_is_data_too(tmp_path, monkeypatch):
    repo = _checkout(tmp_path / "repo")
    (repo / "shared-results").mkdir()
    (repo / "shared-results" / "r.json").write_text("{}\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "two")
    (repo / "shared-results" / "r.json").write_text('{"a": 1}\n')
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(repo / "shared-results"))
    assert provenance.code_pathspec(repo) == [".", ":(top,exclude)results", ":(top,exclude)shared-results"]
    assert provenance.git_state(repo, env={})["git_dirty"] is False
    monkeypatch.delenv("BENCH_RESULTS_DIR")
    assert provenance.git_state(repo, env={})["git_dirty"] is True


def _stat(pid: int, name: str, state: str, pgrp: int) -> str:
    # /proc/<pid>/stat: pid (comm) state ppid pgrp session ...
    return f"{pid} ({name}) {state} 1 {pgrp} {pgrp} 0 -1 4194560 0 0 0 0 1 2 0 0 20 0 1 0\n"


def test_running_elsewhere_counts_state_r_outside_the_run_s_process_group(tmp_path):
    procs = [
        (10, "python", "R", 7),  # this run: not counted
        (11, "pytest", "R", 99),  # someone else's, running
        (12, "a) R (b", "S", 99),  # a name that looks like a state: the fields after the last ')' decide
        (13, "cc1plus", "R", 50),
        (14, "bash", "S", 50),
        (15, "kworker", "D", 0),
    ]
    for pid, name, state, pgrp in procs:
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(_stat(pid, name, state, pgrp))
    (tmp_path / "self").mkdir()  # not a pid
    (tmp_path / "16").mkdir()  # a process that ended between the listing and the read
    assert provenance.running_elsewhere(tmp_path, own_group=7) == 2
    assert provenance.running_elsewhere(tmp_path, own_group=99) == 2  # 10 and 13
    assert provenance.running_elsewhere(tmp_path / "absent", own_group=7) is None


def _load(start_elsewhere, end_elsewhere, cores=2, threads=2):
    def sample(n):
        return None if n is None else {"running_elsewhere": n, "usable_cores": cores, "loadavg_1m": 9.0}

    return {"start": sample(start_elsewhere), "end": sample(end_elsewhere), "case_threads": threads}


def test_contended_when_what_runs_elsewhere_plus_the_case_exceeds_the_cores():
    from harness.records.schema import is_contended

    assert is_contended(_load(0, 0)) is False  # 0 + 2 threads on 2 cores: the load average (9.0) is not read
    assert is_contended(_load(1, 0)) is True  # 1 + 2 > 2 at the start
    assert is_contended(_load(0, 1)) is True  # ... or at the end
    assert is_contended(_load(1, 1, cores=16, threads=1)) is False  # a GPU case on 16 cores: 2 <= 16
    assert is_contended(_load(15, None, cores=16, threads=1)) is False  # 16 <= 16; no end sample (it died)
    assert is_contended(_load(16, None, cores=16, threads=1)) is True
    assert is_contended(_load(None, None)) is None and is_contended(None) is None  # not sampled: not known
