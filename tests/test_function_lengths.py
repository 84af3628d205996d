"""Function length, measured from the source (scripts/function_lengths.py): the attack engine keeps its functions
short enough to read as named steps; the measurement itself is checked on a known snippet."""

from __future__ import annotations

from script_modules import load_script

ATTACKS_LIMIT = 60  # lines from `def` to the last line, docstring included


def measure():
    """The script, loaded as a module."""
    return load_script("function_lengths")


def test_lengths_count_from_def_to_last_line(tmp_path):
    source = tmp_path / "pkg" / "mod.py"
    source.parent.mkdir()
    source.write_text("@decorator\ndef f(a,\n      b):\n    '''doc'''\n\n    return a\n\n\nclass C:\n"
                      "    def m(self):\n        def inner():\n            pass\n        return inner\n")
    found = {f.name: (f.line, f.lines) for f in measure().function_lengths(source, tmp_path)}
    assert found == {"f": (2, 5), "C.m": (10, 4), "C.m.<locals>.inner": (11, 2)}
    assert [f.name for f in measure().longest(("pkg",), tmp_path)] == ["f", "C.m", "C.m.<locals>.inner"]


def test_attack_engine_functions_stay_short():
    long = [str(f) for f in measure().longest(("attacks",)) if f.lines > ATTACKS_LIMIT]
    assert not long, long
