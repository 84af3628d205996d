"""Test-time defences (bench.defences): TTC against the released algorithm written out line by line, CLIPure-Cos
against the released purification loop, their randomness (deterministic under the seed, independent of the batch),
the backward each declares, their spelling, options, inference cost and identity."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from attack_fixtures import one_thread  # noqa: F401  (autouse fixture)
from torch import nn

from attacks.eot import backward, drawing
from attacks.registry import ATTACKS
from bench.core.config import CellConfig
from bench.core.errors import BenchError
from bench.defences import DEFENCES, declared_protocol, make_defence, split_defence
from bench.defences.clipure import BLANK_PROMPTS, purify
from bench.encoders.base import EncoderMeta
from bench.encoders.defended import DefendedEncoder, image_noise
from bench.encoders.resolve import resolve_encoder

D = 6  # embedding width of the tiny encoders


class TinyEncoder(nn.Module):
    """An encoder with ``ClipEncoder``'s interface on 3×8×8 images: a frozen conv net, a fixed text table."""

    def __init__(self, seed: int = 0, name: str = "tiny"):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, D)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.7)
        self.requires_grad_(False)
        self.image_size = 8
        self.meta = EncoderMeta(name, "tiny-conv", "clip", None, "test", f"sha-{name}")

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def tower(self) -> nn.Module:
        return self

    def forward(self, x):
        h = torch.tanh(self.conv(x - 0.5))
        return self.fc(F.avg_pool2d(h, 2).flatten(1)) + 0.3

    def encode_text(self, texts):
        g = torch.Generator().manual_seed(len(texts))
        return F.normalize(torch.randn(len(texts), D, generator=g), dim=-1)


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(6, 3, 8, 8, generator=g)
    x[0, :, :2] = 0.0  # saturated pixels: the image-range clamp binds there
    x[1, :, -2:] = 1.0
    return x


# ------------------------------------------------------------------------------------------------ TTC


def released_ttc(phi, X, delta, eps, alpha, steps, tau, beta, clip_visual=None):
    """Sxing2/CLIP-Test-time-Counterattacks (793fbff) code/test_time_counterattack.py l. 62-66 and 68-159, written out
    step by step (without the prompters, DataParallel and the global generator): the counter-perturbation Δ."""
    delta = torch.max(torch.min(delta, 1 - X), 0 - X)  # l. 86
    diff_ratio = None
    if clip_visual is not None:  # compute_tau, l. 62-66 and 92
        orig_feat, noisy_feat = clip_visual(X), clip_visual(X + delta)
        diff_ratio = (noisy_feat - orig_feat).norm(dim=-1) / orig_feat.norm(dim=-1)
    with torch.no_grad():
        X_ori_reps = phi(X)
        X_ori_norm = torch.norm(X_ori_reps, dim=-1)
    deltas_per_step = [delta.clone()]
    for step_id in range(steps):
        delta.requires_grad_(True)
        with torch.enable_grad():
            X_att_reps = phi(X + delta)
            if step_id == 0 and diff_ratio is None:
                diff_ratio = (torch.norm(X_att_reps - X_ori_reps, dim=-1) / X_ori_norm).detach()
            scheme_sign = (tau - diff_ratio).sign()
            l2_loss = (((X_att_reps - X_ori_reps) ** 2).sum(1)).sum()
            grad = torch.autograd.grad(l2_loss, delta)[0]
        d = torch.clamp(delta + alpha * torch.sign(grad), min=-eps, max=eps)
        delta = torch.max(torch.min(d, 1 - X), 0 - X).detach()
        deltas_per_step.append(delta.clone())
    Delta = torch.stack(deltas_per_step, dim=1)
    weights = torch.arange(steps + 1).unsqueeze(0).expand(X.size(0), -1).float()
    weights = torch.exp(scheme_sign.view(-1, 1) * weights * beta)
    weights /= weights.sum(dim=1, keepdim=True)
    weights_hard = torch.zeros_like(weights)
    weights_hard[:, 0] = 1.0
    weights = torch.where(scheme_sign.unsqueeze(1) > 0, weights, weights_hard)
    return (weights.view(X.size(0), steps + 1, 1, 1, 1) * Delta).sum(dim=1), diff_ratio


def ratios(encoder, x):
    start = 4 / 255 * encoder.noise(x)
    return released_ttc(encoder.base, x, start.clone(), 4 / 255, 1 / 255, 2, 0.2, 2.0)[1]


def test_ttc_is_the_released_algorithm(images):
    base = TinyEncoder()
    probe = DefendedEncoder(base, make_defence("ttc"), seed=7)
    tau = float(ratios(probe, images).detach().median())  # half the images take the counterattack, half keep the start
    defended = DefendedEncoder(base, make_defence(f"ttc:tau={tau}"), seed=7)
    with torch.no_grad():
        got = defended(images)
    start = 4 / 255 * defended.noise(images)
    counter, ratio = released_ttc(base, images, start, 4 / 255, 1 / 255, 2, tau, 2.0)
    assert 0 < int((ratio < tau).sum()) < len(images)
    torch.testing.assert_close(got, base(images + counter), rtol=0, atol=1e-6)
    assert float((images + counter).min()) >= 0.0 and float((images + counter).max()) <= 1.0


def test_ttc_measures_tau_with_the_original_clip_under_a_fine_tuned_encoder(images):
    """l. 92 with l. 367-369: the ratio of the original CLIP's tower decides; ``tau_from=self``, the encoder's."""
    base, original = TinyEncoder(1, "fare"), TinyEncoder(0, "clip")
    start = 4 / 255 * DefendedEncoder(base, make_defence("ttc"), seed=2).noise(images)
    own = released_ttc(base, images, start.clone(), 4 / 255, 1 / 255, 2, 0.2, 2.0)[1]
    tau = float(own.median())
    for option, clip_visual in (("clip", original), ("self", None)):
        defended = DefendedEncoder(base, make_defence(f"ttc:tau={tau}:tau_from={option}"), seed=2, original=original)
        counter, ratio = released_ttc(base, images, start.clone(), 4 / 255, 1 / 255, 2, tau, 2.0, clip_visual)
        with torch.no_grad():
            torch.testing.assert_close(defended(images), base(images + counter), rtol=0, atol=1e-6)
    assert not torch.equal(released_ttc(base, images, start.clone(), 4 / 255, 1 / 255, 2, tau, 2.0, original)[1], own)


def test_ttc_randomness_is_keyed_by_seed_draw_and_image(images):
    defended = DefendedEncoder(TinyEncoder(), make_defence("ttc"), seed=5)
    with torch.no_grad():
        whole = defended(images)
        assert torch.equal(defended(images), whole)  # deterministic
        assert torch.equal(defended(images[2:5]), whole[2:5])  # whatever else shares the batch
        assert torch.equal(defended(images.flip(0)), whole.flip(0))
        with drawing(3):
            other_draw = defended(images)
        reseeded = DefendedEncoder(TinyEncoder(), make_defence("ttc"), seed=6)(images)
    assert not torch.allclose(other_draw, whole) and not torch.allclose(reseeded, whole)
    noise = image_noise(images, 5, 0)
    assert noise.abs().max() <= 1 and noise.min() < -0.9 and noise.max() > 0.9
    nudged = images.clone()
    nudged[0, 0, 0, 0] += 1e-3  # another image: independent noise
    moved = image_noise(nudged, 5, 0)
    assert not torch.equal(moved[0], noise[0]) and torch.equal(moved[1], noise[1])


def loss_gradient(model, x, mode: str) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    v = torch.linspace(-1, 1, D)
    with backward(mode):
        (grad,) = torch.autograd.grad((model(x) * v).sum(), x)
    return grad


def test_ttc_bpda_backward_is_the_identity_through_the_counterattack(images):
    base = TinyEncoder()
    defended = DefendedEncoder(base, make_defence("ttc"), seed=1)
    with torch.no_grad():
        counter = released_ttc(base, images, 4 / 255 * defended.noise(images), 4 / 255, 1 / 255, 2, 0.2, 2.0)[0]
    bpda = loss_gradient(defended, images, "bpda")
    torch.testing.assert_close(bpda, loss_gradient(base, images + counter, "autograd"), rtol=1e-5, atol=1e-7)
    full = loss_gradient(defended, images, "autograd")
    interior = (images > 0.05) & (images < 0.95)  # ε = 4/255: the clamp to [0, 1] cannot bind here
    torch.testing.assert_close(full[interior], bpda[interior], rtol=1e-5, atol=1e-7)
    # where the image is saturated the clamp can bind: there the exact derivative of x + Δ is zero, the identity's one
    assert not torch.allclose(full[0, :, :2], bpda[0, :, :2])


def test_ttc_declares_eot_over_its_random_start_and_its_cost():
    ttc = make_defence("ttc")
    assert ttc.randomised and ttc.adaptive.name == "adaptive" and ttc.adaptive.eot > 1
    assert ttc.cost(with_original=False).text() == "4 forwards + 2 backwards of the image tower per image"
    assert (ttc.cost(True).forwards, ttc.cost(True).backwards) == (6, 2)  # τ from the original CLIP: two more
    assert make_defence("ttc:tau_from=self").cost(True).forwards == 4
    assert declared_protocol(ATTACKS.get("adaptive"), ttc) is ttc.adaptive
    assert declared_protocol(ATTACKS.get("adaptive"), None) is ATTACKS.get("adaptive")
    assert declared_protocol(ATTACKS.get("square"), ttc) is ATTACKS.get("square")


def test_declared_cost_matches_the_counted_flops():
    """The declared passes against torch's count of the FLOPs of one defended inference: the weights are frozen, so
    a backward (to the input only) costs what a forward does."""
    from bench.device import flops_per_image

    base = TinyEncoder()
    cpu = torch.device("cpu")
    for spelling in ("ttc", "clipure"):
        defended = DefendedEncoder(base, make_defence(spelling), seed=0)
        cost = defended.cost()
        counted = flops_per_image(defended, cpu)[0]
        assert counted == pytest.approx((cost.forwards + cost.backwards) * flops_per_image(base, cpu)[0], rel=0.01)


# ------------------------------------------------------------------------------------------------ CLIPure-Cos


def released_purify(img_emb, text_embed, iters=10, step_size=30.0):
    """TMLResearchGroup-CAS/CLIPure (b4cc6d1) CLIP_eval/CLIPure_Cos.py ``purify_zi`` l. 159-191, written out for one
    image (where its batch-wide norm is the image's own): autograd.grad without create_graph, as released."""
    step_size_u = step_size
    if not img_emb.requires_grad:
        img_emb.requires_grad = True
    text_embed = text_embed.repeat(img_emb.shape[0], 1)
    momentum = torch.zeros_like(img_emb)
    for _ in range(iters):
        r = torch.norm(img_emb, dim=1, keepdim=True)
        u = img_emb / r
        loss = -F.cosine_similarity(img_emb, text_embed, dim=1)
        grad = torch.autograd.grad(loss, img_emb, torch.ones_like(loss), retain_graph=True)[0]
        grad_u = r * grad
        momentum = 0.0 * momentum - (1 - 0.0) * grad_u / torch.norm(grad_u, p=2)
        u = u + step_size_u * momentum
        u = u / torch.norm(u, dim=1, keepdim=True)
        img_emb = r * u
    return img_emb


def unit_at_angle(t: torch.Tensor, degrees: float, seed: int) -> torch.Tensor:
    """A unit vector at ``degrees`` from the unit vector ``t``."""
    other = torch.randn(t.shape[-1], generator=torch.Generator().manual_seed(1000 + seed), dtype=t.dtype)
    other = F.normalize(other - (other @ t) * t, dim=-1)
    a = math.radians(degrees)
    return math.cos(a) * t + math.sin(a) * other


def test_clipure_purifies_as_released():
    t = F.normalize(torch.randn(D, generator=torch.Generator().manual_seed(0), dtype=torch.float64), dim=0)
    for k, degrees in enumerate((30.0, 75.0, 100.0, 140.0)):
        z = unit_at_angle(t, degrees, k)[None]
        ours = purify(z, t[None], 10, 30.0, detach_direction=False)
        torch.testing.assert_close(ours, released_purify(z.clone(), t[None]).detach(), rtol=0, atol=1e-9)


def test_clipure_is_the_identity_below_atan_30():
    """Each released step turns the embedding by atan(30) ≈ 88.09° towards the blank prompt within one plane, so ten
    steps return every embedding closer than that to where it started; farther ones end 2·88.09° on."""
    t = F.normalize(torch.randn(D, generator=torch.Generator().manual_seed(1), dtype=torch.float64), dim=0)
    step = math.degrees(math.atan(30.0))
    for k, degrees in enumerate((10.0, 50.0, 88.0)):
        z = unit_at_angle(t, degrees, k)[None]
        torch.testing.assert_close(purify(z, t[None], 10, 30.0, False), z, rtol=0, atol=1e-9)
    z = unit_at_angle(t, 120.0, 5)[None]
    out = purify(z, t[None], 10, 30.0, False)
    assert math.degrees(math.acos(float(out[0] @ t))) == pytest.approx(abs(120.0 - 2 * step), abs=1e-6)


def test_clipure_backwards(images):
    """``autograd``: the exact derivative (finite differences); ``bpda``: the released evaluation's, each step's
    direction a constant (``autograd.grad`` without ``create_graph``) — which, behind CLIPure's normalised embedding,
    scales the gradient by about 1/30 per step: 30⁻¹⁰ ≈ 1.7e-15 after ten (the exact one stays of order one)."""
    t = F.normalize(torch.randn(1, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64), dim=1)
    z0 = 3.0 * unit_at_angle(t[0], 120.0, 3)[None]
    v = torch.linspace(-1, 1, D, dtype=torch.float64)

    def grad(purifier, normalise: bool, z=z0):
        z = z.clone().requires_grad_(True)
        return torch.autograd.grad((purifier(F.normalize(z, dim=1) if normalise else z) * v).sum(), z)[0]

    def exact(z):
        return purify(z, t, 10, 30.0, False)

    def bpda(z):
        return purify(z, t, 10, 30.0, True)

    h, numeric = 1e-6, torch.zeros_like(z0)
    for i in range(D):
        e = torch.zeros_like(z0)
        e[0, i] = h
        numeric[0, i] = ((exact(F.normalize(z0 + e, dim=1)) - exact(F.normalize(z0 - e, dim=1))) * v).sum() / (2 * h)
    torch.testing.assert_close(grad(exact, True), numeric, rtol=1e-4, atol=1e-6)
    # on a raw embedding (its norm differentiable) both backwards are of order one: equal to the released loop's
    torch.testing.assert_close(grad(bpda, False), grad(lambda z: released_purify(z, t), False), rtol=1e-6,
                               atol=1e-9)
    assert float(grad(bpda, False).abs().max()) > 1e-3
    assert float(grad(bpda, True).norm()) < 1e-13 * float(grad(exact, True).norm())
    defended = DefendedEncoder(TinyEncoder(), make_defence("clipure"), seed=0)
    assert not torch.allclose(loss_gradient(defended, images, "bpda"), loss_gradient(defended, images, "autograd"))


def test_clipure_blank_prompts():
    assert len(BLANK_PROMPTS["imagenet-templates"]) == 80
    assert BLANK_PROMPTS["imagenet-templates"][0] == "a bad photo of a ."
    assert BLANK_PROMPTS["a-photo-of-a"] == ("a photo of a.",)
    clipure = make_defence("clipure")
    assert not clipure.randomised and clipure.adaptive.eot == 1 and clipure.cost(True).forwards == 1


# ------------------------------------------------------------------------------------------------ spelling, identity


def test_spelling_and_options():
    assert split_defence("clip+ttc")[0] == "clip" and split_defence("clip+ttc")[1].name == "ttc"
    assert split_defence("clip") == ("clip", None)
    assert split_defence("mine=/tmp/a+b.pt") == ("mine=/tmp/a+b.pt", None)  # a path holding "+" stays a path
    assert make_defence("ttc:tau=0.2:beta=2").spelling == "ttc"  # the released values: nothing to say
    assert make_defence("ttc:tau=0.30").spelling == "ttc:tau=0.3"
    spec = resolve_encoder("fare4+ttc:tau_from=self")
    assert spec.name == "fare4" and spec.full_name == "fare4+ttc:tau_from=self" and spec.robust
    for bad, message in (("clip+tcc", "did you mean 'ttc'"), ("clip+ttc:gamma=1", "has no option 'gamma'"),
                         ("clip+ttc:tau_from=other", "must be one of clip, self"), ("clip+ttc:tau", "NAME=VALUE")):
        with pytest.raises(BenchError, match=message) as exc:
            resolve_encoder(bad)
        assert "\n" not in str(exc.value)


# run ids computed by main (9f36545) before defences existed: a cell without a defence keeps its id
MAIN_RUN_IDS = {"apgd": "clip-zeroshot-shape-apgd-4_255-04511f4794",
                "aa-custom": "clip-zeroshot-shape-aa-custom-4_255-6e11a62e6f",
                "pgd-100-tga": "clip-zeroshot-shape-pgd-100-tga-4_255-9f3d90373b"}


def cell(attack: str, **kw) -> CellConfig:
    from attacks import ENGINE_VERSION

    return CellConfig("micro", "clip", "abc", "zeroshot", "shape", attack, 4 / 255, "4/255", 50, 0,
                      protocol=ATTACKS.get(attack).definition(), metric_definition="m", engine_version=ENGINE_VERSION,
                      **kw)


def test_cells_without_a_defence_keep_their_run_ids():
    assert {a: cell(a).run_id for a in MAIN_RUN_IDS} == MAIN_RUN_IDS
    assert "defence" not in cell("apgd").as_dict()


def test_the_defence_and_its_settings_are_part_of_the_identity():
    ids = {cell("apgd").run_id}
    for spelling in ("ttc", "ttc:tau=0.3", "clipure", "clipure:blank=a-photo-of-a"):
        ids.add(cell("apgd", defence=DefendedEncoder(TinyEncoder(), make_defence(spelling)).identity()).run_id)
    with_original = DefendedEncoder(TinyEncoder(), make_defence("ttc"), original=TinyEncoder(1, "clip")).identity()
    ids.add(cell("apgd", defence=with_original).run_id)
    assert len(ids) == 6
    # the transfer protocol says where it crafts, EOT its draws: both in the protocol's definition
    assert ATTACKS.get("transfer-apgd").definition()["craft_on"] == "base"
    assert ATTACKS.get("aa-rand").definition()["eot"] == 20
    assert make_defence("ttc").adaptive.definition()["eot"] == make_defence("ttc").adaptive.eot


def test_every_defence_is_registered_with_its_metadata():
    assert {"ttc", "clipure"} <= set(DEFENCES.names())
