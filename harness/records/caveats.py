"""What makes a record's figures weaker than a clean measurement, said once for the end-of-run summary and
`bench submit`: phases flagged noisy, a machine other work was running on (flags.contended), code that was not
the commit it names (provenance.git_dirty). Each caveat is a short reason a person can act on."""

from __future__ import annotations

from harness.config.rules import PHASES
from harness.records.schema import CONTENDED_RULE

NOISY, CONTENDED, DIRTY = "noisy", "contended", "dirty"


def _contention(load: object) -> str:
    """What the samples saw, for the reason's text: the most processes running elsewhere at either end."""
    if not isinstance(load, dict):
        return ""
    samples = [s for s in (load.get("start"), load.get("end")) if isinstance(s, dict)]
    counts = [s["running_elsewhere"] for s in samples if isinstance(s.get("running_elsewhere"), int)]
    cores = [s["usable_cores"] for s in samples if isinstance(s.get("usable_cores"), int)]
    if not counts or not cores:
        return ""
    return f" ({max(counts)} other process(es) running on {min(cores)} core(s))"


def caveats(record: dict) -> dict[str, str]:
    """{kind: reason} for each of noisy, contended and dirty that applies to `record` (as written or stored)."""
    flags = record.get("flags") if isinstance(record.get("flags"), dict) else {}
    prov = record.get("provenance") if isinstance(record.get("provenance"), dict) else {}
    found = {}
    # a phase is named as it is; anything else as its repr, so that a hostile record prints no control characters
    noisy = [p if p in PHASES else repr(p)[:40] for p in flags.get("noisy") or []]
    if noisy:
        cv = ((record.get("config") or {}).get("measure") or {}).get("noisy_cv")
        found[NOISY] = f"noisy phases {', '.join(noisy)} (timing cv above {cv})"
    if flags.get("contended") is True:
        found[CONTENDED] = f"contended: {CONTENDED_RULE}{_contention(prov.get('load'))}"
    if prov.get("git_dirty") is True:
        found[DIRTY] = "dirty: measured from a modified working tree (git_dirty; changes under results/ do not count)"
    return found
