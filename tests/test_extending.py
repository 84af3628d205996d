"""The extension table is true: a task is one file, dropped into the ``tasks`` package (found by the registry's
discovery) or shipped by an installed distribution (an entry point in ``clip_robust_bench.tasks``), with the datasets
it runs on declared in the file itself (``datasets = {suite: (dataset, …)}``). Here a throwaway task written to a
temporary directory is registered both ways, run by ``bench run`` and shown by ``bench report``, in a subprocess
that finds it on PYTHONPATH only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.store import Store

ROOT = Path(__file__).resolve().parents[1]
TASK = '''"""A throwaway task: the zero-shot logit margin (correct class minus the best other), clean images only."""
import torch

from tasks.base import Metric, to_float
from tasks.registry import register_task
from tasks.zeroshot_model import ZeroShotClassifier


{decorator}class MarginTask:
    name = "margin"
    headline_metric = "margin"
    metric_definition = "margin: mean over samples of the correct class's logit minus the best other class's"
    description = "zero-shot logit margin (a test's throwaway task)"
    datasets = {{"micro": ("novel-colours",)}}

    def load(self, suite, dataset, n_samples, seed):
        return suite.load_classification(dataset, n_samples, seed)

    def sample_ids(self, data):
        return data.ids

    def evaluate(self, encoder, data, rows, ctx):
        with torch.no_grad():
            logits = ZeroShotClassifier.for_data(encoder, data)(to_float(data.images[rows], ctx.device))
        y = torch.as_tensor(data.labels[rows], device=logits.device)[:, None]
        margin = logits.gather(1, y)[:, 0] - logits.scatter(1, y, float("-inf")).amax(dim=1)
        return [{{"sample_id": data.ids[r], "index": int(data.indices[r]), "margin": float(m)}}
                for r, m in zip(rows, margin)]

    def metrics(self, records, attacked):
        return [Metric("margin", float(records["margin"].astype(float).mean()))]
'''
DRIVER = """import sys
{discovery}
from bench.cli import main
args = ["--task", "margin", "--attack", "none", "--n-samples", "4", "--out", "results", "--no-progress"]
assert main(["run", *args]) == 0
assert main(["report", "--out", "results", "--task", "margin"]) == 0
"""


def install(site: Path, how: str) -> str:
    """The task file in ``site``, registered ``how``; returns the line that makes it visible to the driver."""
    if how == "discovery":  # the file as it would sit in tasks/, the package's path extended to the directory
        (site / "margin.py").write_text(TASK.format(decorator="@register_task()\n"))
        return f"import tasks\ntasks.__path__.append({str(site)!r})"
    (site / "crb_margin_task.py").write_text(TASK.format(decorator=""))
    info = site / "crb_margin_task-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: crb-margin-task\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[clip_robust_bench.tasks]\nmargin = crb_margin_task:MarginTask\n")
    return ""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["discovery", "entry point"])
def test_a_task_is_one_file(tmp_path, how):
    site = tmp_path / "site"
    site.mkdir()
    driver = DRIVER.format(discovery=install(site, how))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "OMP_NUM_THREADS": "1",
           "BENCH_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", driver], env=env, capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    rows = Store(tmp_path / "results").rows()
    assert set(rows["task"]) == {"margin"} and set(rows["dataset"]) == {"novel-colours"}
    (value,) = rows.loc[rows["metric"] == "margin", "value"]
    assert value > 0  # the micro CLIP classifies colour almost perfectly: the right class leads
    assert "| clip |" in done.stdout and "margin" in done.stdout
