"""Paper-suite encoders through a fake Hugging Face cache with the real repositories' file layouts (offline)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import open_clip
import pytest
import torch
from test_paper_fakes import (
    TINY_CFG,
    build_fake_hub,
    fine_tuned,
    open_clip_repo,
    tiny,
    tiny_clip,
    torch_bytes,
    write_hub_file,
)

from bench.core.errors import BenchError, NeedsTraining
from bench.encoders.registry import ENCODERS
from bench.paper import encoders
from bench.paper.activation import check_activation
from bench.paper.suite import weight_overrides


@pytest.fixture
def hub(tmp_path, monkeypatch):
    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "bench-cache"))
    return cache


@pytest.fixture(scope="module")
def fake_models(tmp_path_factory):
    cache = tmp_path_factory.mktemp("hub")
    return cache, build_fake_hub(cache)


def _same_embeddings(encoder, model: open_clip.CLIP) -> float:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model.visual((x - encoder.tower.mean) / encoder.tower.std)
        return float((encoder(x) - want).abs().max())


def test_every_paper_encoder_resolves_and_loads(fake_models, monkeypatch, tmp_path):
    cache, models = fake_models
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    family = tiny(encoders.PAPER_L14)
    for name in ("clip", "fare2", "fare4", "tecoa2", "tecoa4", "simclip2", "simclip4"):
        spec = ENCODERS.get(name)
        enc = encoders.load_encoder(family, spec, "cpu")
        assert _same_embeddings(enc, models[name]) < 1e-5, name
        assert enc.meta.name == name and enc.meta.method == spec.method and enc.meta.arch == "ViT-L-14-quickgelu"
        assert enc.meta.checkpoint_sha256 and len(enc.meta.checkpoint_sha256) == 64
        assert (enc.meta.train_eps is None) == (name == "clip")
        # the text tower is the original's everywhere, so zero-shot heads differ only through the image tower
        assert torch.allclose(enc.encode_text(["a photo of a dog."]),
                              torch.nn.functional.normalize(models["clip"].encode_text(
                                  enc.tokenizer(["a photo of a dog."])), dim=-1), atol=1e-5)
    assert "hf-hub:chs20/fare4-clip/open_clip_model.safetensors" in encoders.load_encoder(
        family, ENCODERS.get("fare4"), "cpu").meta.source
    simclip4 = encoders.load_encoder(family, ENCODERS.get("simclip4"), "cpu")
    assert simclip4.meta.source == "hf-hub:hossainzarif19/SimCLIP/simclip4.pt on ViT-L-14/openai"
    # no published checkpoint: the paper recipe, trained on demand (refused here with the command that trains it)
    for name in ("simclip-siamese2", "simclip-siamese4", "fare1"):
        with pytest.raises(NeedsTraining, match=f"bench train --encoder {name}"):
            encoders.load_encoder(family, ENCODERS.get(name), "cpu", allow_training=False)

    b32 = tiny(encoders.PAPER_B32)
    for name, key in (("clip", "b32-clip"), ("fare4", "b32-fare4"), ("tecoa4", "b32-tecoa4")):
        enc = encoders.load_encoder(b32, ENCODERS.get(name), "cpu")
        assert _same_embeddings(enc, models[key]) < 1e-5 and enc.meta.arch == "ViT-B-32"
    with pytest.raises(BenchError, match="no published ViT-B-32 checkpoint for 'fare2'.*--encoder-weights fare2="):
        encoders.load_encoder(b32, ENCODERS.get("fare2"), "cpu")


def test_offline_without_cache_names_the_model_and_the_fetch_command(hub):
    with pytest.raises(BenchError) as err:
        encoders.load_encoder(tiny(encoders.PAPER_L14), ENCODERS.get("fare4"), "cpu")
    msg = str(err.value)
    assert "\n" not in msg and "fare4" in msg and "HF_HUB_OFFLINE" in msg and "hf download chs20/fare4-clip" in msg
    with pytest.raises(BenchError, match="hf download timm/vit_large_patch14_clip_224.openai"):
        encoders.load_encoder(tiny(encoders.PAPER_L14), ENCODERS.get("clip"), "cpu")


def test_tower_files_in_every_published_layout(hub, tmp_path):
    base = tiny_clip(1)
    write_hub_file(hub, "timm/vit_large_patch14_clip_224.openai", "open_clip_pytorch_model.bin",
                   torch_bytes(base.state_dict()))
    tuned = fine_tuned(base, 7)
    tecoa = tmp_path / "tecoa_eps_4.pt"  # TeCoA's training script: a dict with the tower under this key
    torch.save({"epoch": 10, "vision_encoder_state_dict": tuned.visual.state_dict()}, tecoa)
    wrapped = tmp_path / "ddp.pt"  # a whole CLIP saved from DataParallel
    torch.save({f"module.{k}": v for k, v in tuned.state_dict().items()}, wrapped)
    write_hub_file(hub, "someone/robust", "tower.pt", torch_bytes(tuned.visual.state_dict()))
    family = tiny(encoders.PAPER_L14)
    for where in (str(tecoa), str(wrapped), tecoa.as_uri(), "hf-hub:someone/robust/tower.pt"):
        overrides = weight_overrides([f"fare4={where}"])
        enc = encoders.load_encoder(family, ENCODERS.get("fare4"), "cpu", overrides=overrides)
        assert _same_embeddings(enc, tuned) < 1e-5, where
        assert enc.meta.source.startswith(where)
    # a URL is downloaded once into $BENCH_CACHE/downloads
    assert len(list((tmp_path / "bench-cache" / "downloads").rglob("tecoa_eps_4.pt"))) == 1


def test_incompatible_or_unsafe_checkpoints_are_refused(hub, tmp_path):
    base = tiny_clip(1)
    write_hub_file(hub, "timm/vit_large_patch14_clip_224.openai", "open_clip_pytorch_model.bin",
                   torch_bytes(base.state_dict()))
    family = tiny(encoders.PAPER_L14)
    wider = {**TINY_CFG, "vision_cfg": {**TINY_CFG["vision_cfg"], "width": 64}}
    other = open_clip.CLIP(**wider)
    bad = tmp_path / "wide.pt"
    torch.save(other.visual.state_dict(), bad)
    with pytest.raises(BenchError, match=r"does not fit the ViT-L-14-quickgelu image tower: .*shape mismatch"):
        encoders.load_encoder(family, ENCODERS.get("fare4"), "cpu", overrides=weight_overrides([f"fare4={bad}"]))
    pickled = tmp_path / "pickled.pt"
    torch.save({"state_dict": base.visual.state_dict(), "args": argparse_like()}, pickled)
    with pytest.raises(BenchError, match="refusing to load"):
        encoders.load_encoder(family, ENCODERS.get("fare4"), "cpu", overrides=weight_overrides([f"fare4={pickled}"]))
    # a hub repository holding another architecture is named as such
    open_clip_repo(hub, "chs20/fare2-clip", other)
    cfg_path = next(hub.rglob("models--chs20--fare2-clip/snapshots/*/open_clip_config.json"))
    cfg_path.write_text(json.dumps({"model_cfg": wider}))
    with pytest.raises(BenchError, match="is not a ViT-L-14 .*vision_cfg.width"):
        encoders.load_encoder(family, ENCODERS.get("fare2"), "cpu")
    for text, message in (("fare4", "NAME=PATH"), ("fare4=/no/such/file.pt", "no such file"),
                          ("farr4=train", "did you mean"), ("fare4=hf-hub:justone", "fare4: .*hf-hub:ORG/REPO")):
        with pytest.raises(BenchError, match=message):
            weight_overrides([text])


class argparse_like:  # noqa: N801 — stands for the Namespace objects training scripts pickle beside the weights
    lr = 1e-5


def test_activation_check_finds_the_activation_the_text_tower_needs():
    tokenizer = open_clip.SimpleTokenizer(context_length=TINY_CFG["text_cfg"]["context_length"])
    for quick in (True, False):
        reference = tiny_clip(1, quick_gelu=quick)
        candidate = fine_tuned(reference, 5).state_dict()
        verdict = check_activation(TINY_CFG, candidate, reference, tokenizer)
        assert verdict.text_weights_equal and verdict.quick_gelu is quick
        assert verdict.text_gap[quick] < 1e-6 < verdict.text_gap[not quick]
    unrelated = check_activation(TINY_CFG, tiny_clip(9).state_dict(), tiny_clip(1), tokenizer)
    assert not unrelated.text_weights_equal and unrelated.quick_gelu is None
    assert "undecided" in unrelated.summary()


def test_activation_command_confirms_the_pins_on_the_fake_hub(fake_models, monkeypatch, capsys):
    from bench.paper import activation

    cache, _ = fake_models
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setitem(encoders.FAMILIES, "paper", tiny(encoders.PAPER_L14))
    assert activation.main(["--suite", "paper"]) == 0
    out = capsys.readouterr().out
    assert out.count("pinned QuickGELU: ok") == 4 and "fare2" in out and "tecoa4" in out


def test_openai_b32_towers_come_from_the_download_cache(hub, tmp_path):
    import hashlib

    base = tiny_clip(3)
    write_hub_file(hub, "timm/vit_base_patch32_clip_224.openai", "open_clip_pytorch_model.bin",
                   torch_bytes(base.state_dict()))
    family = tiny(encoders.PAPER_B32_OPENAI)
    url = family.sources["fare4"].location
    with pytest.raises(BenchError, match="not in the download cache.*HF_HUB_OFFLINE"):
        encoders.load_encoder(family, ENCODERS.get("fare4"), "cpu")
    tuned = fine_tuned(base, 4)
    cached = tmp_path / "bench-cache" / "downloads" / hashlib.sha256(url.encode()).hexdigest()[:16]
    cached.mkdir(parents=True)
    torch.save(tuned.visual.state_dict(), cached / "vitb32_fare_eps_4.pt")
    enc = encoders.load_encoder(family, ENCODERS.get("fare4"), "cpu")
    assert _same_embeddings(enc, tuned) < 1e-5 and enc.meta.source.startswith("https://nc.mlcloud")


def test_families_point_at_the_published_repositories():
    for family in encoders.FAMILIES.values():  # the pinned activation is open_clip's for the base weights
        assert family.quick_gelu == bool(open_clip.get_pretrained_cfg(family.arch, family.tag).get("quick_gelu"))
    assert replace(encoders.PAPER_L14).base_location()[0] == "timm/vit_large_patch14_clip_224.openai"
    assert encoders.PAPER_L14.quick_gelu and not encoders.PAPER_B32.quick_gelu
    assert str(encoders.PAPER_L14.sources["fare2"]) == "hf-hub:chs20/fare2-clip"
    assert str(encoders.PAPER_L14.sources["simclip4"]) == "hf-hub:hossainzarif19/SimCLIP/simclip4.pt"
    assert encoders.PAPER_B32.base_location()[0] == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert Path(open_clip.__file__).exists()
