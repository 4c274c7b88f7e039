"""Provenance a reader relies on: which code ran (git_dirty ignores the results folder, which is data), and how
busy the machine was while a case ran (harness/measure/provenance.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.measure import provenance


def _git(path: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _checkout(path: Path) -> Path:
    """A repository laid out like this one: code, and a tracked results folder that `make report` rewrites."""
    (path / "harness").mkdir(parents=True)
    (path / "results" / "tables").mkdir(parents=True)
    (path / "harness" / "code.py").write_text("X = 1\n")
    (path / "results" / "tables" / "results.md").write_text("| a |\n")
    (path / "results" / "claims.md").write_text("claims\n")
    _git(path, "init", "-q")
    _git(path, "add", ".")
    _git(path, "commit", "-q", "-m", "one")
    return path


def test_a_rewritten_results_folder_is_not_a_modified_tree_but_a_code_edit_is(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_RESULTS_DIR", raising=False)
    repo = _checkout(tmp_path / "repo")
    assert provenance.git_state(repo, env={})["git_dirty"] is False
    # what make submit / make report do: rewrite tracked files under results/, delete one
    (repo / "results" / "tables" / "results.md").write_text("| a | b |\n")
    (repo / "results" / "claims.md").unlink()
    assert len(_git(repo, "status", "--porcelain").splitlines()) == 2  # git itself sees both changes
    state = provenance.git_state(repo, env={})
    assert state["git_dirty"] is False and state["git_sha"] == _git(repo, "rev-parse", "HEAD")
    (repo / "harness" / "code.py").write_text("X = 2\n")
    assert provenance.git_state(repo, env={})["git_dirty"] is True
    # a staged code change counts too; putting the code back leaves only data changed
    _git(repo, "add", "harness/code.py")
    assert provenance.git_state(repo, env={})["git_dirty"] is True
    _git(repo, "checkout", "HEAD", "--", "harness/code.py")
    assert provenance.git_state(repo, env={})["git_dirty"] is False


def test_a_results_folder_named_by_bench_results_dir_inside_the_checkout_is_data_too(tmp_path, monkeypatch):
    repo = _checkout(tmp_path / "repo")
    (repo / "shared-results").mkdir()
    (repo / "shared-results" / "r.json").write_text("{}\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "two")
    (repo / "shared-results" / "r.json").write_text('{"a": 1}\n')
    monkeypatch.setenv("BENCH_RESULTS_DIR", str(repo / "shared-results"))
    assert provenance.code_pathspec(repo) == [".", ":(top,exclude)results", ":(top,exclude)shared-results"]
    assert provenance.git_state(repo, env={})["git_dirty"] is False
    monkeypatch.delenv("BENCH_RESULTS_DIR")
    assert provenance.git_state(repo, env={})["git_dirty"] is True
