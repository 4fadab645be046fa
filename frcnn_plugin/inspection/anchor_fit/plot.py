"""Plotting the anchor fit: :func:`plot_fit` draws one PNG with matplotlib's Agg canvas (no
pyplot state)."""
import numpy as np

from ...outputs import save_figure
from .analysis import AnchorFitResult
from .report import pct
from .scoring import MID_IOU

__all__ = ["plot_fit"]


def plot_fit(result: AnchorFitResult, path: str) -> str:
    """PNG: GT sizes and ratios against the current and suggested anchors (left); best-IoU
    histograms with the thresholds (right)."""
    # deferred: matplotlib (only the pictures need it)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    wh = result.gt_boxes[:, 2:] - result.gt_boxes[:, :2]
    fig = Figure(figsize=(9, 3.6), dpi=80)
    FigureCanvasAgg(fig)  # the Agg canvas, without pyplot's global state
    ax0, ax1 = fig.subplots(1, 2)
    ax0.scatter(np.sqrt(wh[:, 0] * wh[:, 1]), wh[:, 1] / wh[:, 0], s=6, c="0.5", alpha=0.5,
                label="GT boxes")
    for spec, marker, color, name in ((result.current, "x", "red", "current anchors"),
                                      (result.suggested, "+", "blue", "suggested anchors")):
        pts = [(s, r) for lvl_s, lvl_r in zip(spec.sizes, spec.ratios) for s in lvl_s
               for r in lvl_r]
        ax0.scatter(*zip(*pts), marker=marker, s=70, c=color, label=name)
    ax0.set_xscale("log")
    ax0.set_yscale("log")
    for axis in (ax0.xaxis, ax0.yaxis):  # ticks 1, 2, 5 x 10^k, written plainly
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: "{:g}".format(v)))
        axis.set_minor_formatter(NullFormatter())
    ax0.set_xlabel("sqrt(area), input px")
    ax0.set_ylabel("aspect ratio h / w")
    ax0.legend(fontsize=7, loc="best")
    bins = np.linspace(0, 1, 21)
    lo, hi = result.fitter.thresholds
    for st, color, name in ((result.current_stats, "red", "current"),
                            (result.suggested_stats, "blue", "suggested")):
        ax1.hist(st.best_iou, bins=bins, histtype="step", color=color, linewidth=1.5,
                 label="{}: {} ≥ {:g}".format(name, pct(st.share_high), hi))
    for t in sorted({lo, MID_IOU, hi}):
        ax1.axvline(t, color="0.3", linestyle="--", linewidth=0.8)
    ax1.set_xlabel("best anchor IoU per GT box")
    ax1.set_ylabel("GT boxes")
    ax1.legend(fontsize=7, loc="upper left")
    fig.suptitle("Anchor fit: {}".format(result.dataset), fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)  # atomically
    return path
