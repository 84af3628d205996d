"""Per-cell tolerance of `bench check` from two measured sources, and what a baseline records of it.

- **Evaluation noise** (every cell): ``sigmas`` × NOISE_RATIO × the binomial standard deviation of the cell's
  proportion (``bench.check.tolerance``; NOISE_RATIO measured by scripts/measure_noise.py).
- **Training noise** (cells of an encoder trained on demand): how far a cell moves between trainings of the same
  recipe that differ only in their seed or thread count, evaluated on the same samples (measured by
  scripts/measure_training_noise.py, which writes one row per cell with its standard deviation ``sd`` across
  trainings). A check compares a fresh training with the baseline's, two draws of that spread, so the variance of
  their difference is 2 sd²: the training part is ``sigmas`` × √2 × sd. The sd is the cell's own (``cell``), or
  ``pooled``: the root mean square of the per-cell sds over the encoder's cells of the same kind (clean, or
  attacked), which a few trainings estimate far better than one cell's.

The two add in quadrature. ``bench check --write-baseline`` records per cell the total (``tolerance``, which the
check reads), both parts, a short reason, and the value the cell had before the refresh (``previous_value``), so a
baseline refreshed with the change that moved it shows old and new values in the check's summary.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench.check import (
    ANY_CHECKPOINT_KEY,
    BASELINE_COLUMNS,
    DEFAULT_SIGMAS,
    NOISE_RATIO,
    compared_rows,
    key_of,
    number_or_nan,
    require_columns,
    tolerance,
)
from bench.core.eps import parse_eps
from bench.core.errors import BenchError
from bench.report.metrics import SANITY_PREFIX, style
from bench.report.select import with_checkpoint_columns

# a cell of a training-noise file: the baseline cell (its samples included) it was measured on
NOISE_KEY = ["encoder", "task", "dataset", "attack", "eps_str", "metric", "n_samples", "seed"]
NOISE_COLUMNS = NOISE_KEY + ["trainings", "mean", "sd", "min", "max"]
POOLING = ("pooled", "cell")


def kind(eps) -> str:
    return "clean" if float(eps) == 0 else "attacked"


def training_spread(values: pd.DataFrame) -> pd.DataFrame:
    """Per cell, from one row per (training, cell) with ``NOISE_KEY`` + ``training`` + ``value``: the number of
    trainings, mean, sample standard deviation and range across trainings (``NOISE_COLUMNS``)."""
    if values.empty:
        raise BenchError("no trainings to measure the spread of")
    grouped = values.groupby(NOISE_KEY, sort=False)["value"]
    out = grouped.agg(trainings="count", mean="mean", sd="std", min="min", max="max").reset_index()
    out["sd"] = out["sd"].fillna(0.0)  # one training: no spread measured (said by `trainings`)
    return out[NOISE_COLUMNS]


def pooled_sd(spread: pd.DataFrame) -> pd.DataFrame:
    """Per (encoder, kind): the root mean square of the per-cell sds (``sd``), how many cells and the fewest
    trainings any of them had."""
    frame = spread.assign(kind=[kind(e) for e in _eps(spread)], variance=spread["sd"] ** 2)
    out = frame.groupby(["encoder", "kind"], sort=False).agg(
        cells=("variance", "size"), variance=("variance", "mean"), trainings=("trainings", "min")).reset_index()
    out["sd"] = out.pop("variance") ** 0.5
    return out


def _eps(frame: pd.DataFrame) -> list[float]:
    return [0.0 if str(e) in ("0", "0.0") else parse_eps(str(e)).value for e in frame["eps_str"]]


def read_training_noise(path: Path) -> pd.DataFrame:
    if not Path(path).is_file():
        raise BenchError(f"training-noise file not found: {path} (scripts/measure_training_noise.py writes it)")
    try:
        noise = pd.read_csv(path, dtype={"eps_str": str, "encoder": str, "dataset": str, "metric": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BenchError(f"corrupt training-noise file {path}: {exc}") from exc
    return require_columns(noise, NOISE_COLUMNS, f"training-noise file {path}", "what the measuring script writes")


class TrainingNoise:
    """The training sd a baseline cell is given, per cell or pooled, and the words that say where it came from."""

    def __init__(self, noise: pd.DataFrame | None, pooling: str = "pooled"):
        if pooling not in POOLING:
            raise BenchError(f"--training-sd {pooling!r}: choose {' or '.join(POOLING)}")
        self.pooling = pooling
        self.cells = {} if noise is None else {noise_key(r): r for r in noise.itertuples()}
        self.pools = {} if noise is None else {(r.encoder, r.kind): r for r in pooled_sd(noise).itertuples()}

    def sd_of(self, row) -> tuple[float, str] | None:
        """(sd, how it was measured) for a baseline cell, or None when its encoder's training noise is unknown."""
        if self.pooling == "cell":
            cell = self.cells.get(noise_key(row))
            if cell is None:
                return None
            return float(cell.sd), f"this cell's sd over {cell.trainings} trainings"
        pool = self.pools.get((row.encoder, kind(row.eps)))
        if pool is None:
            return None
        return float(pool.sd), (f"sd pooled over {row.encoder}'s {pool.cells} {pool.kind} cells, {pool.trainings} "
                                "trainings each")


def noise_key(row) -> tuple:
    """A cell's ``NOISE_KEY`` as text (a row of a baseline, of a training-noise file or of measured values)."""
    return key_of(row, NOISE_KEY)


def annotate(fresh: pd.DataFrame, previous: pd.DataFrame | None, noise: TrainingNoise,
             sigmas: float = DEFAULT_SIGMAS) -> pd.DataFrame:
    """``fresh`` baseline rows with ``BASELINE_COLUMNS``: on each compared cell (a task's headline metric) its
    tolerance and why, and the value the same cell had in ``previous`` (the baseline being refreshed)."""
    out = fresh.copy()
    for column in BASELINE_COLUMNS:
        out[column] = "" if column == "tolerance_reason" else math.nan
    before = _previous_cells(previous)
    headline = {(r.run_id, r.metric) for r in compared_rows(fresh).itertuples()
                if not str(r.metric).startswith(SANITY_PREFIX)}
    for i, row in zip(out.index, out.itertuples()):
        if (row.run_id, row.metric) not in headline:
            continue
        old = before.get(key_of(row, ANY_CHECKPOINT_KEY))
        parts = cell_tolerance_parts(row, old, noise, sigmas)
        out.loc[i, BASELINE_COLUMNS] = [*parts, math.nan if old is None else float(old.value)]
    return out


def _previous_cells(previous: pd.DataFrame | None) -> dict:
    if previous is None or previous.empty:
        return {}
    rows = with_checkpoint_columns(previous)
    return {key_of(r, ANY_CHECKPOINT_KEY): r for r in rows.itertuples()}


def cell_tolerance_parts(row, old, noise: TrainingNoise, sigmas: float) -> tuple[float, float, float, str]:
    """(total, evaluation part, training part, reason) of one baseline cell, in stored units. A metric that is not a
    proportion has no noise model: it keeps the tolerance the previous baseline gave it (or none)."""
    s = style(row.metric)
    if not s.proportion:
        kept = number_or_nan(getattr(old, "tolerance", math.nan)) if old is not None else math.nan
        reason = "given by hand, kept from the previous baseline" if not math.isnan(kept) else ""
        return kept, math.nan, math.nan, reason
    evaluation = tolerance(float(row.value), int(row.n_samples), sigmas)
    reason = f"evaluation noise ±{evaluation * s.scale:.1f} ({sigmas:g} × {NOISE_RATIO:g} × binomial sd, " \
             f"n={int(row.n_samples)})"
    measured = noise.sd_of(row)
    if measured is not None:
        sd, how = measured
        train = sigmas * math.sqrt(2) * sd
        reason += f"; training noise ±{train * s.scale:.1f} ({sigmas:g} × √2 × {sd * s.scale:.2f}, {how})"
    else:
        train = number_or_nan(getattr(old, "tolerance_train", math.nan)) if old is not None else math.nan
        if not math.isnan(train):
            reason += f"; training noise ±{train * s.scale:.1f} (kept from the previous baseline)"
    total = math.hypot(evaluation, 0.0 if math.isnan(train) else train)
    return total, evaluation, train, reason
