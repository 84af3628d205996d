"""Reading back where an encoder came from: a result row's ``encoder_source`` (its ``EncoderMeta.source``) as the
source and base that rebuild it, so that `bench check` re-runs any encoder of a baseline it can rebuild.

What each kind records, and what it is read back as:

    (empty), or a description no kind below claims   the registry's own weights for the name (the committed micro
    ("committed micro checkpoint …", a plugin's)      CLIP, a published checkpoint, a plugin's encoder)
    trained on demand[ (train:…)]: <cache entry>     ``train`` with the same recipe changes (``sources.train``)
    <spelling> on <base>                              an image tower: a path, a URL or hf-hub:ORG/REPO/FILE, on a base
                                                      spelled as ``--base`` takes it (``micro``, ``ARCH/TAG``, …)
    hf-hub:ORG/REPO/<weights file>                    a whole open_clip CLIP: hf-hub:ORG/REPO

A path may be relative: to ``relative_to`` (a baseline file's directory, where `bench check --write-baseline` puts
tower files committed beside it). Rows written before tower sources recorded their base's spelling say
``<spelling> on <the base's own source>``; they are read as on the suite's base.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import BenchError
from bench.encoders.bases import parse_base
from bench.encoders.sources import parse_source
from bench.encoders.sources.hub_model import HubModel
from bench.encoders.sources.train import Trained

# how a base described itself in a tower's source before the base's spelling was recorded
OLD_BASE_DESCRIPTIONS = ("committed micro checkpoint", "hf-hub:")


@dataclass(frozen=True)
class Provenance:
    """The source (None: the registry's own weights for the name) and base spelling (None: the suite's) that
    rebuild an encoder, and the recorded text they were read from."""

    source: object | None
    base: str | None
    recorded: str

    @property
    def by_name(self) -> bool:
        return self.source is None


def tower_parts(recorded: str) -> tuple[str, str | None] | None:
    """(source spelling, base spelling or None for the suite's) of ``<spelling> on <base>``; None if ``recorded``
    is not that form. A path may contain " on "; a base spelling never does."""
    spelling, sep, base = recorded.rpartition(" on ")
    if not sep or not spelling.strip():
        return None
    if base.startswith(OLD_BASE_DESCRIPTIONS):
        return spelling, None
    try:
        parse_base(base)
    except BenchError:
        return None
    return spelling, base


def read_provenance(recorded: str, relative_to: Path | None = None) -> Provenance:
    """What rebuilds the encoder a row's ``encoder_source`` describes (see the module docstring). A source that
    cannot be reached (a missing file) is a one-line ``BenchError``."""
    text = str(recorded or "").strip()
    trained = Trained.from_description(text)
    if trained is not None:
        return Provenance(trained, None, text)
    tower = tower_parts(text)
    if tower is not None:
        spelling, base = tower
        if not (spelling.startswith("hf-hub:") or "://" in spelling):
            path = Path(spelling).expanduser()
            spelling = path if path.is_absolute() or relative_to is None else os.path.normpath(Path(relative_to) / path)
        return Provenance(parse_source(str(spelling), "recorded source"), base, text)
    if text.startswith("hf-hub:") and len(text.split("/")) == 3:  # hf-hub:ORG/REPO/<weights file>
        return Provenance(HubModel(text[len("hf-hub:"):].rsplit("/", 1)[0]), None, text)
    return Provenance(None, None, text)


def relative_source(recorded: str, directory: Path) -> str:
    """``recorded`` with a tower file's absolute path made relative to ``directory`` when both lie in the same git
    work tree (a tower file committed beside a baseline, checked out elsewhere by CI); otherwise unchanged."""
    tower = tower_parts(str(recorded or ""))
    if tower is None or not Path(tower[0]).is_absolute():
        return recorded
    path, directory = Path(tower[0]), Path(directory).resolve()
    root = work_tree(directory)
    if root is None or root != work_tree(path.parent):
        return recorded
    base_text = str(recorded).rpartition(" on ")[2]
    return f"{os.path.relpath(path, directory)} on {base_text}"


def work_tree(directory: Path) -> Path | None:
    """The nearest enclosing directory holding ``.git`` (a git work tree's root), or None."""
    for candidate in [directory, *directory.parents]:
        if (candidate / ".git").exists():
            return candidate
    return None
