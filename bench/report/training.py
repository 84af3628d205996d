"""Training curves of the fine-tuned encoders a report shows, from the training cache:

    $BENCH_CACHE/encoders/<name>-<suite>-<hash>/card.json      encoder, method, eps, config, final_health, ...
    $BENCH_CACHE/encoders/<name>-<suite>-<hash>/train_log.csv  step, lr, loss, adv_loss, cos_to_original, spread, ...

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
            found.append(TrainingRun(d, card, log))
    return found


def plot_training_curves(runs: list[TrainingRun], stem: Path) -> list[Path]:
    """Loss, inner loss, cosine to the original and embedding spread against the step; a collapse is marked."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(CURVES), figsize=(3.6 * len(CURVES), 3.0), squeeze=False)
    for ax, (column, title) in zip(axes[0], CURVES):
        for i, run in enumerate(runs):
            if column not in run.log.columns:
                continue
            ax.plot(run.log["step"], run.log[column], color=f"C{i}", label=run.label, lw=1.2)
            collapsed = run.card.get("collapsed_at_step")
            if collapsed is not None:
                ax.axvline(collapsed, color=f"C{i}", ls=":", lw=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
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
