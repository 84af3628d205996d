"""LLaVA-1.5 from ``transformers`` with its vision tower replaced by one of the suite's CLIP encoders, as in FARE's
evaluation: the open_clip ViT-L/14 at 224 px, penultimate block, patch tokens (256 of them; the released model was
trained with the 336 px tower's 576), for the clean CLIP baseline as well as for every robust encoder.

The image goes through ``ClipEncoder.patch_tokens``, which normalises inside its forward, so attacks act on [0,1]
pixels; the patch tokens go through LLaVA's projector and are spliced into the prompt where its ``<image>`` token is.
Prompts are Vicuna-v1 conversations as in LLaVA's (and FARE's) evaluation:
``<system> USER: <image>\\n<prompt> ASSISTANT:``, the answer following after a space and ending with ``</s>``.

The language model runs in float32 (``--precision fp16`` autocasts the attack's forward passes on a GPU, as the
ensemble's half-precision stages expect; its final stage, generation and scoring stay fp32): about 28 GB of weights
plus the activations of the attacked batch on the GPU.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from bench.core.errors import BenchError
from bench.core.hub import hub_snapshot
from tasks.vlm.base import PrefixVLM

LLAVA_REPO = "llava-hf/llava-1.5-7b-hf"
SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the human's questions.")
IMAGE_TOKEN = "<image>"


class LlavaVLM(PrefixVLM):
    """A ``LlavaForConditionalGeneration``'s projector and language model reading ``encoder``'s patch tokens."""

    def __init__(self, encoder, model, tokenizer, system: str = SYSTEM):
        super().__init__()
        cfg = model.config
        width = encoder.tower.visual.transformer.width
        if width != cfg.vision_config.hidden_size:
            raise BenchError(f"encoder {encoder.meta.name} gives patch tokens of width {width}; this LLaVA's "
                             f"projector reads {cfg.vision_config.hidden_size} (a ViT-L/14)")
        self.encoder = encoder
        self.projector = model.model.multi_modal_projector
        self.language_model = model.model.language_model
        self.lm_head = model.lm_head
        self.tokenizer = tokenizer
        self.system = system
        self.image_token_id = cfg.image_token_id
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self._tokens: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self.pre_ids = self._split(self._conversation("x"))[0]  # the text before the image is the same in every prompt
        self.requires_grad_(False)
        self.eval()

    def _conversation(self, prompt: str) -> str:
        return f"{self.system} USER: {IMAGE_TOKEN}\n{prompt} ASSISTANT:"

    def _split(self, text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Token ids before and after the image token of ``text`` tokenised as one string (with BOS), cached."""
        if text in self._tokens:
            return self._tokens[text]
        ids = self.tokenizer(text).input_ids
        if ids.count(self.image_token_id) != 1:
            raise ValueError(f"the prompt must hold exactly one {IMAGE_TOKEN} token: {text!r}")
        at = ids.index(self.image_token_id)
        self._tokens[text] = tuple(ids[:at]), tuple(ids[at + 1 :])
        return self._tokens[text]

    def context_ids(self, prompt: str) -> list[int]:
        pre, post = self._split(self._conversation(prompt))
        if pre != self.pre_ids:
            raise ValueError("the text before the image changed between prompts")
        return list(post)

    def target_ids(self, prompt: str, target: str) -> list[int]:
        """The answer's tokens as the tokenizer splits the whole conversation (as LLaVA's evaluation masks it)."""
        context = self.context_ids(prompt)
        full = list(self._split(f"{self._conversation(prompt)} {target}")[1])
        if full[: len(context)] != context:
            raise ValueError(f"tokenising the answer changed the prompt's tokens: {target!r}")
        return full[len(context) :] + [self.eos_id]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def image_embeds(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder.patch_tokens(x)
        return self.projector(tokens.to(self.lm_head.weight.dtype))

    def text_logits(self, image_embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        embed = self.language_model.get_input_embeddings()
        n = len(ids)
        pre = embed(torch.as_tensor(self.pre_ids, device=ids.device)).expand(n, -1, -1)
        inputs = torch.cat([pre, image_embeds.to(pre.dtype), embed(ids)], dim=1)
        hidden = self.language_model(inputs_embeds=inputs, use_cache=False).last_hidden_state
        return self.lm_head(hidden[:, pre.shape[1] + image_embeds.shape[1] :])


@lru_cache(maxsize=1)
def _pretrained(device: str):
    """LLaVA-1.5-7B (its language model and projector; the 336 px vision tower is dropped) and its tokenizer."""
    # deferred: transformers, for the paper suite's LLaVA only
    from transformers import AutoTokenizer, LlavaForConditionalGeneration


    path = hub_snapshot(LLAVA_REPO, ["*.json", "*.safetensors", "*.model", "*.txt"], repo_type="model",
                        what="LLaVA-1.5-7B")
    model = LlavaForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
    model.model.vision_tower = None  # replaced by the suite's encoder; frees its memory
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model.to(device).eval().requires_grad_(False), tokenizer


def load_llava_vlm(encoder, device: str | torch.device = "cpu") -> LlavaVLM:
    """LLaVA-1.5-7B reading ``encoder``'s patch tokens (the language model is loaded once and shared)."""
    model, tokenizer = _pretrained(str(device))
    return LlavaVLM(encoder, model, tokenizer)
