"""Fuzzing the shared results folder: valid records mutated one field at a time (type changes, extremes, hostile
strings, deep nesting). Each is refused by `bench submit` with a message naming the field, or taken, and then
every reader (table, plot, claims, site, cite, the estimate's calibration) succeeds on the folder; nothing is
written outside it. Fixed seed (derandomize) and a bounded example count keep CI's time."""

import tempfile
from pathlib import Path

import pytest
from hostile import (
    DELETE,
    HOSTILE_VALUES,
    deep,
    dumps,
    files_outside,
    paths,
    run_every_reader,
    seed_records,
    set_path,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.records.schema import RECORD_KEYS
from harness.records.submit import DUPLICATE, REFUSED, TAKEN, submit
from harness.report.plots import write_plots
from harness.report.site import write_site
from harness.report.tables import write_tables

SEEDS = seed_records()
# one value of every JSON type (and a deletion) for each top-level key
BY_TYPE = [None, True, 7, -1.5, "=cmd|' /C calc'!A0", [], [1, "x"], {}, {"a": [1, {"b": None}]}, deep(40), DELETE]
TALLY = {"tried": 0, "refused": 0, "taken": 0, "crashed": 0, "written outside": 0}


def _check_outcome(outcome) -> None:
    assert outcome.status in (TAKEN, REFUSED, DUPLICATE), outcome.line()
    if outcome.status == REFUSED:
        field, _, why = outcome.reason.partition(": ")
        assert field and why and " " not in field.strip(), outcome.reason  # "field: reason", field named


def _submit_and_read(records: list[dict], top: Path) -> tuple[list, dict]:
    inputs, root = top / "in", top / "results"
    inputs.mkdir(parents=True, exist_ok=True)
    files = []
    for i, record in enumerate(records):
        files.append(inputs / f"{i}.json")
        files[-1].write_bytes(dumps(record))
    outcomes = submit(files, root)
    assert len(outcomes) == len(files)  # every file has its outcome: the batch never aborts
    for outcome in outcomes:
        _check_outcome(outcome)
    TALLY["tried"] += len(files)
    TALLY["refused"] += sum(o.status == REFUSED for o in outcomes)
    TALLY["taken"] += sum(o.status == TAKEN for o in outcomes)
    readers = run_every_reader(root) if any(o.status == TAKEN for o in outcomes) else {}
    # what submit took, every reader reads: none is skipped as a problem
    assert readers.get("problems", []) == []
    outside = files_outside(top, [inputs, root])
    TALLY["written outside"] += len(outside)
    assert outside == []
    return outcomes, readers


def test_any_top_level_key_mutated_by_type_is_refused_or_read_by_every_reader(tmp_path):
    """Every top-level key of a valid ok record and of an oom record, set to every JSON type (or deleted), in one
    batch: each is refused naming the field, or taken; then tables, plots, claims, site and cite all succeed."""
    mutated = [
        set_path(seed, (key,), value) for seed in (SEEDS[0], SEEDS[3]) for key in RECORD_KEYS for value in BY_TYPE
    ]
    outcomes, readers = _submit_and_read([*SEEDS, *mutated], tmp_path)
    refused = {o.reason.split(":")[0] for o in outcomes if o.status == REFUSED}
    # every top-level key is checked: a change of type is refused there (or, for a hash, by its own check)
    assert set(RECORD_KEYS) - {"id", "config_hash"} <= {f.split(".")[0].split("[")[0] for f in refused}
    assert sum(o.status == TAKEN for o in outcomes) >= len(SEEDS)
    root = tmp_path / "results"
    stored = readers["stored"]
    assert write_tables(stored, root, root / "tables", include_noisy=True)
    assert write_plots(stored, root, root / "plots", include_noisy=True)
    assert write_site(stored, root, root / "site") and write_site(stored, root, root / "site", include_noisy=True)
    assert files_outside(tmp_path, [tmp_path / "in", root]) == []


def _json_values():
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=30),
        st.sampled_from(HOSTILE_VALUES),
    )
    nested = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=8,
    )
    return st.one_of(nested, st.integers(min_value=33, max_value=200).map(deep), st.just(DELETE))


SEED_PATHS = [(i, p) for i, seed in enumerate(SEEDS) for p in paths(seed, depth=4)]


@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(where=st.sampled_from(SEED_PATHS), value=_json_values())
def test_one_field_mutated_is_refused_with_its_name_or_read_by_every_reader(where, value):
    index, path = where
    record = set_path(SEEDS[index], path, value)
    with tempfile.TemporaryDirectory() as top:
        [outcome], _ = _submit_and_read([record], Path(top))
    if outcome.status == REFUSED:
        assert outcome.reason.split(":")[0] != "file" or "JSON" in outcome.reason or "nested" in outcome.reason


@pytest.fixture(scope="module", autouse=True)
def _report_tally():
    yield
    print("\nhostile inputs: " + ", ".join(f"{k} {v}" for k, v in TALLY.items()))
