"""Tables and plots drawn only from the tidy rows of the store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.errors import BenchError

CLEAN_LABEL = "clean"


def headline(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows a table shows: each task's headline metric ("accuracy" for zero-shot)."""
    return rows[rows["metric"] == "accuracy"].copy()


def eps_column(eps_str: str) -> str:
    return CLEAN_LABEL if str(eps_str) in ("0", "0.0") else str(eps_str)


def check_single_protocol(rows: pd.DataFrame) -> None:
    """Robust numbers of different protocols are not comparable: refuse to put them in one column."""
    attacked = rows[rows["eps"] > 0]
    mixed = attacked.groupby(["task", "dataset", "eps_str"])["attack"].nunique()
    mixed = mixed[mixed > 1]
    if len(mixed):
        (task, dataset, eps), _ = next(iter(mixed.items()))
        found = sorted(attacked[(attacked.task == task) & (attacked.dataset == dataset)
                                & (attacked.eps_str == eps)]["attack"].unique())
        raise BenchError(f"results for {task}/{dataset} at ε={eps} come from different protocols ({', '.join(found)});"
                         " pick one with --protocol")


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows = encoders, columns = (dataset, ε) with clean first, values in percent; the latest run wins."""
    rows = headline(rows)
    if rows.empty:
        raise BenchError("no results to report; run `bench run` first (or check --out and the filters)")
    check_single_protocol(rows)
    rows = rows.sort_values("started_at").drop_duplicates(
        ["encoder", "task", "dataset", "eps_str", "attack"], keep="last")
    rows["column"] = rows["eps_str"].map(eps_column)
    pivot = rows.pivot_table(index="encoder", columns=["dataset", "column"], values="value", aggfunc="first")
    eps_order = sorted(rows["column"].unique(), key=lambda c: (c != CLEAN_LABEL, _eps_value(rows, c)))
    datasets = list(dict.fromkeys(rows.sort_values(["task"])["dataset"]))
    cols = [(d, e) for d in datasets for e in eps_order if (d, e) in pivot.columns]
    encoders = list(dict.fromkeys(rows["encoder"]))
    return (pivot.reindex(index=encoders, columns=pd.MultiIndex.from_tuples(cols)) * 100).round(1)


def _eps_value(rows: pd.DataFrame, column: str) -> float:
    return 0.0 if column == CLEAN_LABEL else float(rows.loc[rows["column"] == column, "eps"].iloc[0])


def to_markdown(tab: pd.DataFrame) -> str:
    header = ["encoder"] + [f"{d} {e}" for d, e in tab.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(tab.columns)) + "|"]
    for enc, values in tab.iterrows():
        cells = ["–" if pd.isna(v) else f"{v:.1f}" for v in values]
        lines.append("| " + " | ".join([str(enc), *cells]) + " |")
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_eps(rows: pd.DataFrame, path: Path) -> Path:
    """Robust accuracy vs ε, one line per encoder, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = headline(rows).sort_values("started_at").drop_duplicates(
        ["encoder", "task", "dataset", "eps_str", "attack"], keep="last")
    datasets = list(dict.fromkeys(rows["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.6 * len(datasets), 3.2), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        sub = rows[rows["dataset"] == dataset]
        for enc, g in sub.groupby("encoder", sort=False):
            g = g.sort_values("eps")
            ax.plot(g["eps"] * 255, g["value"] * 100, marker="o", label=enc)
        ax.set_title(dataset)
        ax.set_xlabel("ε (/255)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
