"""Train the micro VLM's projector and decoder on the micro train split, the micro CLIP frozen, and write the
committed checkpoint and its card.

    python -m bench.micro.train_vlm --out tasks/vlm/assets

The frozen encoder's penultimate patch tokens are computed once for every training image; each step then reads all
the captions (5) and questions (up to 5) of a batch of scenes. Captions are trained as they are (four complete, one
terse), questions on their canonical answer. The card records the clean CIDEr and VQA accuracy measured with the
committed micro CLIP on the tasks' default test selection. Deterministic for a given seed, thread count and torch
build (the card records all three).
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
from bench.micro.data import generate
from bench.micro.encoders import load_micro_clip
from bench.micro.vlm import load_captions as micro_captions
from bench.micro.vlm import load_questions as micro_questions
from tasks.base import to_float
from tasks.captioning import clean_scores as caption_scores
from tasks.vlm.base import CAPTION_PROMPT, IGNORE, vqa_prompt
from tasks.vlm.micro import ASSETS, MicroDecoder, MicroVLM, MicroVLMConfig
from tasks.vlm.vocab import WordTokenizer, build_vocabulary
from tasks.vqa import clean_scores as vqa_scores

EXTRA_WORDS = ("maybe", "word")  # the VQA ensemble attack's targeted answers ("maybe", "Word"), never trained


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ASSETS, help="directory for micro_vlm.{json,safetensors,card.json}")
    p.add_argument("--n-train", type=int, default=12_000, help="training scenes")
    p.add_argument("--steps", type=int, default=1_200)
    p.add_argument("--scenes-per-step", type=int, default=24, help="scenes per step (each with all its texts)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup", type=float, default=0.05, help="fraction of steps spent warming up")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (part of what makes a run reproducible)")
    p.add_argument("--n-eval", type=int, default=200, help="test samples for the clean CIDEr and VQA accuracy")
    return p.parse_args(argv)


def scene_texts(split) -> list[list[tuple[str, str]]]:
    """(prompt, answer) pairs per scene: every caption and every question."""
    out = []
    for i in range(len(split)):
        pairs = [(CAPTION_PROMPT, c) for c in split.captions(i)]
        pairs += [(vqa_prompt(q.question), q.answer) for q in split.questions(i, n=5)]
        out.append(pairs)
    return out


def encode_rows(texts, tok: WordTokenizer) -> list[list[tuple[list[int], int]]]:
    """Per scene: (token ids of prompt + answer + end, length of the prompt) for each text."""
    cache: dict[tuple[str, str], tuple[list[int], int]] = {}
    out = []
    for pairs in texts:
        rows = []
        for prompt, answer in pairs:
            if (prompt, answer) not in cache:
                ctx = tok.encode(prompt)
                cache[(prompt, answer)] = (ctx + tok.encode(answer) + [tok.eos_id], len(ctx))
            rows.append(cache[(prompt, answer)])
        out.append(rows)
    return out


@torch.no_grad()
def patch_features(encoder, images_u8: np.ndarray, batch: int = 500) -> torch.Tensor:
    """The frozen encoder's penultimate patch tokens of every image, stored in half precision to halve memory."""
    parts = []
    for i in tqdm(range(0, len(images_u8), batch), desc="patch tokens", unit="batch", leave=False):
        x = to_float(images_u8[i : i + batch], "cpu")
        parts.append(encoder.patch_tokens(x).half())
    return torch.cat(parts)


def batch_of(scenes: torch.Tensor, rows, pad: int):
    """Padded ids, next-token labels and the scene row of every text of ``scenes``."""
    texts = [(k, ids, n_ctx) for k, s in enumerate(scenes.tolist()) for ids, n_ctx in rows[s]]
    width = max(len(ids) for _, ids, _ in texts)
    ids = torch.full((len(texts), width), pad, dtype=torch.long)
    labels = torch.full((len(texts), width - 1), IGNORE, dtype=torch.long)
    group = torch.empty(len(texts), dtype=torch.long)
    for n, (k, row, n_ctx) in enumerate(texts):
        ids[n, : len(row)] = torch.as_tensor(row)
        labels[n, n_ctx - 1 : len(row) - 1] = torch.as_tensor(row[n_ctx:])
        group[n] = k
    return ids[:, :-1], labels, group


def lr_at(step: int, total: int, base: float, warmup_frac: float) -> float:
    warm = max(1, int(total * warmup_frac))
    if step < warm:
        return base * (step + 1) / warm
    return base * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def evaluate(decoder: MicroDecoder, n_eval: int, seed: int = 0) -> dict[str, float]:
    """Clean CIDEr and VQA accuracy with the committed micro CLIP, on the tasks' own micro selections."""
    vlm = MicroVLM(load_micro_clip(), decoder)
    cider = caption_scores(vlm, micro_captions(n_eval, seed))
    vqa = vqa_scores(vlm, micro_questions(n_eval, seed))
    return {"cider": round(cider, 4), "vqa_accuracy": round(vqa, 4)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    started = time.time()
    train = generate("train", args.n_train)
    texts = scene_texts(train)
    vocabulary = build_vocabulary([t for pairs in texts for p in pairs for t in p], EXTRA_WORDS)
    tok = WordTokenizer(vocabulary)
    rows = encode_rows(texts, tok)
    features = patch_features(load_micro_clip(), train.images)
    data_seconds = time.time() - started

    longest = max(len(ids) for scene in rows for ids, _ in scene)
    cfg = MicroVLMConfig(tuple(vocabulary), vision_width=features.shape[2], image_tokens=features.shape[1],
                         width=args.width, layers=args.layers, max_text=max(32, longest + 8))
    decoder = MicroDecoder(cfg)
    decay = [p for n, p in decoder.named_parameters() if p.ndim >= 2 and n != "position"]
    other = [p for n, p in decoder.named_parameters() if not (p.ndim >= 2 and n != "position")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(args.seed)
    order, cursor, log = torch.randperm(args.n_train, generator=gen), 0, []
    bar = tqdm(range(args.steps), desc="micro VLM", unit="step")
    t_train = time.time()
    for step in bar:
        if cursor + args.scenes_per_step > args.n_train:
            order, cursor = torch.randperm(args.n_train, generator=gen), 0
        scenes = order[cursor : cursor + args.scenes_per_step]
        cursor += args.scenes_per_step
        ids, labels, group = batch_of(scenes, rows, tok.pad_id)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        logits = decoder(decoder.project(features[scenes].float()), ids, group)
        loss = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
        opt.step()
        if step % 25 == 0 or step == args.steps - 1:
            log.append({"step": step, "loss": round(float(loss), 4), "lr": opt.param_groups[0]["lr"]})
            bar.set_postfix(loss=f"{float(loss):.3f}")
    train_seconds = time.time() - t_train

    decoder.eval().requires_grad_(False)
    t_eval = time.time()
    measured = evaluate(decoder, args.n_eval)
    eval_seconds = time.time() - t_eval
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / "micro_vlm.json", cfg.to_json().encode())
    sha = save_tensors(args.out / "micro_vlm.safetensors", decoder.state_dict())
    card = {
        "model": "micro-vlm",
        "architecture": {k: v for k, v in json.loads(cfg.to_json()).items() if k != "vocabulary"},
        "vocabulary_size": len(vocabulary),
        "parameters": sum(p.numel() for p in decoder.parameters()),
        "encoder": "committed micro CLIP (bench/micro/assets), frozen; penultimate-block patch tokens",
        "recipe": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
        "data": {"world_seed": 0, "split": "train", "n_train": args.n_train,
                 "texts_per_scene": "5 captions (4 complete, 1 terse) + up to 5 questions (canonical answer)"},
        "clean_test": {**measured, "n_eval": args.n_eval, "selection_seed": 0,
                       "metrics": "CIDEr (pycocoevalcap, raw scale) on micro-coco, VQA accuracy on micro-vqa"},
        "loss_log": log,
        "final_loss": log[-1]["loss"],
        "seconds": {"data_and_features": round(data_seconds, 1), "train": round(train_seconds, 1),
                    "eval": round(eval_seconds, 1)},
        "environment": {"torch": torch.__version__, "threads": args.threads, "machine": platform.machine()},
        "sha256": sha,
    }
    atomic_write_bytes(args.out / "micro_vlm.card.json", (json.dumps(card, indent=2) + "\n").encode())
    print(json.dumps({"clean_test": card["clean_test"], "seconds": card["seconds"], "sha256": sha}))
    return card


if __name__ == "__main__":
    main()
