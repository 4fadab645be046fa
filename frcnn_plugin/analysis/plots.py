"""Pictures of an analysis: PR curves, the confusion matrix, the error breakdown. matplotlib's
``Figure`` with the Agg canvas (no pyplot state); every function writes one PNG and returns its
path."""
from typing import Dict, List

import numpy as np

from ..outputs import save_figure
from .errors import ERROR_STEPS

__all__ = ["plot_pr_curves", "plot_confusion", "plot_error_breakdown"]

RECALL = np.linspace(0, 1, 101)
MAX_LEGEND = 12  # classes named in a legend at most


def _figure(w, h):
    # deferred: matplotlib (only the pictures need it)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=90)
    FigureCanvasAgg(fig)
    return fig


def plot_pr_curves(curves_by_iou: Dict[float, Dict[str, np.ndarray]], path: str) -> str:
    """One panel per IoU: every class (thin) and "all" (thick, the mean over classes)."""
    fig = _figure(5 * max(1, len(curves_by_iou)), 4)
    axes = fig.subplots(1, max(1, len(curves_by_iou)), squeeze=False)[0]
    for ax, (iou, curves) in zip(axes, curves_by_iou.items()):
        classes = [n for n in curves if n != "all"]
        for n in classes:
            ax.plot(RECALL, curves[n], linewidth=1, alpha=0.8,
                    label=n if len(classes) <= MAX_LEGEND else None)
        if "all" in curves:
            ap = np.nanmean(curves["all"]) * 100 if np.isfinite(curves["all"]).any() else 0.0
            ax.plot(RECALL, curves["all"], color="black", linewidth=2.5,
                    label="all classes (AP {:.1f})".format(ap))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title("IoU {:g}".format(iou))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    save_figure(fig, path)  # atomically
    return path


def plot_confusion(matrix: np.ndarray, names: List[str], path: str, iou: float,
                   score: float) -> str:
    """Counts, with each row's share as the colour (rows: GT; columns: prediction)."""
    n = len(names)
    fig = _figure(2.0 + 0.7 * n, 1.6 + 0.6 * n)
    ax = fig.subplots()
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title("IoU ≥ {:g}, score ≥ {:g}".format(iou, score), fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)  # atomically
    return path


_COLORS = ("#ffffff", "#3b4cc0", "#6f92f3", "#aac7fd", "#dddcdc", "#f7b89c", "#e7745b")


def plot_error_breakdown(ps: np.ndarray, title: str, path: str) -> str:
    """Stacked areas of the 7 PR curves of :data:`ERROR_STEPS`, each step's AP in the legend."""
    fig = _figure(5.5, 4)
    ax = fig.subplots()
    aps = ps.mean(axis=1)
    for i in range(len(ERROR_STEPS) - 1, -1, -1):  # widest first, so each shows
        ax.fill_between(RECALL, ps[i], color=_COLORS[(i + 1) % len(_COLORS)],
                        label="[{:.3f}] {}".format(aps[i], ERROR_STEPS[i]))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], fontsize=7, loc="lower left")
    fig.tight_layout()
    save_figure(fig, path)  # atomically
    return path
