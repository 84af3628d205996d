"""The GitHub Actions workflow of docs/check-in-ci.md, run here: its `bench` commands (the one-off baseline and
the CI step), read from the page itself, on a micro tower file committed beside the baseline in a git work tree.
They pass (status 0, a JUnit file that parses, a Markdown summary); then the tower file is replaced and the same CI
command fails in one line naming both hashes (status 1), and with the file gone fails in one line (status 2)."""

from __future__ import annotations

import os
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from bench.cli import main
from bench.core.checkpoints import save_tensors, sha256_file
from bench.micro.encoders import load_micro_clip

PAGE = Path(__file__).resolve().parents[1] / "docs" / "check-in-ci.md"


def fenced(text: str, language: str, after: str) -> str:
    """The first ```language block after the line ``after``."""
    return re.search(rf"^```{language}\n(.*?)^```", text[text.index(after):], re.S | re.M).group(1)


def bench_lines(script: str) -> list[list[str]]:
    return [shlex.split(line)[1:] for line in script.splitlines() if line.startswith("bench ")]


def workflow_step() -> tuple[list[list[str]], dict[str, str]]:
    """The `bench` commands and the environment of the workflow's check step."""
    jobs = yaml.safe_load(fenced(PAGE.read_text(), "yaml", "### The workflow"))["jobs"]
    (step,) = [s for s in jobs["bench-check"]["steps"] if "bench check" in s.get("run", "")]
    return bench_lines(step["run"]), step.get("env", {})


def tower(path: Path, shift: float = 0.0) -> str:
    """The micro CLIP's image tower (shifted by ``shift``) as a tower file; its sha256."""
    state = load_micro_clip().tower.visual.state_dict()
    return save_tensors(path, {k: v + shift if v.is_floating_point() else v for k, v in state.items()})


def run(args: list[str], summary: Path) -> int:
    """A documented `bench` command, the job summary file standing for $GITHUB_STEP_SUMMARY."""
    return main([a.replace("$GITHUB_STEP_SUMMARY", str(summary)) for a in args])


@pytest.mark.slow
def test_the_documented_workflow_checks_a_tower_file(tmp_path, monkeypatch, capsys):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)  # the tower and the baseline are committed together
    (repo / "models").mkdir()
    (repo / "ci").mkdir()
    sha = tower(repo / "models" / "visual.safetensors")
    monkeypatch.chdir(repo)
    once = bench_lines(fenced(PAGE.read_text(), "bash", "### Once: make the baseline"))
    ci, env = workflow_step()
    assert [c[0] for c in once] == ["run", "check"] and [c[0] for c in ci] == ["check"]
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    summary = tmp_path / "summary.md"
    for command in once:
        assert run(command, summary) == 0
    baseline = (repo / "ci" / "robustness-baseline.csv").read_text()
    assert "../models/visual.safetensors on micro" in baseline and sha in baseline and str(repo) not in baseline

    capsys.readouterr()
    assert run(ci[0], summary) == 0, capsys.readouterr().out
    cases = ET.parse(repo / "robustness.xml").getroot().iter("testcase")
    assert {c.get("classname") for c in cases} == {"bench-check.mine"}
    assert ET.parse(repo / "robustness.xml").getroot().get("failures") == "0"
    text = summary.read_text()
    assert text.startswith("### bench check: all ") and "| mine zeroshot/novel-shapes" in text

    capsys.readouterr()
    replaced = tower(repo / "models" / "visual.safetensors", shift=0.01)
    assert run(ci[0], summary) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"CHECKPOINT CHANGED mine: sha256 {replaced}") and f"is not the baseline's {sha}" in line
    assert sha256_file(repo / "models" / "visual.safetensors") == replaced

    os.remove(repo / "models" / "visual.safetensors")
    assert run(ci[0], summary) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot rebuild mine (../models/visual.safetensors on micro)" in err
