"""From all stored rows to the ones a report shows: filters, the latest run per cell, and the refusal to compare
numbers that came from different protocols."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from attacks import ENGINE_VERSION
from attacks.protocols import ADAPTIVE
from attacks.registry import ATTACKS
from bench.core.errors import BenchError
from bench.encoders.registry import ENCODERS
from tasks.registry import TASKS

CLEAN_LABEL = "clean"
# one result cell; a later run of the same cell replaces an earlier one. An encoder is its name *and* its checkpoint:
# two checkpoints under one name (the registry's fare4 and `--encoder fare4=my.pt`) are two cells, never merged
CELL_KEY = ["suite", "encoder", "encoder_sha256", "task", "dataset", "attack", "eps_str", "metric"]
CHECKPOINT_COLUMNS = ["encoder_sha256", "encoder_source"]
SHA_SHOWN = 6  # hex digits of a checkpoint hash in a label (more where two checkpoints of a name share them)
# what makes two robust numbers comparable (docs/design.md, "Protocols": never mix protocols in one column)
PROTOCOL_KEY = ["attack", "protocol", "steps", "restarts", "precision"]


@dataclass(frozen=True)
class Filters:
    suites: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    encoders: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()  # attack names; clean rows always pass
    n_samples: tuple[int, ...] = ()
    seeds: tuple[int, ...] = ()
    metric_overrides: dict[str, str] = field(default_factory=dict)
    # rows computed by this attack-engine version only (None: the installed one); versions never mix in a table
    engine_version: str | None = None


def eps_label(eps_str) -> str:
    return CLEAN_LABEL if str(eps_str) in ("0", "0.0", "") else str(eps_str)


def _canonical(names: Iterable[str], registry) -> set[str]:
    """Registered names through their aliases (``apgd-ce`` → ``apgd``); unknown names pass as typed, so rows written
    by other versions stay selectable."""
    out = set()
    for name in names:
        try:
            out.add(registry.canonical(name))
        except BenchError:
            out.add(name)
    return out


def apply_filters(rows: pd.DataFrame, f: Filters) -> pd.DataFrame:
    if f.suites:
        rows = rows[rows["suite"].isin(f.suites)]
    if f.tasks:
        rows = rows[rows["task"].isin(_canonical(f.tasks, TASKS))]
    if f.encoders:
        rows = rows[rows["encoder"].isin(_canonical(f.encoders, ENCODERS))]
    if f.datasets:
        rows = rows[rows["dataset"].isin(f.datasets)]
    if f.protocols:
        rows = rows[(rows["eps"] == 0) | rows["attack"].isin(_canonical(f.protocols, ATTACKS))]
    if f.n_samples:
        rows = rows[rows["n_samples"].isin(f.n_samples)]
    if f.seeds:
        rows = rows[rows["seed"].isin(f.seeds)]
    return rows[engine_column(rows) == selected_engine(f)]


def selected_engine(f: Filters) -> str:
    return f.engine_version or ENGINE_VERSION


def engine_column(rows: pd.DataFrame) -> pd.Series:
    """The engine version of each row; "unknown" for rows stored before rows recorded it."""
    column = rows["engine_version"] if "engine_version" in rows.columns else pd.Series("", index=rows.index)
    return column.fillna("").astype(str).replace("", "unknown")


def other_engine_note(rows: pd.DataFrame, f: Filters) -> list[str]:
    """A note on the rows a report leaves out because another engine version computed them (an attack's numbers
    may differ between versions, so they never share a table)."""
    versions = engine_column(rows)
    others = sorted(set(versions) - {selected_engine(f)})
    if not others:
        return []
    return [f"{int((versions != selected_engine(f)).sum())} stored row(s) from other attack-engine versions "
            f"({', '.join(others)}) are not shown; --engine-version selects one"]


def with_checkpoint_columns(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with the checkpoint columns, "" (unknown) where rows from before them lack them."""
    missing = [c for c in CHECKPOINT_COLUMNS if c not in rows.columns]
    if not missing and not any(rows[c].isna().any() for c in CHECKPOINT_COLUMNS):
        return rows
    rows = rows.copy()
    for c in CHECKPOINT_COLUMNS:
        rows[c] = rows[c].fillna("").astype(str) if c in rows.columns else ""
    return rows


def latest(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: the most recently started run wins (ties broken by run id, so the choice is stable)."""
    rows = with_checkpoint_columns(rows)
    return rows.sort_values(["started_at", "run_id"]).drop_duplicates(CELL_KEY, keep="last")


def short_source(source: str) -> str:
    """A checkpoint's source in a few characters, for a label: the file's name, the hub repository (and file, when
    it is not open_clip's weight file), or how it was made."""
    if str(source).startswith("trained on demand"):
        return "trained on demand"
    head = str(source).split(" on ", 1)[0].strip()  # "<tower> on <base>": the tower is what differs
    if head.startswith("hf-hub:"):
        for weights in ("/open_clip_model.safetensors", "/open_clip_pytorch_model.bin"):
            head = head.removesuffix(weights)
        return head
    if "/" in head:
        return head.rstrip("/").rsplit("/", 1)[-1]
    return head or "source unknown"


def encoder_labels(rows: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(encoder, encoder_sha256) → the label tables show: the name alone when the rows hold one checkpoint under
    it, else ``name [short source, sha 1a2b3c]`` for each of its checkpoints (stable: it depends on the checkpoint,
    not on which run came last)."""
    rows = with_checkpoint_columns(rows)
    pairs = rows[["encoder", "encoder_sha256", "encoder_source"]].drop_duplicates(["encoder", "encoder_sha256"])
    labels = {}
    for name, group in pairs.groupby("encoder", sort=False):
        if len(group) == 1:
            labels[(name, group["encoder_sha256"].iloc[0])] = name
            continue
        shas = [str(s) for s in group["encoder_sha256"]]
        digits = next((n for n in range(SHA_SHOWN, 65) if len({s[:n] for s in shas}) == len(shas)), 64)
        for sha, source in zip(shas, group["encoder_source"]):
            sha_text = f"sha {sha[:digits]}" if sha else "sha unknown"
            labels[(name, sha)] = f"{name} [{short_source(source)}, {sha_text}]"
    return labels


def label_encoders(rows: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``rows`` with ``encoder`` replaced by its label (see ``encoder_labels``), and a note naming every encoder's
    checkpoint source and sha256."""
    rows = with_checkpoint_columns(rows)
    labels = encoder_labels(rows)
    out = rows.copy()
    out["encoder"] = [labels[(e, s)] for e, s in zip(rows["encoder"], rows["encoder_sha256"])]
    sources = rows.drop_duplicates(["encoder", "encoder_sha256"])
    shown = [f"{labels[(r.encoder, r.encoder_sha256)]}: {r.encoder_source or 'source unknown'}"
             + (f" (sha256 {r.encoder_sha256[:12]}…)" if r.encoder_sha256 else "")
             for r in sources.itertuples() if r.encoder_source or r.encoder_sha256]
    return out, (["checkpoints: " + "; ".join(shown)] if shown else [])


def single_suite(rows: pd.DataFrame) -> str:
    suites = sorted(rows["suite"].unique())
    if len(suites) > 1:
        # the same encoder name is a different model in each suite, so rows would silently mix
        raise BenchError(f"results from several suites ({', '.join(suites)}); pick one with --suite")
    return suites[0]


def selected_attacks(f: Filters) -> tuple[str, ...]:
    """The attack names ``--protocol`` selects, canonical, in the order given (duplicates dropped)."""
    return tuple(dict.fromkeys(next(iter(_canonical([p], ATTACKS))) for p in f.protocols))


def split_by_attack(f: Filters) -> bool:
    """Several protocols asked for by name (``--protocol aa-custom,pgd-100-tga``): each gets columns of its own."""
    return len(selected_attacks(f)) > 1


def check_single_protocol(rows: pd.DataFrame, by_attack: bool = False) -> None:
    """Refuse a column (task, dataset, ε — and the attack name when protocols have columns of their own) whose
    robust numbers come from different protocols. ``adaptive`` is the exception by design: each encoder's is the
    attack its test-time defence declares, so its column holds one protocol per encoder."""
    attacked = rows[rows["eps"] > 0]
    keys = ["task", "dataset", "eps_str"] + (["attack"] if by_attack else [])
    for key, sub in attacked.groupby(keys):
        task, dataset, eps = key[:3]
        parts = sub.groupby("encoder") if set(sub["attack"]) == {ADAPTIVE} else [("", sub)]
        for _, part in parts:
            found = part[PROTOCOL_KEY].astype(str).drop_duplicates()
            if len(found) > 1:
                names = sorted({f"{r.attack} ({r.protocol}, {r.precision})" for r in found.itertuples()})
                hint = ("one attack name run with different settings (iterations, restarts, precision): re-run one "
                        "set" if by_attack else "pick one with --protocol, or name several (--protocol a,b) to give "
                        "each its own columns")
                raise BenchError(f"results for {task}/{dataset} at ε={eps} come from different protocols "
                                 f"({'; '.join(names)}); {hint}")


def mixed_sample_sets(rows: pd.DataFrame) -> list[str]:
    """Warnings for encoders whose cells of one dataset come from different sample sets (n, seed): their clean and
    robust numbers would then be measured on different images."""
    out = []
    for (enc, task, dataset), sub in rows.groupby(["encoder", "task", "dataset"], sort=False):
        sets = sorted({(int(n), int(s)) for n, s in zip(sub["n_samples"], sub["seed"])})
        if len(sets) > 1:
            shown = ", ".join(f"n={n} seed={s}" for n, s in sets)
            out.append(f"warning: {enc} {task}/{dataset} mixes sample sets ({shown}); pick one with --n-samples "
                       "and --seed")
    return out


def encoder_order(names: Iterable[str]) -> list[str]:
    """Registry order (CLIP first, then each method at 2/255 and 4/255), then unknown names as they come; a label
    ``name [source, sha …]`` sits with its name, in label order."""
    names = list(dict.fromkeys(names))
    registry = {n: i for i, n in enumerate(ENCODERS.names())}
    first_seen = {}
    for n in names:
        first_seen.setdefault(n.split(" [", 1)[0].split("+", 1)[0], len(first_seen))

    def key(label: str):
        name = label.split(" [", 1)[0]
        base = name.split("+", 1)[0]  # an encoder under a test-time defence sits right after its base
        known = base in registry
        return (not known, registry[base] if known else first_seen[base], base != name, label != name, label)

    return sorted(names, key=key)
