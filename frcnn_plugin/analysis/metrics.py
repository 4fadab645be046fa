"""detectron2's ``metrics.json`` (one JSON object per line, written by its ``JSONWriter``) read
and plotted: loss terms, learning rate, sampler statistics and evaluation AP against iteration,
one or several runs overlaid."""
import json
import logging
from typing import Dict, List, Sequence

import numpy as np

from ..errors import DataError
from ..files import require_file
from ..outputs import save_figure

__all__ = ["PANELS", "load_metrics", "smooth", "plot_metrics"]

logger = logging.getLogger(__name__)

# panel title -> the keys it shows (each panel only if some run has one of them)
PANELS = {
    "losses": ("total_loss", "loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"),
    "learning rate": ("lr",),
    "RoI samples per image": ("roi_head/num_fg_samples", "roi_head/num_bg_samples",
                              "roi_head/ohem_num_fg_samples", "roi_head/ohem_num_bg_samples"),
    "RPN anchors per image": ("rpn/num_pos_anchors", "rpn/num_neg_anchors"),
    "evaluation": ("bbox/AP", "bbox/AP50", "bbox/AP75"),
}


def load_metrics(path: str) -> Dict[str, List[tuple]]:
    """key -> [(iteration, value), ...] from one ``metrics.json``, in iteration order; lines that
    do not parse are skipped with a warning naming the line.

    A resumed run appends the iterations after its last checkpoint again (the ones logged
    before the interruption were trained once more): each key keeps the value logged last for
    an iteration, so the curve runs forward and shows what the final model went through.

    Raises:
        MissingFileError: no such file, or a folder. DataError: not a text file; no line has an
        ``iteration``.
    """
    require_file(path, "metrics file", "allowed: detectron2's OUTPUT_DIR/metrics.json")
    by_key: Dict[str, Dict[int, float]] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except UnicodeDecodeError as e:
        raise DataError("{} is not a text file ({}); allowed: detectron2's metrics.json (JSON "
                        "lines)".format(path, e.reason)) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            it = int(row["iteration"])
        except (ValueError, KeyError, TypeError):
            logger.warning("%s line %d is not a metrics record; skipped", path, number)
            continue
        for k, v in row.items():
            if k != "iteration" and isinstance(v, (int, float)) and np.isfinite(v):
                by_key.setdefault(k, {})[it] = float(v)  # a later line (a resumed run) wins
    series = {k: sorted(values.items()) for k, values in by_key.items()}
    if not series:
        raise DataError("{} has no metrics records (JSON lines with an \"iteration\"); is it "
                        "detectron2's metrics.json?".format(path))
    return series


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving median over ``window`` values (1: none), as detectron2's printer."""
    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(values) == 0:
        return values
    return np.array([np.median(values[max(0, i - window + 1):i + 1])
                     for i in range(len(values))])


def plot_metrics(runs: Dict[str, Dict[str, List[tuple]]], path: str, window: int = 1) -> str:
    """One PNG, one panel per :data:`PANELS` entry some run has; runs by colour, keys by line
    style."""
    from matplotlib import rcParams  # deferred: matplotlib (only the pictures need it)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [(t, [k for k in keys if any(k in r for r in runs.values())])
              for t, keys in PANELS.items()]
    panels = [(t, keys) for t, keys in panels if keys]
    if not panels:
        raise DataError("none of the runs has a metric to plot ({})".format(
            ", ".join(k for keys in PANELS.values() for k in keys)))
    fig = Figure(figsize=(6, 2.6 * len(panels)), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    styles = ("-", "--", ":", "-.")
    colors = [c["color"] for c in rcParams["axes.prop_cycle"]]
    for ax, (title, keys) in zip(axes, panels):
        for r, (label, series) in enumerate(runs.items()):
            for s, key in enumerate(keys):
                if key not in series:
                    continue
                it, v = zip(*series[key])
                evaluation = title == "evaluation"
                ax.plot(it, v if evaluation else smooth(v, window),
                        linestyle=styles[s % len(styles)], color=colors[r % len(colors)],
                        marker="o" if evaluation else None, markersize=3, linewidth=1.2,
                        label="{}: {}".format(label, key) if len(runs) > 1 else key)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        if title == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    fig.tight_layout()
    save_figure(fig, path)  # atomically
    return path
