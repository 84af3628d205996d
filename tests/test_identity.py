"""A stored number knows what produced it: the cell id hashes the protocol's definition, the task's metric
definition and the engine version; a cell computed by other code or other package versions is not reused."""

from __future__ import annotations

import dataclasses
import json

import pytest

from attacks.registry import ATTACKS
from bench.core.config import CellConfig
from bench.core.eps import parse_eps
from bench.core.errors import BenchError
from bench.core.provenance import git_sha, versions
from bench.runner import RunRequest, reuse_problem, run


def small_request(tmp_path, **kw) -> RunRequest:
    base = dict(encoders=("clip",), attack="apgd", eps=(parse_eps("4/255"),), datasets=("novel-colours",), n_samples=4,
                out=tmp_path / "results", progress=False)
    base.update(kw)
    return RunRequest(**base)


def attacked_run_ids(rows) -> set[str]:
    return set(rows[rows["eps"] > 0]["run_id"])


def test_every_part_of_the_identity_changes_the_run_id():
    cfg = CellConfig("micro", "clip", "sha", "zeroshot", "novel-shapes", "apgd", 4 / 255, "4/255", 10, 0,
                     protocol={"stages": [{"iterations": 100}]}, metric_definition="accuracy v1", engine_version="1")
    for change in (dict(protocol={"stages": [{"iterations": 50}]}), dict(metric_definition="accuracy v2"),
                   dict(engine_version="2"), dict(encoder_sha256="other")):
        assert dataclasses.replace(cfg, **change).run_id != cfg.run_id, change


@pytest.mark.slow
def test_editing_a_preset_never_reuses_its_cells(tmp_path):
    first = run(small_request(tmp_path))
    preset = ATTACKS.get("apgd")
    stage = dataclasses.replace(preset.stages[0], iterations=20)
    edited = dataclasses.replace(preset, stages=(stage,))
    with ATTACKS.temporarily("apgd", edited, "apgd cut to 20 iterations"):
        second = run(small_request(tmp_path))
    assert attacked_run_ids(first).isdisjoint(attacked_run_ids(second))
    assert set(second[second["eps"] > 0]["steps"]) == {20}
    # the clean cell does not depend on the attack, so it is shared
    assert set(first[first["eps"] == 0]["run_id"]) == set(second[second["eps"] == 0]["run_id"])


def test_reuse_refuses_other_code_and_other_packages():
    here = {"git_sha": git_sha(), "versions": versions()}
    assert reuse_problem(here) is None
    assert reuse_problem({**here, "git_sha": "0123abc"}) is None  # committed code: the engine version speaks for it
    dirty = reuse_problem({**here, "git_sha": "0123abc+dirty.ffffffffff"})
    assert dirty and "uncommitted code" in dirty
    older = reuse_problem({**here, "versions": {**versions(), "torch": "1.0.0"}})
    assert older and "torch 1.0.0" in older and "\n" not in older


@pytest.mark.slow
def test_a_cell_from_other_packages_is_refused_until_forced(tmp_path):
    rows = run(small_request(tmp_path))
    run_id = sorted(attacked_run_ids(rows))[0]
    card_path = tmp_path / "results" / "runs" / run_id / "card.json"
    card = json.loads(card_path.read_text())
    card["versions"] = {**card["versions"], "torch": "1.0.0"}
    card_path.write_text(json.dumps(card))
    with pytest.raises(BenchError, match=r"torch 1\.0\.0 .*--force recomputes it"):
        run(small_request(tmp_path))
    forced = run(small_request(tmp_path, force=True))
    assert run_id in attacked_run_ids(forced)
    assert json.loads(card_path.read_text())["versions"]["torch"] == versions()["torch"]
