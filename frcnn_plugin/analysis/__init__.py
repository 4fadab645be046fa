"""Analyse a benchmark: detection results against a data set's ground truth, and training curves.

- :mod:`.coco_eval`: the ground truth and results as pycocotools objects (with clear errors),
  per-class AP and precision-recall curves from ``COCOeval``;
- :mod:`.confusion`: the confusion matrix with a background row and column;
- :mod:`.errors`: the COCO error breakdown (C75, C50, Loc, Sim, Oth, BG, FN), by re-running
  ``COCOeval`` with other IoU thresholds and forgiven class confusions;
- :mod:`.plots`: the pictures (matplotlib's Agg canvas, no pyplot state);
- :mod:`.metrics`: detectron2's ``metrics.json`` read and plotted.

The tools are ``tools/analyze_results.py`` and ``tools/plot_metrics.py`` (README: Analyse a
benchmark).
"""
from .coco_eval import load_ground_truth, load_results, per_class_ap, pr_curves, run_cocoeval
from .confusion import confusion_matrix
from .errors import ERROR_STEPS, error_breakdown
from .metrics import load_metrics, plot_metrics

__all__ = [
    "load_ground_truth",
    "load_results",
    "run_cocoeval",
    "per_class_ap",
    "pr_curves",
    "confusion_matrix",
    "ERROR_STEPS",
    "error_breakdown",
    "load_metrics",
    "plot_metrics",
]
