"""The Python API, `bench.evaluate`, on models built in plain torch: the documented example as written, class
embeddings from a tokenizer and text model, the identity of its cells, and its refusals."""

from __future__ import annotations

import colorsys
import json
import re
from pathlib import Path

import pytest
import torch

import bench
from bench.core.errors import BenchError
from bench.micro.world import COLOURS, HUES_DEG
from bench.store import Store

# the docs page "Bringing your own encoder" holds the example, between the api-example markers
EXAMPLE_PAGE = Path(__file__).resolve().parents[1] / "docs" / "bring-your-own-encoder.md"


def documented_example() -> str:
    text = EXAMPLE_PAGE.read_text()
    block = re.search(r"<!-- api-example -->\n```python\n(.*?)```\n<!-- /api-example -->", text, re.S)
    assert block, f"the Python API example (between the api-example markers) is missing from {EXAMPLE_PAGE}"
    return block.group(1)


class HueEncoder(torch.nn.Module):
    """The documented model: the chroma²-weighted mean of the opponent colours, a direction that is the hue."""

    def forward(self, x):
        r, g, b = x.unbind(1)
        a, c = 2 * r - g - b, 3 ** 0.5 * (g - b)
        return torch.stack([(a * (a * a + c * c)).mean((1, 2)), (c * (a * a + c * c)).mean((1, 2))], 1)


def hue_classes(colours=None) -> torch.Tensor:
    """The hue embeddings of pure ``colours`` (default: the novel-colours dataset's classes)."""
    colours = bench.classnames("novel-colours") if colours is None else colours
    pure = torch.tensor([colorsys.hsv_to_rgb(HUES_DEG[c] / 360, 1, 1) for c in colours])
    return HueEncoder()(pure[:, :, None, None])


@pytest.mark.slow
def test_the_documented_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(documented_example(), str(EXAMPLE_PAGE), "exec"), {"__name__": "example"})
    printed = capsys.readouterr().out
    assert "| hue | 94.0 | 52.0 |" in printed  # the figures the page states under the example
    rows = Store(tmp_path / "results").rows()
    acc = rows[rows["metric"] == "accuracy"].set_index("eps_str")["value"]
    assert acc["0"] == 0.94 and acc["4/255"] == 0.52
    sanity = rows[rows["metric"].str.startswith("sanity:")]
    assert len(sanity) == 4 and (sanity["value"] == 1.0).all()
    assert set(rows["method"]) == {"external"} and set(rows["encoder_source"]) == {"python: example.HueEncoder"}
    runs = tmp_path / "results" / "runs"
    card = json.loads(next(runs.glob("hue-zeroshot-novel-colours-apgd-*/card.json")).read_text())
    assert card["encoder"]["name"] == "hue" and card["encoder"]["arch"] == "HueEncoder"
    assert card["config"]["encoder_sha256"] == rows["encoder_sha256"].iloc[0]


def test_class_embeddings_from_a_tokenizer_and_text_model(tmp_path):
    """A text model in plain torch that embeds a prompt as the hue of the colour word it names: through the micro
    world's own prompts it must classify exactly as the given class embeddings do."""
    table = hue_classes()

    def tokenizer(texts):
        return torch.tensor([next(i for i, c in enumerate(COLOURS) if f" {c} " in f" {t} ") for t in texts])

    text_model = torch.nn.Embedding.from_pretrained(hue_classes(COLOURS))  # token i: the i-th colour of the world
    common = dict(name="hue-text", datasets=["novel-colours"], attack="none", n_samples=12, out=tmp_path)
    by_text = bench.evaluate(HueEncoder(), tokenizer=tokenizer, text_model=text_model, **common)
    by_table = bench.evaluate(HueEncoder(), {"novel-colours": table}, **{**common, "name": "hue-table"})
    accuracy = by_text.loc[by_text.metric == "accuracy", "value"].tolist()
    assert accuracy == by_table.loc[by_table.metric == "accuracy", "value"].tolist() and accuracy[0] > 0.8


def test_cells_are_keyed_on_the_weights(tmp_path):
    common = dict(datasets=["novel-colours"], attack="none", n_samples=4, out=tmp_path)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 8))
    classes = {"novel-colours": torch.randn(7, 8)}
    first = bench.evaluate(model, classes, name="lin", **common)
    again = bench.evaluate(model, classes, name="lin", **common)
    assert set(first["run_id"]) == set(again["run_id"]) and set(first["started_at"]) == set(again["started_at"])
    with torch.no_grad():
        model[2].bias.add_(1.0)
    changed = bench.evaluate(model, classes, name="lin", **common)
    assert set(changed["run_id"]).isdisjoint(first["run_id"])  # new weights, new cells: never the stored numbers
    other_classes = bench.evaluate(model, {"novel-colours": torch.randn(7, 8)}, name="lin", **common)
    assert set(other_classes["run_id"]).isdisjoint(changed["run_id"])
    rows = Store(tmp_path).rows()
    assert rows.groupby("encoder")["encoder_sha256"].nunique()["lin"] == 3


@pytest.mark.parametrize("kwargs,message", [
    (dict(name="fare4"), "registered encoder"),
    (dict(name="My Model"), "lower-case"),
    (dict(text_embeddings={"novel-colours": torch.randn(5, 2)}), r"shape \(5, 2\); expected \(7, D\)"),
    (dict(text_embeddings=torch.randn(7, 2), datasets=["novel-colours", "novel-shapes"]), "fits one dataset"),
    (dict(text_embeddings=None), "give text_embeddings"),
    (dict(text_embeddings={"count": torch.randn(4, 2)}), "count, which is not evaluated"),
])
def test_bad_calls_are_one_line_errors(tmp_path, kwargs, message):
    call = dict(text_embeddings={"novel-colours": torch.randn(7, 2)}, name="hue", datasets=["novel-colours"],
                attack="none", n_samples=2, out=tmp_path)
    call.update(kwargs)
    with pytest.raises(BenchError, match=message) as err:
        bench.evaluate(HueEncoder(), **call)
    assert "\n" not in str(err.value)
