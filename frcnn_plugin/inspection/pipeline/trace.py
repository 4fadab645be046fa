"""Computing the trace: one image through a detector stage by stage, with the model's own modules.

:func:`trace_pipeline` calls, in order, ``model.preprocess_image``, ``model.backbone``, the
RPN's ``anchor_generator``, ``label_and_sample_anchors`` (its sampler observed, to record the
labels before and after sampling), ``rpn_head``, ``predict_proposals`` (once with NMS off to
count the proposals before NMS, once as configured), the ROI heads'
``label_and_sample_proposals``, ``box_pooler``, ``box_head``, ``box_predictor`` and
``box_predictor.inference``. It records one :class:`Stage` per step (a key, a value and the
settings that explain it, all plain data) and keeps the intermediate tensors in a
:class:`PipelineTrace` for pictures. Turning stages into text is :mod:`.render`'s job.

The model's state is not changed: the trace runs under detectron2's ``inference_context`` (eval
mode, restored on exit), ``torch.no_grad()`` and a fresh ``EventStorage``; where the RPN has to
run with other settings (training top-k, NMS off, the sampler observed), those are set on a
shallow copy of the RPN module (:func:`_rpn_probe`), never on the live one.

Components without one of these steps (RetinaNet, detectron2's Res5ROIHeads, ...) give a
``None`` value and the reason in ``facts["missing"]`` (one of :data:`MISSING`); the final
detections then come from the model's own forward.
"""

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch

from detectron2.evaluation import inference_context
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from ...modeling.rpn import flatten_rpn_outputs
from ..inputs import InspectionInput

__all__ = ["MISSING", "STAGE_KEYS", "Stage", "PipelineTrace", "trace_pipeline"]

# The stages in table order; "feature/<name>" stands for one row per backbone output.
STAGE_KEYS = (
    "input",
    "feature/<name>",
    "anchors",
    "anchors_inside",
    "anchor_labels",
    "anchors_sampled",
    "rpn_objectness",
    "rpn_deltas",
    "proposals_pre_nms",
    "proposals_post_nms",
    "rois_sampled",
    "roi_pooled_sampled",
    "roi_pooled",
    "box_head",
    "cls_scores",
    "box_deltas",
    "detections",
)

# Why a stage has no value (``facts["missing"]``).
MISSING = (
    "anchor_generator",  # the model has no anchor generator
    "label_and_sample_anchors",  # no RPN that labels and samples anchors
    "subsample_labels",  # the RPN has no _subsample_labels to observe
    "rpn",  # no RPN
    "label_and_sample_proposals",  # no ROI heads that sample proposals
    "box_path",  # no box_pooler / box_head / box_predictor
    "gt",  # the input has no ground truth
)


@dataclass
class Stage:
    """One step of the pipeline.

    Attributes:
        key (str): one of :data:`STAGE_KEYS` (``feature/<name>`` with the backbone output's name).
        value: int (a count), list[int] (a tensor shape), dict[str, int] (counts of parts,
            e.g. {"positive": 9, "negative": 247}) or None (the stage does not apply).
        facts (dict): the settings and sizes behind the value (thresholds, top-k, module class
            names, ...), plain numbers, strings and lists; ``missing`` (one of :data:`MISSING`)
            where the value is None.
    """

    key: str
    value: Any = None
    facts: Dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineTrace:
    """The stages and the intermediate results of one image (all in resized-input pixels).

    Attributes (None where the stage does not apply):
        stages (list[Stage]): in order.
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

    def add(self, key: str, value=None, **facts):
        self.stages.append(Stage(key, value, facts))

    def missing(self, keys, why: str):
        """Stages ``keys`` do not apply, for reason ``why`` (one of :data:`MISSING`)."""
        assert why in MISSING, why
        for key in keys:
            self.add(key, None, missing=why)

    @property
    def summary(self) -> Dict[str, Any]:
        """key -> value of every stage."""
        return {s.key: s.value for s in self.stages}


def _shape(x) -> List[int]:
    return [int(v) for v in x.shape]


def _counts(labels: torch.Tensor, names=(("positive", 1), ("negative", 0), ("ignored", -1))):
    return {n: int((labels == v).sum()) for n, v in names}


def _class_name(module) -> Optional[str]:
    return None if module is None else type(module).__name__


def _rpn_probe(pg, **attrs):
    """A shallow copy of the RPN module ``pg`` with ``attrs`` set on the copy only.

    The copy shares the live module's submodules, parameters and buffers (nothing is
    duplicated); attributes assigned to it (``training``, ``nms_thresh``, a wrapped
    ``_subsample_labels``, ...) do not reach ``pg``.
    """
    probe = copy.copy(pg)
    for k, v in attrs.items():
        object.__setattr__(probe, k, v)
    return probe


def trace_pipeline(model, inp: InspectionInput, mode: str = "test") -> PipelineTrace:
    """Run ``inp`` through ``model`` (a detectron2 meta-architecture) stage by stage.

    Args:
        model: e.g. :class:`FRCNNGeneralizedRCNN`, GeneralizedRCNN, RetinaNet.
        inp (InspectionInput): the image, resized, with its GT (or None).
        mode (str): "test" (the RPN's test-time top-k, e.g. 6000 -> 300) or "train" (the
            RPN's training top-k, e.g. 12 000 -> 2 000: the proposals the ROI heads are trained
            on). The model runs in eval mode (batch norm, dropout) either way.

    Returns:
        PipelineTrace
    """
    if mode not in ("test", "train"):
        raise ValueError("mode={!r}; allowed: 'test', 'train'".format(mode))
    trace = PipelineTrace(
        source=inp.source,
        image_size=inp.image_size,
        original_size=inp.original_size,
        image_rgb=inp.image_rgb,
    )
    with inference_context(model), EventStorage(), torch.no_grad():
        _run(model, inp, mode, trace)
    return trace


def _run(model, inp, mode, trace):
    device = getattr(model, "device", torch.device("cpu"))
    gt = inp.gt.to(device) if inp.gt is not None else None
    trace.gt = gt
    images = model.preprocess_image([inp.inputs])
    h, w = images.image_sizes[0]
    trace.add(
        "input",
        [int(images.tensor.shape[1]), int(h), int(w)],
        original_size=[int(v) for v in inp.original_size],
        batch_shape=_shape(images.tensor),
    )
    features = model.backbone(images.tensor)
    trace.features = features
    out_shape = model.backbone.output_shape()
    for name, f in features.items():
        trace.add("feature/" + name, _shape(f)[1:], stride=int(out_shape[name].stride))

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
        trace.missing(("anchors", "anchors_inside"), "anchor_generator")
        return
    feats = [features[f] for f in trace.anchor_features]
    anchors = generator(feats)
    trace.anchors = anchors
    trace.grid_sizes = [tuple(int(v) for v in f.shape[-2:]) for f in feats]
    trace.strides = [int(s) for s in generator.strides]
    trace.num_anchors = [int(a) for a in generator.num_anchors]
    trace.add(
        "anchors",
        sum(len(a) for a in anchors),
        grid_sizes=[list(g) for g in trace.grid_sizes],
        num_anchors=list(trace.num_anchors),
        features=list(trace.anchor_features),
    )
    thresh = getattr(pg, "anchor_boundary_thresh", -1) if pg is not None else -1
    # the RPN's own rule where it has one (FRCNNRPN: anchors flush with the border are inside),
    # else detectron2's Boxes.inside_box, which its RPN uses
    inside_image = getattr(pg, "anchors_inside_image", None)
    if inside_image is not None:
        trace.inside = inside_image(Boxes.cat(anchors), images.image_sizes[0], max(thresh, 0))
    else:
        trace.inside = Boxes.cat(anchors).inside_box(images.image_sizes[0], max(thresh, 0))
    trace.add("anchors_inside", int(trace.inside.sum()), boundary_thresh=thresh)


def _label_stages(trace, pg, gt):
    """Labels before and after sampling, by the RPN's own label_and_sample_anchors."""
    keys = ("anchor_labels", "anchors_sampled")
    if pg is None or not hasattr(pg, "label_and_sample_anchors") or trace.anchors is None:
        trace.missing(keys, "label_and_sample_anchors")
        return
    if gt is None:
        trace.missing(keys, "gt")
        return
    before = []
    subsample = getattr(pg, "_subsample_labels", None)
    probe = pg
    if subsample is not None:

        def observed(label):
            before.append(label.clone())
            return subsample(label)

        probe = _rpn_probe(pg, _subsample_labels=observed)
    labels, matched = probe.label_and_sample_anchors(trace.anchors, [gt])
    trace.sampled_labels, trace.matched_gt_boxes = labels[0], matched[0]
    if before:
        trace.anchor_labels = before[0]
        floor = getattr(pg.anchor_matcher, "min_iou", None)
        trace.add(
            "anchor_labels",
            _counts(before[0]),
            fg_iou=pg.anchor_matcher.thresholds[-2],
            bg_iou=pg.anchor_matcher.thresholds[1],
            best_anchor_min_iou=None if floor is None or floor < 0 else floor,
            num_gt=len(gt),
        )
    else:
        trace.missing(keys[:1], "subsample_labels")
    trace.add(
        "anchors_sampled",
        _counts(labels[0], (("positive", 1), ("negative", 0))),
        batch_size_per_image=pg.batch_size_per_image,
        positive_fraction=pg.positive_fraction,
        sampler=_class_name(getattr(pg, "sampler", None)),
    )


def _predict(pg, images, anchors, logits, deltas):
    if hasattr(pg, "min_box_sizes"):  # FRCNNRPN: per-image minimum size
        return pg.predict_proposals(
            anchors, logits, deltas, images.image_sizes, pg.min_box_sizes(images)
        )
    return pg.predict_proposals(anchors, logits, deltas, images.image_sizes)


def _proposal_stages(trace, pg, images, features, mode):
    if pg is None:
        trace.missing(
            ("rpn_objectness", "rpn_deltas", "proposals_pre_nms", "proposals_post_nms"), "rpn"
        )
        return None
    feats = [features[f] for f in pg.in_features]
    logits, deltas = pg.rpn_head(feats)
    num_anchors = pg.anchor_generator.num_anchors
    box_dim = pg.anchor_generator.box_dim
    levels = dict(num_levels=len(feats), shown_level=pg.in_features[0])
    trace.add(
        "rpn_objectness",
        _shape(logits[0]),
        head=type(pg.rpn_head).__name__,
        per_anchor=_shape(logits[0])[1] // num_anchors[0],
        **levels,
    )
    trace.add("rpn_deltas", _shape(deltas[0]), box_dim=box_dim, **levels)
    flat_logits, flat_deltas = flatten_rpn_outputs(logits, deltas, num_anchors, box_dim)
    trace.pred_anchor_boxes = torch.cat(
        [
            pg.box2box_transform.apply_deltas(d[0], a.tensor)
            for d, a in zip(flat_deltas, trace.anchors)
        ]
    )

    training = mode == "train"
    pre, post = pg.pre_nms_topk[training], pg.post_nms_topk[training]
    probe = _rpn_probe(pg, training=training)
    everything = _rpn_probe(
        pg, training=training, nms_thresh=1.0, post_nms_topk={True: 10**9, False: 10**9}
    )
    before = _predict(everything, images, trace.anchors, flat_logits, flat_deltas)[0]
    proposals = _predict(probe, images, trace.anchors, flat_logits, flat_deltas)
    min_size = pg.min_box_sizes(images)[0] if hasattr(pg, "min_box_sizes") else pg.min_box_size
    trace.add(
        "proposals_pre_nms",
        len(before),
        order=getattr(pg, "proposal_order", "detectron2"),
        pre_nms_topk=pre,
        min_size=float(min_size),
        mode=mode,
    )
    trace.add(
        "proposals_post_nms", len(proposals[0]), nms_thresh=pg.nms_thresh, post_nms_topk=post
    )
    trace.proposals = proposals[0]
    return proposals


def _roi_stages(trace, model, features, proposals, gt, inp):
    rh = getattr(model, "roi_heads", None)
    trace.num_classes = getattr(rh, "num_classes", None)
    if rh is None or proposals is None or not hasattr(rh, "label_and_sample_proposals"):
        trace.missing(("rois_sampled",), "label_and_sample_proposals")
    elif gt is None:
        trace.missing(("rois_sampled",), "gt")
    else:
        sampled = rh.label_and_sample_proposals(proposals, [gt])[0]
        trace.sampled_rois = sampled
        c = sampled.gt_classes
        fg = int(((c >= 0) & (c < rh.num_classes)).sum())
        trace.add(
            "rois_sampled",
            {"foreground": fg, "background": int(len(c) - fg)},
            num_proposals=len(proposals[0]),
            appended_gt=len(gt) if rh.proposal_append_gt else None,
            batch_size_per_image=rh.batch_size_per_image,
            positive_fraction=rh.positive_fraction,
            sampler=_class_name(getattr(rh, "sampler", None)),
        )

    box_path = (
        rh is not None
        and proposals is not None
        and all(
            hasattr(rh, a) for a in ("box_pooler", "box_head", "box_predictor", "box_in_features")
        )
    )
    if not box_path:
        trace.missing(
            ("roi_pooled_sampled", "roi_pooled", "box_head", "cls_scores", "box_deltas"),
            "box_path",
        )
        dets = model([inp.inputs])[0]["instances"]
        trace.detections = _to_input_pixels(dets, inp)
        trace.add("detections", len(dets), source="forward")
        return
    feats = [features[f] for f in rh.box_in_features]
    pooler = rh.box_pooler
    pool_facts = dict(
        pooler=type(pooler.level_poolers[0]).__name__,
        output_size=[int(v) for v in pooler.output_size],
        features=list(rh.box_in_features),
    )
    if trace.sampled_rois is not None:
        pooled = pooler(feats, [trace.sampled_rois.proposal_boxes])
        trace.add("roi_pooled_sampled", _shape(pooled), **pool_facts)
    else:
        trace.missing(("roi_pooled_sampled",), "gt")
    pooled = pooler(feats, [p.proposal_boxes for p in proposals])
    trace.add("roi_pooled", _shape(pooled), **pool_facts)
    head = rh.box_head(pooled)
    trace.add("box_head", _shape(head), head=type(rh.box_head).__name__)
    predictions = rh.box_predictor(head)
    scores, deltas = predictions[0], predictions[1]
    trace.add("cls_scores", _shape(scores), num_outputs=_shape(scores)[1])
    trace.add(
        "box_deltas",
        _shape(deltas),
        num_boxes=int(deltas.shape[1]) // 4,
        num_classes=int(rh.num_classes),
    )
    dets = rh.box_predictor.inference(predictions, proposals)[0][0]
    trace.detections = dets
    bp = rh.box_predictor
    trace.add(
        "detections",
        len(dets),
        source="box_predictor",
        score_thresh=bp.test_score_thresh,
        nms_thresh=bp.test_nms_thresh,
        topk=bp.test_topk_per_image,
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
