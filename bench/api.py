"""The Python API: evaluate any image encoder, open_clip or not, exactly as `bench run` evaluates the registered ones.

    rows = bench.evaluate(my_module, {"colour": class_embeddings}, name="mine", attack="apgd", eps="4/255")

``image_encoder`` is any ``nn.Module`` taking images in [0, 1] (B, 3, H, W) at the dataset's resolution and
returning embeddings (B, D); normalisation and resizing are its own business. Zero-shot class embeddings come either
as tensors (C, D) per dataset, in the suite's class order (``classnames``), or from a tokenizer and a text model,
which then read the suite's own prompts. The run goes through the runner: the same cells, store, tidy rows, run
cards, sanity checks and resume as `bench run`, so `bench report` shows it beside the registered encoders.

A cell's identity is the encoder's name and a sha256 over its weights, its ``repr`` (the architecture) and the
class embeddings or text model: change any of them and the cells are computed anew. A change that shows in none of
them (the code of ``forward``) does not: give the model a new ``name`` or pass ``force=True``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.eps import parse_eps
from bench.core.errors import BenchError
from bench.defences import make_defence
from bench.encoders.base import EncoderMeta
from bench.encoders.registry import ENCODERS, EncoderSpec
from bench.runner import RunRequest, run
from bench.suites import get_suite

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def tensors_sha256(*parts) -> str:
    """A sha256 over modules (names, dtypes, shapes and bytes of their state, and their repr) and tensors."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, nn.Module):
            digest.update(f"{type(part).__module__}.{type(part).__qualname__}\n{part!r}".encode())
            items = sorted(part.state_dict().items())
        elif isinstance(part, Mapping):
            items = sorted((str(k), v) for k, v in part.items())
        else:
            items = [("", part)]
        for key, value in items:
            t = torch.as_tensor(value).detach().cpu().contiguous()
            digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class ExternalEncoder(nn.Module):
    """A user's image encoder seen through the interface tasks and attacks use (``ClipEncoder``'s): [0,1] images
    in, embeddings out, frozen; zero-shot class embeddings given per dataset or computed by a text model."""

    def __init__(self, image_encoder: nn.Module, meta: EncoderMeta, image_size: int,
                 class_embeddings: Mapping[str, torch.Tensor] | None = None,
                 tokenizer: Callable | None = None, text_model: nn.Module | None = None):
        super().__init__()
        self.tower = image_encoder.eval().requires_grad_(False)  # attacks differentiate the input only
        self.text_model = None if text_model is None else text_model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.class_embeddings = dict(class_embeddings or {})
        self.meta = meta
        self.image_size = image_size

    @property
    def device(self) -> torch.device:
        return next((t.device for t in [*self.tower.parameters(), *self.tower.buffers()]), torch.device("cpu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tower(x)

    def class_embeddings_for(self, data) -> torch.Tensor | None:
        """The given (C, D) class embeddings of ``data``'s dataset; None to compute them from the prompts."""
        if data.dataset not in self.class_embeddings:
            if self.text_model is None:
                raise BenchError(f"{self.meta.name}: no class embeddings for dataset {data.dataset!r} and no text "
                                 "model to compute them; pass text_embeddings={dataset: tensor} or tokenizer and "
                                 "text_model")
            return None
        weights = self.class_embeddings[data.dataset]
        if weights.ndim != 2 or weights.shape[0] != len(data.classnames):
            raise BenchError(f"{self.meta.name}: class embeddings for {data.dataset} have shape {tuple(weights.shape)};"
                             f" expected ({len(data.classnames)}, D), one row per class in the order of "
                             f"bench.api.classnames({data.dataset!r})")
        return weights.to(self.device)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised embeddings of ``texts`` by the user's tokenizer and text model."""
        tokens = self.tokenizer(texts)
        tokens = tokens.to(self.device) if isinstance(tokens, torch.Tensor) else tokens
        return F.normalize(self.text_model(tokens).float(), dim=-1)

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        raise BenchError(f"{self.meta.name} is evaluated through the Python API on zero-shot classification only; "
                         "vision-language tasks need an open_clip ViT (bench run --encoder NAME=SOURCE)")


@dataclass(frozen=True)
class ModuleSource:
    """An encoder already in memory, as an encoder source (``bench.encoders.sources``): it has no spelling."""

    encoder: ExternalEncoder

    def __str__(self) -> str:
        return self.encoder.meta.source

    def load(self, spec, base, ctx) -> ExternalEncoder:
        return self.encoder.to(ctx.device)


def classnames(dataset: str, suite: str = "micro") -> list[str]:
    """The class names of a suite's zero-shot dataset, in the order class embeddings must follow."""
    return list(get_suite(suite).load_classification(dataset, 1, 0).classnames)


def evaluate(image_encoder: nn.Module, text_embeddings: torch.Tensor | Mapping[str, torch.Tensor] | None = None, *,
             tokenizer: Callable | None = None, text_model: nn.Module | None = None, name: str = "external",
             suite: str = "micro", attack: str = "apgd", eps: str | Sequence[str] = ("4/255",),
             datasets: Sequence[str] = (), n_samples: int | None = None, seed: int = 0,
             out: str | Path = "results", device: str = "cpu", batch_size: int | None = None,
             method: str = "external", train_eps: str | None = None, force: bool = False,
             progress: bool = False, defence: str | None = None) -> pd.DataFrame:
    """Zero-shot clean and robust accuracy of ``image_encoder`` on ``suite`` (see the module docstring); returns
    the tidy rows `bench run` returns and stores them (with run cards and per-sample records) under ``out``.

    ``text_embeddings``: {dataset: (C, D) tensor} (a bare tensor when one dataset is evaluated); or ``tokenizer``
    (list of str → tokens) and ``text_model`` (tokens → (N, D)). ``method``/``train_eps`` ("4/255") label the rows
    when the model is a defence trained at a known ε. ``defence``: a test-time defence to run it under, spelled as
    after the ``+`` of ``--encoder clip+ttc`` ("ttc", "clipure:blank=a-photo-of-a"; rows name it ``{name}+ttc``).
    """
    if not isinstance(image_encoder, nn.Module):
        raise BenchError(f"image_encoder must be a torch.nn.Module, got {type(image_encoder).__name__}")
    if not NAME.match(name):
        raise BenchError(f"name {name!r} must be lower-case letters, digits, '.', '_' or '-'")
    if name in ENCODERS:
        raise BenchError(f"name {name!r} is a registered encoder; give your model a name of its own")
    eps_list = (eps,) if isinstance(eps, str) else tuple(eps)
    chosen = tuple(datasets) or get_suite(suite).tasks["zeroshot"]
    first = get_suite(suite).load_classification(chosen[0], 1, seed)
    given = _class_embeddings(text_embeddings, chosen, tokenizer, text_model)
    trained_at = None if train_eps is None else Fraction(parse_eps(train_eps).label)
    meta = EncoderMeta(name, type(image_encoder).__name__, method, None if trained_at is None else float(trained_at),
                       f"python: {type(image_encoder).__module__}.{type(image_encoder).__qualname__}",
                       tensors_sha256(image_encoder, given, *([text_model] if text_model is not None else [])))
    encoder = ExternalEncoder(image_encoder, meta, int(first.images.shape[-1]), given, tokenizer, text_model)
    spec = EncoderSpec(name, method, trained_at, source=ModuleSource(encoder), description=meta.source,
                       defence=make_defence(defence) if defence else None)
    req = RunRequest(suite=suite, encoders=(spec,), attack=attack, eps=tuple(parse_eps(e) for e in eps_list),
                     tasks=("zeroshot",), datasets=tuple(datasets), n_samples=n_samples, seed=seed, out=Path(out),
                     device=device, batch_size=batch_size, force=force, allow_training=False, progress=progress)
    return run(req)


def _class_embeddings(text_embeddings, datasets: Sequence[str], tokenizer, text_model) -> dict[str, torch.Tensor]:
    if text_embeddings is None:
        if tokenizer is None or text_model is None:
            raise BenchError("give text_embeddings ({dataset: (C, D) tensor}) or both tokenizer and text_model")
        return {}
    if isinstance(text_embeddings, torch.Tensor):
        if len(datasets) != 1:
            raise BenchError(f"a bare tensor of class embeddings fits one dataset; {len(datasets)} are evaluated "
                             f"({', '.join(datasets)}): pass {{dataset: tensor}}")
        return {datasets[0]: text_embeddings.detach()}
    unknown = sorted(set(text_embeddings) - set(datasets))
    if unknown:
        raise BenchError(f"class embeddings for {', '.join(unknown)}, which is not evaluated (datasets: "
                         f"{', '.join(datasets)})")
    return {d: torch.as_tensor(t).detach() for d, t in text_embeddings.items()}
