"""Untrusted files: a checkpoint that would run code when unpickled is refused and never runs, a file whose hash
does not match its card is refused, and no name a user controls can place a result outside ``--out``."""

from __future__ import annotations

import json
import pickle
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.core.checkpoints import load_tensors, save_tensors
from bench.core.config import CellConfig, safe_component
from bench.core.errors import BenchError
from bench.store import ROW_COLUMNS, Store


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears if the pickle is ever executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def crafted_files(tmp_path: Path, marker: Path) -> dict[str, Path]:
    weights = {"w": torch.ones(2, 2)}
    files = {
        "torch-zip": tmp_path / "evil.pt",  # torch.save's archive, the usual .pt/.bin
        "nested": tmp_path / "nested.pth",  # real tensors beside the payload, as training scripts save them
        "raw-pickle": tmp_path / "raw.bin",  # a bare pickle stream
        "renamed": tmp_path / "fake.safetensors",  # a pickle pretending to be safetensors
    }
    torch.save({"state_dict": Payload(marker)}, files["torch-zip"])
    torch.save({"state_dict": weights, "args": Payload(marker)}, files["nested"])
    files["raw-pickle"].write_bytes(pickle.dumps({"w": Payload(marker)}))
    files["renamed"].write_bytes(pickle.dumps(Payload(marker)))
    return files


def test_the_payload_is_live(tmp_path):
    """Control: an ordinary unpickler does run it, so the refusals below are what keeps the marker away."""
    marker = tmp_path / "marker"
    pickle.loads(crafted_files(tmp_path, marker)["raw-pickle"].read_bytes())
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's notice on the bare pickle stream
@pytest.mark.parametrize("kind", ["torch-zip", "nested", "raw-pickle", "renamed"])
def test_pickled_code_is_refused_and_never_runs(kind, tmp_path):
    marker = tmp_path / "marker"
    path = crafted_files(tmp_path, marker)[kind]
    with pytest.raises(BenchError) as exc:
        load_tensors(path)
    message = str(exc.value)
    assert "\n" not in message and str(path) in message
    if kind != "renamed":
        assert "pickled Python objects" in message and "arbitrary code" in message
    assert not marker.exists()


def test_pickled_training_state_is_refused_on_resume(tmp_path, capsys):
    marker = tmp_path / "marker"
    torch.save({"step": 1, "tower": Payload(marker)}, tmp_path / "last.pt")
    assert main(["train", "--encoder", "fare4", "--steps", "2", "--batch-size", "8", "--n-train", "16", "--resume",
                 "--out", str(tmp_path), "--no-progress"]) == 2
    assert "cannot resume from" in capsys.readouterr().err and not marker.exists()


def test_checkpoint_hash_must_match(tmp_path):
    path = tmp_path / "w.safetensors"
    sha = save_tensors(path, {"w": torch.arange(64, dtype=torch.float32)})
    assert torch.equal(load_tensors(path, expected_sha256=sha)["w"], torch.arange(64, dtype=torch.float32))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one bit of the last weight: still a valid file, a different model
    path.write_bytes(bytes(data))
    assert load_tensors(path)["w"][-1] != 63  # readable without a card ...
    with pytest.raises(BenchError, match="its card records"):
        load_tensors(path, expected_sha256=sha)  # ... refused against one


@pytest.mark.slow
def test_tampered_trained_encoder_is_refused_by_run(tmp_path, monkeypatch, capsys):
    """A cached robust encoder whose weights no longer match its card's sha256 stops `bench run`."""
    from bench.micro.encoders import load_micro_clip
    from bench.micro.suite import training_identity
    from bench.train.cache import encoder_dir
    from bench.train.recipes import recipe

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    directory = encoder_dir(recipe("micro", "fare", 4, training_identity()))
    sha = save_tensors(directory / "visual.safetensors", load_micro_clip().tower.visual.state_dict())
    (directory / "card.json").write_text(json.dumps({"sha256": sha}))
    args = ["run", "--encoder", "fare4", "--attack", "none", "--dataset", "novel-colours", "--n-samples", "2",
            "--no-train",
            "--no-progress", "--out", str(tmp_path / "results")]
    assert main(args) == 0  # the cache entry is the one `bench run` reads
    capsys.readouterr()

    weights = directory / "visual.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    assert main([*args, "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert "its card records" in err and len(err.splitlines()) == 1


names = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["..", ".", "/", "../../etc", "a/../../b", "\\..\\x", "~root", "/abs/path", "\x00", " .. ", "-", "..."])


@given(names)
def test_safe_component_is_one_plain_component(text):
    part = safe_component(text)
    assert part and part not in (".", "..") and "/" not in part and "\\" not in part and "\x00" not in part
    root = Path("/results/runs")
    assert (root / part).resolve().parent == root


@settings(max_examples=50, deadline=None)
@given(encoder=names, task=names, dataset=names, attack=names, label=names)
def test_run_directories_stay_inside_out(encoder, task, dataset, attack, label):
    cfg = CellConfig("micro", encoder, None, task, dataset, attack, 0.0, label, 1, 0)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        run = Store(out).run(cfg)
        assert run.dir.resolve().parent == (out / "runs").resolve() and run.dir.is_dir()
        Store(out).write_derived(encoder + "/../" + label, {"run_id": label}, [])
        written = [p.resolve() for p in Path(tmp).rglob("*")]
        assert all(p == out.resolve() or out.resolve() in p.parents for p in written)
        assert list(Store(out).rows().columns) == ROW_COLUMNS
