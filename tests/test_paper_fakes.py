"""Builders shared by the paper-suite tests: a Hugging Face cache laid out exactly like the real one (refs/main →
snapshots/<commit>/<file>), holding tiny randomly initialised open_clip models in the file layouts of the real
repositories, and CLIP_benchmark-style webdataset repositories. Nothing here downloads."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import open_clip
import torch
from safetensors.torch import save_file

from bench.paper import encoders

# a CLIP small enough for milliseconds on a CPU; the full tokenizer vocabulary, as the real tokenizer needs it
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
OPENAI_PRE = {"mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD)}


def tiny_clip(seed: int, quick_gelu: bool = True) -> open_clip.CLIP:
    torch.manual_seed(seed)
    return open_clip.CLIP(**TINY_CFG, quick_gelu=quick_gelu).eval()


def fine_tuned(base: open_clip.CLIP, seed: int, quick_gelu: bool = True) -> open_clip.CLIP:
    """A copy of ``base`` whose image tower drifted (as adversarial fine-tuning does) and text tower did not."""
    model = tiny_clip(0, quick_gelu)
    model.load_state_dict(base.state_dict())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.visual.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def write_hub_file(cache: Path, repo: str, filename: str, data: bytes, repo_type: str = "model") -> Path:
    kind = {"model": "models", "dataset": "datasets"}[repo_type]
    root = cache / f"{kind}--{repo.replace('/', '--')}"
    commit = hashlib.sha1(repo.encode()).hexdigest()
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    path = root / "snapshots" / commit / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def safetensors_bytes(state: dict, tmp: Path) -> bytes:
    path = tmp / "tmp.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path.read_bytes()


def open_clip_repo(cache: Path, repo: str, model: open_clip.CLIP, safetensors: bool = False):
    """An open_clip hub repository: open_clip_config.json + open_clip_pytorch_model.bin (or the safetensors)."""
    config = {"model_cfg": TINY_CFG, "preprocess_cfg": OPENAI_PRE}
    write_hub_file(cache, repo, "open_clip_config.json", json.dumps(config).encode())
    if safetensors:
        write_hub_file(cache, repo, "open_clip_model.safetensors", safetensors_bytes(model.state_dict(), cache))
    else:
        write_hub_file(cache, repo, "open_clip_pytorch_model.bin", torch_bytes(model.state_dict()))


def build_fake_hub(cache: Path) -> dict[str, open_clip.CLIP]:
    """Every repository the paper suites read, with tiny models; returns the models by encoder name."""
    cache.mkdir(parents=True, exist_ok=True)
    openai = tiny_clip(1, quick_gelu=True)
    models = {"clip": openai}
    write_hub_file(cache, "timm/vit_large_patch14_clip_224.openai", "open_clip_pytorch_model.bin",
                   torch_bytes(openai.state_dict()))
    for i, name in enumerate(("fare2", "fare4", "tecoa2", "tecoa4")):
        models[name] = fine_tuned(openai, 10 + i)
        open_clip_repo(cache, f"chs20/{name}-clip", models[name], safetensors=name == "fare4")
    for i, name in enumerate(("simclip2", "simclip4")):
        models[name] = fine_tuned(openai, 20 + i)
        write_hub_file(cache, "hossainzarif19/SimCLIP", f"{name}.pt", torch_bytes(models[name].visual.state_dict()))
    laion = tiny_clip(2, quick_gelu=False)
    models["b32-clip"] = laion
    write_hub_file(cache, "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "open_clip_pytorch_model.bin",
                   torch_bytes(laion.state_dict()))
    for name, repo in (("fare4", "chs20/FARE4-ViT-B-32-laion2B-s34B-b79K"),
                       ("tecoa4", "chs20/TeCoA4-ViT-B-32-laion2B-s34B-b79K")):
        models[f"b32-{name}"] = fine_tuned(laion, 30 + len(name), quick_gelu=False)
        open_clip_repo(cache, repo, models[f"b32-{name}"])
    return models


def tiny(family: encoders.Family) -> encoders.Family:
    return replace(family, model_cfg=TINY_CFG)


def wds_shards(root: Path, images: np.ndarray, labels: np.ndarray, classnames: list[str], templates: list[str],
               per_shard: int = 7, ext: str = "png", prefix: str = "s") -> Path:
    """A CLIP_benchmark webdataset: test/{nshards.txt, N.tar} + classnames.txt + templates, images as ``ext``."""
    from PIL import Image

    (root / "test").mkdir(parents=True, exist_ok=True)
    shards = max(1, -(-len(images) // per_shard))
    for s in range(shards):
        with tarfile.open(root / "test" / f"{s}.tar", "w") as tar:
            for i in range(s * per_shard, min(len(images), (s + 1) * per_shard)):
                buf = io.BytesIO()
                Image.fromarray(images[i].transpose(1, 2, 0)).save(buf, format="PNG" if ext == "png" else "WEBP",
                                                                    lossless=True)
                for name, blob in ((f"{prefix}{i:07d}.{ext}", buf.getvalue()),
                                   (f"{prefix}{i:07d}.cls", str(int(labels[i])).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(blob)
                    tar.addfile(info, io.BytesIO(blob))
    (root / "test" / "nshards.txt").write_text(str(shards))
    (root / "classnames.txt").write_text("\n".join(classnames) + "\n")
    (root / "zeroshot_classification_templates.txt").write_text("\n".join(templates) + "\n")
    return root
