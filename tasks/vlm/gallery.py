"""One adversarial example as a PNG for the report's gallery: the clean image, the perturbation magnified ten times
(around mid-grey), the adversarial image, and the model's output on each."""

from __future__ import annotations

import textwrap
from pathlib import Path

import torch

from bench.core.checkpoints import atomic_path
from bench.core.config import safe_component


def _image(t: torch.Tensor):
    return t.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def write_example(directory: Path, sample_id: str, x: torch.Tensor, x_adv: torch.Tensor, eps: float, prompt: str,
                  clean_output: str, adv_output: str, note: str) -> Path:
    """``<directory>/<sample_id>.png`` and a sibling ``.txt`` with the outputs (the report's caption)."""
    import matplotlib  # deferred: matplotlib (pyplot takes seconds to import), the gallery only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    delta = (x_adv - x).detach()
    panels = [(_image(x), "clean image"), (_image(0.5 + 10 * delta), f"perturbation × 10 (ℓ∞ = "
                                                                       f"{float(delta.abs().max()) * 255:.2f}/255)"),
              (_image(x_adv), f"adversarial image (ε = {eps * 255:.3g}/255)")]
    fig, axes = plt.subplots(1, 3, figsize=(9, 4.2))
    for ax, (img, title) in zip(axes, panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    wrap = lambda s: "\n".join(textwrap.wrap(s, 90)) or "(empty)"  # noqa: E731
    fig.text(0.01, 0.02, f"prompt: {wrap(prompt)}\nclean: {wrap(clean_output)}\nadversarial: {wrap(adv_output)}\n"
             f"{note}", fontsize=8, va="bottom", family="monospace")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.92, bottom=0.3, wspace=0.05)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    png = directory / f"{safe_component(sample_id)}.png"
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    with atomic_path(png.with_suffix(".txt")) as tmp:
        Path(tmp).write_text(f"clean: {clean_output} | adversarial: {adv_output} | {note}\n")
    return png
