"""Hostile inputs for the results-folder tests: valid seed records (committed ones, and an oom record made from one),
the mutations a careless or hostile submitter makes, and every reader run over a folder (table, plot, claims,
site, cite, the estimate's calibration), so a test can say "refused with a message, or every reader succeeds"."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from harness import repo_root
from harness.records import folder as results_folder
from harness.records.schema import config_hash, record_id
from harness.records.validate import load_bytes

COMMITTED = repo_root() / "results" / "records"

# Values of every JSON type, with the extremes and the strings that have broken readers before.
HOSTILE_STRINGS = [
    "",
    "x" * 300,
    "a\x00b",
    "\ud800",
    "line\n# heading\n<img src=x onerror=alert(1)>",
    "```\nrm -rf /\n```",
    '=HYPERLINK("http://evil","x")',
    "+1+1",
    "-2+3",
    "@SUM(A1)",
    "\tcmd",
    "a|b|c",
    "[click](javascript:alert(1))",
    "</td></tr><script>alert(1)</script>",
    "2/../../../../escape",
    "/../cpu-amd-epyc-2",
    "..",
    "é漢字🙂",
]
HOSTILE_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    -(2**63) - 5,
    10**30,
    1e308,
    -1e308,
    5e-324,
    -0.0,
    1.5,
    *HOSTILE_STRINGS,
    [],
    [1, "x", None],
    [[[[]]]],
    {},
    {"a": {"b": [1, 2, {"c": "d"}]}},
]


def deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


def seed_records() -> list[dict]:
    """Three committed records of different families, and an oom record: what a folder really holds."""
    picked = []
    for prefix in ("mlp_full-adamw_ckpt-off", "llama_lora_ckpt-on", "hf_sgd_ckpt-off"):
        path = sorted(COMMITTED.glob(f"cpu-*/{prefix}_*.json"))[0]
        picked.append(load_bytes(path.read_bytes()))
    oom = copy.deepcopy(picked[0])
    oom["status"] = "oom"
    oom["error"] = {"type": "OutOfMemoryError", "message": "CUDA out of memory.", "phase": "step", "traceback": ""}
    oom["metrics"] = {"oom": {"budget_emulated": True}}
    oom["config"]["workload"]["batch_size"] = 4096
    return [*picked, forge(oom)]


def forge(record: dict) -> dict:
    """What a hostile submitter does after editing: recompute the hashes, so the edit reaches the schema."""
    if isinstance(record.get("config"), dict):
        record["config_hash"] = config_hash(record["config"])
        if isinstance(record.get("provenance"), dict):
            try:
                record["id"] = record_id(record["config"], record["provenance"])
            except TypeError:  # unhashable provenance: the id check then refuses it
                pass
    return record


def set_path(record: dict, path: tuple, value) -> dict:
    """A copy of `record` with the value at `path` replaced (or deleted, for the DELETE marker)."""
    out = copy.deepcopy(record)
    obj = out
    for key in path[:-1]:
        obj = obj[key]
    if value is DELETE:
        del obj[path[-1]]
    else:
        obj[path[-1]] = copy.deepcopy(value)
    return out if path in (("id",), ("config_hash",)) else forge(out)


DELETE = object()


def paths(obj, prefix=(), depth=3) -> list[tuple]:
    """Every key path in a record down to `depth` levels (list items by index)."""
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for key, value in items:
        out.append((*prefix, key))
        if depth > 1:
            out += paths(value, (*prefix, key), depth - 1)
    return out


def dumps(record: dict) -> bytes:
    """JSON text of a (possibly hostile) record: lone surrogates kept as \\ud800 escapes, as a file would."""
    return json.dumps(record, allow_nan=False).encode("utf-8")


def run_every_reader(root: Path) -> dict:
    """Every report over the folder, in memory where it can be (plots go to disk: see write_plots)."""
    from harness.report import claims
    from harness.report.cite import cite
    from harness.report.escape import csv_text
    from harness.report.estimate_calibration import calibration, device_overheads
    from harness.report.frame import grouped, records_frame
    from harness.report.site import pages
    from harness.report.tables import markdown

    stored, problems = results_folder.read_folder(root)
    frame = records_frame(stored, root)
    groups = grouped(frame)
    out = {"stored": stored, "problems": problems}
    out["tables"] = [markdown(g, int(m), "records/") + csv_text(g) for m, g in groups.groupby("schema_major")]
    out["claims"] = claims.markdown(claims.evaluate(groups), [])
    out["site"] = pages(stored, root, root / "site")
    out["cite"] = [cite(s, root) for s in stored]
    for s in stored:
        calibration(stored, s.config)
    out["overheads"] = device_overheads(stored, [24, 80, 141])
    return out


def files_outside(top: Path, allowed: list[Path]) -> list[str]:
    """Files under `top` that lie in none of the `allowed` folders: what a test forbids a submit to write."""
    return sorted(
        p.relative_to(top).as_posix()
        for p in top.rglob("*")
        if not p.is_dir() and not any(p == a or a in p.parents for a in allowed)
    )
