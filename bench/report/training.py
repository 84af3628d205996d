"""Training curves of the fine-tuned encoders a report shows, from the training cache:

    $BENCH_CACHE/encoders/<name>-<suite>-<hash>/card.json      encoder, method, eps, config, final_health, ...
    $BENCH_CACHE/encoders/<name>-<suite>-<hash>/train_log.csv  step, lr, loss, adv_loss, cos_to_original, spread, ...
    $BENCH_CACHE/encoders/<name>-<suite>-<hash>/probe_log.csv  step, dataset, clean_accuracy, robust_accuracy (when it
                                                               was trained with `bench train --probe-every N`)

A trained encoder belongs to a report when its card's sha256 is the checkpoint hash recorded in one of the
report's run cards (``config.encoder_sha256``), so the curves are those of the weights that were evaluated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.report.plots import pyplot, save
from bench.report.sanity import read_card

CURVES = (("loss", "training loss"), ("adv_loss", "adversarial (inner) loss"),
          ("cos_to_original", "cosine to the original embedding"), ("spread", "embedding spread"))


@dataclass(frozen=True)
class TrainingRun:
    directory: Path
    card: dict
    log: pd.DataFrame
    probe: pd.DataFrame | None = None  # zero-shot accuracy on the probe set during training

    @property
    def label(self) -> str:
        return f"{self.card.get('encoder', self.directory.name)} ({self.directory.name.rsplit('-', 1)[-1][:6]})"


def evaluated_checkpoints(store_root: Path, run_ids) -> set[str]:
    shas = set()
    for run_id in run_ids:
        sha = read_card(store_root, run_id).get("config", {}).get("encoder_sha256")
        if sha:
            shas.add(sha)
    return shas


def find_training_runs(cache_root: Path, checkpoints: set[str]) -> list[TrainingRun]:
    """Training directories whose checkpoint hash is in ``checkpoints`` and that have a readable log."""
    found = []
    for d in sorted((Path(cache_root) / "encoders").glob("*/")):
        try:
            card = json.loads((d / "card.json").read_text())
            if card.get("sha256") not in checkpoints:
                continue
            log = pd.read_csv(d / "train_log.csv")
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
            continue
        if "step" in log.columns and len(log):
            found.append(TrainingRun(d, card, log, read_probe(d / "probe_log.csv")))
    return found


def read_probe(path: Path) -> pd.DataFrame | None:
    try:
        probe = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None
    needed = {"step", "dataset", "clean_accuracy", "robust_accuracy"}
    return probe if needed <= set(probe.columns) and len(probe) else None


def plot_training_curves(runs: list[TrainingRun], stem: Path) -> list[Path]:
    """Loss, inner loss, cosine to the original and embedding spread against the step; a collapse is marked."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(CURVES), figsize=(3.6 * len(CURVES), 3.0), squeeze=False)
    for ax, (column, title) in zip(axes[0], CURVES):
        for i, run in enumerate(runs):
            if column not in run.log.columns:
                continue
            points = run.log[["step", column]].dropna()  # health figures are logged every `health_every` steps
            ax.plot(points["step"], points[column], color=f"C{i}", label=run.label, lw=1.2)
            collapsed = run.card.get("collapsed_at_step")
            if collapsed is not None:
                ax.axvline(collapsed, color=f"C{i}", ls=":", lw=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save(fig, stem)


def probe_curves(probe: pd.DataFrame, in_distribution: tuple[str, ...]) -> list[tuple[str, pd.DataFrame]]:
    """The probe's clean and robust accuracy per step, averaged apart over the zero-shot datasets and over the
    in-distribution ones (the fine-tuning distribution), as the papers report them apart; a part the probe did not
    measure is left out."""
    inside = probe["dataset"].isin(in_distribution)
    parts = (("zero-shot average", probe[~inside]), ("in-distribution", probe[inside]))
    return [(name, part.groupby("step")[["clean_accuracy", "robust_accuracy"]].mean().reset_index())
            for name, part in parts if len(part)]


PROBE_LINE_STYLES = {"zero-shot average": "-", "in-distribution": "--"}


def plot_anchor(runs: list[TrainingRun], stem: Path, in_distribution: tuple[str, ...] = ()) -> list[Path]:
    """Why the anchor matters: for the encoders trained with probes, the cosine of the clean embedding to the
    original encoder's, the embedding spread, and probe accuracy clean and under APGD at the training ε (solid: the
    zero-shot datasets' average; dashed: the ``in_distribution`` datasets'), against the training step."""
    plt = pyplot()
    probed = [r for r in runs if r.probe is not None]
    fig, axes = plt.subplots(1, 4, figsize=(14.4, 3.2), squeeze=False)
    shown = set()  # the probe parts drawn (zero-shot, in-distribution): the legend keys their line styles
    for i, run in enumerate(probed):
        name = run.card.get("encoder", run.directory.name)
        label = f"{name}: {run.card.get('method_label', run.card.get('method'))}"
        health = run.log[["step", "cos_to_original", "spread"]].dropna()
        axes[0][0].plot(health["step"], health["cos_to_original"], color=f"C{i}", lw=1.2, label=label)
        axes[0][1].plot(health["step"], health["spread"], color=f"C{i}", lw=1.2)
        for part, curve in probe_curves(run.probe, in_distribution):
            shown.add(part)
            for ax, column in zip(axes[0][2:], ("clean_accuracy", "robust_accuracy")):
                ax.plot(curve["step"], 100 * curve[column], color=f"C{i}", lw=1.2, ls=PROBE_LINE_STYLES[part])
    iterations = next((int(r.probe["iterations"].iloc[0]) for r in probed if "iterations" in r.probe.columns), None)
    robust = f"APGD-{iterations} at training ε" if iterations else "under attack"
    titles = ("cosine to the original embedding", "embedding spread", "probe accuracy, clean (%)",
              f"probe accuracy, {robust} (%)")
    for ax, title in zip(axes[0], titles):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for part in (p for p in PROBE_LINE_STYLES if p in shown and len(shown) > 1):
        handles.append(plt.Line2D([], [], color="0.3", lw=1.2, ls=PROBE_LINE_STYLES[part]))
        labels.append(f"probe: {part}")
    fig.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return save(fig, stem)


def training_summary(runs: list[TrainingRun]) -> pd.DataFrame:
    """One line per trained encoder: recipe essentials, final health, collapse step."""
    out = []
    for run in runs:
        cfg, health = run.card.get("config", {}), run.card.get("final_health") or {}
        out.append({"encoder": run.card.get("encoder"), "method": run.card.get("method"), "eps": run.card.get("eps"),
                    "steps": cfg.get("steps"), "lr": cfg.get("lr"), "inner_steps": cfg.get("inner_steps"),
                    "final cos_to_original": health.get("cos_to_original"), "final spread": health.get("spread"),
                    "collapsed_at_step": run.card.get("collapsed_at_step"),
                    "wall_seconds": run.card.get("wall_seconds"), "directory": run.directory.name})
    return pd.DataFrame(out)
