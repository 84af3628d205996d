"""The encoder steps through open_clip's ``VisionTransformer`` with its private ``_embeds`` and ``_pool``
(``bench/encoders/base.py``: the tokens TGA-ZSR's attention reads, the patch tokens a VLM reads). pyproject.toml pins
the open_clip minor version this was tested with; these tests fail with a message saying what to check when a
release renames those methods or changes what its forward does with them."""

from __future__ import annotations

import open_clip
import pytest
import torch
from open_clip.transformer import VisionTransformer

from bench.micro.encoders import load_micro_clip

ADVICE = (f"open_clip {open_clip.__version__}: bench/encoders/base.py (ImageTower.forward with_tokens=True, "
          "ImageTower.patch_tokens) re-implements VisionTransformer.forward with its private _embeds and _pool; "
          "compare with this release's forward, adapt them, and move the open_clip_torch pin in pyproject.toml")


@pytest.fixture(scope="module")
def tower():
    return load_micro_clip().tower


def test_the_private_methods_are_there():
    missing = [name for name in ("_embeds", "_pool") if not callable(getattr(VisionTransformer, name, None))]
    assert not missing, f"VisionTransformer has no {', '.join(missing)}; {ADVICE}"


def test_the_step_by_step_forward_is_open_clips(tower):
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pooled, tokens = tower(x, with_tokens=True)
        assert torch.allclose(pooled, tower(x), atol=1e-5), f"the pooled embedding differs from forward's; {ADVICE}"
        assert torch.equal(tokens[:, 0], pooled) and tokens.shape[1] == 1 + (64 // 8) ** 2, ADVICE


def test_the_patch_tokens_are_the_penultimate_blocks_output(tower):
    """Read through a forward hook on open_clip's own forward: no private method involved."""
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    seen = []
    hook = tower.visual.transformer.resblocks[-2].register_forward_hook(lambda m, i, out: seen.append(out))
    try:
        with torch.no_grad():
            tower(x)
            patches = tower.patch_tokens(x)
    finally:
        hook.remove()
    assert torch.allclose(patches, seen[0][:, 1:, :], atol=1e-6), f"patch tokens differ from open_clip's; {ADVICE}"
