"""The report table as Markdown, LaTeX (booktabs) and CSV."""

from __future__ import annotations

import math
import re
from pathlib import Path

from bench.report.metrics import style
from bench.report.tables import Column, ReportTable

DAGGER = "†"
MISSING = "–"


def number(tab: ReportTable, enc: str, col: Column) -> str:
    v = tab.display(enc, col)
    return MISSING if math.isnan(v) else f"{v:.{style(col.metric).digits}f}"


def interval_text(tab: ReportTable, enc: str, col: Column) -> str:
    iv = tab.interval(enc, col) if tab.ci else None
    d = style(col.metric).digits
    return "" if iv is None else f"[{iv[0]:.{d}f}, {iv[1]:.{d}f}]"


def header_labels(tab: ReportTable) -> list[str]:
    return [f"{tab.dataset_label(c)} {c.eps_label}" for c in tab.columns]


def legend(tab: ReportTable) -> list[str]:
    out = list(tab.notes)
    if len(tab.encoders) > 1:
        out.append("best per column in bold")
    if tab.flags:
        out.append(f"{DAGGER} a failed sanity check or non-finite samples (listed below)")
    return out


def to_markdown(tab: ReportTable) -> str:
    lines = ["| " + " | ".join(["encoder", *header_labels(tab)]) + " |",
             "|" + "|".join(["---"] + ["---:"] * len(tab.columns)) + "|"]
    for enc in tab.encoders:
        cells = []
        for col in tab.columns:
            text = number(tab, enc, col)
            if enc in tab.best(col):
                text = f"**{text}**"
            text += DAGGER if (enc, col) in tab.flags else ""
            iv = interval_text(tab, enc, col)
            cells.append(f"{text} {iv}" if iv else text)
        lines.append("| " + " | ".join([enc, *cells]) + " |")
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "ε": r"$\epsilon$"}


def latex_escape(text: str) -> str:
    return re.sub("|".join(re.escape(k) for k in _LATEX_SPECIAL), lambda m: _LATEX_SPECIAL[m.group()], str(text))


def _spans(labels: list[str]) -> list[tuple[str, int]]:
    """Runs of equal neighbouring labels: [("shape", 3), ("colour", 3), ...]."""
    spans: list[tuple[str, int]] = []
    for label in labels:
        if spans and spans[-1][0] == label:
            spans[-1] = (label, spans[-1][1] + 1)
        else:
            spans.append((label, 1))
    return spans


def _header_row(spans: list[tuple[str, int]]) -> tuple[str, str]:
    cells, rules, start = [], [], 2
    for label, width in spans:
        cells.append(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(label)}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
        start += width
    return " & " + " & ".join(cells) + r" \\", " ".join(rules)


def to_latex(tab: ReportTable) -> str:
    """A booktabs table: a task row when there are several tasks, a dataset row, an ε row."""
    lines = [f"% bench report: suite {latex_escape(tab.suite)}; " + latex_escape("; ".join(legend(tab))),
             r"\begin{tabular}{l" + "r" * len(tab.columns) + "}", r"\toprule"]
    if len(tab.tasks) > 1:
        lines += list(_header_row(_spans([c.task for c in tab.columns])))
    datasets = [(c.task, c.dataset) for c in tab.columns]
    spans = _spans(datasets)
    lines += list(_header_row([(tab.dataset_label(Column(t, d, "0", 0.0, "")), w) for (t, d), w in spans]))
    lines.append("Encoder & " + " & ".join(latex_escape(c.eps_label) for c in tab.columns) + r" \\")
    lines.append(r"\midrule")
    for enc in tab.encoders:
        cells = []
        for col in tab.columns:
            text = number(tab, enc, col)
            text = r"\textbf{" + text + "}" if enc in tab.best(col) else text
            text += r"$^\dagger$" if (enc, col) in tab.flags else ""
            iv = interval_text(tab, enc, col)
            cells.append(text + (r"\,{\scriptsize" + iv + "}" if iv else ""))
        lines.append(latex_escape(enc) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_csv(tab: ReportTable, path: Path) -> Path:
    """Printed values (and intervals when asked); two header rows: dataset, ε."""
    tab.frame(with_ci=tab.ci is not None).to_csv(path)
    return path
