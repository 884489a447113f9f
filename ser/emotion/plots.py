"""Static figures (PNG) written next to models and evaluations: the confusion matrix
and the reliability diagram. Matplotlib with the Agg backend, imported on use."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _figure(figsize: tuple[float, float]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize, dpi=110)


def _save(fig, path: str | Path, title: str, ax, fontsize: int) -> Path:
    import matplotlib.pyplot as plt

    if title:
        ax.set_title(title, fontsize=fontsize)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def save_confusion_png(confusion: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, *,
                       title: str = "") -> Path:
    """Row-normalised confusion matrix with counts, as a PNG."""
    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = _figure((1.0 + 0.8 * len(labels), 0.8 + 0.7 * len(labels)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of row")
    return _save(fig, path, title, ax, 10)


def save_reliability_png(rel_before: dict, rel_after: dict, path: str | Path, *, title: str = "") -> Path:
    """Top-label reliability (accuracy against confidence) before and after calibration."""
    fig, ax = _figure((4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect calibration")
    for rel, name, style in ((rel_before, "before", "o-"), (rel_after, "after", "s-")):
        xs = [b["confidence"] for b in rel["bins"]]
        ys = [b["accuracy"] for b in rel["bins"]]
        ax.plot(xs, ys, style, ms=4, label=f"{name} (ECE {rel['ece']:.3f})")
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path, title, ax, 9)
