"""Draw an image and its attribution map side by side (for POST /explanations answers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def render(image: Image.Image, attributions, out: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attr = np.asarray(attributions, dtype=np.float32)
    h, w = attr.shape
    shown = np.asarray(image.convert("RGB").resize((w, h), Image.BILINEAR))
    limit = float(np.abs(attr).max()) or 1.0
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
    axes[0].imshow(shown, interpolation="nearest")
    axes[0].set_title("input")
    axes[1].imshow(np.asarray(Image.fromarray(shown).convert("L")), cmap="gray", interpolation="nearest")
    heat = axes[1].imshow(attr, cmap="bwr", vmin=-limit, vmax=limit, alpha=0.6, interpolation="nearest")
    axes[1].set_title("Integrated Gradients (red: for, blue: against)")
    fig.colorbar(heat, ax=axes[1], fraction=0.046, pad=0.04)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
