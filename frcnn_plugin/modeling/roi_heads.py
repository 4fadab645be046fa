"""The paper's Fast R-CNN heads as a subclass of detectron2's :class:`StandardROIHeads`.

``FRCNNROIHeads`` (``MODEL.ROI_HEADS.NAME: "FRCNNROIHeads"``) changes only how proposals are
sampled for training: through an injected sampler object (``self.sampler``, 128 RoIs, <= 25 %
foreground).

Labels are detectron2's proposal :class:`Matcher` on ``MODEL.ROI_HEADS.IOU_THRESHOLDS`` /
``IOU_LABELS``: ``[0.5]`` / ``[0, 1]`` (foreground from 0.5, background [0, 0.5): the
walk-through's rule and py-faster-rcnn's end-to-end Faster R-CNN config, ``BG_THRESH_LO 0.0``;
the configs use it), or Fast R-CNN's background band [0.1, 0.5) with ``[0.1, 0.5]`` /
``[-1, 0, 1]`` (IoU below 0.1 ignored: with selective-search proposals that band was a
heuristic for hard negatives). The plugin's former key ``MODEL.ROI_HEADS.BG_IOU_LO`` still works in
this release, with a deprecation warning, by turning into that form.

GT boxes appended to the proposals (PROPOSAL_APPEND_GT), RoI pooling (ROIPooler, POOLER_TYPE
"ROIPool" or "ROIAlign"/"ROIAlignV2"), the box head, class-specific box regression
(BBOX_REG_WEIGHTS 10, 10, 5, 5) and inference (SCORE_THRESH_TEST, NMS_THRESH_TEST,
TEST.DETECTIONS_PER_IMAGE) are StandardROIHeads'. detectron2's statistics
``roi_head/num_fg_samples`` and ``roi_head/num_bg_samples`` are logged as before.
"""
import warnings
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from fvcore.nn import smooth_l1_loss

from detectron2.config import configurable
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.matcher import Matcher
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage

from ..errors import ConfigError
from .precision import float32_region
from .sampling import build_sampler
from .soft_nms import SoftNMSOutputLayers

__all__ = ["FRCNNROIHeads", "iou_thresholds_with_bg_lo", "PREDICTOR_INITS", "init_predictor"]

# Initializations of the box predictor (MODEL.ROI_BOX_HEAD.PREDICTOR_INIT): "paper" (Fast R-CNN
# and detectron2's FastRCNNOutputLayers: normal, std 0.01 for the class scores and 0.001 for
# the box deltas, biases 0), "pytorch" (nn.Linear's default, as torchvision's
# FastRCNNPredictor: uniform within +-1/sqrt(fan_in), weights and biases).
PREDICTOR_INITS = ("paper", "pytorch")


def init_predictor(predictor, init: str):
    """Set the initial weights of a ``FastRCNNOutputLayers``' ``cls_score`` and ``bbox_pred``
    (one of :data:`PREDICTOR_INITS`); "paper" keeps what detectron2 built."""
    if init not in PREDICTOR_INITS:
        raise ConfigError(
            "MODEL.ROI_BOX_HEAD.PREDICTOR_INIT (roi_heads.predictor_init)={!r} is invalid; "
            "allowed: {}".format(init, ", ".join(repr(v) for v in PREDICTOR_INITS)))
    if init == "pytorch":
        predictor.cls_score.reset_parameters()
        predictor.bbox_pred.reset_parameters()
    return predictor


def iou_thresholds_with_bg_lo(
    iou_thresholds: Sequence[float], iou_labels: Sequence[int], bg_iou_lo: float
) -> Tuple[List[float], List[int]]:
    """Turn the deprecated ``MODEL.ROI_HEADS.BG_IOU_LO`` into detectron2's own form: an ignore
    band below ``bg_iou_lo`` is ``IOU_THRESHOLDS [bg_iou_lo] + thresholds`` with
    ``IOU_LABELS [-1] + labels``. 0 changes nothing."""
    iou_thresholds, iou_labels = list(iou_thresholds), list(iou_labels)
    if bg_iou_lo == 0:
        return iou_thresholds, iou_labels
    if not 0.0 < bg_iou_lo < iou_thresholds[0] or iou_labels[0] != 0:
        raise ConfigError(
            "MODEL.ROI_HEADS.BG_IOU_LO={!r} is invalid with IOU_THRESHOLDS={!r}, IOU_LABELS={!r}; "
            "allowed: a number in [0, IOU_THRESHOLDS[0]) with IOU_LABELS starting with 0. "
            "Better: drop BG_IOU_LO (deprecated) and write the band in detectron2's keys, e.g. "
            "IOU_THRESHOLDS [0.1, 0.5] with IOU_LABELS [-1, 0, 1]".format(
                bg_iou_lo, iou_thresholds, iou_labels
            )
        )
    warnings.warn(
        "MODEL.ROI_HEADS.BG_IOU_LO is deprecated and will be removed in the next release; "
        "write MODEL.ROI_HEADS.IOU_THRESHOLDS {} with IOU_LABELS {} instead".format(
            [bg_iou_lo] + iou_thresholds, [-1] + iou_labels
        ),
        FutureWarning,
        stacklevel=2,
    )
    return [bg_iou_lo] + iou_thresholds, [-1] + iou_labels


@ROI_HEADS_REGISTRY.register()
class FRCNNROIHeads(StandardROIHeads):
    """StandardROIHeads whose proposal sampler is an injected object (``self.sampler``)."""

    @configurable
    def __init__(self, *, sampler=None, predictor_init: str = "paper", **kwargs):
        """
        Args:
            sampler: object with ``sampler(labels) -> (fg_idx, bg_idx)`` for labels -1
                (ignore), ``num_classes`` (background), [0, num_classes) (foreground).
                None: a BalancedRandomSampler with ``batch_size_per_image`` and
                ``positive_fraction``.
            predictor_init: the initial weights of ``box_predictor``'s ``cls_score`` and
                ``bbox_pred``, one of :data:`PREDICTOR_INITS` (``MODEL.ROI_BOX_HEAD.
                PREDICTOR_INIT``): "paper" keeps the predictor's own, "pytorch" resets them to
                ``nn.Linear``'s default.
            kwargs: the arguments of :class:`StandardROIHeads`.
        """
        super().__init__(**kwargs)
        init_predictor(self.box_predictor, predictor_init)
        # RoI pooling in float32 inside autocast too (CPU roi_pool has no bf16 kernel)
        float32_region(self.box_pooler)
        if sampler is None:
            sampler = build_sampler(
                batch_size_per_image=self.batch_size_per_image,
                positive_fraction=self.positive_fraction,
                bg_label=self.num_classes,
            )
        self.sampler = sampler

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        heads = cfg.MODEL.ROI_HEADS
        if heads.get("BG_IOU_LO", 0.0):
            thresholds, labels = iou_thresholds_with_bg_lo(
                heads.IOU_THRESHOLDS, heads.IOU_LABELS, heads.BG_IOU_LO
            )
            ret["proposal_matcher"] = Matcher(thresholds, labels, allow_low_quality_matches=False)
        extra = {}
        if heads.SAMPLER.NAME == "OHEMSampler":
            extra["nms_thresh"] = heads.OHEM_NMS_THRESH
        ret["sampler"] = build_sampler(
            heads.SAMPLER,
            batch_size_per_image=heads.BATCH_SIZE_PER_IMAGE,
            positive_fraction=heads.POSITIVE_FRACTION,
            bg_label=heads.NUM_CLASSES,
            config_prefix="MODEL.ROI_HEADS",
            **extra,
        )
        if heads.SOFT_NMS.METHOD != "none":
            ret["box_predictor"] = SoftNMSOutputLayers(cfg, ret["box_head"].output_shape)
        ret["predictor_init"] = cfg.MODEL.ROI_BOX_HEAD.PREDICTOR_INIT
        return ret

    def _proposal_labels(
        self, matched_idxs: torch.Tensor, matched_labels: torch.Tensor, gt_classes: torch.Tensor
    ) -> torch.Tensor:
        """(N,) class labels of the proposals: the matched GT's class in [0, num_classes) for
        foreground, ``num_classes`` for background, -1 for ignored proposals."""
        if gt_classes.numel() == 0:
            return torch.full_like(matched_idxs, self.num_classes)
        labels = gt_classes[matched_idxs]
        labels[matched_labels == 0] = self.num_classes
        labels[matched_labels == -1] = -1
        return labels

    def _sample_proposals(
        self, matched_idxs: torch.Tensor, matched_labels: torch.Tensor, gt_classes: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Same contract as :meth:`ROIHeads._sample_proposals`, sampling with ``self.sampler``.

        Returns:
            Tensor: indices of the sampled proposals, foreground first.
            Tensor: their labels, in [0, num_classes) or ``num_classes`` (background).
        """
        labels = self._proposal_labels(matched_idxs, matched_labels, gt_classes)
        fg_idx, bg_idx = self.sampler(labels)
        sampled_idxs = torch.cat([fg_idx, bg_idx], dim=0)
        return sampled_idxs, labels[sampled_idxs]

    # ----------------------------------------------------------------------------- OHEM
    def _forward_box(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        """``StandardROIHeads._forward_box``; in training with a sampler that ``needs_losses``
        (:class:`~frcnn_plugin.modeling.sampling.OHEMSampler`), on the hardest candidates only
        (:meth:`_mine_hard_examples`)."""
        if self.training and getattr(self.sampler, "needs_losses", False):
            proposals = self._mine_hard_examples(features, proposals)
        return super()._forward_box(features, proposals)

    @torch.no_grad()
    def _mine_hard_examples(
        self, features: Dict[str, torch.Tensor], proposals: List[Instances]
    ) -> List[Instances]:
        """Per image, the candidates of highest loss (``self.sampler.select``).

        The read-only pass runs the box head and predictor on every candidate without
        gradient, in the current (training) mode, so dropout is as in the training pass. The
        loss per candidate is the box predictor's: cross-entropy plus, for foreground, the
        smooth-L1 (beta ``smooth_l1_beta``; 0 = L1) of its class's box deltas, summed over the
        4 coordinates (``BBOX_REG_LOSS_TYPE: "smooth_l1"`` only). detectron2's
        ``roi_head/num_fg_samples`` / ``num_bg_samples`` count the candidates;
        ``roi_head/ohem_num_fg_samples`` / ``ohem_num_bg_samples`` the mined examples.
        """
        predictor = self.box_predictor
        if getattr(predictor, "box_reg_loss_type", "smooth_l1") != "smooth_l1":
            raise ConfigError(
                "OHEMSampler supports MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE 'smooth_l1' only, "
                "got {!r}".format(predictor.box_reg_loss_type)
            )
        feats = [features[f] for f in self.box_in_features]
        pooled = self.box_pooler(feats, [p.proposal_boxes for p in proposals])
        scores, deltas = predictor(self.box_head(pooled))[:2]
        losses = self._candidate_losses(proposals, scores, deltas)
        mined, num_fg = [], 0
        for p, loss in zip(proposals, losses.split([len(p) for p in proposals])):
            keep = self.sampler.select(loss, p.proposal_boxes.tensor)
            mined.append(p[keep])
            num_fg += int((mined[-1].gt_classes != self.num_classes).sum())
        storage = get_event_storage()
        storage.put_scalar("roi_head/ohem_num_fg_samples", num_fg / len(proposals))
        storage.put_scalar(
            "roi_head/ohem_num_bg_samples", (sum(len(p) for p in mined) - num_fg) / len(proposals)
        )
        return mined

    def _candidate_losses(self, proposals, scores, deltas) -> torch.Tensor:
        """(R,) classification + box loss of each candidate, as the box predictor's losses."""
        predictor = self.box_predictor
        gt_classes = torch.cat([p.gt_classes for p in proposals])
        weight = predictor.loss_weight
        loss = F.cross_entropy(scores, gt_classes, reduction="none") * weight.get("loss_cls", 1.0)
        fg = torch.nonzero((gt_classes >= 0) & (gt_classes < self.num_classes)).flatten()
        if len(fg):
            boxes = torch.cat([p.proposal_boxes.tensor for p in proposals])[fg]
            # detectron2 sets gt_boxes only on images with GT (their candidates are all
            # background, so these boxes are never read); FastRCNNOutputLayers.losses does the same
            gt_boxes = torch.cat([
                (p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals
            ])[fg]
            box_dim = boxes.shape[1]
            target = predictor.box2box_transform.get_deltas(boxes, gt_boxes)
            per_class = deltas[fg].view(len(fg), -1, box_dim)
            cls = gt_classes[fg] if per_class.shape[1] > 1 else torch.zeros_like(fg)
            pred = per_class[torch.arange(len(fg), device=fg.device), cls]
            box = smooth_l1_loss(pred, target, predictor.smooth_l1_beta, reduction="none").sum(1)
            loss = loss.index_add(0, fg, box * weight.get("loss_box_reg", 1.0))
        return loss
