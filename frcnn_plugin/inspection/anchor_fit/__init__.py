"""How well a config's anchors fit a data set's boxes, and anchors that fit better
(``tools/analyze_anchors.py``). One module per job:

- :mod:`.data`: the GT boxes of a data set, resized as at test time (``dataset_gt_boxes``);
- :mod:`.scoring`: anchor sets (``AnchorSpec``) scored on the config's real anchor grid
  (``AnchorFitter``, ``FitStats``);
- :mod:`.search`: the search for better sizes and ratios (``suggest_anchors``, ``kmeans_1d``);
- :mod:`.analysis`: the three together for a registered data set (``analyze_dataset`` ->
  ``AnchorFitResult``, plain data);
- :mod:`.report`: its JSON, text report and YAML (``result_to_dict``, ``format_report``,
  ``format_yaml``);
- :mod:`.plot`: its picture (``plot_fit``).
"""
from .analysis import AnchorFitResult, analyze_dataset
from .data import dataset_gt_boxes
from .plot import plot_fit
from .report import format_report, format_yaml, result_to_dict
from .scoring import MID_IOU, AnchorFitter, AnchorSpec, FitStats
from .search import kmeans_1d, suggest_anchors

__all__ = [
    "MID_IOU",
    "AnchorSpec",
    "FitStats",
    "AnchorFitter",
    "AnchorFitResult",
    "dataset_gt_boxes",
    "kmeans_1d",
    "suggest_anchors",
    "analyze_dataset",
    "result_to_dict",
    "format_report",
    "format_yaml",
    "plot_fit",
]
