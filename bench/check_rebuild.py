"""Rebuilding a baseline's encoders for `bench check`, and reading their checkpoints before any cell runs.

Each (suite, encoder) of the baseline is rebuilt from its rows' ``encoder_source`` (``bench.encoders.provenance``):
a registered name (the committed micro CLIP, a published checkpoint, a plugin's encoder) by its name; a trained one
with ``train`` and the recipe changes it recorded (plus ``--train-override``); an image tower from its file (a path
relative to the baseline's directory, or absolute), URL or hub file, on the base it recorded; a whole hub CLIP
from its repository. Then each is loaded (and trained, when allowed and missing) so that its checkpoint's sha256 is
known before anything runs (``bench.check.checkpoint_failures`` judges it). A source that cannot be read or reached
is a one-line ``BenchError`` naming it: never a silent skip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.core.errors import BenchError, NeedsTraining
from bench.encoders.provenance import Provenance, read_provenance
from bench.encoders.registry import ENCODERS, EncoderSpec
from bench.encoders.resolve import resolve_encoder, spec_for
from bench.encoders.sources.train import Trained
from bench.suites import get_suite


@dataclass(frozen=True)
class Rebuilt:
    """One baseline encoder: its suite, name, what it was read from and the spec that loads it now."""

    suite: str
    name: str
    provenance: Provenance
    spec: EncoderSpec

    @property
    def trained(self) -> bool:
        return isinstance(self.provenance.source, Trained)


def rebuild(baseline: pd.DataFrame, relative_to: Path | None,
            train_overrides: tuple[tuple[str, str], ...] = ()) -> list[Rebuilt]:
    """The specs that rebuild the baseline's encoders. ``train_overrides`` (``--train-override``) go on top of the
    recipe changes a trained encoder recorded; refused when no encoder of the selection is trained."""
    out, problems = [], []
    for (suite, name), rows in baseline.groupby(["suite", "encoder"], sort=False):
        recorded = next((s for s in rows["encoder_source"].astype(str) if s and s != "nan"), "")
        try:
            provenance = read_provenance(recorded, relative_to)
            out.append(Rebuilt(suite, name, provenance, _spec(name, provenance, train_overrides)))
        except BenchError as exc:
            problems.append(f"{name} ({recorded or 'no source recorded'}): {exc}")
    if problems:
        raise BenchError("cannot rebuild " + "; ".join(problems))
    if train_overrides and not any(r.trained for r in out):
        raise BenchError("--train-override applies to encoders trained on demand; the selected baseline cells have "
                         f"none ({', '.join(r.name for r in out)})")
    return out


def _spec(name: str, provenance: Provenance, train_overrides: tuple[tuple[str, str], ...]) -> EncoderSpec:
    if isinstance(provenance.source, Trained):
        return spec_for(name, provenance.source.merged(train_overrides), None)
    if not provenance.by_name:
        return spec_for(name, provenance.source, provenance.base)
    if name not in ENCODERS:
        raise BenchError(f"{name!r} is not a registered encoder here and its recorded source is not one bench check "
                         "can rebuild (an encoder of a plugin that is not installed? of the Python API?); run it "
                         "yourself and check with --results DIR")
    return resolve_encoder(name)


def load_checkpoints(rebuilt: list[Rebuilt], *, allow_training: bool, device: str,
                     progress: bool) -> tuple[pd.DataFrame, dict[str, str]]:
    """Load (or train, when allowed) each rebuilt encoder: one row per encoder with its ``encoder_sha256`` and
    ``encoder_source`` now, and {encoder: why not} for those that need training it may not do. Any other failure to
    load (a file gone, a hub repository unreachable, a checkpoint that does not fit) is one ``BenchError`` naming
    every encoder it happened to."""
    now, untrained, problems = [], {}, []
    for r in rebuilt:
        try:
            meta = get_suite(r.suite).load_encoder(r.spec, device, allow_training=allow_training,
                                                   progress=progress).meta
        except NeedsTraining as exc:
            untrained[r.name] = str(exc)
            continue
        except BenchError as exc:
            problems.append(f"{r.name} from {r.spec.source or 'the registry'}: {exc}")
            continue
        now.append({"encoder": r.name, "encoder_sha256": meta.checkpoint_sha256 or "", "encoder_source": meta.source})
    if problems:
        raise BenchError("cannot load " + "; ".join(problems))
    return pd.DataFrame(now, columns=["encoder", "encoder_sha256", "encoder_source"]), untrained
