"""`bench site`: the results folder as a static website. Built from the committed results/, checked by reading the
files (every claim and record has a page, links resolve, pages are byte-identical when rebuilt, accessible
markup) and in headless Chromium (tests/site_browser.py): the explorer filtered by keyboard against the records
counted here from the record files, a claim link and a record link followed, the cite blocks' commands, phone
width, and no request that leaves file://. Screenshots of the home page and a claim page go to
results/site-screenshots/ ($BENCH_SITE_SCREENSHOTS moves them); the run prints where."""

from __future__ import annotations

import copy
import html
import json
import os
import re
import shlex
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from site_browser import Browser, find_chromium

from harness import repo_root
from harness.cli import main
from harness.config.groups import BenchConfig
from harness.records import folder as results_folder
from harness.records.folder import hardware_key
from harness.records.record import Record
from harness.report import claims
from harness.report.frame import config_label, grouped, records_frame
from harness.report.site import pages, write_site

RESULTS = repo_root() / "results"


def raw_records() -> list[dict]:
    """The committed record files as JSON, read here without the harness (the oracle the site is held to)."""
    return [json.loads(p.read_text()) for p in sorted((RESULTS / "records").glob("*/*.json"))]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    assert main(["site", "--results", str(RESULTS), "--out", str(out)]) == 0
    return out


class Page(HTMLParser):
    """What the checks read from one page: tags with their attributes, and h1 texts."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.h1: list[str] = []
        self._in_h1 = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_h1 = self._in_h1 or tag == "h1"
        if tag == "h1":
            self.h1.append("")

    def handle_endtag(self, tag):
        self._in_h1 = self._in_h1 and tag != "h1"

    def handle_data(self, data):
        if self._in_h1:
            self.h1[-1] += data

    def all(self, tag: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag]


def html_pages(site: Path) -> dict[Path, Page]:
    return {p: Page(p.read_text()) for p in sorted(site.rglob("*.html"))}


def test_every_claim_and_every_record_has_a_page_linked_from_the_explorer(site):
    registry = claims.load_registry()
    for claim in registry:
        text = (site / "claims" / f"{claim['id']}.html").read_text()
        assert f"Claim {claim['id']}:" in text
    ids = {r["id"] for r in raw_records()}
    assert len(ids) == len(list((RESULTS / "records").glob("*/*.json"))) > 0
    explorer = Page((site / "explorer.html").read_text())
    linked = {
        a["href"][len("records/") : -len(".html")]
        for a in explorer.all("a")
        if a.get("href", "").startswith("records/")
    }
    assert linked == ids
    assert {p.stem for p in (site / "records").glob("*.html")} == ids
    rows = (site / "explorer.html").read_text().count("<tr data-status=")
    assert rows == len(ids)
    csv_lines = (site / "records.csv").read_text().splitlines()
    assert len(csv_lines) == len(ids) + 1 and "step_tokens_per_s" in csv_lines[0]


def test_every_link_resolves_and_nothing_points_off_the_disk(site):
    for path, page in html_pages(site).items():
        for tag, attr in (("a", "href"), ("img", "src"), ("link", "href"), ("script", "src")):
            for a in page.all(tag):
                url = a.get(attr)
                if url is None:
                    continue
                assert not re.match(r"^[a-z]+:|^//", url), f"{path.name}: {url} leaves the disk"
                target = url.split("#")[0]
                if target:
                    assert (path.parent / target).exists(), f"{path.relative_to(site)}: {url} does not exist"
    script = (site / "site.js").read_text()
    assert "fetch(" not in script and "XMLHttpRequest" not in script


def test_pages_are_accessible_markup(site):
    for path, page in html_pages(site).items():
        name = path.relative_to(site)
        assert len(page.h1) == 1 and page.h1[0].strip(), name
        assert any(m.get("name") == "viewport" for m in page.all("meta")), name
        assert page.all("html")[0].get("lang") == "en", name
        assert all(img.get("alt", "").strip() for img in page.all("img")), f"{name}: a plot without alt text"
        assert len(page.all("table")) <= len([t for t, _ in page.tags if t == "thead"]), (
            f"{name}: a table without headers"
        )
        labelled = {a.get("for") for a in page.all("label")}
        for control in page.all("select") + page.all("input"):
            assert control.get("id") in labelled, f"{name}: control {control.get('id')} has no label"
    claim_page = Page((site / "claims" / "1.html").read_text())
    assert claim_page.all("img"), "claim 1 shows the compute-ratio plot"


def test_rebuilding_changes_no_byte_and_rewrites_nothing(site, tmp_path):
    stored, _ = results_folder.read_folder(RESULTS)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(site.rglob("*")) if p.is_file()}
    stale = site / "records" / "0000000000000000.html"
    stale.write_text("a page of a record the folder does not have")
    write_site(stored, RESULTS, site)
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(site.rglob("*")) if p.is_file()}
    assert after == before and not stale.exists()
    # another folder as deep below the same parent (links to the plots are relative): the same bytes
    other = tmp_path / "site"
    write_site(stored, RESULTS, other)
    assert {p.relative_to(other): p.read_bytes() for p in other.rglob("*") if p.is_file()} == {
        p.relative_to(site): b for p, (b, _) in before.items()
    }


def test_hardware_pages_put_the_same_configuration_side_by_side(site):
    cases: dict[tuple, set[str]] = {}
    for r in raw_records():
        if r["status"] == "ok":
            cfg = r["config"]
            case = (config_label(BenchConfig.from_dict(cfg)), cfg["method"]["name"], cfg["checkpointing"]["enabled"])
            cases.setdefault(case, set()).add(hardware_key(r["provenance"]))
    for hw in sorted({h for hws in cases.values() for h in hws}):
        section = (site / "hardware" / f"{hw}.html").read_text().split('id="sbs-h"')[1].split("</section>")[0]
        others = {o for hws in cases.values() if hw in hws for o in hws} - {hw}
        assert all(f'href="{o}.html"' in section for o in others), hw
        assert ("No configuration measured here" in section) == (not others)


def _groups() -> pd.DataFrame:
    records, _ = results_folder.read_folder(RESULTS)
    return grouped(records_frame(records, RESULTS))


def _listed(site: Path, claim: dict) -> tuple[str, list[list[str]]]:
    """A claim page's "Configurations that fed it": the section, and each row's record ids, in page order."""
    section = (site / "claims" / f"{claim['id']}.html").read_text().split('id="cfg-h"')[1].split("</section>")[0]
    body = section.split("<tbody>")[1].split("</tbody>")[0] if "<tbody>" in section else ""
    return section, [re.findall(r"records/([0-9a-f]{16})\.html", tr) for tr in body.split("<tr>")[1:]]


def test_feeding_configurations_are_what_the_judges_read(site):
    """The rows a verdict carries are the rows the judge read: judging only them gives the verdict and the figures
    judging the whole folder gives, so they hold everything the verdict was made from; they are the rows the
    claim's page lists; only the analytic claims carry none."""
    groups = _groups()
    for claim in claims.load_registry():
        whole = claims.judge(claim, groups)
        section, listed = _listed(site, claim)
        if whole.rows is None:
            assert claim["judge"]["kind"] in {"lora_405b", "not_measured"}, f"claim {claim['id']} reads no rows"
            assert "analytic: computed from the model" in section and listed == []
            continue
        again = claims.judge(claim, whole.rows)
        assert (again.verdict, again.measured, again.predicted) == (whole.verdict, whole.measured, whole.predicted)
        assert all(label in whole.hardware for label in set(whole.rows["hardware_label"])), claim["id"]
        assert whole.rows.index.is_monotonic_increasing and whole.rows.index.isin(groups.index).all()
        assert listed == [str(ids).split() for ids in whole.rows["ids"]], claim["id"]


def test_the_attention_claims_page_shows_the_rows_its_verdict_read(site):
    """The attention claim's selection exists once (harness/report/selection.attention_cells): the page lists the
    Verdict's rows, every llama configuration measured with both kernels at enough lengths, nothing re-selected."""
    groups = _groups()
    [claim] = [c for c in claims.load_registry() if c["judge"]["kind"] == "attention"]
    verdict = claims.judge(claim, groups)
    rows = verdict.rows
    assert len(rows) >= 2 * claim["judge"]["min_lengths"] and set(rows["model"]) == {"llama"}
    assert set(rows["attn"]) == {"eager", "sdpa"} and rows["activations_bytes_median"].notna().all()
    for _, cell in rows.groupby(
        ["hardware", "preset", "precision", "method", "batch_size", "checkpointing", "seq_len"]
    ):
        assert set(cell["attn"]) >= {"eager", "sdpa"}  # every listed length was measured with both kernels
    # what the judge left out: the llama rows of other lengths or families are not listed
    llama = groups[(groups["model"] == "llama") & (groups["n"] > 0) & groups["activations_bytes_median"].notna()]
    assert len(llama) > len(rows)
    section, listed = _listed(site, claim)
    assert listed == [str(ids).split() for ids in rows["ids"]]
    assert f"{len(rows)} configuration(s): the configurations the judge reads" in section
    assert [cfg for cfg in re.findall(r"<td>(llama:[^<]*)</td>", section)] == list(rows["config"])


def test_a_claim_page_shows_every_page_of_its_figures(site):
    """A paged figure (harness/report/figure_pages.py) is shown whole on a claim page, in page order."""
    from harness.report.figure_pages import base_stem, figure_pages

    for path in sorted((site / "claims").glob("*.html")):
        shown = [(path.parent / a["src"]).resolve() for a in Page(path.read_text()).all("img")]
        for svg in {s for s in shown if s.suffix == ".svg"}:
            pages = [p.resolve() for p in figure_pages(svg.parent, base_stem(svg))]
            assert [s for s in shown if s in pages] == pages, (path.name, svg.name)


def test_cite_blocks_hold_the_commands(site):
    for claim in claims.load_registry():
        text = (site / "claims" / f"{claim['id']}.html").read_text()
        for suite in claim["suite"]:
            assert f"make bench SUITE={suite}\n" in text
    record = raw_records()[0]
    text = (site / "records" / f"{record['id']}.html").read_text()
    args = shlex.quote(" ".join(shlex.quote(o) for o in record["overrides"]))
    assert html.escape(f"make bench SUITE= ARGS={args}") in text


def test_an_out_of_memory_record_has_a_page_and_a_flag(tmp_path):
    """Not fitting is a result: the explorer flags it and its page says where it failed (no committed record is oom
    yet, so one is made from a committed record)."""
    stored, _ = results_folder.read_folder(RESULTS)
    ok = stored[-1]
    record = copy.deepcopy(ok.to_dict())
    record.update(
        id="f" * 16,
        status="oom",
        error={"type": "OutOfMemoryError", "phase": "step", "message": "CUDA out of memory.", "traceback": ""},
        metrics={"oom": {"budget_emulated": True, "request_bytes": 2 * 1024**3}},
    )
    oom = Record(record, ok.path.with_name(f"oom_{record['id']}_{'0' * 12}.json"))  # made here: not validated
    site = pages([*stored, oom], RESULTS, tmp_path / "site")
    row = next(line for line in site["explorer.html"].splitlines() if f"records/{record['id']}.html" in line)
    assert "out of memory (step)" in row and 'data-status="oom"' in row
    page = site[f"records/{record['id']}.html"]
    assert "Failed in" in page and "CUDA out of memory." in page and "2.00 GiB" in page


def test_the_site_reads_and_migrates_each_record_once(tmp_path, monkeypatch):
    """`bench site` reads the folder once: every record is validated (and migrated) and its typed config built
    once, then handed to every page (the claim pages, the explorer, the hardware and record pages)."""
    from harness.records import record as record_mod

    checked, built = [], []
    check = record_mod.check

    class Counted:  # the typed config as the Record view builds it (harness/records/record.py)
        @staticmethod
        def from_dict(data: dict) -> BenchConfig:
            built.append(data)
            return BenchConfig.from_dict(data)

    monkeypatch.setattr(record_mod, "check", lambda data: checked.append(data["id"]) or check(data))
    monkeypatch.setattr(record_mod, "BenchConfig", Counted)
    assert main(["site", "--results", str(RESULTS), "--out", str(tmp_path / "site")]) == 0
    assert sorted(checked) == sorted(r["id"] for r in raw_records()) and len(built) == len(checked)


def test_site_command_reports_an_empty_folder(tmp_path, capsys):
    assert main(["site", "--results", str(tmp_path), "--out", str(tmp_path / "site")]) == 1
    assert "no valid records" in capsys.readouterr().err


def test_the_site_modules_load_no_torch():
    code = (
        "import sys, harness.report.site, harness.report.site.claim_pages\n"
        "print(sorted({'torch', 'transformers', 'peft', 'bitsandbytes'} & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


# --- in a real browser -------------------------------------------------------------------------------------------

CHROMIUM = find_chromium()
browser_test = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)"
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(CHROMIUM, tmp_path_factory.mktemp("chromium-profile"))
    b.viewport(1280, 900)
    yield b
    b.close()


def screenshots_dir() -> Path:
    return Path(os.environ.get("BENCH_SITE_SCREENSHOTS") or RESULTS / "site-screenshots")


def visible_rows(browser) -> list[dict]:
    return browser.evaluate(
        "Array.from(document.querySelectorAll('#records tbody tr')).filter(r => !r.hidden)"
        ".map(r => Array.from(r.cells).map(c => c.getAttribute('data-v')))"
    )


@browser_test
@pytest.mark.slow
def test_explorer_filters_by_keyboard_and_sorts(site, browser):
    records = raw_records()
    browser.goto((site / "explorer.html").as_uri())
    assert (
        browser.evaluate("document.getElementById('shown').textContent")
        == f"{len(records)} of {len(records)} records shown"
    )
    # at 1280 px (the fixture's viewport) the compute ratio, time and memory columns are in view unscrolled
    for header in ("Compute ratio", "Step time", "Peak training"):
        right = browser.evaluate(
            "Array.from(document.querySelectorAll('#records th'))"
            f".find(t => t.textContent.includes('{header}')).getBoundingClientRect().right"
        )
        assert 0 < right <= browser.evaluate("window.innerWidth") == 1280, (header, right)
    browser.evaluate("document.getElementById('f-method').focus()")
    for _ in range(10):  # the keyboard, as a person without a mouse: arrow down until LoRA
        if browser.evaluate("document.getElementById('f-method').value") == "lora":
            break
        browser.key("ArrowDown", key_code=40)
    lora = [r for r in records if r["config"]["method"]["name"] == "lora"]
    method_col = 2  # Record, Model, Method
    rows = visible_rows(browser)
    assert len(rows) == len(lora) > 0 and {r[method_col] for r in rows} == {"lora"}
    assert {r[0] for r in rows} == {r["id"] for r in lora}
    assert browser.evaluate("location.hash") == "#method=lora"
    # a number filter on top: compute ratio above 2, against the records' own figures
    browser.evaluate("document.getElementById('f-compute_ratio').focus()")
    browser.call("Input.insertText", {"text": ">2"})
    above = [r for r in lora if r["status"] == "ok" and r["metrics"]["compute_ratio"] > 2]
    assert len(visible_rows(browser)) == len(above)
    # sorting by step tokens/s: the shown rows in numeric order, then reversed
    col = browser.evaluate(
        "Array.from(document.querySelectorAll('#records th')).findIndex(t => t.textContent.includes('Step tokens'))"
    )
    browser.evaluate(f"document.querySelectorAll('#records th button')[{col}].click()")
    values = [float(r[col]) for r in visible_rows(browser)]
    assert values == sorted(values)
    browser.evaluate(f"document.querySelectorAll('#records th button')[{col}].click()")
    assert [float(r[col]) for r in visible_rows(browser)] == sorted(values, reverse=True)
    browser.evaluate("document.querySelector('#filters button[type=reset]').click()")
    browser.wait_for(f"document.querySelectorAll('#records tbody tr:not([hidden])').length === {len(records)}")


@browser_test
@pytest.mark.slow
def test_claim_and_record_links_cite_blocks_and_screenshots(site, browser, capsys):
    shots = screenshots_dir()
    browser.goto((site / "index.html").as_uri())
    home = browser.screenshot(shots / "home.png")
    claim = claims.load_registry()[0]
    browser.evaluate(f"document.querySelector('a[href=\"claims/{claim['id']}.html\"]').click()")
    browser.wait_for(f"location.href.endsWith('/claims/{claim['id']}.html') && document.readyState === 'complete'")
    assert browser.evaluate("document.querySelector('h1').textContent").startswith(f"Claim {claim['id']}:")
    cite = browser.evaluate("document.getElementById('cite').textContent")
    assert all(f"make bench SUITE={s}" in cite for s in claim["suite"]) and "make report" in cite
    assert browser.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    browser.evaluate("document.querySelector('button.copy').click()")
    assert browser.wait_for("document.querySelector('.copied').textContent")
    claim_shot = browser.screenshot(shots / f"claim-{claim['id']}.png")
    # a record from the claim's configurations, and its `bench cite` block
    href = browser.evaluate("document.querySelector('a[href^=\"../records/\"]').getAttribute('href')")
    ident = href.split("/")[-1][: -len(".html")]
    browser.evaluate(f"document.querySelector('a[href=\"{href}\"]').click()")
    browser.wait_for(f"location.href.endsWith('/records/{ident}.html') && document.readyState === 'complete'")
    record = next(r for r in raw_records() if r["id"] == ident)
    cite = browser.evaluate("document.getElementById('cite').textContent")
    assert f"make bench SUITE= ARGS={shlex.quote(' '.join(shlex.quote(o) for o in record['overrides']))}" in cite
    assert f"git checkout {record['provenance']['git_sha']}" in cite
    with capsys.disabled():
        print(f"\nsite screenshots: {home} {claim_shot}")


@browser_test
@pytest.mark.slow
def test_phone_width_and_no_request_leaves_the_disk(site, browser):
    browser.viewport(390, 844, mobile=True)
    try:
        for page in (
            "index.html",
            "explorer.html",
            "claims/1.html",
            "hardware/index.html",
            f"records/{raw_records()[0]['id']}.html",
        ):
            browser.goto((site / page).as_uri())
            assert browser.evaluate("document.documentElement.scrollWidth") <= 390, f"{page} scrolls sideways"
    finally:
        browser.viewport(1280, 900)
    urls = browser.requested_urls()
    assert any(u.endswith("/style.css") for u in urls) and any(u.endswith(".svg") for u in urls)
    assert [u for u in urls if not u.startswith(("file://", "data:"))] == []


@browser_test
@pytest.mark.slow
def test_the_home_page_says_no_verdict_was_measured_on_a_gpu(site, browser):
    """With CPU records only (the committed folder), the home page says in words, on its first screen, that no
    verdict was measured on a GPU, and no claim about GPUs reads as found."""
    assert {r["provenance"]["device_type"] for r in raw_records()} == {"cpu"}
    browser.goto((site / "index.html").as_uri())
    note = browser.evaluate("document.getElementById('no-gpu-verdict').textContent")
    assert note.startswith("No verdict here has been measured on a GPU")
    assert browser.evaluate("document.getElementById('no-gpu-verdict').getBoundingClientRect().bottom") < 900
    badges = browser.evaluate("Array.from(document.querySelectorAll('td .verdict')).map(b => b.textContent)")
    about_gpus = [badges[i] for i, c in enumerate(claims.load_registry()) if c.get("gpu_subject")]
    assert about_gpus and all(b.startswith(("not yet measured on a GPU", "not measured")) for b in about_gpus)
