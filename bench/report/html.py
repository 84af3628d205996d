"""One self-contained HTML page: the table, the figures, the failed sanity checks, the training curves, the
adversarial-example gallery and the runs behind it. Images are inlined as data URIs and no script or external
resource is used, so the file can be mailed, archived or opened offline.

Gallery contract: any PNG under ``<out>/gallery/`` (searched recursively, shown in path order) is included, with its
path relative to that directory as the caption, followed by the text of a sibling ``<name>.txt`` when one exists.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import pandas as pd

from bench.report.render import DAGGER, interval_text, legend, number
from bench.report.sanity import Flag
from bench.report.tables import ReportTable

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}
thead th{border-bottom:2px solid #444}
td.best{font-weight:bold}
.flag{color:#b00020;cursor:help}
.ci{color:#666;font-size:11px}
figure{display:inline-block;margin:0.5em;vertical-align:top}
figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:12px;color:#555;max-width:420px}
.notes li{font-size:13px}
.small td,.small th{font-size:12px}
"""


@dataclass(frozen=True)
class Figure:
    title: str
    png: Path


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def gallery_images(out_root: Path) -> list[tuple[Path, str]]:
    """(png, caption) for every PNG under ``<out>/gallery/``."""
    root = Path(out_root) / "gallery"
    if not root.is_dir():
        return []
    found = []
    for png in sorted(root.rglob("*.png")):
        caption = str(png.relative_to(root))
        side = png.with_suffix(".txt")
        if side.is_file():
            caption += " — " + side.read_text(errors="replace").strip()
        found.append((png, caption))
    return found


def table_html(tab: ReportTable) -> str:
    spans: list[list] = []
    for col in tab.columns:
        label = tab.dataset_label(col)
        if spans and spans[-1][0] == label:
            spans[-1][1] += 1
        else:
            spans.append([label, 1])
    head1 = "".join(f'<th colspan="{w}" style="text-align:center">{escape(label)}</th>' for label, w in spans)
    head2 = "".join(f"<th>{escape(c.eps_label)}</th>" for c in tab.columns)
    body = []
    for enc in tab.encoders:
        cells = []
        for col in tab.columns:
            cls = ' class="best"' if enc in tab.best(col) else ""
            text = escape(number(tab, enc, col))
            checks = tab.flags.get((enc, col))
            if checks:
                text += f'<span class="flag" title="{escape(", ".join(checks))}">{DAGGER}</span>'
            iv = interval_text(tab, enc, col)
            if iv:
                text += f'<br><span class="ci">{escape(iv)}</span>'
            cells.append(f"<td{cls}>{text}</td>")
        body.append(f"<tr><td>{escape(enc)}</td>{''.join(cells)}</tr>")
    return (f'<table id="results"><thead><tr><th rowspan="2">encoder</th>{head1}</tr><tr>{head2}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def frame_html(df: pd.DataFrame, table_id: str) -> str:
    return df.to_html(index=False, escape=True, border=0, table_id=table_id, classes="small", na_rep="–")


def flags_html(flags: list[Flag]) -> str:
    if not flags:
        return "<p>No failed sanity checks among the results shown.</p>"
    df = pd.DataFrame([{"encoder": f.encoder, "task": f.task, "dataset": f.dataset, "ε": f.eps_str,
                        "attack": f.attack, "check": f.check, "run": f.run_id, "detail": f.detail} for f in flags])
    return frame_html(df, "sanity")


def build_html(tab: ReportTable, figures: list[Figure], training: pd.DataFrame | None,
               gallery: list[tuple[Path, str]], title: str = "Robustness report") -> str:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    shas = ", ".join(sorted(tab.rows["git_sha"].astype(str).unique())) if len(tab.rows) else "–"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{escape(title)}</h1>",
             f"<p>Suite <b>{escape(tab.suite)}</b>; code {escape(shas)}; generated {escape(now)}.</p>",
             "<h2>Results</h2>", table_html(tab),
             "<ul class='notes'>" + "".join(f"<li>{escape(n)}</li>" for n in legend(tab)) + "</ul>",
             "<h2>Sanity checks</h2>", flags_html(tab.flag_list), "<h2>Figures</h2>"]
    for fig in figures:
        parts.append(f"<figure><img src='{data_uri(fig.png)}' alt='{escape(fig.title)}'>"
                     f"<figcaption>{escape(fig.title)}</figcaption></figure>")
    if training is not None and len(training):
        parts += ["<h2>Training</h2>", frame_html(training, "training")]
    if gallery:
        parts.append(f"<h2>Adversarial examples ({len(gallery)})</h2>")
        for png, caption in gallery:
            parts.append(f"<figure class='gallery'><img src='{data_uri(png)}' alt='{escape(caption)}'>"
                         f"<figcaption>{escape(caption)}</figcaption></figure>")
    runs = tab.rows[["run_id", "encoder", "task", "dataset", "attack", "eps_str", "n_samples", "seed", "seconds",
                     "git_sha"]].sort_values(["encoder", "task", "dataset", "eps_str"])
    parts += ["<h2>Runs</h2><p>Full provenance of one: <code>bench report --run RUN_ID</code>.</p>",
              frame_html(runs, "runs"), "</body></html>"]
    return "\n".join(parts) + "\n"
