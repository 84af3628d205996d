"""An encoder in reports and `bench check` is its name *and* its checkpoint: two checkpoints under one name (the
registry's fare4 and `--encoder fare4=my.pt`) are two table rows, never merged and never "latest wins"; rows written
before the checkpoint columns existed still read (their checkpoint from the run card)."""

from __future__ import annotations

import pandas as pd
import pytest
from report_synth import add_cell

from bench.check import checkpoint_notes, compare, merge_baseline
from bench.core.errors import BenchError
from bench.report import build_table, to_markdown
from bench.report.select import encoder_labels, encoder_order, short_source
from bench.store import ROW_COLUMNS, Store, read_rows

REGISTRY = "a" * 64
MINE = "1a2b3c" + "d" * 58
EARLY, LATE = "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"


def two_fare4(root):
    """The registry's fare4 (older run) and the user's fare4=my.pt (newer run), on the same cells."""
    for eps, registry, mine in (("0", 0.95, 0.60), ("4/255", 0.40, 0.10)):
        add_cell(root, "fare4", "novel-shapes", eps, registry, encoder_sha256=REGISTRY, started_at=EARLY,
                 encoder_source="trained on demand: fare4-micro-0123456789ab on committed micro checkpoint")
        add_cell(root, "fare4", "novel-shapes", eps, mine, encoder_sha256=MINE, started_at=LATE,
                 encoder_source="/home/me/my.pt on committed micro checkpoint micro_clip.safetensors")
        add_cell(root, "clip", "novel-shapes", eps, 0.99 if eps == "0" else 0.0, encoder_sha256="c" * 64)


def test_two_checkpoints_under_one_name_are_two_rows(tmp_path):
    two_fare4(tmp_path)
    tab = build_table(Store(tmp_path).rows(), store_root=tmp_path)
    mine, registry = "fare4 [my.pt, sha 1a2b3c]", "fare4 [trained on demand, sha aaaaaa]"
    assert tab.encoders == ["clip", mine, registry]  # registry order; a name's checkpoints together, by label
    col = {c.eps_str: c for c in tab.columns}
    assert tab.values[(registry, col["0"])] == 0.95 and tab.values[(registry, col["4/255"])] == 0.40
    assert tab.values[(mine, col["0"])] == 0.60 and tab.values[(mine, col["4/255"])] == 0.10
    note = next(n for n in tab.notes if n.startswith("checkpoints:"))
    assert "/home/me/my.pt on committed micro checkpoint" in note and f"sha256 {MINE[:12]}" in note
    assert mine in to_markdown(tab) and registry in to_markdown(tab)


def test_one_checkpoint_per_name_keeps_the_plain_name_and_a_rerun_still_wins(tmp_path):
    add_cell(tmp_path, "fare4", "novel-shapes", "0", 0.90, encoder_sha256=REGISTRY, started_at=EARLY)
    add_cell(tmp_path, "fare4", "novel-shapes", "0", 0.92, encoder_sha256=REGISTRY, started_at=LATE, n=201)
    add_cell(tmp_path, "fare4", "novel-shapes", "0", 0.93, encoder_sha256=REGISTRY, started_at=LATE)
    tab = build_table(Store(tmp_path).rows(), store_root=tmp_path)
    assert tab.encoders == ["fare4"]
    assert list(tab.values.values()) == [0.93]  # same checkpoint, same cell: the latest run stands


def test_labels_are_stable_and_widen_until_unambiguous():
    rows = pd.DataFrame({"encoder": ["m", "m", "x"], "encoder_sha256": ["abcdef01" + "0" * 56, "abcdef02" + "0" * 56,
                                                                        ""],
                         "encoder_source": ["hf-hub:org/repo/open_clip_model.safetensors", "https://h/t.pt on base",
                                            ""]})
    labels = encoder_labels(rows)
    assert labels[("m", rows.encoder_sha256[0])] == "m [hf-hub:org/repo, sha abcdef01]"
    assert labels[("m", rows.encoder_sha256[1])] == "m [t.pt, sha abcdef02]"
    assert labels[("x", "")] == "x"
    assert encoder_labels(rows.iloc[::-1]) == labels
    assert short_source("trained on demand: fare4-micro-abc on hf-hub:x/y/w.bin") == "trained on demand"
    assert encoder_order(["zeta", "fare4 [b, sha 2]", "clip", "fare4 [a, sha 1]"]) == \
        ["clip", "fare4 [a, sha 1]", "fare4 [b, sha 2]", "zeta"]


def test_rows_without_checkpoint_columns_still_read(tmp_path):
    run_id = add_cell(tmp_path, "fare4", "novel-shapes", "0", 0.9, encoder_sha256=REGISTRY, encoder_source="trained")
    path = tmp_path / "runs" / run_id / "rows.csv"
    old = read_rows(path).drop(columns=["encoder_sha256", "encoder_source"])
    old.to_csv(path, index=False)  # as written before the columns existed
    assert "encoder_sha256" not in pd.read_csv(path).columns
    assert read_rows(path)["encoder_sha256"].tolist() == ["", ""]
    rows = Store(tmp_path).rows()  # filled from the run card
    assert set(rows["encoder_sha256"]) == {REGISTRY} and set(rows["encoder_source"]) == {"trained"}
    assert list(rows.columns[:len(ROW_COLUMNS)]) == ROW_COLUMNS


def test_check_compares_a_baseline_cell_with_its_own_checkpoint(tmp_path):
    base, now = tmp_path / "base", tmp_path / "now"
    add_cell(base, "fare4", "novel-shapes", "4/255", 0.40, encoder_sha256=REGISTRY)
    two_fare4(now)  # fare4 0.40 under the registry's checkpoint, 0.10 under the user's (newer)
    (r,) = [r for r in compare(Store(base).rows(), Store(now).rows()) if r.encoder == "fare4"]
    assert r.ok and r.current == 0.40  # not the newer run of another checkpoint


def test_check_notes_a_changed_checkpoint_and_refuses_to_guess_between_several(tmp_path):
    base, retrained, both = tmp_path / "base", tmp_path / "retrained", tmp_path / "both"
    add_cell(base, "fare4", "novel-shapes", "4/255", 0.40, encoder_sha256=REGISTRY, encoder_source="trained")
    add_cell(retrained, "fare4", "novel-shapes", "4/255", 0.41, encoder_sha256=MINE, encoder_source="retrained")
    (r,) = compare(Store(base).rows(), Store(retrained).rows())
    assert r.ok and r.current == 0.41
    (note,) = checkpoint_notes(Store(base).rows(), Store(retrained).rows())
    assert f"{REGISTRY[:12]} → {MINE[:12]}" in note and "trained → retrained" in note
    add_cell(both, "fare4", "novel-shapes", "4/255", 0.41, encoder_sha256=MINE)
    add_cell(both, "fare4", "novel-shapes", "4/255", 0.10, encoder_sha256="e" * 64)
    (r,) = compare(Store(base).rows(), Store(both).rows())
    assert not r.ok and "ambiguous" in r.reason and "2 other checkpoints" in r.reason


def test_a_baseline_keeps_one_checkpoint_per_name(tmp_path):
    two_fare4(tmp_path)
    rows = Store(tmp_path).rows()
    with pytest.raises(BenchError, match="several checkpoints under fare4"):
        merge_baseline(None, rows)
    refreshed = merge_baseline(rows[rows["encoder_sha256"] != MINE], rows[rows["encoder_sha256"] != REGISTRY])
    assert set(refreshed.loc[refreshed["encoder"] == "fare4", "encoder_sha256"]) == {MINE}  # replaced, not added
