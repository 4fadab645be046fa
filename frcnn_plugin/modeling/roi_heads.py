"""The paper's Fast R-CNN heads as a subclass of detectron2's :class:`StandardROIHeads`.

``FRCNNROIHeads`` (``MODEL.ROI_HEADS.NAME: "FRCNNROIHeads"``) changes only how proposals are
sampled for training: through an injected sampler object (``self.sampler``, 128 RoIs, <= 25 %
foreground).

Labels are detectron2's proposal :class:`Matcher` on ``MODEL.ROI_HEADS.IOU_THRESHOLDS`` /
``IOU_LABELS``: the paper's ``[0.5]`` / ``[0, 1]`` (foreground from 0.5, background below, the
walk-through), or py-faster-rcnn's background band with ``[0.1, 0.5]`` / ``[-1, 0, 1]``
(IoU below 0.1 ignored). The plugin's former key ``MODEL.ROI_HEADS.BG_IOU_LO`` still works in
this release, with a deprecation warning, by turning into that form.

GT boxes appended to the proposals (PROPOSAL_APPEND_GT), RoI pooling (ROIPooler, POOLER_TYPE
"ROIPool" or "ROIAlign"/"ROIAlignV2"), the box head, class-specific box regression
(BBOX_REG_WEIGHTS 10, 10, 5, 5) and inference (SCORE_THRESH_TEST, NMS_THRESH_TEST,
TEST.DETECTIONS_PER_IMAGE) are StandardROIHeads'. detectron2's statistics
``roi_head/num_fg_samples`` and ``roi_head/num_bg_samples`` are logged as before.
"""
import warnings
from typing import List, Sequence, Tuple

import torch

from detectron2.config import configurable
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.matcher import Matcher

from ..cli import ConfigError
from .sampling import build_sampler

__all__ = ["FRCNNROIHeads", "iou_thresholds_with_bg_lo"]


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
        if heads.get("BG_IOU_LO", 0.0):
            thresholds, labels = iou_thresholds_with_bg_lo(
                heads.IOU_THRESHOLDS, heads.IOU_LABELS, heads.BG_IOU_LO
            )
            ret["proposal_matcher"] = Matcher(thresholds, labels, allow_low_quality_matches=False)
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
