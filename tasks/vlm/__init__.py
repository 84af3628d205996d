"""Vision-language models for the captioning, VQA and targeted-attack tasks: a frozen CLIP image encoder's
penultimate patch tokens → projector → causal language model (LLaVA's recipe). ``micro`` is the small one trained
on the micro world and committed; ``llava`` adapts LLaVA-1.5-7B from ``transformers`` for the paper suite."""
