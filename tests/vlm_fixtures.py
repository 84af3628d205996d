"""A tiny randomly initialised LLaVA (transformers' LlavaForConditionalGeneration) and a word-level tokenizer
built offline, for testing the LLaVA adapter without downloading anything."""

from __future__ import annotations

import torch

_TOKENIZER_TEXT = ("a chat between curious human and an artificial intelligence assistant the gives helpful detailed "
                   "polite answers to human's questions user provide short caption for this image answer question "
                   "using single word or phrase what is colour red dog visit")
TOKENIZER_WORDS = _TOKENIZER_TEXT.split()


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(TOKENIZER_WORDS)) + list(".,:?'"))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", additional_special_tokens=["<image>"])


def tiny_llava(tokenizer, vision_width: int = 128, seed: int = 0):
    """A two-layer Llama behind LLaVA's projector, reading patch tokens of width ``vision_width``."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    vision = CLIPVisionConfig(hidden_size=vision_width, intermediate_size=2 * vision_width, num_hidden_layers=1,
                              num_attention_heads=4, image_size=64, patch_size=8)
    cfg = LlavaConfig(vision_config=vision, text_config=text,
                      image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    return LlavaForConditionalGeneration(cfg).eval()
