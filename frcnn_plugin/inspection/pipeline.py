"""Run one image through a detector stage by stage, with the model's own modules.

:func:`trace_pipeline` calls, in order, ``model.preprocess_image``, ``model.backbone``, the
RPN's ``anchor_generator``, ``label_and_sample_anchors`` (whose ``_subsample_labels``, i.e. the
sampler, is observed to record the labels before and after sampling), ``rpn_head``,
``predict_proposals`` (once with NMS off to count the proposals before NMS, once as
configured), the ROI heads' ``label_and_sample_proposals``, ``box_pooler``, ``box_head``,
``box_predictor`` and ``box_predictor.inference``. It records one :class:`Stage` per step, as
the stage-by-stage walk-through of the paper does (README: "See inside the detector"), and keeps the
intermediate tensors in a :class:`PipelineTrace` for pictures.

Components without one of these steps (RetinaNet, detectron2's Res5ROIHeads, ...) give ``n/a``
for the stages they lack; the final detections then come from the model's own forward.
Everything runs in eval mode, under ``torch.no_grad()`` and a fresh ``EventStorage``.
"""

import contextlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from .inputs import InspectionInput

__all__ = ["Stage", "PipelineTrace", "trace_pipeline", "format_table", "format_value"]

NA = "n/a"


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


@dataclass
class Stage:
    """One row of the stage table.

    Attributes:
        key (str): machine-readable name, e.g. "anchors_inside".
        name (str): what the row shows, e.g. "anchors inside the image".
        value: int (a count), list[int] (a tensor shape), dict[str, int] (counts of parts,
            e.g. {"positive": 9, "negative": 247}) or None (n/a: the stage does not apply).
        detail (str): how the value came about (thresholds, sizes, module names).
    """

    key: str
    name: str
    value: Any = None
    detail: str = ""

    def as_dict(self) -> Dict[str, Any]:
        return {
            "key": self.key,
            "stage": self.name,
            "value": self.value,
            "text": format_value(self.value),
            "detail": self.detail,
        }


@dataclass
class PipelineTrace:
    """The stages and the intermediate results of one image (all in resized-input pixels).

    Attributes (None where the stage does not apply):
        stages (list[Stage]): the table rows, in order.
        source (str), image_size, original_size: the input.
        image_rgb (ndarray): (H, W, 3) uint8 resized image.
        gt (Instances): ground truth (``gt_boxes``, ``gt_classes``).
        features (dict[str, Tensor]): backbone outputs.
        anchor_features (list[str]): the features the anchors are laid on.
        anchors (list[Boxes]): per feature map, Hi*Wi*A anchors (location, then anchor).
        grid_sizes (list[tuple]): per feature map, (Hi, Wi).
        strides (list[int]): per feature map.
        num_anchors (list[int]): anchors per location, per feature map.
        inside (BoolTensor): (R,) anchors inside the image (BOUNDARY_THRESH, at least 0).
        anchor_labels (Tensor): (R,) labels before sampling: -1 ignore, 0 negative, 1 positive.
        sampled_labels (Tensor): (R,) labels after sampling (only sampled anchors are 0 / 1).
        matched_gt_boxes (Tensor): (R, 4) the GT box matched to each anchor.
        pred_anchor_boxes (Tensor): (R, 4) anchors decoded with the RPN's deltas.
        proposals (Instances): the RPN's proposals after NMS.
        sampled_rois (Instances): the RoIs sampled for the box head, with ``gt_classes``
            (``num_classes`` = background).
        num_classes (int): foreground classes of the ROI heads.
        detections (Instances): final detections (``pred_boxes``, ``scores``, ``pred_classes``).
    """

    stages: List[Stage] = field(default_factory=list)
    source: str = ""
    image_size: tuple = ()
    original_size: tuple = ()
    image_rgb: Any = None
    gt: Optional[Instances] = None
    features: Dict[str, torch.Tensor] = field(default_factory=dict)
    anchor_features: List[str] = field(default_factory=list)
    anchors: Optional[List[Boxes]] = None
    grid_sizes: Optional[List[tuple]] = None
    strides: Optional[List[int]] = None
    num_anchors: Optional[List[int]] = None
    inside: Optional[torch.Tensor] = None
    anchor_labels: Optional[torch.Tensor] = None
    sampled_labels: Optional[torch.Tensor] = None
    matched_gt_boxes: Optional[torch.Tensor] = None
    pred_anchor_boxes: Optional[torch.Tensor] = None
    proposals: Optional[Instances] = None
    sampled_rois: Optional[Instances] = None
    num_classes: Optional[int] = None
    detections: Optional[Instances] = None

    def add(self, key, name, value=None, detail=""):
        self.stages.append(Stage(key, name, value, detail))

    def as_dict(self) -> Dict[str, Any]:
        """JSON-ready: the input and the table rows; ``summary`` maps key -> value."""
        return {
            "source": self.source,
            "original_size": list(self.original_size),
            "image_size": list(self.image_size),
            "stages": [s.as_dict() for s in self.stages],
            "summary": {s.key: s.value for s in self.stages},
        }


def format_table(stages: List[Stage]) -> str:
    """A Markdown table: stage | value | details."""
    rows = [("stage", "value", "details")] + [
        (s.name, format_value(s.value), s.detail) for s in stages
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


@contextlib.contextmanager
def _replaced(obj, **attrs):
    """Temporarily set attributes of ``obj`` (instance attributes; restored afterwards)."""
    missing = object()
    old = {k: obj.__dict__.get(k, missing) for k in attrs}
    try:
        for k, v in attrs.items():
            setattr(obj, k, v)
        yield obj
    finally:
        for k, v in old.items():
            if v is missing:
                delattr(obj, k)
            else:
                setattr(obj, k, v)


def _shape(x) -> List[int]:
    return [int(v) for v in x.shape]


def _counts(labels: torch.Tensor, names=(("positive", 1), ("negative", 0), ("ignored", -1))):
    return {n: int((labels == v).sum()) for n, v in names}


def trace_pipeline(model, inp: InspectionInput, mode: str = "test") -> PipelineTrace:
    """Run ``inp`` through ``model`` (a detectron2 meta-architecture) stage by stage.

    Args:
        model: e.g. :class:`FRCNNGeneralizedRCNN`, GeneralizedRCNN, RetinaNet.
        inp (InspectionInput): the image, resized, with its GT (or None).
        mode (str): "test" (the RPN's test-time top-k, e.g. 6000 -> 300) or "train" (the
            RPN's training top-k, e.g. 12 000 -> 2 000: the proposals the ROI heads are trained
            on). The model stays in eval mode (batch norm, dropout) either way.

    Returns:
        PipelineTrace
    """
    if mode not in ("test", "train"):
        raise ValueError("mode={!r}; allowed: 'test', 'train'".format(mode))
    was_training = model.training
    model.eval()
    trace = PipelineTrace(
        source=inp.source,
        image_size=inp.image_size,
        original_size=inp.original_size,
        image_rgb=inp.image_rgb,
    )
    try:
        with EventStorage(), torch.no_grad():
            _run(model, inp, mode, trace)
    finally:
        model.train(was_training)
    return trace


def _run(model, inp, mode, trace):
    device = getattr(model, "device", torch.device("cpu"))
    gt = inp.gt.to(device) if inp.gt is not None else None
    trace.gt = gt
    images = model.preprocess_image([inp.inputs])
    h, w = images.image_sizes[0]
    trace.add(
        "input",
        "input (after resize)",
        [int(images.tensor.shape[1]), int(h), int(w)],
        "original {}×{}; batch tensor {}".format(
            inp.original_size[0], inp.original_size[1], format_value(_shape(images.tensor))
        ),
    )
    features = model.backbone(images.tensor)
    trace.features = features
    out_shape = model.backbone.output_shape()
    for name, f in features.items():
        trace.add(
            "feature/" + name,
            "backbone " + name,
            _shape(f)[1:],
            "stride {}".format(out_shape[name].stride),
        )

    pg = getattr(model, "proposal_generator", None)
    has_rpn = pg is not None and all(
        hasattr(pg, a) for a in ("anchor_generator", "in_features", "rpn_head")
    )
    if has_rpn:
        trace.anchor_features = list(pg.in_features)
        generator = pg.anchor_generator
    elif hasattr(model, "anchor_generator") and hasattr(model, "head_in_features"):
        trace.anchor_features = list(model.head_in_features)  # RetinaNet
        generator = model.anchor_generator
    else:
        generator = None
    _anchor_stages(trace, generator, features, images, pg if has_rpn else None)
    _label_stages(trace, pg if has_rpn else None, gt)
    proposals = _proposal_stages(trace, pg if has_rpn else None, images, features, mode)
    _roi_stages(trace, model, features, proposals, gt, inp)


def _anchor_stages(trace, generator, features, images, pg):
    if generator is None:
        for key, name in (("anchors", "anchors"), ("anchors_inside", "anchors inside the image")):
            trace.add(key, name, None, "no anchor generator")
        return
    feats = [features[f] for f in trace.anchor_features]
    anchors = generator(feats)
    trace.anchors = anchors
    trace.grid_sizes = [tuple(int(v) for v in f.shape[-2:]) for f in feats]
    trace.strides = [int(s) for s in generator.strides]
    trace.num_anchors = [int(a) for a in generator.num_anchors]
    parts = ", ".join(
        "{}×{} locations × {} ({})".format(g[0], g[1], a, n)
        for g, a, n in zip(trace.grid_sizes, trace.num_anchors, trace.anchor_features)
    )
    total = sum(len(a) for a in anchors)
    trace.add("anchors", "anchors", total, parts)

    thresh = getattr(pg, "anchor_boundary_thresh", -1) if pg is not None else -1
    trace.inside = Boxes.cat(anchors).inside_box(images.image_sizes[0], max(thresh, 0))
    if thresh >= 0:
        detail = "BOUNDARY_THRESH {}: only these are labelled in training".format(thresh)
    else:
        detail = "fully inside; BOUNDARY_THRESH {}: all anchors are labelled".format(thresh)
    trace.add("anchors_inside", "anchors inside the image", int(trace.inside.sum()), detail)


def _label_stages(trace, pg, gt):
    """Labels before and after sampling, by the RPN's own label_and_sample_anchors."""
    name_l = "anchor labels: positive / negative / ignored"
    name_s = "anchors sampled: positive / negative"
    if pg is None or not hasattr(pg, "label_and_sample_anchors") or trace.anchors is None:
        trace.add("anchor_labels", name_l, None, "no RPN with label_and_sample_anchors")
        trace.add("anchors_sampled", name_s, None, "no RPN with label_and_sample_anchors")
        return
    if gt is None:
        trace.add("anchor_labels", name_l, None, "no ground truth")
        trace.add("anchors_sampled", name_s, None, "no ground truth")
        return
    before = []
    subsample = getattr(pg, "_subsample_labels", None)

    def observed(label):
        before.append(label.clone())
        return subsample(label)

    ctx = _replaced(pg, _subsample_labels=observed) if subsample else contextlib.nullcontext()
    with ctx:
        labels, matched = pg.label_and_sample_anchors(trace.anchors, [gt])
    trace.sampled_labels, trace.matched_gt_boxes = labels[0], matched[0]
    lo, hi = pg.anchor_matcher.thresholds[1], pg.anchor_matcher.thresholds[-2]
    if before:
        trace.anchor_labels = before[0]
        trace.add(
            "anchor_labels",
            name_l,
            _counts(before[0]),
            "IoU ≥ {} or a GT's best{}: positive; < {}: negative; {} GT".format(
                hi, _best_anchor_floor(pg), lo, len(gt)
            ),
        )
    else:
        trace.add("anchor_labels", name_l, None, "the RPN has no _subsample_labels to observe")
    sampler = getattr(pg, "sampler", None)
    detail = "{} per image, ≤ {:g} % positive".format(
        pg.batch_size_per_image, 100 * pg.positive_fraction
    )
    if sampler is not None:
        detail += " ({})".format(type(sampler).__name__)
    trace.add(
        "anchors_sampled", name_s, _counts(labels[0], (("positive", 1), ("negative", 0))), detail
    )


def _best_anchor_floor(pg) -> str:
    """" (IoU > 0)" for the plugin's matcher with its floor; "" for detectron2's (ties at any
    IoU)."""
    floor = getattr(pg.anchor_matcher, "min_iou", None)
    return "" if floor is None or floor < 0 else " (IoU > {:g})".format(floor)


def _flatten_rpn_outputs(pg, logits, deltas):
    """Per level (N, Hi*Wi*A[, 2]) objectness and (N, Hi*Wi*A, B) deltas: the RPN's own
    flattening where it has one (FRCNNRPN), else the layout of detectron2's RPN.forward."""
    num_anchors = pg.anchor_generator.num_anchors
    if hasattr(pg, "_flatten_objectness") and hasattr(pg, "_flatten_deltas"):
        return (
            [pg._flatten_objectness(x, a) for x, a in zip(logits, num_anchors)],
            [pg._flatten_deltas(x) for x in deltas],
        )
    box_dim = pg.anchor_generator.box_dim
    logits = [x.permute(0, 2, 3, 1).flatten(1) for x in logits]
    deltas = [
        x.view(x.shape[0], -1, box_dim, x.shape[-2], x.shape[-1])
        .permute(0, 3, 4, 1, 2)
        .flatten(1, -2)
        for x in deltas
    ]
    return logits, deltas


def _predict(pg, images, anchors, logits, deltas):
    if hasattr(pg, "min_box_sizes"):  # FRCNNRPN: per-image minimum size
        return pg.predict_proposals(
            anchors, logits, deltas, images.image_sizes, pg.min_box_sizes(images)
        )
    return pg.predict_proposals(anchors, logits, deltas, images.image_sizes)


def _proposal_stages(trace, pg, images, features, mode):
    keys = (
        ("rpn_objectness", "RPN head objectness"),
        ("rpn_deltas", "RPN head deltas"),
        ("proposals_pre_nms", "proposals before NMS"),
        ("proposals_post_nms", "proposals after NMS"),
    )
    if pg is None:
        for key, name in keys:
            trace.add(key, name, None, "no RPN")
        return None
    feats = [features[f] for f in pg.in_features]
    logits, deltas = pg.rpn_head(feats)
    head = type(pg.rpn_head).__name__
    per_anchor = _shape(logits[0])[1] // pg.anchor_generator.num_anchors[0]
    levels = (
        "" if len(feats) == 1 else "; {} levels, shown: {}".format(len(feats), pg.in_features[0])
    )
    trace.add(
        keys[0][0],
        keys[0][1],
        _shape(logits[0]),
        "{}: {} per anchor ({}){}".format(
            head, per_anchor, "softmax" if per_anchor == 2 else "sigmoid", levels
        ),
    )
    trace.add(
        keys[1][0],
        keys[1][1],
        _shape(deltas[0]),
        "{} per anchor{}".format(pg.anchor_generator.box_dim, levels),
    )
    flat_logits, flat_deltas = _flatten_rpn_outputs(pg, logits, deltas)
    decoded = pg._decode_proposals(trace.anchors, flat_deltas)
    trace.pred_anchor_boxes = torch.cat([d[0] for d in decoded], dim=0)

    training = mode == "train"
    pre, post = pg.pre_nms_topk[training], pg.post_nms_topk[training]
    old_training = pg.training
    pg.train(training)
    try:
        everything = {True: 10**9, False: 10**9}
        with _replaced(pg, nms_thresh=1.0, post_nms_topk=everything):
            before = _predict(pg, images, trace.anchors, flat_logits, flat_deltas)[0]
        proposals = _predict(pg, images, trace.anchors, flat_logits, flat_deltas)
    finally:
        pg.train(old_training)
    min_size = pg.min_box_sizes(images)[0] if hasattr(pg, "min_box_sizes") else pg.min_box_size
    trace.add(
        keys[2][0],
        keys[2][1],
        len(before),
        (
            "clipped, sides ≥ {1:g} px, top {0} per level by objectness ({2})"
            if getattr(pg, "proposal_order", "detectron2") == "paper"
            else "top {0} per level by objectness, clipped, sides > {1:g} px ({2})"
        ).format(format_value(pre), min_size, mode),
    )
    trace.add(
        keys[3][0],
        keys[3][1],
        len(proposals[0]),
        "NMS {:g}, top {}".format(pg.nms_thresh, format_value(post)),
    )
    trace.proposals = proposals[0]
    return proposals


def _roi_stages(trace, model, features, proposals, gt, inp):
    rh = getattr(model, "roi_heads", None)
    trace.num_classes = getattr(rh, "num_classes", None)
    name = "RoIs sampled: foreground / background"
    if rh is None or proposals is None or not hasattr(rh, "label_and_sample_proposals"):
        trace.add("rois_sampled", name, None, "no ROI heads with label_and_sample_proposals")
    elif gt is None:
        trace.add("rois_sampled", name, None, "no ground truth")
    else:
        sampled = rh.label_and_sample_proposals(proposals, [gt])[0]
        trace.sampled_rois = sampled
        c = sampled.gt_classes
        fg = int(((c >= 0) & (c < rh.num_classes)).sum())
        appended = " + {} GT".format(len(gt)) if rh.proposal_append_gt else ""
        sampler = " ({})".format(type(rh.sampler).__name__) if hasattr(rh, "sampler") else ""
        trace.add(
            "rois_sampled",
            name,
            {"foreground": fg, "background": int(len(c) - fg)},
            "of {} proposals{}; {} per image, ≤ {:g} % foreground{}".format(
                format_value(len(proposals[0])),
                appended,
                rh.batch_size_per_image,
                100 * rh.positive_fraction,
                sampler,
            ),
        )

    box_path = (
        rh is not None
        and proposals is not None
        and all(
            hasattr(rh, a) for a in ("box_pooler", "box_head", "box_predictor", "box_in_features")
        )
    )
    if not box_path:
        for key, label in (
            ("roi_pooled_sampled", "RoI pooling (sampled RoIs)"),
            ("roi_pooled", "RoI pooling (proposals)"),
            ("box_head", "box head"),
            ("cls_scores", "class scores"),
            ("box_deltas", "box deltas"),
        ):
            trace.add(key, label, None, "no box_pooler / box_head / box_predictor")
        dets = model([inp.inputs])[0]["instances"]
        trace.detections = _to_input_pixels(dets, inp)
        trace.add("detections", "detections", len(dets), "the model's forward")
        return
    feats = [features[f] for f in rh.box_in_features]
    pooler = rh.box_pooler
    pool_detail = "{} {}×{} of {}".format(
        type(pooler.level_poolers[0]).__name__, *pooler.output_size, ", ".join(rh.box_in_features)
    )
    if trace.sampled_rois is not None:
        pooled = pooler(feats, [trace.sampled_rois.proposal_boxes])
        trace.add(
            "roi_pooled_sampled",
            "RoI pooling (sampled RoIs)",
            _shape(pooled),
            pool_detail + " (training path)",
        )
    else:
        trace.add("roi_pooled_sampled", "RoI pooling (sampled RoIs)", None, "no ground truth")
    pooled = pooler(feats, [p.proposal_boxes for p in proposals])
    trace.add("roi_pooled", "RoI pooling (proposals)", _shape(pooled), pool_detail)
    head = rh.box_head(pooled)
    trace.add("box_head", "box head", _shape(head), type(rh.box_head).__name__)
    predictions = rh.box_predictor(head)
    scores, deltas = predictions[0], predictions[1]
    trace.add(
        "cls_scores",
        "class scores",
        _shape(scores),
        "K + 1 = {} (background last)".format(_shape(scores)[1]),
    )
    num_reg = int(deltas.shape[1]) // 4
    trace.add(
        "box_deltas",
        "box deltas",
        _shape(deltas),
        "4 × {} ({})".format(
            num_reg,
            (
                "class-agnostic"
                if num_reg == 1 and rh.num_classes > 1
                else "one box per foreground class"
            ),
        ),
    )
    dets = rh.box_predictor.inference(predictions, proposals)[0][0]
    trace.detections = dets
    bp = rh.box_predictor
    trace.add(
        "detections",
        "detections",
        len(dets),
        "score ≥ {:g}, NMS {:g}, ≤ {}".format(
            bp.test_score_thresh, bp.test_nms_thresh, bp.test_topk_per_image
        ),
    )


def _to_input_pixels(instances: Instances, inp: InspectionInput) -> Instances:
    """Detections in original-image pixels -> resized-input pixels."""
    h, w = inp.image_size
    oh, ow = inp.original_size
    out = Instances((h, w))
    boxes = (
        instances.pred_boxes.clone() if instances.has("pred_boxes") else Boxes(torch.zeros(0, 4))
    )
    boxes.scale(w / ow, h / oh)
    out.pred_boxes = boxes
    for k in ("scores", "pred_classes"):
        if instances.has(k):
            out.set(k, instances.get(k))
    return out
