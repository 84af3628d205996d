"""Attack protocols as files: the presets in ``attacks/presets/*.toml`` and a user's own (``--attack ./p.toml``) have
one schema, checked here with one-line errors that name the file and the field.

    # attacks/presets/aa-custom.toml
    name = "aa-custom"                       # lower-case [a-z0-9._-]; its name in the store and in reports
    description = "FARE's AutoAttack ..."    # one line, for `bench list` (not part of the cell's identity)
    aliases = []                             # other names it answers to (optional)
    norm = "linf"                            # threat model: linf or l2 (default linf)
    craft_on = "model"                       # or "base": crafted on a defended encoder's undefended base (transfer)
    eot = 1                                  # draws of a randomised defence each gradient averages over
    backward = "autograd"                    # or "bpda": how gradients pass a test-time defence

    [[stages]]                               # in order; each attacks the points the stages before it left robust
    method = "apgd"                          # apgd | pgd (native); fab | square (run by pyautoattack)
    loss = "ce"                              # a registered loss (`attacks.losses`): ce, dlr, dlr-targeted, ...
    iterations = 100
    restarts = 5                             # optional (default 1)
    targets = 0                              # targeted losses: target classes tried (≥ 1)
    momentum = 0.0                           # pgd only
    step_size = "1/255"                      # pgd only: a fixed step (number or fraction); default 2.5·ε/iterations
    last_iterate = false                     # pgd only: score the final iterate alone

A stage's keys are the fields of ``attacks.protocols.Stage``: a field added there is a key of the files at once. The
protocol read is the same ``Protocol`` a preset is, so its cells hash its ``definition()`` exactly as before.
"""

from __future__ import annotations

from pathlib import Path

from attacks.base import BALLS
from attacks.losses import LOSSES
from attacks.protocols import METHODS, Protocol, Stage
from bench.core.datafile import DataFile
from bench.core.errors import BenchError

PRESETS = Path(__file__).resolve().parent / "presets"
PGD_ONLY = ("momentum", "step_size", "last_iterate")


def read_protocol(path: str | Path) -> tuple[Protocol, tuple[str, ...]]:
    """The protocol a file defines, and its aliases."""
    data = DataFile(path, "attack protocol")
    raw = dict(data.load())
    aliases = tuple(data.name(a, f"aliases[{i}]") for i, a in enumerate(data.typed(raw.pop("aliases", []), "aliases",
                                                                                   "tuple[str, ...]")))
    stages = raw.pop("stages", [])
    head = data.table(raw, "", Protocol, skip=("stages",))
    data.name(head["name"], "name")
    data.check(head.get("norm", "linf") in BALLS, "norm", f"unknown threat model {head.get('norm')!r} (known: "
               f"{', '.join(BALLS)})")
    data.check(isinstance(stages, list), "stages", "expected an array of tables ([[stages]])")
    parsed = tuple(read_stage(data, s, f"stages[{i}]") for i, s in enumerate(stages))
    try:
        return Protocol(**head, stages=parsed), aliases
    except ValueError as exc:  # craft_on, backward and eot are checked by the Protocol itself
        raise data.error("", str(exc)) from exc


def read_stage(data: DataFile, raw, field: str) -> Stage:
    fields = data.table(raw, field, Stage)
    data.check(fields["method"] in METHODS, f"{field}.method", f"unknown method {fields['method']!r} (known: "
               f"{', '.join(METHODS)})")
    stage = Stage(**fields)
    try:
        spec = LOSSES.get(stage.loss)
    except BenchError as exc:
        raise data.error(f"{field}.loss", str(exc)) from exc
    data.check(stage.iterations >= 1, f"{field}.iterations", f"must be at least 1, got {stage.iterations}")
    data.check(stage.restarts >= 1, f"{field}.restarts", f"must be at least 1, got {stage.restarts}")
    if spec.targeted:
        data.check(stage.targets >= 1, f"{field}.targets", f"the targeted loss {stage.loss} needs at least 1 target "
                   f"class, got {stage.targets}")
    else:
        data.check(stage.targets == 0, f"{field}.targets", f"applies to targeted losses only, not {stage.loss}")
    if stage.method != "pgd":
        given = [k for k in PGD_ONLY if k in raw]
        data.check(not given, f"{field}.{given[0] if given else ''}", f"applies to pgd stages only, not "
                   f"{stage.method}")
    data.check(0 <= stage.momentum < 1, f"{field}.momentum", f"must be in [0, 1), got {stage.momentum}")
    data.check(stage.step_size is None or stage.step_size > 0, f"{field}.step_size",
               f"must be positive, got {stage.step_size}")
    return stage


def preset_files() -> list[Path]:
    return sorted(PRESETS.glob("*.toml"), key=lambda p: p.stem)


def is_protocol_file(text: str) -> bool:
    """Whether an ``--attack`` value names a file rather than a registered protocol."""
    return text.strip().endswith(".toml") or "/" in text or "\\" in text
