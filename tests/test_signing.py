"""Who submitted what: `bench submit --sign KEY` signs with ssh-keygen -Y, the folder's allowed_signers says whose
key it is, an altered record is refused, a folder can require signatures, claims can be judged from signed
records only, and the site, tables and cite say "signed by NAME" or "unsigned" (in Chromium too)."""

import json
import shutil
import subprocess

import pytest
from hostile import forge, seed_records, set_path
from site_browser import Browser, find_chromium

from harness.cli import main
from harness.records import folder as results_folder
from harness.records.io import record_bytes
from harness.records.signing import SIG_SUFFIX, sign
from harness.records.submit import REFUSED, TAKEN, submit
from harness.report.cite import cite

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="OpenSSH's ssh-keygen is not installed")
SEEDS = seed_records()


def _key(tmp_path, name: str):
    key = tmp_path / "keys" / name
    key.parent.mkdir(exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


def _record(tmp_path, i: int):
    record = forge(set_path(SEEDS[i % 3], ("provenance", "utc_time"), f"2033-01-0{i + 1}T00:00:00+00:00"))
    path = tmp_path / "in" / f"r{i}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(record_bytes(record))
    return record, path


@pytest.fixture
def signed_folder(tmp_path):
    """A folder naming alice as a signer; one record signed by her, one unsigned."""
    alice = _key(tmp_path, "alice")
    root = tmp_path / "results"
    root.mkdir()
    public = (alice.with_suffix(".pub")).read_text().split()
    (root / "allowed_signers").write_text(f'alice@example.org namespaces="backprop-bench" {public[0]} {public[1]}\n')
    (signed, signed_path), (unsigned, unsigned_path) = _record(tmp_path, 0), _record(tmp_path, 1)
    assert main(["submit", str(signed_path), "--sign", str(alice), "--to", str(root)]) == 0
    assert main(["submit", str(unsigned_path), "--to", str(root)]) == 0
    return root, alice, signed, unsigned


def test_a_signed_submission_verifies_and_reports_say_who_signed(tmp_path, signed_folder, capsys):
    root, _, signed, unsigned = signed_folder
    stored, problems = results_folder.read_folder(root)
    assert problems == []
    assert {s.id: s.signer for s in stored} == {signed["id"]: "alice@example.org", unsigned["id"]: None}
    by_id = {s.id: s for s in stored}
    assert by_id[signed["id"]].path.with_name(by_id[signed["id"]].path.name + SIG_SUFFIX).is_file()
    assert "- Submitted: signed by alice@example.org" in cite(by_id[signed["id"]], root)
    assert "- Submitted: unsigned" in cite(by_id[unsigned["id"]], root)
    assert main(["table", "--results", str(root), "--include-noisy"]) == 0  # measured here: noisy by chance
    md = (root / "tables" / "v1" / "results.md").read_text()
    assert "signed by alice@example.org" in md and "unsigned |" in md
    assert "signed_by" in (root / "tables" / "v1" / "results.csv").read_text().splitlines()[0]
    # claims from signed records only: the unsigned one is left out, and said so
    capsys.readouterr()
    assert main(["claims", "--results", str(root), "--signed-only", "--format", "json"]) == 0
    assert "judging from 1 signed record(s); 1 unsigned left out" in capsys.readouterr().err


def test_an_altered_signed_record_is_refused(tmp_path, signed_folder):
    root, alice, signed, _ = signed_folder
    record, path = _record(tmp_path, 2)
    path.with_name(path.name + SIG_SUFFIX).write_bytes(sign(path.read_bytes(), alice))
    altered = json.loads(path.read_bytes())
    altered["metrics"]["compute_ratio"] = 1.01  # a better number, the hashes recomputed: still not alice's
    path.write_bytes(record_bytes(forge(altered)))
    [outcome] = submit([path], root)
    assert outcome.status == REFUSED
    assert outcome.reason == "signature: the signature does not verify: the record was altered after it was signed"
    # the same inside the folder: a stored signature swapped for another record's is reported, not read
    stored, _ = results_folder.read_folder(root)
    other = next(s for s in stored if s.signer is None)
    signed_one = next(s for s in stored if s.signer)
    sig = signed_one.path.with_name(signed_one.path.name + SIG_SUFFIX)
    other.path.with_name(other.path.name + SIG_SUFFIX).write_bytes(sig.read_bytes())
    stored, problems = results_folder.read_folder(root)
    assert [p.path for p in problems] == [other.path] and problems[0].reason.startswith("signature: ")
    # a key the folder does not name is refused too
    mallory = _key(tmp_path, "mallory")
    _, fresh = _record(tmp_path, 3)
    [outcome] = submit([fresh], root, key=mallory)
    assert outcome.status == REFUSED and "does not name" in outcome.reason


def test_a_folder_can_require_signatures_and_its_settings_are_validated(tmp_path, signed_folder):
    root, alice, _, _ = signed_folder
    (root / "settings.json").write_text('{"require_signatures": true}')
    _, path = _record(tmp_path, 4)
    [outcome] = submit([path], root)
    assert outcome.status == REFUSED and "requires signed records" in outcome.reason
    assert [o.status for o in submit([path], root, key=alice)] == [TAKEN]
    (root / "settings.json").write_text('{"require_signatures": "yes", "color": 1}')
    _, path = _record(tmp_path, 5)
    [outcome] = submit([path], root, key=alice)
    assert outcome.status == REFUSED and "settings.json: require_signatures: Input should be a valid boolean" in (
        outcome.reason
    )


CHROMIUM = find_chromium()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)")
@pytest.mark.slow
def test_the_site_shows_signed_and_unsigned_in_a_browser(tmp_path, signed_folder):
    root, _, signed, unsigned = signed_folder
    assert main(["site", "--results", str(root)]) == 0
    browser = Browser(CHROMIUM, tmp_path / "profile")
    try:
        shown = {}
        for record in (signed, unsigned):
            browser.goto((root / "site" / "records" / f"{record['id']}.html").as_uri())
            shown[record["id"]] = browser.evaluate(
                "Array.from(document.querySelectorAll('dt')).filter(d => d.textContent === 'Submitted')"
                ".map(d => d.nextElementSibling.textContent).join()"
            )
        cite_text = browser.evaluate("document.getElementById('cite').textContent")
    finally:
        browser.close()
    assert shown == {signed["id"]: "signed by alice@example.org", unsigned["id"]: "unsigned"}
    assert "Submitted: unsigned" in cite_text
