"""Per hardware: what was measured on it (its records, configurations and plots), and the same configurations
side by side with every other hardware that measured them (the same configuration, method and checkpointing)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.records.folder import PLOTS
from harness.report.figure_pages import in_page_order
from harness.report.frame import memory_unit
from harness.report.selection import CONFIGURATION
from harness.report.site.markup import definitions, esc, figure, link, ms, page, ratio, sig, table


def summary(frame: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """One row per hardware: its key, label, device type, how many records and configurations."""
    rows = []
    for hw, part in frame.groupby("hardware", sort=True):
        rows.append(
            {
                "hardware": hw,
                "hardware_label": part["hardware_label"].iloc[0],
                "device_type": part["device_type"].iloc[0],
                "records": len(part),
                "configurations": int((groups["hardware"] == hw).sum()),
            }
        )
    return pd.DataFrame(rows, columns=["hardware", "hardware_label", "device_type", "records", "configurations"])


def _ids(ids: str) -> str:
    return " ".join(link(f"../records/{x}.html", x[:8]) for x in str(ids).split())


def _memory(rows: pd.DataFrame, *columns: str):
    """(format, unit name) for the memory columns of a table: MiB, or GiB once the largest reaches 4 GiB (the
    rule of every table and plot, harness/report/frame.py memory_unit)."""
    unit, name = memory_unit(pd.concat([rows[c] for c in columns]))
    return (lambda v: sig(v / unit) if pd.notna(v) else "—"), name


def _configurations(rows: pd.DataFrame) -> str:
    mem, unit = _memory(rows, "peak_step_bytes_median", "peak_infer_bytes_median")
    body = [
        [
            esc(r["config"]),
            esc(r["method"]),
            "on" if r["checkpointing"] else "off",
            f"{int(r['n'])} / {int(r['n_oom'])}",
            ratio(r["compute_ratio_median"]),
            ms(r["step_s_median"]),
            sig(r["step_tokens_per_s_median"]),
            mem(r["peak_step_bytes_median"]),
            mem(r["peak_infer_bytes_median"]),
            _ids(r["ids"]),
        ]
        for _, r in rows.iterrows()
    ]
    headers = [
        "Configuration",
        "Method",
        "Checkpointing",
        "Runs ok / out of memory",
        "Compute ratio (median)",
        "Step time (ms)",
        "Step tokens/s",
        f"Peak training ({unit})",
        f"Peak inference ({unit})",
        "Records",
    ]
    return table(headers, body, f"{len(rows)} configuration(s), medians over repeats", numeric=set(range(3, 9)))


# One case on several hardware: the same configuration by its structured columns (as the across-hardware plot
# matches them by label), method and checkpointing; its config_hash can differ where a later schema added fields.
CASE = [*CONFIGURATION, "method", "checkpointing"]


def case_keys(rows: pd.DataFrame) -> pd.Series:
    values = rows[CASE].astype(object)
    values = values.where(values.notna(), None)  # NaN != NaN: a missing value is one key, not many
    return pd.Series(list(values.itertuples(index=False, name=None)), index=rows.index, dtype=object)


def side_by_side(hw: str, groups: pd.DataFrame, labels: dict[str, str]) -> str:
    """This hardware's configurations that other hardware also measured: per configuration, one line per hardware
    (this one first), so that a reader compares down the column."""
    ok = groups[groups["n"] > 0]
    if ok.empty:  # only oom records: nothing measured to set side by side (and no _case column to group by)
        return "<p>No configuration measured here has been measured on other hardware yet.</p>"
    ok = ok.assign(_case=case_keys(ok), _other=ok["hardware"] != hw)
    mine = set(ok.loc[ok["hardware"] == hw, "_case"])
    shared = ok[ok["_case"].map(lambda k: k in mine)]
    shared = shared[shared.groupby("_case")["hardware"].transform("nunique") > 1]
    if shared.empty:
        return "<p>No configuration measured here has been measured on other hardware yet.</p>"
    mem, unit = _memory(shared, "peak_step_bytes_median")
    body = []
    for _, r in shared.sort_values(
        ["config", "method", "checkpointing", "_other", "hardware", "config_hash"]
    ).iterrows():
        body.append(
            [
                esc(f"{r['config']} · {r['method']} · checkpointing {'on' if r['checkpointing'] else 'off'}"),
                link(f"{r['hardware']}.html", labels[r["hardware"]])
                if r["_other"]
                else f"<strong>{esc(labels[hw])}</strong>",
                esc(r["torch"]),
                ratio(r["compute_ratio_median"]),
                ms(r["step_s_median"]),
                sig(r["step_tokens_per_s_median"]),
                mem(r["peak_step_bytes_median"]),
            ]
        )
    return table(
        [
            "Configuration",
            "Hardware",
            "torch",
            "Compute ratio",
            "Step time (ms)",
            "Step tokens/s",
            f"Peak training ({unit})",
        ],
        body,
        f"{shared['_case'].nunique()} configuration(s) measured here and elsewhere",
        numeric={3, 4, 5, 6},
    )


def hardware_page(
    hw: str, frame: pd.DataFrame, groups: pd.DataFrame, labels: dict[str, str], root: Path, out: Path
) -> str:
    part = frame[frame["hardware"] == hw]
    page_dir = out / "hardware"
    plots = in_page_order(list((root / PLOTS / hw).glob("*.svg")))
    first = part.iloc[0]
    ok = int((part["status"] == "ok").sum())
    facts = [
        ("Device", esc(first["device_type"])),
        ("Records", f"{len(part)} ({ok} ok, {len(part) - ok} out of memory)"),
        ("torch builds", esc(", ".join(sorted(part["torch"].dropna().unique())))),
        ("Software environments", esc(", ".join(sorted(part["environment"].unique())))),
        ("backprop-bench versions", esc(", ".join(sorted(part["harness_version"].dropna().unique())))),
        ("Measured", esc(f"{part['utc_time'].min()} to {part['utc_time'].max()}")),
        ("In the explorer", link(f"../explorer.html#hardware={hw}", f"these {len(part)} records")),
    ]
    body = (
        definitions(facts)
        + '\n<section aria-labelledby="cfg-h"><h2 id="cfg-h">What was measured</h2>'
        + _configurations(groups[groups["hardware"] == hw])
        + "</section>\n"
        + '<section aria-labelledby="sbs-h"><h2 id="sbs-h">The same configurations on other hardware</h2>'
        + side_by_side(hw, groups, labels)
        + "</section>\n"
        + '<section aria-labelledby="plots-h"><h2 id="plots-h">Plots</h2>'
        + ("".join(figure(p, page_dir, labels[hw]) for p in plots) or "<p>No plots: run <code>bench plot</code>.</p>")
        + "</section>"
    )
    return page(labels[hw], body, 1, f"Benchmarks of backpropagation measured on {labels[hw]}")


def hardware_index(hardware: pd.DataFrame, root: Path, out: Path) -> str:
    rows = [
        [
            link(f"{h['hardware']}.html", h["hardware_label"]),
            esc(h["device_type"]),
            str(h["records"]),
            str(h["configurations"]),
        ]
        for _, h in hardware.iterrows()
    ]
    across = root / PLOTS / "across_hardware.svg"
    body = table(
        ["Hardware", "Device", "Records", "Configurations"], rows, "Hardware in the results folder", numeric={2, 3}
    )
    if across.exists():
        body += '<section aria-labelledby="across-h"><h2 id="across-h">Across hardware</h2>'
        body += figure(across, out / "hardware", None) + "</section>"
    return page("Hardware", body, 1, "Every piece of hardware in the results folder")
