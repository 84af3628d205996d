"""CLIPure-Cos, purification in CLIP's latent space (Zhang et al., ICLR 2025, arXiv 2502.18176), as released:
TMLResearchGroup-CAS/CLIPure at b4cc6d1, ``CLIP_eval/CLIPure_Cos.py``, ``ClassificationModel`` (l. 97-204).

The image embedding z = φ(x)/‖φ(x)‖ (``embed_image`` l. 151-156) is moved, before zero-shot classification, towards
a blank prompt's text embedding t: ``purify_zi`` (l. 159-191) takes 10 steps (l. 123, 428-431) of
u ← normalise(u + 30·m), m = −∇_u/‖∇_u‖ with ∇_u = r·∇_z(−cos(z, t)), z = r·u, r = ‖z‖ (L2 steps, momentum γ = 0,
l. 169-189). t is the mean of the unit embeddings of OpenAI's 80 ImageNet templates with an empty class name
(l. 113-121 and 165, the templates of ``zeroshot-templates.json`` 'imagenet1k' read at l. 350-352: equal, string for
string, to open_clip's ``OPENAI_IMAGENET_TEMPLATES``). The paper's text names the single prompt "a photo of a.":
option ``blank=a-photo-of-a``.

Why this variant and not CLIPure-Diff: CLIPure-Diff scores the embedding with DALL-E 2's DiffusionPrior, a separately
trained generative model (``CLIPure_Diff.py``; set up from dalle2_pytorch and a path in ``script_state.json``) that
cannot be trained here; CLIPure-Cos runs on the CLIP alone. Why not R-TPT (TomSheng21/R-TPT ``rtpt.py``): it tunes
the text prompt's context tokens per image with AdamW on 63 AugMix views (l. 59-76, 165-166, 241-254), PIL-level
augmentations that are not differentiable (BPDA for every view) at 64 image forwards plus a text-tower backward per
image; CLIPure-Cos is deterministic, differentiable and costs one tower forward.

Deviations, stated: the released code normalises the step over the whole *batch* (``torch.norm(grad_u, p=2)`` with
no dim, l. 185), so one image's purification depends on the other images of its batch (two, by default, l. 50);
here each image's step is normalised alone (the released code at batch size one) — a classifier must be a function
of its image for a sample's verdict to be re-scored, batched and resumed. The released model runs in fp16
(``model_dtype_half`` l. 84-95, l. 155); the CPU path here is fp32.

Measured consequence of the released step size, visible in the tests: ∇_u is tangent to the sphere in the plane of
z and t, so every step rotates u by atan(30) ≈ 88.1° towards t within that plane; from an angle θ < 88.1° to t the
iterate alternates between θ and θ − 88.1°, and after an even number of steps returns to z. With the released
hyperparameters the purifier is the identity for every image closer than 88.1° to the blank prompt.

Attacks through it: ``autograd`` differentiates the purification exactly (the step direction is a differentiable
function of z); ``bpda`` holds each step's direction constant, which is what the released evaluation differentiated
(``torch.autograd.grad`` without ``create_graph``, l. 177, under AutoAttack l. 433-438).
"""

from __future__ import annotations

import open_clip
import torch
import torch.nn.functional as F

from attacks.eot import current_backward
from attacks.protocols import AA_RAND_STAGES, ADAPTIVE, Protocol
from bench.defences import Defence, InferenceCost, register_defence

BLANK_PROMPTS = {
    "imagenet-templates": tuple(t("") for t in open_clip.zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES),
    "a-photo-of-a": ("a photo of a.",),
}


def purify(z: torch.Tensor, blank: torch.Tensor, steps: int, step_size: float, detach_direction: bool) -> torch.Tensor:
    """``purify_zi`` with γ = 0 and per-image step normalisation: ``steps`` normalised steps of ``step_size`` on the
    unit vector u = z/r towards higher cos(z, blank), r = ‖z‖ kept."""
    r = z.norm(dim=1, keepdim=True)
    t = F.normalize(blank, dim=-1).expand_as(z)
    for _ in range(steps):
        u = z / r
        cos = (u * t).sum(dim=1, keepdim=True)
        # r·∇_z(−cos(z, t)) = −(t − cos·u): the released autograd.grad of the loss, written out
        grad_u = -(t - cos * u)
        direction = -grad_u / grad_u.norm(dim=1, keepdim=True).clamp_min(1e-12)
        if detach_direction:
            direction = direction.detach()
        u = u + step_size * direction
        z = r * (u / u.norm(dim=1, keepdim=True))
    return z


@register_defence
class ClipureCos(Defence):
    name = "clipure"
    label = "CLIPure-Cos"
    description = ("CLIPure-Cos (Zhang et al., ICLR 2025): the image embedding moved towards a blank prompt's "
                   "embedding, 10 normalised steps of 30 on the sphere, before zero-shot classification")
    citation = ("Zhang, Bi, Chen, Guo & Cheng, CLIPure, ICLR 2025 (arXiv 2502.18176); "
                "TMLResearchGroup-CAS/CLIPure @ b4cc6d1 CLIP_eval/CLIPure_Cos.py")
    definition = ("z = φ(x)/‖φ(x)‖; steps × [u = z/r; u ← normalise(u − s·g/‖g‖), g = −(t̂ − cos(u, t̂)·u); z = r·u] "
                  "with r = ‖z‖, each image's step normalised alone; t = mean unit text embedding of the blank "
                  "prompts (OpenAI's 80 ImageNet templates with an empty class name, or 'a photo of a.')")
    # CLIPure_Cos.py l. 123-124 and l. 428-432 (iter 10, lr 30), l. 113 with l. 350-352 (the blank prompts)
    options = {"steps": 10.0, "step_size": 30.0, "blank": "imagenet-templates"}
    option_choices = {"blank": tuple(BLANK_PROMPTS)}
    bpda = "each purification step's direction held constant (what the released AutoAttack evaluation differentiated)"
    adaptive = Protocol(ADAPTIVE, "CLIPure-Cos's adaptive attack: APGD-CE then APGD-DLR (100 it each) through the "
                        "purification, differentiated exactly", AA_RAND_STAGES)

    def cost(self, with_original: bool) -> InferenceCost:
        return InferenceCost(1, 0)  # the purification works on one embedding: no pass of the tower

    def prepare(self, encoder) -> None:
        """The (1, D) mean of the blank prompts' unit text embeddings."""
        prompts = list(BLANK_PROMPTS[self.opts["blank"]])
        encoder.constants["clipure-blank"] = encoder.encode_text(prompts).float().mean(dim=0, keepdim=True)

    def embed(self, encoder, x: torch.Tensor) -> torch.Tensor:
        blank = encoder.constants["clipure-blank"].to(device=x.device)
        z = F.normalize(encoder.base(x).float(), dim=-1)
        return purify(z, blank, int(self.opts["steps"]), self.opts["step_size"], current_backward() == "bpda")
