"""Trained encoders, cached under a content-addressed name and trained on demand when missing.

    $BENCH_CACHE (default ~/.cache/clip-robust-bench)/encoders/<name>-<suite>-<config hash>/
        visual.safetensors   the image tower's weights
        card.json            what was trained, how, from which base, with which final health; the file's sha256
        train_log.csv        per-step loss, adversarial loss, cosine to the original, embedding spread
        last.pt              the latest periodic training state (for `bench train --resume`)
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import replace
from pathlib import Path

from filelock import FileLock

from bench.core.checkpoints import load_tensors
from bench.core.errors import BenchError, NeedsTraining
from bench.core.hub import cache_root
from bench.encoders.base import ClipEncoder
from bench.encoders.sources.train import Trained
from bench.train.config import TrainConfig
from bench.train.loop import train

RECIPE = Trained()  # the suite's recipe, unchanged


def encoder_dir(cfg: TrainConfig, root: Path | None = None) -> Path:
    return (root or cache_root()) / "encoders" / f"{cfg.encoder_name}-{cfg.suite}-{cfg.hash}"


def read_card(directory: Path) -> dict | None:
    path = directory / "card.json"
    if not (path.is_file() and (directory / "visual.safetensors").is_file()):
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"corrupt training card {path}: {exc}; delete {directory} to retrain") from exc


def with_trained_tower(base: ClipEncoder, directory: Path, card: dict, name: str, cfg: TrainConfig,
                       source: Trained = RECIPE) -> ClipEncoder:
    """A copy of ``base`` whose image tower carries the trained weights (the text tower stays the original); its
    recorded source is ``source``'s description, which names the recipe changes and the cache entry."""
    state = load_tensors(directory / "visual.safetensors", expected_sha256=card.get("sha256"))
    encoder = copy.deepcopy(base)
    try:
        encoder.tower.visual.load_state_dict(state)
    except RuntimeError as exc:
        raise BenchError(f"trained tower {directory} does not fit the base model: {str(exc).splitlines()[0]}") from exc
    encoder.requires_grad_(False)
    encoder.meta = replace(base.meta, name=name, method=cfg.method, train_eps=cfg.eps,
                           source=source.describe(directory.name), checkpoint_sha256=card.get("sha256"))
    return encoder


def obtain(cfg: TrainConfig, name: str, base: ClipEncoder, make_data, device, *, allow_training: bool,
           progress: bool = True, source: Trained = RECIPE) -> ClipEncoder:
    """The encoder trained with ``cfg``: from the cache, or trained now (unless ``allow_training`` is False).
    ``source``: the ``train`` source that asked for it (its recipe changes label the encoder)."""
    directory = encoder_dir(cfg)
    card = read_card(directory)
    if card is None:
        if not allow_training:
            raise NeedsTraining(f"encoder {name!r} is not trained yet for the {cfg.suite} suite (expected in "
                                f"{directory}); run `bench train --encoder {name}` or drop --no-train")
        directory.mkdir(parents=True, exist_ok=True)
        with FileLock(str(directory / ".lock")):
            card = read_card(directory)  # another process may have finished it while we waited
            if card is None:
                print(f"{name}: no cached checkpoint for this recipe; training it now (cache: {directory})",
                      file=sys.stderr)
                out = train(cfg, base, make_data(), directory, device=device, resume=True, progress=progress,
                            base_name=base.meta.name)
                card = out.card
    return with_trained_tower(base, directory, card, name, cfg, source)
