"""What a CI system reads from `bench check`: a JUnit XML file (one test case per cell; a regressed cell fails with
its numbers and tolerance in the message) and a Markdown summary (a table of every cell, for a pull-request comment
or a GitHub job summary). Cells the check could not run (an encoder it may not train, or one whose checkpoint is not
the baseline's) are failed test cases too: a CI job must never read them as passed.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

from bench.check import CellResult
from bench.report.metrics import style
from bench.store import writing


def shown(value: float, metric: str) -> str:
    """A stored value in the units tables use (points for a proportion); "–" for none."""
    return "–" if value is None or math.isnan(value) else f"{value * style(metric).scale:.1f}"


def baseline_shown(r: CellResult) -> str:
    """The baseline value, with the value it replaced when the baseline was refreshed and the cell moved."""
    if math.isnan(r.previous) or abs(r.previous - r.baseline) < 1e-12:
        return shown(r.baseline, r.metric)
    return f"{shown(r.previous, r.metric)} → {shown(r.baseline, r.metric)}"


def failure_message(r: CellResult) -> str:
    """One line: the numbers, the tolerance and why the cell failed."""
    return (f"baseline {shown(r.baseline, r.metric)}, now {shown(r.current, r.metric)}, tolerance "
            f"±{shown(r.tolerance, r.metric)}: {r.reason}")


def write_junit(path: Path, results: list[CellResult], seconds: float = 0.0, suite: str = "bench check") -> None:
    """One ``testcase`` per cell (classname ``bench-check.<encoder>``), a ``failure`` for each cell not ok."""
    failures, skipped = sum(not r.ok and not r.skipped for r in results), sum(r.skipped for r in results)
    root = ET.Element("testsuites", name=suite, tests=str(len(results)), failures=str(failures), errors="0",
                      skipped=str(skipped), time=f"{seconds:.1f}")
    cases = ET.SubElement(root, "testsuite", name=suite, tests=str(len(results)), failures=str(failures),
                          errors="0", skipped=str(skipped), time=f"{seconds:.1f}")
    for r in results:
        case = ET.SubElement(cases, "testcase", classname=f"bench-check.{r.encoder}", name=r.name, time="0")
        if r.skipped:
            ET.SubElement(case, "skipped", message=r.reason)
        elif not r.ok:
            failure = ET.SubElement(case, "failure", message=failure_message(r), type="regression")
            failure.text = failure_message(r) + (f"\ntolerance: {r.tolerance_reason}" if r.tolerance_reason else "")
        elif r.tolerance_reason:
            ET.SubElement(case, "system-out").text = f"tolerance: {r.tolerance_reason}"
    _write(path, ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n", "JUnit XML file")


def summary_markdown(results: list[CellResult], notes: list[str], headline: str) -> str:
    """The Markdown summary: a headline, a table of every cell (failed cells first), then the notes."""
    lines = [f"### {headline}", "", "| cell | baseline | now | Δ | tolerance | verdict |",
             "|---|---:|---:|---:|---:|---|"]
    for r in sorted(results, key=lambda r: r.ok):
        delta = r.current - r.baseline
        lines.append(f"| {r.name} | {baseline_shown(r)} | {shown(r.current, r.metric)} | "
                     f"{'–' if math.isnan(delta) else f'{delta * style(r.metric).scale:+.1f}'} | "
                     f"±{shown(r.tolerance, r.metric)} | {verdict(r)} |")
    refreshed = [r for r in results if baseline_shown(r) != shown(r.baseline, r.metric)]
    if refreshed:
        lines += ["", f"{len(refreshed)} cell(s) of the baseline were refreshed with a moved value (old → new)."]
    lines += [""] + [f"- {n}" for n in notes] + ([""] if notes else [])
    return "\n".join(lines)


def verdict(r: CellResult) -> str:
    if r.skipped:
        return r.reason or "not run"
    return "ok" if r.ok else f"**REGRESSED**: {r.reason}"


def write_summary(path: Path, text: str) -> None:
    _write(path, text, "Markdown summary")


def _write(path: Path, text: str, what: str) -> None:
    path = Path(path)
    with writing(path, what):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
