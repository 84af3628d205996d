"""Figures drawn from the report table (so they always show exactly the table's numbers), as PNG and SVG."""

from __future__ import annotations

import math
from pathlib import Path

from bench.report.metrics import style
from bench.report.tables import AVERAGE, Column, ReportTable

MARKERS = "o^sDvP*X"


def pyplot():
    # deferred: matplotlib (pyplot takes seconds to import; only a report with plots needs it)
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "bench-report"  # stable SVG ids: the same report gives the same file
    import matplotlib.pyplot as plt

    return plt


def save(fig, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=120)
    fig.savefig(paths[1], metadata={"Date": None})
    pyplot().close(fig)
    return paths


def _limits(ax, metric: str, axis: str = "y") -> None:
    """Percentages on a fixed 0–100 axis, so figures of different reports compare by eye."""
    upper = style(metric).upper
    if upper is not None:
        margin = 0.02 * upper
        (ax.set_ylim if axis == "y" else ax.set_xlim)(-margin, upper + margin)


def _panels(tab: ReportTable) -> list[tuple[str, str]]:
    return list(dict.fromkeys((c.task, c.dataset) for c in tab.columns))


def _title(tab: ReportTable, task: str, dataset: str) -> str:
    return tab.dataset_label(Column(task, dataset, "0", 0.0, ""))


def _grid(plt, n: int, width: float = 3.4, height: float = 3.0, per_row: int = 4):
    rows = math.ceil(n / per_row)
    cols = min(n, per_row)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def plot_metric_vs_eps(tab: ReportTable, stem: Path) -> list[Path]:
    """Each task's headline metric against ε, one line per encoder, one panel per dataset (and average)."""
    plt = pyplot()
    panels = _panels(tab)
    fig, axes = _grid(plt, len(panels))
    for ax, (task, dataset) in zip(axes, panels):
        cols = sorted([c for c in tab.columns if (c.task, c.dataset) == (task, dataset) and not c.is_gap],
                      key=lambda c: c.eps)
        # one line per encoder, or per encoder and protocol when protocols have columns of their own (each line
        # starts from the shared clean point)
        attacks = list(dict.fromkeys(c.attack for c in cols if c.eps > 0)) or [""]
        styles = ["-", "--", ":", "-."]
        for i, enc in enumerate(tab.encoders):
            for j, attack in enumerate(attacks):
                series = [c for c in cols if c.eps == 0 or c.attack == attack]
                pts = [(c.eps * 255, tab.display(enc, c), tab.interval(enc, c)) for c in series]
                pts = [p for p in pts if not math.isnan(p[1])]
                if not pts:
                    continue
                xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                line = ax.plot(xs, ys, marker=MARKERS[i % len(MARKERS)], linestyle=styles[j % len(styles)],
                               color=f"C{i}", label=f"{enc} {attack}".strip())[0]
                if tab.ci and all(p[2] for p in pts):
                    ax.fill_between(xs, [p[2][0] for p in pts], [p[2][1] for p in pts], color=line.get_color(),
                                    alpha=0.15)
        ax.set_title(_title(tab, task, dataset))
        ax.set_xlabel("ε (/255)")
        ax.set_ylabel(style(cols[0].metric).label)
        _limits(ax, cols[0].metric)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    return save(fig, stem)


def plot_tradeoff(tab: ReportTable, stem: Path) -> list[Path]:
    """Clean against robust score (the average over datasets when a task has several), per encoder and ε."""
    plt = pyplot()
    tasks = tab.tasks
    fig, axes = _grid(plt, len(tasks), width=4.2, height=3.8)
    for ax, task in zip(axes, tasks):
        cols = [c for c in tab.columns if c.task == task and not c.is_gap]
        summary = AVERAGE if any(c.dataset == AVERAGE for c in cols) else cols[0].dataset
        cols = [c for c in cols if c.dataset == summary]
        clean = next((c for c in cols if c.eps == 0), None)
        attacked = [c for c in cols if c.eps > 0]
        for i, enc in enumerate(tab.encoders):
            x = tab.display(enc, clean) if clean else math.nan
            for j, col in enumerate(attacked):
                y = tab.display(enc, col)
                if math.isnan(x) or math.isnan(y):
                    continue
                ax.scatter(x, y, marker=MARKERS[j % len(MARKERS)], color=f"C{i}",
                           label=f"{enc} {col.eps_label}", s=45)
                ax.annotate(enc, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        label = style(cols[0].metric).label
        ax.set_xlabel(f"clean {label}")
        ax.set_ylabel(f"robust {label}")
        ax.set_title(f"{task}: {_title(tab, task, summary)}")
        _limits(ax, cols[0].metric, "x")
        _limits(ax, cols[0].metric, "y")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, stem)


def plot_dataset_bars(tab: ReportTable, stem: Path) -> list[Path]:
    """Grouped bars: datasets along x, one bar per encoder, one panel per task and ε."""
    plt = pyplot()
    panels = list(dict.fromkeys((c.task, c.eps_str, c.attack) for c in tab.columns))
    fig, axes = _grid(plt, len(panels), width=4.0, per_row=3)
    for ax, (task, eps_str, attack) in zip(axes, panels):
        cols = [c for c in tab.columns if (c.task, c.eps_str, c.attack) == (task, eps_str, attack)]
        width = 0.8 / max(1, len(tab.encoders))
        for i, enc in enumerate(tab.encoders):
            xs = [k + (i - (len(tab.encoders) - 1) / 2) * width for k in range(len(cols))]
            ax.bar(xs, [tab.display(enc, c) for c in cols], width=width, label=enc, color=f"C{i}")
        ax.set_xticks(range(len(cols)), [_title(tab, c.task, c.dataset) for c in cols], rotation=30, ha="right")
        ax.set_ylabel(style(cols[0].metric).label)
        ax.set_title(f"{task}, {cols[0].eps_label}")
        _limits(ax, cols[0].metric)
        ax.grid(alpha=0.3, axis="y")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    return save(fig, stem)
