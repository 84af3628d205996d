"""Train the micro CLIP contrastively on the micro world and write the committed checkpoint and its card.

    python -m bench.micro.train_clip --out bench/micro/assets

Deterministic for a given seed, thread count and torch build (the card records all three); on another machine the
weights agree to floating-point tolerance, not bit for bit.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from bench.core.checkpoints import atomic_write_bytes, save_tensors
from bench.encoders.base import ClipEncoder, EncoderMeta
from bench.micro import language
from bench.micro.data import generate, generate_dataset
from bench.micro.datasets import DATASETS, FINETUNING_SET, ZEROSHOT_DATASETS
from bench.micro.model import ASSETS, build_model, load_config, pack_state_dict, tokenizer
from bench.micro.world import COLOURS, COUNTS, SHAPES, STYLES, WORLD_VERSION
from tasks.zeroshot_model import ZeroShotClassifier


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ASSETS, help="directory for micro_clip.safetensors and its card")
    p.add_argument("--n-train", type=int, default=40_000, help="training scenes")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--eval-split", default="test", choices=("val", "test"),
                   help="split of the zero-shot datasets the card's accuracy is measured on (val while designing)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of steps spent warming up")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (part of what makes a run reproducible)")
    p.add_argument("--n-eval", type=int, default=1000, help="test scenes for the zero-shot accuracy in the card")
    return p.parse_args(argv)


ATTRIBUTES = ("shape", "colour", "count", "style", "position")


def caption_tokens(split, tok) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K, context) token ids of each image's K complete captions, tokenising each distinct caption once, and
    (N, K, 5) masks of which attributes (``ATTRIBUTES``) each caption states.

    Only complete captions train the micro CLIP: a terse one ("ring shapes.") matches a large share of any batch,
    and in a probe, training on them as well (with the soft targets below) left the image tower with far less
    shape information (linear probe 54 % vs 88 %) in the same budget."""
    cache: dict[str, torch.Tensor] = {}
    tokens, mentions = [], []
    for i in range(len(split)):
        caps = [c for c in split.captions_with_mentions(i) if c.mentions >= language.FULL]
        for c in caps:
            if c.text not in cache:
                cache[c.text] = tok([c.text])[0]
        tokens.append(torch.stack([cache[c.text] for c in caps]))
        mentions.append(torch.tensor([[a in c.mentions for a in ATTRIBUTES] for c in caps]))
    return torch.stack(tokens), torch.stack(mentions)


def vocabulary_ids(tok, tokens: torch.Tensor) -> torch.Tensor:
    """Every token id the micro world can produce: captions seen in training, all zero-shot prompts and the
    fine-tuning set's class prompts."""
    prompts = [p for d in ZEROSHOT_DATASETS for cls in DATASETS[d].class_prompts() for p in cls]
    prompts += [p for cls in FINETUNING_SET.class_prompts for p in cls]
    return torch.unique(torch.cat([tokens.flatten(), tok(prompts).flatten()]))


def scene_attributes(split) -> torch.Tensor:
    """(N, 5) shape, colour, count, style and position-phrase indices of every scene (``ATTRIBUTES``)."""
    phrases: dict[str, int] = {}
    return torch.tensor([(SHAPES.index(s.shape), COLOURS.index(s.colour), COUNTS.index(s.count),
                          STYLES.index(s.style), phrases.setdefault(language.position_phrase(s), len(phrases)))
                         for s in split.scenes])


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, attrs: torch.Tensor,
                     mentions: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric loss with soft targets: caption j is a positive for image i whenever image i agrees with
    every attribute caption j states. Two scenes with the same shape, colour and count (or a caption that says
    nothing of position and an image with the same objects elsewhere) are not negatives of each other."""
    logits = scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    agree = attrs[:, None, :] == attrs[None, :, :]  # [i, j, a]: image i and caption j's scene agree on a
    match = (agree | ~mentions[None, :, :]).all(dim=-1).float()  # [image i, caption j]
    img_targets = match / match.sum(dim=1, keepdim=True)
    txt_targets = match.T / match.T.sum(dim=1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, img_targets) + F.cross_entropy(logits.T, txt_targets))


def lr_at(step: int, total: int, base: float, warmup_frac: float) -> float:
    warm = max(1, int(total * warmup_frac))
    if step < warm:
        return base * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def as_float(images_u8: np.ndarray) -> torch.Tensor:
    return torch.tensor(images_u8, dtype=torch.float32).div_(255.0)


@torch.no_grad()
def zeroshot_accuracy(model, tok, mean, std, n_eval: int, split: str = "test", batch: int = 500
                      ) -> dict[str, float]:
    encoder = ClipEncoder(model, tok, mean, std, EncoderMeta("micro-clip", "micro", "clip", None, "training"))
    out = {}
    for dataset in ZEROSHOT_DATASETS:
        test = generate_dataset(dataset, split, range(n_eval))
        clf = ZeroShotClassifier(encoder, DATASETS[dataset].class_prompts(), language.ENSEMBLE)
        labels = torch.from_numpy(test.labels(dataset))
        preds = torch.cat([clf(as_float(test.images[i:i + batch])).argmax(1) for i in range(0, len(test), batch)])
        out[dataset] = float((preds == labels).float().mean())
    model.train()
    model.requires_grad_(True)
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = load_config()
    pre = cfg["preprocess_cfg"]
    mean = torch.tensor(pre["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(pre["std"]).view(1, 3, 1, 1)
    tok = tokenizer(cfg)

    started = time.time()
    train = generate("train", args.n_train)
    tokens, mentions = caption_tokens(train, tok)
    attrs = scene_attributes(train)
    data_seconds = time.time() - started

    model = build_model(cfg)
    vocab = vocabulary_ids(tok, tokens)
    with torch.no_grad():  # unused vocabulary rows start at zero and, receiving no gradient, stay there
        keep = torch.zeros(model.token_embedding.weight.shape[0], dtype=torch.bool)
        keep[vocab] = True
        model.token_embedding.weight[~keep] = 0.0
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "token_embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "token_embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    gen = torch.Generator().manual_seed(args.seed)
    log = []
    order = torch.randperm(args.n_train, generator=gen)
    cursor = 0
    bar = tqdm(range(args.steps), desc="micro CLIP", unit="step")
    for step in bar:
        if cursor + args.batch > args.n_train:
            order, cursor = torch.randperm(args.n_train, generator=gen), 0
        idx = order[cursor:cursor + args.batch]
        cursor += args.batch
        which = torch.randint(0, tokens.shape[1], (len(idx),), generator=gen)
        images = (as_float(train.images[idx.numpy()]) - mean) / std
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        loss = contrastive_loss(model.encode_image(images), model.encode_text(tokens[idx, which]),
                                model.logit_scale.exp(), attrs[idx], mentions[idx, which])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 25 == 0 or step == args.steps - 1:
            log.append({"step": step, "loss": round(float(loss), 4), "lr": opt.param_groups[0]["lr"]})
            bar.set_postfix(loss=f"{float(loss):.3f}")
    train_seconds = time.time() - started - data_seconds

    model.eval()
    args.out.mkdir(parents=True, exist_ok=True)  # the weights first: an evaluation that fails loses no training
    sha = save_tensors(args.out / "micro_clip.safetensors", pack_state_dict(model.state_dict()))
    accuracy = zeroshot_accuracy(model, tok, mean, std, args.n_eval, args.eval_split)
    card = {
        "model": "micro-clip",
        "config": cfg,
        "recipe": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
        "data": {"world_version": WORLD_VERSION, "world_seed": 0, "split": "train", "n_train": args.n_train,
                 "captions_per_image": 5},
        f"zeroshot_{args.eval_split}_accuracy": {k: round(v, 4) for k, v in accuracy.items()},
        "n_eval": args.n_eval,
        "loss_log": log,
        "seconds": {"data": round(data_seconds, 1), "train": round(train_seconds, 1)},
        "environment": {"torch": torch.__version__, "threads": args.threads, "machine": platform.machine()},
        "vocabulary_rows": int(len(vocab)),
        "sha256": sha,
    }
    atomic_write_bytes(args.out / "micro_clip.card.json", (json.dumps(card, indent=2) + "\n").encode())
    print(json.dumps({"zeroshot": accuracy, "seconds": card["seconds"], "sha256": sha}))
    return card


if __name__ == "__main__":
    main()
