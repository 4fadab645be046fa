"""The paper's Fast R-CNN heads as a subclass of detectron2's :class:`StandardROIHeads`.

``FRCNNROIHeads`` (``MODEL.ROI_HEADS.NAME: "FRCNNROIHeads"``) changes only how proposals are
labelled and sampled for training:

* foreground: IoU >= ``MODEL.ROI_HEADS.IOU_THRESHOLDS`` (0.5); background: IoU in
  [``MODEL.ROI_HEADS.BG_IOU_LO``, 0.5); proposals with IoU < BG_IOU_LO are ignored (-1)
  (0.0 in the walk-through, 0.1 in py-faster-rcnn);
* sampling through an injected sampler object (``self.sampler``, 128 RoIs, <= 25 % foreground).

GT boxes appended to the proposals (PROPOSAL_APPEND_GT), RoI pooling (ROIPooler, POOLER_TYPE
"ROIPool" or "ROIAlign"/"ROIAlignV2"), the box head, class-specific box regression
(BBOX_REG_WEIGHTS 10, 10, 5, 5) and inference (SCORE_THRESH_TEST, NMS_THRESH_TEST,
TEST.DETECTIONS_PER_IMAGE) are StandardROIHeads'. detectron2's statistics
``roi_head/num_fg_samples`` and ``roi_head/num_bg_samples`` are logged as before.
"""
from typing import Sequence, Tuple

import torch

from detectron2.config import configurable
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.matcher import Matcher

from .sampling import build_sampler

__all__ = ["FRCNNROIHeads", "build_proposal_matcher"]


def build_proposal_matcher(
    iou_thresholds: Sequence[float], iou_labels: Sequence[int], bg_iou_lo: float = 0.0
) -> Matcher:
    """detectron2's proposal Matcher with an extra "ignore" band below ``bg_iou_lo``.

    Args:
        iou_thresholds, iou_labels: MODEL.ROI_HEADS.IOU_THRESHOLDS / IOU_LABELS
            (the paper: [0.5] / [0, 1]: background below 0.5, foreground from 0.5).
        bg_iou_lo (float): in [0, iou_thresholds[0]); IoU below it gets label -1 (ignore).
            0 keeps detectron2's matcher as it is.

    Returns:
        Matcher: labels -1 (ignore), 0 (background), 1 (foreground).
    """
    iou_thresholds, iou_labels = list(iou_thresholds), list(iou_labels)
    if not 0.0 <= bg_iou_lo < iou_thresholds[0]:
        raise ValueError(
            "MODEL.ROI_HEADS.BG_IOU_LO={!r} is invalid; allowed: a number in [0, {}) (below "
            "MODEL.ROI_HEADS.IOU_THRESHOLDS[0]; the walk-through: 0.0, py-faster-rcnn: "
            "0.1)".format(bg_iou_lo, iou_thresholds[0])
        )
    if bg_iou_lo > 0:
        if iou_labels[0] != 0:
            raise ValueError(
                "MODEL.ROI_HEADS.BG_IOU_LO={!r} needs MODEL.ROI_HEADS.IOU_LABELS to start with 0 "
                "(background), got {!r}".format(bg_iou_lo, iou_labels)
            )
        iou_thresholds, iou_labels = [bg_iou_lo] + iou_thresholds, [-1] + iou_labels
    return Matcher(iou_thresholds, iou_labels, allow_low_quality_matches=False)


@ROI_HEADS_REGISTRY.register()
class FRCNNROIHeads(StandardROIHeads):
    """StandardROIHeads whose proposal sampler is an injected object (``self.sampler``) and
    whose matcher can ignore proposals with IoU below ``MODEL.ROI_HEADS.BG_IOU_LO``."""

    @configurable
    def __init__(self, *, sampler=None, **kwargs):
        """
        Args:
            sampler: object with ``sampler(labels) -> (fg_idx, bg_idx)`` for labels -1
                (ignore), ``num_classes`` (background), [0, num_classes) (foreground).
                None: a BalancedRandomSampler with ``batch_size_per_image`` and
                ``positive_fraction``.
            kwargs: the arguments of :class:`StandardROIHeads`.
        """
        super().__init__(**kwargs)
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
        ret["proposal_matcher"] = build_proposal_matcher(
            heads.IOU_THRESHOLDS, heads.IOU_LABELS, heads.BG_IOU_LO
        )
        ret["sampler"] = build_sampler(
            heads.SAMPLER,
            batch_size_per_image=heads.BATCH_SIZE_PER_IMAGE,
            positive_fraction=heads.POSITIVE_FRACTION,
            bg_label=heads.NUM_CLASSES,
            config_prefix="MODEL.ROI_HEADS",
        )
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
