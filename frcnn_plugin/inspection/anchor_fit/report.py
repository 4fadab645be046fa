"""Reporting the anchor fit: the JSON of ``--json`` (:func:`result_to_dict`), the text report
with its table (:func:`format_report`, shown in the README) and the YAML to paste into a config
(:func:`format_yaml`)."""
from typing import Dict

import numpy as np

from .analysis import AnchorFitResult
from .scoring import MID_IOU

__all__ = ["result_to_dict", "format_report", "format_yaml"]


def result_to_dict(result: AnchorFitResult) -> Dict[str, object]:
    """JSON-ready: the setting, GT statistics, the current and suggested anchors with their fit,
    and the suggested config keys."""
    wh = result.gt_boxes[:, 2:] - result.gt_boxes[:, :2]
    return {
        "dataset": result.dataset,
        "num_images": result.num_images,
        "resize": {"min_size_test": result.min_size, "max_size_test": result.max_size},
        "anchor_generator": result.fitter.generator_name,
        "in_features": result.fitter.in_features,
        "strides": result.fitter.strides,
        "boundary_thresh": result.fitter.boundary_thresh,
        "iou_thresholds": list(result.fitter.thresholds),
        "gt_sqrt_area": _quantiles(np.sqrt(wh[:, 0] * wh[:, 1])),
        "gt_aspect_ratio": _quantiles(wh[:, 1] / wh[:, 0]),
        "current": dict(result.current.as_dict(), **result.current_stats.as_dict()),
        "suggested": dict(result.suggested.as_dict(), **result.suggested_stats.as_dict()),
        "suggested_config": {"MODEL": {"ANCHOR_GENERATOR":
                                       result.fitter.config_keys(result.suggested)}},
        "num_candidates": result.num_candidates,
    }


def _quantiles(x):
    return {k: float(np.quantile(x, q)) for k, q in
            (("min", 0), ("p10", 0.1), ("median", 0.5), ("p90", 0.9), ("max", 1))}


def pct(x: float) -> str:
    """A share as a percentage with one decimal ("15.9 %")."""
    return "{:.1f} %".format(100 * x)


def _yaml_list(v) -> str:
    return "[" + ", ".join(_yaml_list(x) if isinstance(x, list) else repr(x) for x in v) + "]"


def format_yaml(keys: Dict[str, object]) -> str:
    """The MODEL.ANCHOR_GENERATOR keys as a YAML block ready to paste into a config."""
    lines = ["MODEL:", "  ANCHOR_GENERATOR:"]
    for k, v in keys.items():
        lines.append("    {}: {}".format(k, _yaml_list(v) if isinstance(v, list) else v))
    return "\n".join(lines)


def format_report(result: AnchorFitResult) -> str:
    """A text report: the setting, a table current vs suggested, GT statistics, the YAML."""
    f = result.fitter
    lo, hi = f.thresholds
    d = result_to_dict(result)
    lines = [
        "Anchor fit of {}: {} images, {} GT boxes, resized by ResizeShortestEdge({}, {}).".format(
            result.dataset, result.num_images, len(result.gt_boxes), result.min_size,
            result.max_size),
        "Anchors: {} on {} (strides {}); {}.".format(
            f.generator_name, ", ".join(f.in_features), ", ".join(map(str, f.strides)),
            "anchors inside the image (BOUNDARY_THRESH {})".format(f.boundary_thresh)
            if f.boundary_thresh >= 0 else "all anchors"),
        "GT sqrt(area) px: min {min:.0f}, median {median:.0f}, max {max:.0f}; ".format(
            **d["gt_sqrt_area"]) + "aspect ratio h/w: min {min:.2f}, median {median:.2f}, "
        "max {max:.2f}.".format(**d["gt_aspect_ratio"]),
        "",
        "| anchors | sizes | ratios | best IoU ≥ {:g} | ≥ {:g} | < {:g} | positives per GT "
        "(mean / min) |".format(hi, MID_IOU, lo),
        "|---|---|---|---|---|---|---|",
    ]
    for name, spec, st in (("current", result.current, result.current_stats),
                           ("suggested", result.suggested, result.suggested_stats)):
        s = st.as_dict()
        lines.append("| {} | {} | {} | {} | {} | {} | {:.1f} / {} |".format(
            name, _yaml_list(f.config_keys(spec)["SIZES"]),
            _yaml_list(f.config_keys(spec)["ASPECT_RATIOS"]), pct(st.share_high),
            pct(st.share_mid), pct(st.share_low), s["positives_per_gt_mean"],
            s["positives_per_gt_min"]))
    lines += ["", "Suggested anchors ({} candidates scored; share of GT boxes with best IoU ≥ "
              "{:g}: {} -> {}):".format(result.num_candidates, hi,
                                        pct(result.current_stats.share_high),
                                        pct(result.suggested_stats.share_high)),
              format_yaml(f.config_keys(result.suggested))]
    return "\n".join(lines)
