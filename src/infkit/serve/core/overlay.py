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
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.6))
    axes[0].imshow(shown, interpolation="nearest")
    axes[0].set_title("input")
    axes[1].imshow(np.asarray(Image.fromarray(shown).convert("L")), cmap="gray", alpha=0.5, interpolation="nearest")
    # colour by sign, opacity by strength: weak attributions leave the image visible
    norm = matplotlib.colors.Normalize(-limit, limit)
    rgba = matplotlib.colormaps["bwr"](norm(attr))
    rgba[..., 3] = np.clip(np.abs(attr) / limit, 0, 1) ** 0.5
    axes[1].imshow(rgba, interpolation="nearest")
    heat = matplotlib.cm.ScalarMappable(norm=norm, cmap="bwr")
    axes[1].set_title("attribution (red: for the class, blue: against)", fontsize=10)
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
