"""The README stays true: every record id it names is a committed record, every `bench` command and option and
every `make` target it shows exists, and nothing it links points outside the repository."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

from harness.cli import COMMANDS, main

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def _code() -> list[str]:
    """The README's code: each line of its fenced blocks (a shell comment after `  #` left out) and each inline
    code span."""
    lines, fenced = [], False
    for line in README.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced:
            lines.append(re.split(r"\s#\s", line, maxsplit=1)[0])
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", README, flags=re.S))
    return lines + inline


# `bench X`, `.venv/bin/bench X`, `python -m harness X`: not "backprop-bench X"
_BENCH = re.compile(r"(?:(?<![\w/-])bench|\.venv/bin/bench|python -m harness) ([a-z][a-z-]*)((?: [^|;&]*)?)")


def _commands() -> dict[str, set[str]]:
    """{command: the --options shown with it}."""
    shown: dict[str, set[str]] = {}
    for line in _code():
        for command, rest in _BENCH.findall(line):
            shown.setdefault(command, set()).update(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest))
    return shown


def _help(command: str) -> str:
    """What `bench COMMAND --help` prints (argparse's commands exit after it, `run` and `fit` return)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            assert main([command, "--help"]) == 0
        except SystemExit as done:
            assert done.code == 0
    return out.getvalue()


def test_every_bench_command_and_option_the_readme_shows_exists():
    shown = _commands()
    assert {"run", "submit", "cite", "estimate", "fit", "site", "claims"} <= set(shown)  # the extraction works
    assert set(shown) <= set(COMMANDS), f"not bench commands: {sorted(set(shown) - set(COMMANDS))}"
    for command, options in sorted(shown.items()):
        missing = {o for o in options - {"--help"} if o not in _help(command)}  # --help: asked here
        assert not missing, f"bench {command} --help does not know {sorted(missing)}"


def test_every_make_target_the_readme_shows_exists():
    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), flags=re.M))
    shown = {t for line in _code() for t in re.findall(r"(?<![\w/-])make ([a-z][a-z-]*)", line)}
    assert {"bench", "submit", "report"} <= shown
    assert shown <= targets, f"not make targets: {sorted(shown - targets)}"


def test_every_record_id_the_readme_names_is_a_committed_record():
    ids = {json.loads(p.read_text())["id"] for p in (REPO / "results" / "records").glob("*/*.json")}
    named = {m for line in _code() for m in re.findall(r"bench cite ([0-9a-f]+)", line)}
    named |= set(re.findall(r"`([0-9a-f]{16})`", README))
    assert named, "the README names no record id: the test would pass vacuously"
    for prefix in named:
        matches = [i for i in ids if i.startswith(prefix)]
        assert len(prefix) >= 6 and len(matches) == 1, f"{prefix} names {len(matches)} committed records"


def test_nothing_the_readme_links_or_names_lies_outside_the_repository():
    assert "../" not in README, "a path outside the repository: " + README[README.index("../") - 60 :][:120]
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if "://" not in link]
    assert "harness/REFERENCES.md" in local
    for link in local:
        assert (REPO / link).resolve().is_relative_to(REPO) and (REPO / link).exists(), link
