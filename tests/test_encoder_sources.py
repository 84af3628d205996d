"""Encoder sources and the `--encoder` forms: each spelling's kind, names and their rules, bases, loading onto the
micro base, and every bad input as one line with exit status 2 (offline; a fake hub cache built here)."""

from __future__ import annotations

import re
from dataclasses import replace

import open_clip
import pytest
import torch
from test_paper_fakes import TINY_CFG, open_clip_repo, tiny_clip, write_hub_file

from bench.cli import main
from bench.core.checkpoints import save_tensors, sha256_file
from bench.core.errors import BenchError
from bench.encoders.bases import HubClipBase, OpenClipBase, parse_base
from bench.encoders.provenance import read_provenance
from bench.encoders.resolve import resolve_encoder, resolve_encoders
from bench.encoders.sources import SOURCES, parse_source
from bench.encoders.sources.hub_model import HubModel
from bench.encoders.sources.hub_tower import HubTower
from bench.encoders.sources.local_file import LocalTower
from bench.encoders.sources.train import Trained
from bench.encoders.sources.url import UrlTower
from bench.micro.encoders import MICRO_BASE, load_micro_clip
from bench.micro.suite import load_encoder as micro_encoder


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "hf"


@pytest.fixture(scope="module")
def micro_tower(tmp_path_factory):
    """A micro-architecture tower file (the micro CLIP's, shifted) and the shifted state."""
    visual = load_micro_clip().tower.visual.state_dict()
    g = torch.Generator().manual_seed(2)
    state = {k: v + 0.02 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v for k, v in visual.items()}
    path = tmp_path_factory.mktemp("tower") / "visual.safetensors"
    save_tensors(path, state)
    return path, state


def test_each_spelling_has_its_kind(micro_tower):
    path, _ = micro_tower
    assert parse_source("hf-hub:org/Repo") == HubModel("org/Repo")
    assert parse_source("hf-hub:org/repo/sub/tower.pt") == HubTower("org/repo/sub/tower.pt")
    assert parse_source("https://host/x/tower.pt?dl=1") == UrlTower("https://host/x/tower.pt?dl=1")
    assert parse_source("train") == Trained()
    assert parse_source(str(path)) == LocalTower(str(path.resolve()))
    assert parse_source(str(path.parent)) == LocalTower(str(path.resolve()))  # a `bench train --out` directory
    assert {e.name for e in SOURCES} >= {"hub-model", "hub-tower", "url", "file", "train"}
    for text, message in (("hf-hub:justone", "hf-hub:ORG/REPO"), ("/no/such/tower.pt", "no such file"),
                          ("", "empty source")):
        with pytest.raises(BenchError, match=message):
            parse_source(text)


def test_encoder_forms_and_their_names(micro_tower, capsys):
    path, _ = micro_tower
    hub = resolve_encoder("hf-hub:Org/Some-CLIP")
    assert (hub.name, hub.method, hub.train_eps, hub.source) == ("Org/Some-CLIP", "external", None,
                                                                HubModel("Org/Some-CLIP"))
    mine = resolve_encoder(f"mine={path}", base="micro")
    assert (mine.name, mine.method, mine.train_eps, mine.base) == ("mine", "external", None, "micro")
    assert capsys.readouterr().err == ""
    fare = resolve_encoder(f"fare={path}")  # an alias replaces the checkpoint of the name it stands for
    assert (fare.name, fare.method, str(fare.train_eps)) == ("fare4", "fare", "4/255")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("note: fare4 here is your checkpoint") and str(path) in err[0]
    assert resolve_encoder("fare4=train").source == Trained()
    assert resolve_encoder("fare").name == "fare4" and resolve_encoder("fare").source is None
    assert len(resolve_encoders(["clip", "clip", f"mine={path}", f"mine={path}"])) == 2


@pytest.mark.parametrize("value,base,message", [
    ("Mine=x.pt", None, "must be lower-case"),
    ("mine=", None, "expected NAME, hf-hub:ORG/REPO or NAME=SOURCE"),
    ("mine=/no/such.pt", None, "--encoder mine: no such file"),
    ("mine=train", None, "not a registered robust encoder"),
    ("fare4=train", "ViT-B-32/openai", "--base does not apply"),
    ("simclip-ref4=hf-hub:a/b", None, "now 'simclip4'"),
    ("hf-hub:org/repo/tower.pt", None, "needs a name and a base"),
    ("farre4", None, "did you mean 'fare4'"),
])
def test_bad_encoder_values_are_one_line(value, base, message):
    with pytest.raises(BenchError, match=message) as err:
        resolve_encoder(value, base)
    assert "\n" not in str(err.value)


def test_bases(hub):
    assert parse_base("micro") is MICRO_BASE
    b32 = parse_base("ViT-B-32/openai")
    assert b32 == OpenClipBase("ViT-B-32", "openai", True) and b32.arch_label == "ViT-B-32-quickgelu"
    assert parse_base("ViT-B-32/laion2b_s34b_b79k").quick_gelu is False
    assert parse_base("ViT-B-32/hf-hub:org/repo") == HubClipBase("ViT-B-32", "org/repo", False)
    for text, message in (("ViT-B-33/openai", "did you mean ViT-B-32"), ("ViT-B-32/nosuch", "no pretrained tag"),
                          ("ViT-B-32", "expected micro, ARCH/TAG"), ("ViT-B-32/hf-hub:org", "ARCH/hf-hub:ORG/REPO")):
        with pytest.raises(BenchError, match=message):
            parse_base(text)
    with pytest.raises(BenchError, match="hf download timm/vit_base_patch32_clip_224.openai"):
        b32.load("cpu")  # the offline miss names what to fetch


def test_a_tower_loads_onto_the_micro_base(micro_tower, hub):
    path, state = micro_tower
    enc = micro_encoder(resolve_encoder(f"mine={path}"), "cpu")
    want = load_micro_clip()
    want.tower.visual.load_state_dict(state)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(enc(x), want(x), atol=1e-6)
    assert torch.equal(enc.encode_text(["one red ring."]), want.encode_text(["one red ring."]))  # the base's text
    assert enc.meta.name == "mine" and enc.meta.method == "external" and enc.meta.train_eps is None
    assert enc.meta.checkpoint_sha256 == sha256_file(path) and enc.meta.source.startswith(f"{path.resolve()} on ")


def test_a_whole_hub_clip_is_evaluated_as_the_repository_describes_it(hub):
    model = tiny_clip(5, quick_gelu=False)
    open_clip_repo(hub, "someone/tiny", model)
    enc = micro_encoder(resolve_encoder("hf-hub:someone/tiny"), "cpu")
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    small = torch.nn.functional.interpolate(x, size=(32, 32), mode="bicubic", align_corners=False)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(enc(x), model.visual((small - mean) / std), atol=1e-5)
    assert enc.meta.name == "someone/tiny" and enc.meta.method == "external" and enc.meta.arch == "open_clip CLIP"
    # under a registered name it must be that name's architecture
    with pytest.raises(BenchError, match="is not a micro-vit.*give the checkpoint another name"):
        micro_encoder(resolve_encoder("fare4=hf-hub:someone/tiny"), "cpu")


def test_builtin_architectures_are_named():
    from bench.encoders.sources.hub_model import builtin_name

    cfg = open_clip.get_model_config("ViT-B-32")
    assert builtin_name(cfg) == "ViT-B-32" and builtin_name(TINY_CFG) == "open_clip CLIP"


@pytest.mark.parametrize("args,message", [
    (["--encoder", "Bad=x.pt"], "must be lower-case"),
    (["--encoder", "mine=/no/such.pt"], "no such file"),
    (["--encoder", "mine=x", "--base", "nonsense"], "--base 'nonsense'"),
    (["--encoder", "hf-hub:nobody/nothing"], "hf download nobody/nothing"),
    (["--encoder", "mine={tiny}"], "mine weights .* does not fit the micro-vit"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, hub, tmp_path, capsys):
    tiny = tmp_path / "tiny.pt"
    torch.save(tiny_clip(1).visual.state_dict(), tiny)
    write_hub_file(hub, "unrelated/repo", "x.txt", b"")
    args = [a.replace("{tiny}", str(tiny)) for a in args]
    code = main(["run", *args, "--dataset", "novel-colours", "--n-samples", "2", "--attack", "none",
                 "--out", str(tmp_path / "out"), "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(err) == 1
    assert re.search(message, err[0]), err[0]


def test_a_tower_goes_onto_the_base_named_by_base(hub, tmp_path, monkeypatch):
    """`--base ARCH/hf-hub:ORG/REPO`: the architecture is open_clip's (a tiny one registered here), the weights the
    repository's; the tower replaces the image tower, the text tower stays the base's."""
    builtin = open_clip.get_model_config
    monkeypatch.setattr(open_clip, "get_model_config", lambda name: dict(TINY_CFG) if name == "Tiny-ViT" else
                        builtin(name))
    base_model, tuned = tiny_clip(1, quick_gelu=False), tiny_clip(2, quick_gelu=False)
    open_clip_repo(hub, "someone/base", base_model)
    tower = tmp_path / "tower.pt"
    torch.save(tuned.visual.state_dict(), tower)
    spec = resolve_encoder(f"mine={tower}", base="Tiny-ViT/hf-hub:someone/base")
    enc = micro_encoder(spec, "cpu")
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(enc(x), tuned.visual((x - mean) / std), atol=1e-5)
        text = enc.tokenizer(["one red ring."])
        assert torch.allclose(enc.encode_text(["one red ring."]),
                              torch.nn.functional.normalize(base_model.encode_text(text), dim=-1), atol=1e-5)
    assert enc.meta.arch == "Tiny-ViT"
    assert enc.meta.source == f"{tower} on Tiny-ViT/hf-hub:someone/base"  # both as spelled: what rebuilds it
    again = read_provenance(enc.meta.source)
    assert (str(again.source), again.base) == (str(tower), "Tiny-ViT/hf-hub:someone/base")
    with pytest.raises(BenchError, match="the micro recipe fine-tunes the committed micro CLIP"):
        micro_encoder(replace(resolve_encoder("fare4=train"), base=spec.base), "cpu")
