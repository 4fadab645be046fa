"""Rendering a trace: the stage table (Markdown) and its JSON, from :mod:`.trace`'s plain data.

Each stage's row name and details are written here from the stage's key and facts; nothing is
computed from the model. ``tools/inspect_pipeline.py`` prints :func:`format_table` and writes
:func:`trace_to_dict` with ``--json``; the README ("One image, stage by stage") shows the table.
"""

from typing import Any, Dict, List

from .trace import PipelineTrace, Stage

__all__ = ["format_value", "stage_name", "stage_detail", "format_table", "trace_to_dict"]

NA = "n/a"

_NAMES = {
    "input": "input (after resize)",
    "anchors": "anchors",
    "anchors_inside": "anchors inside the image",
    "anchor_labels": "anchor labels: positive / negative / ignored",
    "anchors_sampled": "anchors sampled: positive / negative",
    "rpn_objectness": "RPN head objectness",
    "rpn_deltas": "RPN head deltas",
    "proposals_pre_nms": "proposals before NMS",
    "proposals_post_nms": "proposals after NMS",
    "rois_sampled": "RoIs sampled: foreground / background",
    "roi_pooled_sampled": "RoI pooling (sampled RoIs)",
    "roi_pooled": "RoI pooling (proposals)",
    "box_head": "box head",
    "cls_scores": "class scores",
    "box_deltas": "box deltas",
    "detections": "detections",
}

_MISSING = {
    "anchor_generator": "no anchor generator",
    "label_and_sample_anchors": "no RPN with label_and_sample_anchors",
    "subsample_labels": "the RPN has no _subsample_labels to observe",
    "rpn": "no RPN",
    "label_and_sample_proposals": "no ROI heads with label_and_sample_proposals",
    "box_path": "no box_pooler / box_head / box_predictor",
    "gt": "no ground truth",
}


def format_value(value) -> str:
    """Counts with a thin space every 3 digits ("22 500"), shapes as "1×512×50×50", parts as
    "9 / 247", None as "n/a"."""
    if value is None:
        return NA
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return "{:,}".format(value).replace(",", " ")
    if isinstance(value, float):
        return "{:.3g}".format(value)
    if isinstance(value, dict):
        return " / ".join(format_value(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return "×".join(str(v) for v in value)
    return str(value)


def stage_name(key: str) -> str:
    """The row name of a stage key ("feature/conv5" -> "backbone conv5")."""
    if key.startswith("feature/"):
        return "backbone " + key[len("feature/"):]
    return _NAMES[key]


def _levels(f) -> str:
    return "" if f["num_levels"] == 1 else "; {} levels, shown: {}".format(
        f["num_levels"], f["shown_level"]
    )


def _sampler(name) -> str:
    return "" if name is None else " ({})".format(name)


def _pooling(f) -> str:
    return "{} {}×{} of {}".format(f["pooler"], *f["output_size"], ", ".join(f["features"]))


def stage_detail(stage: Stage) -> str:
    """How the value came about, in words (thresholds, sizes, module names)."""
    key, f = stage.key, stage.facts
    if "missing" in f:
        return _MISSING[f["missing"]]
    if key == "input":
        return "original {}×{}; batch tensor {}".format(
            f["original_size"][0], f["original_size"][1], format_value(f["batch_shape"])
        )
    if key.startswith("feature/"):
        return "stride {}".format(f["stride"])
    if key == "anchors":
        return ", ".join(
            "{}×{} locations × {} ({})".format(g[0], g[1], a, n)
            for g, a, n in zip(f["grid_sizes"], f["num_anchors"], f["features"])
        )
    if key == "anchors_inside":
        t = f["boundary_thresh"]
        if t >= 0:
            return "BOUNDARY_THRESH {}: only these are labelled in training".format(t)
        return "fully inside; BOUNDARY_THRESH {}: all anchors are labelled".format(t)
    if key == "anchor_labels":
        floor = f["best_anchor_min_iou"]
        return "IoU ≥ {} or a GT's best{}: positive; < {}: negative; {} GT".format(
            f["fg_iou"], "" if floor is None else " (IoU > {:g})".format(floor), f["bg_iou"],
            f["num_gt"],
        )
    if key == "anchors_sampled":
        return "{} per image, ≤ {:g} % positive{}".format(
            f["batch_size_per_image"], 100 * f["positive_fraction"], _sampler(f["sampler"])
        )
    if key == "rpn_objectness":
        k = f["per_anchor"]
        return "{}: {} per anchor ({}){}".format(
            f["head"], k, "softmax" if k == 2 else "sigmoid", _levels(f)
        )
    if key == "rpn_deltas":
        return "{} per anchor{}".format(f["box_dim"], _levels(f))
    if key == "proposals_pre_nms":
        text = (
            "clipped, sides ≥ {1:g} px, top {0} per level by objectness ({2})"
            if f["order"] == "paper"
            else "top {0} per level by objectness, clipped, sides > {1:g} px ({2})"
        )
        return text.format(format_value(f["pre_nms_topk"]), f["min_size"], f["mode"])
    if key == "proposals_post_nms":
        return "NMS {:g}, top {}".format(f["nms_thresh"], format_value(f["post_nms_topk"]))
    if key == "rois_sampled":
        appended = "" if f["appended_gt"] is None else " + {} GT".format(f["appended_gt"])
        return "of {} proposals{}; {} per image, ≤ {:g} % foreground{}".format(
            format_value(f["num_proposals"]),
            appended,
            f["batch_size_per_image"],
            100 * f["positive_fraction"],
            _sampler(f["sampler"]),
        )
    if key == "roi_pooled_sampled":
        return _pooling(f) + " (training path)"
    if key == "roi_pooled":
        return _pooling(f)
    if key == "box_head":
        return f["head"]
    if key == "cls_scores":
        return "K + 1 = {} (background last)".format(f["num_outputs"])
    if key == "box_deltas":
        n = f["num_boxes"]
        return "4 × {} ({})".format(
            n,
            "class-agnostic" if n == 1 and f["num_classes"] > 1 else "one box per foreground class",
        )
    if key == "detections":
        if f["source"] == "forward":
            return "the model's forward"
        return "score ≥ {:g}, NMS {:g}, ≤ {}".format(f["score_thresh"], f["nms_thresh"], f["topk"])
    raise KeyError("no rendering for stage {!r}".format(key))


def format_table(stages: List[Stage]) -> str:
    """A Markdown table: stage | value | details."""
    rows = [("stage", "value", "details")] + [
        (stage_name(s.key), format_value(s.value), stage_detail(s)) for s in stages
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def trace_to_dict(trace: PipelineTrace) -> Dict[str, Any]:
    """JSON-ready: the input and the rows (``key``, ``stage`` name, ``value``, its ``text``,
    ``detail``); ``summary`` maps key -> value."""
    return {
        "source": trace.source,
        "original_size": list(trace.original_size),
        "image_size": list(trace.image_size),
        "stages": [
            {
                "key": s.key,
                "stage": stage_name(s.key),
                "value": s.value,
                "text": format_value(s.value),
                "detail": stage_detail(s),
            }
            for s in trace.stages
        ],
        "summary": trace.summary,
    }
