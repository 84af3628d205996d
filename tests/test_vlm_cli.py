"""End-to-end: `bench run` with the vision-language tasks on the micro suite (a few samples), the stored rows and
records, the gallery, and the one-line errors for protocols that do not fit a task."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.cli import main
from bench.store import Store


@pytest.mark.slow
def test_ensemble_on_captioning_and_vqa(tmp_path, capsys):
    out = tmp_path / "results"
    code = main(["run", "--encoder", "clip", "--task", "coco-captioning,vqav2", "--attack", "ensemble", "--eps",
                 "4/255", "--n-samples", "2", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "micro-coco clean" in printed and "micro-vqa 4/255" in printed

    rows = Store(out).rows()
    attacked = rows[rows.eps > 0]
    assert set(attacked.attack) == {"ensemble"} and (attacked.steps == 100).all() and (attacked.restarts == 1).all()
    assert (attacked.precision == "fp32").all() and attacked.protocol.str.startswith("ensemble: worst of clean").all()
    cider = rows[rows.metric == "cider"].set_index("eps").value
    assert cider[4 / 255] <= cider[0.0]
    assert {"bleu4", "meteor", "rouge_l", "clean_cider"} <= set(rows[rows.task == "coco-captioning"].metric)
    vqa = rows[rows.metric == "vqa_accuracy"].set_index("eps").value
    assert vqa[4 / 255] <= vqa[0.0]

    run_dir = next(d for d in Store(out).run_dirs() if "coco-captioning" in d.name and "ensemble" in d.name)
    records = pd.concat(pd.read_csv(p, keep_default_na=False) for p in (run_dir / "samples").glob("*.csv"))
    assert len(records) == 2 and {"clean_caption", "adv_caption", "references", "broken_by"} <= set(records.columns)
    assert records.cider.mean() == pytest.approx(cider[4 / 255])
    gallery = out / "gallery" / run_dir.name
    assert len(list(gallery.glob("*.png"))) == 2 and len(list(gallery.glob("*.txt"))) == 2


@pytest.mark.parametrize("args,message", [
    (["--task", "coco-captioning", "--attack", "aa-custom"], "does not apply to task coco-captioning"),
    (["--attack", "ensemble"], "is a vision-language protocol; task zeroshot takes"),
    (["--task", "targeted", "--attack", "apgd"], "it takes: none, targeted, targeted-500"),
    (["--task", "vqav2", "--attack", "ensemble", "--attack-backend", "autoattack"], "native engine only"),
    (["--task", "vqav2", "--dataset", "micro-coco", "--attack", "ensemble"], "unknown dataset 'micro-coco'"),
])
def test_protocol_task_mismatch_is_one_line(args, message, capsys, tmp_path):
    assert main(["run", "--eps", "4/255", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
