"""TTC, test-time counterattacks (Xing, Zhao & Sebe, CVPR 2025, arXiv 2503.03613), as released:
Sxing2/CLIP-Test-time-Counterattacks at 793fbff, ``code/test_time_counterattack.py``,
``tau_thres_weighted_counterattacks`` (l. 68-159). For an image x and the image tower φ:

1. a random start δ₀ uniform in [−ε, ε] per pixel, clamped so that x + δ₀ stays in [0,1] (l. 71-86);
2. τ = ‖φ(x + δ₀) − φ(x)‖ / ‖φ(x)‖, how far the random start moved the embedding (l. 115-117). When the defended
   encoder is a fine-tuned one, the released code measures τ with the *original* CLIP's tower instead
   (``compute_tau`` l. 62-66, called at l. 92 with ``clip_visual``, the original's copy taken at l. 367-369);
   option ``tau_from=self`` measures it with the defended encoder's own tower;
3. K sign steps of α that *maximise* Σ‖φ(x + δ) − φ(x)‖² from δ₀, each clamped to [−ε, ε] and to the image range
   (l. 111-135), the anchor φ(x) computed once without gradient (l. 102-106);
4. if τ < τ_thres (the random start barely moved the embedding: "falsely stable", an adversarial image), the
   perturbations δ₀ … δ_K are averaged with weights ∝ exp(β·k); otherwise δ₀ alone is kept (l. 137-152);
5. the classifier reads φ(x + Σ w_k δ_k) (l. 264-276).

Hyperparameters: l. 53-57 defaults, as run by TTC.sh l. 13-16 (ε 4, α 1, in /255 units, divided at l. 353-354).
Deviations, stated: the released evaluation runs under fp16 autocast (l. 210); the CPU path here is fp32 and a GPU
run follows ``--precision``. The random start is drawn per image from the run seed, the draw and the image itself
(``bench.encoders.defended.image_noise``) instead of the global generator, so a verdict can be re-scored.

Attacks through it (``attacks.eot``): ``autograd`` differentiates the whole pipeline — the sign steps and the τ
switch have zero derivative almost everywhere, so their directions are constants and the gradient flows through x,
the clamps and the final forward (exact, no second-order terms); ``bpda`` treats x ↦ x + Σ w_k δ_k as the identity
(Athalye et al.), which differs from it only at pixels the [0,1] clamp saturates. The random start is TTC's
randomness: the declared adaptive attack averages every gradient over ``ADAPTIVE_EOT`` draws.
"""

from __future__ import annotations

import torch

from attacks.eot import current_backward
from attacks.protocols import AA_RAND_STAGES, ADAPTIVE, Protocol
from bench.defences import Defence, InferenceCost, register_defence

# draws of TTC's random start each gradient of the declared adaptive attack averages over
ADAPTIVE_EOT = 4


def clamp_to_image(delta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """δ clamped so that x + δ stays in [0,1] (the released ``clamp(δ, lower_limit − X, upper_limit − X)``)."""
    return torch.maximum(torch.minimum(delta, 1.0 - x), -x)


def step_weights(ratio: torch.Tensor, tau: float, beta: float, steps: int) -> torch.Tensor:
    """(B, K+1) weights of δ₀ … δ_K: ∝ exp(sign(τ − ratio)·β·k) where the ratio is below τ, else δ₀ alone
    (l. 137-150; a ratio exactly at τ keeps δ₀ alone, as there)."""
    sign = (tau - ratio).sign()
    k = torch.arange(steps + 1, device=ratio.device, dtype=ratio.dtype)
    soft = torch.softmax(sign[:, None] * k[None, :] * beta, dim=1)
    hard = torch.zeros_like(soft)
    hard[:, 0] = 1.0
    return torch.where(sign[:, None] > 0, soft, hard)


@register_defence
class TestTimeCounterattacks(Defence):
    name = "ttc"
    label = "TTC"
    description = ("TTC, test-time counterattacks (Xing et al., CVPR 2025): 2 sign steps of 1/255 away from the "
                   "image's own embedding from a random start in ±4/255, kept where the start barely moved it")
    citation = ("Xing, Zhao & Sebe, CLIP is Strong Enough to Fight Back, CVPR 2025 (arXiv 2503.03613); "
                "Sxing2/CLIP-Test-time-Counterattacks @ 793fbff code/test_time_counterattack.py")
    definition = ("δ₀ ~ U[−ε, ε] per pixel clamped to the image range; τ = ‖φ'(x+δ₀) − φ'(x)‖/‖φ'(x)‖ with φ' the "
                  "original CLIP's tower (tau_from=clip, for a fine-tuned encoder) or the encoder's (self); K sign "
                  "steps of α ascending Σ‖φ(x+δ) − φ(x)‖², each clamped to [−ε, ε] and the image range; if "
                  "τ < τ_thres the δ_k are averaged with weights ∝ exp(β·k), else δ₀ alone; classify φ(x + Σ w_k δ_k)")
    # test_time_counterattack.py l. 53-57 (tau_thres, beta, ttc_eps, ttc_numsteps, ttc_stepsize; ε and α in /255)
    options = {"eps": 4.0, "steps": 2.0, "step_size": 1.0, "tau": 0.2, "beta": 2.0, "tau_from": "clip"}
    option_choices = {"tau_from": ("clip", "self")}
    randomised = True
    reads_original = True
    bpda = "x ↦ x + Σ w_k δ_k differentiated as the identity (the counterattack's perturbation held constant)"
    adaptive = Protocol(ADAPTIVE, "TTC's adaptive attack: APGD-CE then APGD-DLR (100 it each) through the whole TTC "
                        f"pipeline, every gradient averaged over {ADAPTIVE_EOT} draws of its random start",
                        AA_RAND_STAGES, eot=ADAPTIVE_EOT)

    def cost(self, with_original: bool) -> InferenceCost:
        steps = int(self.opts["steps"])
        # the anchor φ(x), K steps (forward and backward), the final forward; τ from the original: two more forwards
        return InferenceCost(2 + steps + (2 if with_original and self.opts["tau_from"] == "clip" else 0), steps)

    def embed(self, encoder, x: torch.Tensor) -> torch.Tensor:
        eps, alpha = self.opts["eps"] / 255, self.opts["step_size"] / 255
        steps = int(self.opts["steps"])
        start = eps * encoder.noise(x)
        signs, ratio = self.counterattack(encoder, x.detach(), clamp_to_image(start, x.detach()))
        # the perturbations again, now as functions of x: the step directions and the weights are constants
        delta = clamp_to_image(start, x)
        deltas = [delta]
        for s in signs:
            delta = clamp_to_image((delta + alpha * s).clamp(-eps, eps), x)
            deltas.append(delta)
        if not signs:  # no steps: the random start alone (l. 89-90)
            return encoder.base(x + delta)
        w = step_weights(ratio, self.opts["tau"], self.opts["beta"], steps).to(x.dtype)
        counter = (w.view(*w.shape, 1, 1, 1) * torch.stack(deltas, dim=1)).sum(dim=1)
        if current_backward() == "bpda":
            counter = counter.detach()
        return encoder.base(x + counter)

    def counterattack(self, encoder, x: torch.Tensor, delta: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The step directions sign(∇) of each counterattack step and the ratio τ, on the detached image."""
        eps, alpha = self.opts["eps"] / 255, self.opts["step_size"] / 255
        tower = encoder.base
        with torch.enable_grad():  # the counterattack needs gradients even when the caller scores without them
            with torch.no_grad():
                anchor = tower(x)
                ratio = None
                if encoder.original is not None and self.opts["tau_from"] == "clip":
                    clean = encoder.original(x)
                    ratio = (encoder.original(x + delta) - clean).norm(dim=-1) / clean.norm(dim=-1)
            signs = []
            for k in range(int(self.opts["steps"])):
                delta = delta.detach().requires_grad_(True)
                reps = tower(x + delta)
                if k == 0 and ratio is None:
                    ratio = ((reps - anchor).norm(dim=-1) / anchor.norm(dim=-1)).detach()
                (grad,) = torch.autograd.grad((reps - anchor).pow(2).sum(), delta)
                signs.append(grad.sign())
                delta = clamp_to_image((delta.detach() + alpha * signs[-1]).clamp(-eps, eps), x)
        return signs, ratio
