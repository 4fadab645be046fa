"""Soft-NMS (Bodla et al., 2017) at test time, as an option of the ROI heads' box predictor.

Instead of removing every box that overlaps a higher-scoring one of its class by more than a
threshold, Soft-NMS lowers its score, more for larger overlaps, and keeps it while its score
stays above a floor:

- linear: ``s <- s * (1 - IoU)`` when ``IoU >= Nt`` (``MODEL.ROI_HEADS.NMS_THRESH_TEST``);
- Gaussian: ``s <- s * exp(-IoU^2 / sigma)`` for every overlapping box.

:class:`SoftNMSOutputLayers` is detectron2's ``FastRCNNOutputLayers`` with only ``inference``
extended: detectron2's ``fast_rcnn_inference_single_image`` still filters by score, clips and
picks the class-specific boxes (called with NMS off: threshold 1), then :func:`batched_soft_nms`
rescores per class, drops scores below the floor and keeps the top
``TEST.DETECTIONS_PER_IMAGE``. ``FRCNNROIHeads`` uses it when ``MODEL.ROI_HEADS.SOFT_NMS.METHOD``
is not "none".
"""
import math
from typing import List, Tuple

import torch

from detectron2.config import configurable
from detectron2.modeling.roi_heads.fast_rcnn import (
    FastRCNNOutputLayers,
    fast_rcnn_inference_single_image,
)
from detectron2.structures import Instances, pairwise_iou, Boxes

from ..errors import ConfigError

__all__ = ["SOFT_NMS_METHODS", "soft_nms", "batched_soft_nms", "SoftNMSOutputLayers"]

SOFT_NMS_METHODS = ("none", "linear", "gaussian")


def soft_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    method: str = "linear",
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    score_threshold: float = 0.001,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS of one set of boxes (one class).

    Args:
        boxes (Tensor): (N, 4) XYXY.
        scores (Tensor): (N,).
        method (str): "linear" or "gaussian".
        iou_threshold (float): Nt of the linear method (boxes overlapping less keep their score).
        sigma (float): sigma of the Gaussian method, > 0.
        score_threshold (float): boxes whose score falls below it are dropped.

    Returns:
        keep (Tensor): int64 indices of the kept boxes, in the order they were picked
        (decreasing updated score; ties: the lower index first).
        new_scores (Tensor): (len(keep),) their updated scores.
    """
    if method not in ("linear", "gaussian"):
        raise ConfigError("Soft-NMS method {!r}; allowed: 'linear', 'gaussian'".format(method))
    n = len(scores)
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=scores.device), scores[:0]
    iou = pairwise_iou(Boxes(boxes), Boxes(boxes))
    current = scores.clone().float()
    alive = current >= score_threshold
    keep, kept_scores = [], []
    while bool(alive.any()):
        masked = torch.where(alive, current, torch.full_like(current, -math.inf))
        best = int(torch.argmax(masked))  # first index among equal maxima
        keep.append(best)
        kept_scores.append(current[best])
        alive[best] = False
        overlap = iou[best]
        if method == "linear":
            decay = torch.where(overlap >= iou_threshold, 1 - overlap, torch.ones_like(overlap))
        else:
            decay = torch.exp(-(overlap ** 2) / sigma)
        current = torch.where(alive, current * decay, current)
        alive &= current >= score_threshold
    return (
        torch.as_tensor(keep, dtype=torch.int64, device=scores.device),
        torch.stack(kept_scores).to(scores.dtype),
    )


def batched_soft_nms(boxes, scores, classes, **kwargs) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`soft_nms` per class (boxes of different classes never affect each other).

    Returns:
        keep, new_scores: as :func:`soft_nms`, over all classes, by decreasing new score.
    """
    keeps, new_scores = [], []
    for c in torch.unique(classes):
        idx = torch.nonzero(classes == c).flatten()
        k, s = soft_nms(boxes[idx], scores[idx], **kwargs)
        keeps.append(idx[k])
        new_scores.append(s)
    if not keeps:
        return torch.zeros(0, dtype=torch.int64, device=scores.device), scores[:0]
    keep, new = torch.cat(keeps), torch.cat(new_scores)
    order = torch.sort(new, descending=True, stable=True).indices
    return keep[order], new[order]


class SoftNMSOutputLayers(FastRCNNOutputLayers):
    """detectron2's ``FastRCNNOutputLayers`` whose ``inference`` applies Soft-NMS."""

    @configurable
    def __init__(self, *args, soft_nms_method: str = "linear", soft_nms_sigma: float = 0.5,
                 soft_nms_score_thresh: float = 0.001, **kwargs):
        """
        Args:
            soft_nms_method (str): "linear" or "gaussian" ("none": detectron2's hard NMS).
            soft_nms_sigma (float): sigma of the Gaussian method.
            soft_nms_score_thresh (float): the score floor.
            args, kwargs: those of ``FastRCNNOutputLayers`` (``test_nms_thresh`` is the
                linear method's Nt).
        """
        super().__init__(*args, **kwargs)
        if soft_nms_method not in SOFT_NMS_METHODS:
            raise ConfigError("MODEL.ROI_HEADS.SOFT_NMS.METHOD={!r}; allowed: {}".format(
                soft_nms_method, ", ".join(repr(m) for m in SOFT_NMS_METHODS)))
        if not soft_nms_sigma > 0:
            raise ConfigError("MODEL.ROI_HEADS.SOFT_NMS.SIGMA={!r}; allowed: a number > 0".format(
                soft_nms_sigma))
        self.soft_nms_method = soft_nms_method
        self.soft_nms_sigma = float(soft_nms_sigma)
        self.soft_nms_score_thresh = float(soft_nms_score_thresh)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        soft = cfg.MODEL.ROI_HEADS.SOFT_NMS
        ret.update(soft_nms_method=soft.METHOD, soft_nms_sigma=soft.SIGMA,
                   soft_nms_score_thresh=soft.SCORE_THRESH)
        return ret

    def inference(self, predictions, proposals: List[Instances]):
        """Same contract as ``FastRCNNOutputLayers.inference``."""
        if self.soft_nms_method == "none":
            return super().inference(predictions, proposals)
        boxes = self.predict_boxes(predictions, proposals)
        scores = self.predict_probs(predictions, proposals)
        results, kept = [], []
        for b, s, p in zip(boxes, scores, proposals):
            # detectron2's filtering, clipping and class-specific boxes; NMS off (IoU > 1: none)
            inst, idx = fast_rcnn_inference_single_image(
                b, s, p.image_size, self.test_score_thresh, 1.0, -1
            )
            keep, new = batched_soft_nms(
                inst.pred_boxes.tensor, inst.scores, inst.pred_classes,
                method=self.soft_nms_method, iou_threshold=self.test_nms_thresh,
                sigma=self.soft_nms_sigma, score_threshold=self.soft_nms_score_thresh,
            )
            if self.test_topk_per_image >= 0:
                keep, new = keep[: self.test_topk_per_image], new[: self.test_topk_per_image]
            inst = inst[keep]
            inst.scores = new
            results.append(inst)
            kept.append(idx[keep])
        return results, kept
