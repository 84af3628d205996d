"""Attack protocols as files: the presets are read from ``attacks/presets/*.toml``; a user's file in the same schema
runs with ``bench run --attack ./p.toml``, is stored and reported under its own name, and a malformed one is refused
in one line that names the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from attacks.protocol_files import PRESETS, preset_files, read_protocol
from attacks.registry import ATTACKS, PROTOCOLS, resolve_attack
from bench.cli import main
from bench.core.errors import BenchError
from bench.store import Store

PGD3 = """name = "my-pgd-3"
description = "PGD, 3 steps of 2/255 (a test's own protocol)"

[[stages]]
method = "pgd"
loss = "ce"
iterations = 3
step_size = "2/255"
"""


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_preset_file_is_a_registered_protocol():
    files = preset_files()
    assert files and {p.stem for p in files} == set(PROTOCOLS)
    for path in files:
        protocol, aliases = read_protocol(path)
        entry = ATTACKS.entry(protocol.name)
        assert entry.value == protocol and entry.aliases == aliases and entry.description == protocol.description


def test_a_copy_of_a_preset_under_another_name_defines_the_same_attack(tmp_path):
    text = (PRESETS / "aa-custom.toml").read_text().replace('"aa-custom"', '"my-aa"')
    mine = resolve_attack(str(write(tmp_path, text)))
    assert mine.name == "my-aa" and mine.summary() == ATTACKS.get("aa-custom").summary()
    assert {**mine.definition(), "name": "aa-custom"} == ATTACKS.get("aa-custom").definition()


def test_fractions_read_as_python_divides():
    assert PROTOCOLS["pgd-100-tga"].stages[0].step_size == 1 / 255


BAD = {
    "invalid TOML": ("name = ", "not valid TOML"),
    "no name": ('description = "d"', "name: missing (required)"),
    "no description": ('name = "x"', "description: missing (required)"),
    "upper-case name": ('name = "My"\ndescription = "d"', "name: 'My' is not a name"),
    "unknown key": ('name = "x"\ndescription = "d"\nsteps = 3', "steps: unknown field"),
    "bad norm": ('name = "x"\ndescription = "d"\nnorm = "l1"', "norm: unknown threat model 'l1'"),
    "stages not tables": ('name = "x"\ndescription = "d"\nstages = 3', "stages: expected an array of tables"),
    "unknown stage key": ('[[stages]]\nmethod = "pgd"\nloss = "ce"\niterations = 3\nsteps = 2',
                          "stages[0].steps: unknown field (known: method, loss, iterations"),
    "no iterations": ('[[stages]]\nmethod = "pgd"\nloss = "ce"', "stages[0].iterations: missing (required)"),
    "text iterations": ('[[stages]]\nmethod = "pgd"\nloss = "ce"\niterations = "ten"',
                        "stages[0].iterations: expected an integer, got a string ('ten')"),
    "zero iterations": ('[[stages]]\nmethod = "pgd"\nloss = "ce"\niterations = 0',
                        "stages[0].iterations: must be at least 1, got 0"),
    "unknown method": ('[[stages]]\nmethod = "fgsm"\nloss = "ce"\niterations = 1',
                       "stages[0].method: unknown method 'fgsm' (known: apgd, pgd, fab, square)"),
    "unknown loss": ('[[stages]]\nmethod = "apgd"\nloss = "dlr-targetted"\niterations = 1',
                     "stages[0].loss: unknown classification loss 'dlr-targetted'; did you mean 'dlr-targeted'"),
    "targeted without targets": ('[[stages]]\nmethod = "apgd"\nloss = "dlr-targeted"\niterations = 1',
                                 "stages[0].targets: the targeted loss dlr-targeted needs at least 1 target class"),
    "targets on an untargeted loss": ('[[stages]]\nmethod = "apgd"\nloss = "ce"\niterations = 1\ntargets = 3',
                                      "stages[0].targets: applies to targeted losses only"),
    "pgd field on apgd": ('[[stages]]\nmethod = "apgd"\nloss = "ce"\niterations = 1\nstep_size = 0.01',
                          "stages[0].step_size: applies to pgd stages only, not apgd"),
    "bad fraction": ('[[stages]]\nmethod = "pgd"\nloss = "ce"\niterations = 1\nstep_size = "1/0"',
                     "stages[0].step_size: expected a number or a fraction like"),
    "momentum out of range": ('[[stages]]\nmethod = "pgd"\nloss = "ce"\niterations = 1\nmomentum = 1.5',
                              "stages[0].momentum: must be in [0, 1), got 1.5"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_malformed_file_is_one_line_naming_file_and_field(tmp_path, case):
    body, expected = BAD[case]
    if body.startswith("[[stages]]"):
        body = 'name = "x"\ndescription = "d"\n\n' + body
    path = write(tmp_path, body)
    with pytest.raises(BenchError) as info:
        resolve_attack(str(path))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"attack protocol {path}: ") and expected in message, message


def test_a_missing_file_and_a_registered_name_are_refused(tmp_path):
    with pytest.raises(BenchError, match=r"attack protocol .*nowhere\.toml: no such file"):
        resolve_attack(str(tmp_path / "nowhere.toml"))
    taken = write(tmp_path, PGD3.replace('"my-pgd-3"', '"apgd-ce"'))
    with pytest.raises(BenchError, match="name 'apgd-ce' is a registered attack; give yours another name"):
        resolve_attack(str(taken))


def test_a_protocol_file_is_refused_by_a_vision_language_task(tmp_path):
    from tasks.captioning import CaptioningTask

    with pytest.raises(BenchError, match="--attack my-pgd-3 does not apply to task coco-captioning"):
        CaptioningTask.protocol(str(write(tmp_path, PGD3)))


@pytest.mark.slow
def test_a_user_protocol_runs_and_is_reported_under_its_own_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, PGD3)
    args = ["--encoder", "clip", "--eps", "4/255", "--dataset", "novel-colours", "--n-samples", "4", "--no-progress"]
    assert main(["run", "--attack", "./p.toml", *args]) == 0
    rows = Store(tmp_path / "results").rows()
    attacked = rows[(rows["eps"] > 0) & (rows["metric"] == "accuracy")]
    assert set(attacked["attack"]) == {"my-pgd-3"} and set(attacked["steps"]) == {3}
    assert set(attacked["protocol"]) == {"PGD-CE 3 it × 1 restart, step 2/255"}
    first = set(attacked["run_id"])
    capsys.readouterr()

    assert main(["report", "--protocol", "my-pgd-3"]) == 0
    assert "my-pgd-3: PGD-CE 3 it × 1 restart, step 2/255" in capsys.readouterr().out

    write(tmp_path, PGD3.replace("iterations = 3", "iterations = 2"))  # the same name, another attack: new cells
    assert main(["run", "--attack", "p.toml", *args]) == 0
    rows = Store(tmp_path / "results").rows()
    again = rows[(rows["eps"] > 0) & (rows["metric"] == "accuracy") & (rows["steps"] == 2)]
    assert len(again) == 1 and first.isdisjoint(set(again["run_id"]))
