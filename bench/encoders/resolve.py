"""What an ``--encoder`` value names:

    fare4                    a registered encoder (its suite's published, committed or trained-on-demand weights)
    ENCODER+DEFENCE          any of these under a test-time defence (``bench.defences``): clip+ttc, fare4+clipure
    hf-hub:ORG/REPO          a whole open_clip CLIP from the hub, evaluated as it is; named ORG/REPO in tables
    NAME=SOURCE              an image tower (path, URL, hf-hub:ORG/REPO/FILE), a whole CLIP (hf-hub:ORG/REPO) or
                             ``train[:FIELD=VALUE…]`` (the suite's recipe, fields changed), on the suite's base or on
                             ``--base``; NAME lower-case [a-z0-9._-]

An unknown NAME makes an external encoder (method "external", no training ε). A registered NAME keeps its method
and ε but measures the user's checkpoint instead of the registry's: its rows carry that checkpoint's sha256 and
source, so they never merge with the registry's rows under the same name, and a line on stderr says so.
"""

from __future__ import annotations

import re
import sys
from dataclasses import replace

from bench.core.errors import BenchError
from bench.defences import split_defence
from bench.encoders.bases import parse_base
from bench.encoders.registry import ENCODERS, EncoderSpec
from bench.encoders.sources import parse_source
from bench.encoders.sources.hub_model import EXTERNAL, HubModel
from bench.encoders.sources.train import Trained

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
FORMS = "NAME, hf-hub:ORG/REPO or NAME=SOURCE"


def resolve_encoder(value, base: str | None = None) -> EncoderSpec:
    """The ``EncoderSpec`` an ``--encoder`` value names (an ``EncoderSpec`` passes through, renamed to nothing); a
    ``+DEFENCE`` suffix (``clip+ttc``) puts it under a test-time defence (``bench.defences``)."""
    if isinstance(value, EncoderSpec):
        return value
    text, defence = split_defence(str(value).strip())
    spec = _undefended(text, base)
    return spec if defence is None else replace(spec, defence=defence)


def _undefended(text: str, base: str | None) -> EncoderSpec:
    if "=" in text:
        return _named_source(text, base)
    if text.startswith("hf-hub:"):
        source = parse_source(text, f"--encoder {text}")
        if not isinstance(source, HubModel):
            raise BenchError(f"--encoder {text}: an image-tower file needs a name and a base: --encoder "
                             f"NAME={text} [--base ARCH/TAG]")
        return EncoderSpec(source.repo, EXTERNAL, None, source=source, base=base,
                           description=f"whole open_clip CLIP {source}")
    name = ENCODERS.canonical(text)
    spec = ENCODERS.get(name)
    return spec if spec.name == name else replace(spec, name=name)  # a plugin may name its spec differently


def _named_source(text: str, base: str | None) -> EncoderSpec:
    name, _, where = text.partition("=")
    name, where = name.strip(), where.strip()
    if not name or not where:
        raise BenchError(f"--encoder {text!r}: expected {FORMS}")
    if not NAME.match(name):
        raise BenchError(f"--encoder {text!r}: the name {name!r} must be lower-case letters, digits, '.', '_' or '-' "
                         "and start with a letter or digit")
    source = parse_source(where, f"--encoder {name}")
    if isinstance(source, Trained) and base:
        raise BenchError(f"--encoder {text}: `train` fine-tunes the suite's own base; --base does not apply to it")
    retired = _retired(name)
    if retired:
        raise BenchError(retired)
    spec = spec_for(name, source, base, f"--encoder {text}")
    if name in ENCODERS and not isinstance(source, Trained):
        print(f"note: {spec.name} here is your checkpoint {source}, not the registry's; its rows carry that "
              f"checkpoint's sha256 and source, so they never merge with the registry's {spec.name} (unless it is the "
              "same file)", file=sys.stderr)
    return spec


def spec_for(name: str, source, base: str | None, what: str = "") -> EncoderSpec:
    """The encoder ``name`` with its weights from ``source`` (on ``base``): a registered name keeps its method and
    ε (an alias, fare, replaces the checkpoint of the name it stands for, fare4), any other is external."""
    if name not in ENCODERS:
        if isinstance(source, Trained):
            raise BenchError(f"{what or name}: {name!r} is not a registered robust encoder, so it has no objective "
                             "to train with (see `bench list encoders`)")
        return EncoderSpec(name, EXTERNAL, None, source=source, base=base, description=f"external encoder {source}")
    name = ENCODERS.canonical(name)
    return replace(ENCODERS.get(name), name=name, source=source, base=base)


def _retired(name: str) -> str | None:
    """The registry's message for a retired name (it must not become an external encoder of the same spelling)."""
    if name in ENCODERS:
        return None
    try:
        ENCODERS.canonical(name)
    except BenchError as exc:
        return None if str(exc).startswith(f"unknown {ENCODERS.kind} ") else str(exc)
    return None


def resolve_encoders(values, base: str | None = None) -> list[EncoderSpec]:
    """Every ``--encoder`` value resolved, duplicates dropped (order kept); ``base`` is checked here too, so a bad
    ``--base`` is refused before anything loads."""
    if base:
        parse_base(base)
    specs = [resolve_encoder(v, base) for v in values]
    seen, out = set(), []
    for spec in specs:
        key = spec_key(spec)
        if key not in seen:
            seen.add(key)
            out.append(spec)
    return out


def spec_key(spec: EncoderSpec) -> tuple[str, str, str]:
    """What makes two resolved ``--encoder`` values the same encoder (an alias and its name are one)."""
    return (spec.full_name, str(spec.source), str(spec.base))
