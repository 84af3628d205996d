"""Tables, plots, the HTML page and run cards, drawn only from the tidy rows of the store.

Modules: ``metrics`` (headline metric per task, display scale, direction), ``select`` (filters, latest run per cell,
the one-protocol-per-column rule), ``tables`` (the paper-style table), ``render`` (Markdown, LaTeX, CSV),
``bootstrap``, ``sanity`` (failed checks), ``plots``, ``training`` (training curves), ``html``, ``runcard``
(provenance of one run) and ``build`` (what `bench report` writes).
"""

from bench.report.render import to_latex, to_markdown
from bench.report.select import Filters
from bench.report.tables import ReportTable, build_table

table = build_table  # the name `bench run` and older callers use

__all__ = ["Filters", "ReportTable", "build_table", "table", "to_latex", "to_markdown"]
