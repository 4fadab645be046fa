"""The paper's Region Proposal Network as a subclass of detectron2's :class:`RPN`.

``FRCNNRPN`` (``MODEL.PROPOSAL_GENERATOR.NAME: "FRCNNRPN"``) changes only what the paper does
differently from detectron2's RPN:

* anchor labels: with ``MODEL.RPN.BOUNDARY_THRESH >= 0`` only the anchors inside the image take
  part in matching, so each GT's best anchor (ties included) is its best *inside* anchor, as in
  the paper; the others are ignored (-1). A GT's best anchors are promoted only when their IoU
  is above ``MODEL.RPN.BEST_ANCHOR_MIN_IOU`` (0: a GT that overlaps no inside anchor promotes
  none; see :mod:`frcnn_plugin.modeling.matcher`);
* sampling: through an injected sampler object (``self.sampler``,
  :mod:`frcnn_plugin.modeling.sampling`);
* loss normalization: ``MODEL.RPN.LOSS_NORMALIZATION`` ("detectron2", "paper", "positives") with
  the box-term weight ``MODEL.RPN.LOSS_LAMBDA``;
* proposals: ``MODEL.RPN.PROPOSAL_ORDER`` "paper" (decode, clip, drop boxes with a side below
  the minimum size (sides equal to it kept), top-k by score, NMS, top-k) or "detectron2"
  (detectron2's :func:`find_top_rpn_proposals`: top-k first, then clip, then drop boxes whose
  side is not greater than the minimum, NMS, top-k). The minimum size can be measured in
  original-image pixels (``MODEL.PROPOSAL_GENERATOR.MIN_SIZE_IN_ORIGINAL_PIXELS``; needs
  ``FRCNNGeneralizedRCNN``);
* RPN heads with one sigmoid logit per anchor (detectron2's ``StandardRPNHead``) or two softmax
  scores per anchor (``SoftmaxRPNHead``, the paper's).

Box coding (:class:`Box2BoxTransform`), NMS (:func:`batched_nms`) and the "detectron2" proposal
order (:func:`find_top_rpn_proposals`) are detectron2's.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import batched_nms, cat, nonzero_tuple
from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY
from detectron2.modeling.box_regression import _dense_box_regression_loss
from detectron2.modeling.proposal_generator.proposal_utils import find_top_rpn_proposals
from detectron2.modeling.proposal_generator.rpn import RPN, RPN_HEAD_REGISTRY, StandardRPNHead
from detectron2.structures import Boxes, ImageList, Instances, pairwise_iou
from detectron2.utils.events import get_event_storage

from ..errors import ConfigError
from .matcher import BestAnchorMatcher
from .sampling import build_sampler, rpn_sampler_names

__all__ = [
    "FRCNNRPN",
    "SoftmaxRPNHead",
    "LOSS_NORMALIZATIONS",
    "PROPOSAL_ORDERS",
    "find_top_proposals_paper_order",
    "flatten_rpn_outputs",
    "resize_scale",
]

# "detectron2": both terms / (BATCH_SIZE_PER_IMAGE * images);
# "paper": class term / sampled anchors, box term * LOSS_LAMBDA / anchor locations;
# "positives" (the walk-through): class term / sampled anchors, box term * LOSS_LAMBDA / positives.
LOSS_NORMALIZATIONS = ("detectron2", "paper", "positives")
# "paper": clip, drop small, top-k, NMS, top-k; "detectron2": find_top_rpn_proposals.
PROPOSAL_ORDERS = ("paper", "detectron2")


@RPN_HEAD_REGISTRY.register()
class SoftmaxRPNHead(StandardRPNHead):
    """The paper's RPN head: 3x3 conv (+ReLU), then 1x1 convs to **two** scores per anchor
    (object / not object, softmax) and 4 deltas per anchor; weights N(0, 0.01), biases 0.

    ``MODEL.RPN.HEAD_NAME: "SoftmaxRPNHead"``. Its objectness output has 2A channels laid out as
    py-faster-rcnn's ``rpn_cls_score``: channels [0, A) are the background scores of the A
    anchors, [A, 2A) their foreground scores. Parameter names are StandardRPNHead's.
    """

    @configurable
    def __init__(
        self, *, in_channels: int, num_anchors: int, box_dim: int = 4, conv_dims=(-1,)
    ):
        """Same arguments as :class:`StandardRPNHead`."""
        super().__init__(
            in_channels=in_channels, num_anchors=num_anchors, box_dim=box_dim, conv_dims=conv_dims
        )
        hidden = self.objectness_logits.in_channels
        self.objectness_logits = nn.Conv2d(hidden, 2 * num_anchors, kernel_size=1, stride=1)
        nn.init.normal_(self.objectness_logits.weight, std=0.01)
        nn.init.constant_(self.objectness_logits.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape):
        name = cfg.MODEL.PROPOSAL_GENERATOR.NAME
        registered = name in PROPOSAL_GENERATOR_REGISTRY
        generator = PROPOSAL_GENERATOR_REGISTRY.get(name) if registered else None
        if not (isinstance(generator, type) and issubclass(generator, FRCNNRPN)):
            raise ConfigError(
                "MODEL.RPN.HEAD_NAME='SoftmaxRPNHead' gives two scores per anchor, which only "
                "FRCNNRPN reads; MODEL.PROPOSAL_GENERATOR.NAME={!r} is not allowed with it. "
                "Allowed: MODEL.PROPOSAL_GENERATOR.NAME 'FRCNNRPN' (or a subclass), or "
                "MODEL.RPN.HEAD_NAME 'StandardRPNHead' (one sigmoid logit per anchor)".format(name)
            )
        return super().from_config(cfg, input_shape)


def flatten_rpn_outputs(
    pred_objectness_logits: List[torch.Tensor],
    pred_anchor_deltas: List[torch.Tensor],
    num_anchors: Sequence[int],
    box_dim: int = 4,
) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Per level, an RPN head's outputs in the per-anchor layout of detectron2's RPN.

    Args:
        pred_objectness_logits: per level, (N, A, Hi, Wi) sigmoid logits (detectron2's heads) or
            (N, 2A, Hi, Wi) softmax scores, channels [0, A) background and [A, 2A) foreground
            (:class:`SoftmaxRPNHead`, py-faster-rcnn's layout).
        pred_anchor_deltas: per level, (N, A*B, Hi, Wi).
        num_anchors: A per level (the anchor generator's ``num_anchors``).

    Returns:
        list[Tensor]: per level, (N, Hi*Wi*A) logits or (N, Hi*Wi*A, 2) scores;
        list[Tensor]: per level, (N, Hi*Wi*A, B) deltas (location, then anchor, as the anchors).
    """
    logits = []
    for x, a in zip(pred_objectness_logits, num_anchors):
        n, c, h, w = x.shape
        if c == a:
            logits.append(x.permute(0, 2, 3, 1).flatten(1))
        elif c == 2 * a:
            logits.append(x.view(n, 2, a, h, w).permute(0, 3, 4, 2, 1).reshape(n, -1, 2))
        else:
            raise ConfigError(
                "The RPN head (MODEL.RPN.HEAD_NAME) returned {} objectness channels for {} anchors "
                "per location; allowed: A (sigmoid) or 2A (softmax)".format(c, a)
            )
    deltas = [
        x.view(x.shape[0], -1, box_dim, x.shape[-2], x.shape[-1]).permute(0, 3, 4, 1, 2)
        .flatten(1, -2)
        for x in pred_anchor_deltas
    ]
    return logits, deltas


def find_top_proposals_paper_order(
    proposals: List[torch.Tensor],
    pred_objectness_logits: List[torch.Tensor],
    image_sizes: List[Tuple[int, int]],
    nms_thresh: float,
    pre_nms_topk: int,
    post_nms_topk: int,
    min_box_size: float,
    training: bool,
) -> List[Instances]:
    """The paper's proposal layer, with the arguments and result of detectron2's
    :func:`find_top_rpn_proposals`: per image and level, drop non-finite boxes (an error in
    training, as detectron2), clip to the image, drop boxes with a side below ``min_box_size``
    (sides equal to it are kept; empty boxes always go), keep the ``pre_nms_topk`` best scored;
    then NMS per level (:func:`batched_nms`) and the ``post_nms_topk`` best over all levels.

    Args:
        proposals (list[Tensor]): per level, (N, Hi*Wi*A, 4) decoded boxes (XYXY, input pixels).
        pred_objectness_logits (list[Tensor]): per level, (N, Hi*Wi*A) ranking scores.
        image_sizes (list[tuple]): per image, (h, w) of the input.

    Returns:
        list[Instances]: per image, ``proposal_boxes`` and ``objectness_logits``, sorted by
        score, at most ``post_nms_topk``.
    """
    results = []
    for n, image_size in enumerate(image_sizes):
        boxes, scores, levels = [], [], []
        for level, (proposals_i, logits_i) in enumerate(zip(proposals, pred_objectness_logits)):
            b, s = Boxes(proposals_i[n]), logits_i[n]
            valid = torch.isfinite(b.tensor).all(dim=1) & torch.isfinite(s)
            if torch.jit.is_tracing():
                # always filter: a Python branch on the data would be frozen in the trace
                b, s = b[valid], s[valid]
            elif not bool(valid.all()):
                if training:
                    raise FloatingPointError(
                        "Predicted boxes or scores contain Inf/NaN. Training has diverged."
                    )
                b, s = b[valid], s[valid]
            b.clip(image_size)
            widths, heights = b.tensor[:, 2] - b.tensor[:, 0], b.tensor[:, 3] - b.tensor[:, 1]
            keep = (widths >= min_box_size) & (heights >= min_box_size)
            keep = keep & (widths > 0) & (heights > 0)  # not &=: ONNX has no in-place and
            b, s = b[keep], s[keep]
            s, order = s.sort(descending=True)
            s, order = s[:pre_nms_topk], order[:pre_nms_topk]
            boxes.append(b.tensor[order])
            scores.append(s)
            levels.append(torch.full_like(order, level))
        boxes, scores, levels = cat(boxes), cat(scores), cat(levels)
        keep = batched_nms(boxes, scores, levels, nms_thresh)[:post_nms_topk]
        res = Instances(image_size)
        res.proposal_boxes = Boxes(boxes[keep])
        res.objectness_logits = scores[keep]
        results.append(res)
    return results


def resize_scale(image_size: Tuple[int, int], original_size: Tuple[int, int]) -> float:
    """The resize factor from the original image to the network input: the mean of the height
    and width ratios (detectron2 resizes both sides by one factor, up to rounding)."""
    return 0.5 * (image_size[0] / original_size[0] + image_size[1] / original_size[1])


@PROPOSAL_GENERATOR_REGISTRY.register()
class FRCNNRPN(RPN):
    """Region Proposal Network with the Faster R-CNN paper's labelling, sampling, loss
    normalization and proposal minimum size (see the module docstring).

    Objectness logits are either (N, Hi*Wi*A) sigmoid logits (``StandardRPNHead``) or
    (N, Hi*Wi*A, 2) background/foreground scores (``SoftmaxRPNHead``: cross-entropy loss;
    proposals are ranked by the logit difference fg - bg, which is the sigmoid logit of the
    softmax foreground probability). Logged each training iteration: ``rpn/num_pos_anchors``,
    ``rpn/num_neg_anchors`` (sampled, mean per image) and ``rpn/num_proposals`` (kept after
    NMS and top-k, mean per image).
    """

    # NMS on the best NMS_PREFIX_FACTOR x post_nms_topk boxes first (see _top_proposals).
    NMS_PREFIX_FACTOR = 4

    @configurable
    def __init__(
        self,
        *,
        sampler=None,
        loss_normalization: str = "paper",
        loss_lambda: float = 10.0,
        min_size_in_original_pixels: bool = True,
        best_anchor_min_iou: float = 0.0,
        proposal_order: str = "paper",
        **kwargs,
    ):
        """
        Args:
            sampler: object with ``sampler(labels) -> (pos_idx, neg_idx)`` for labels
                -1 (ignore), 0 (negative), 1 (positive). None: a BalancedRandomSampler with
                ``batch_size_per_image`` and ``positive_fraction``. A sampler with a true
                ``needs_losses`` (OHEMSampler: ROI heads only) is refused with a ConfigError.
            loss_normalization (str): one of :data:`LOSS_NORMALIZATIONS`.
            loss_lambda (float): weight of the box term (the paper's lambda, 10) in the "paper"
                and "positives" normalizations; "detectron2" ignores it.
            min_size_in_original_pixels (bool): measure ``min_box_size`` in original-image
                pixels (scaled per image by the resize factor, as the paper) instead of input
                pixels (detectron2). Needs ``images.original_sizes`` (FRCNNGeneralizedRCNN)
                when ``min_box_size > 0``.
            best_anchor_min_iou (float): a GT's best anchors (ties included) become positive
                only if their IoU with it is greater than this (the anchor matcher becomes a
                :class:`BestAnchorMatcher`); < 0: whatever their IoU (py-faster-rcnn).
            proposal_order (str): one of :data:`PROPOSAL_ORDERS`: "paper" (clip, drop sides
                below the minimum, top-k, NMS, top-k) or "detectron2"
                (:func:`find_top_rpn_proposals`: top-k, clip, drop sides <= the minimum,
                NMS, top-k).
            kwargs: the arguments of detectron2's :class:`RPN`.
        """
        super().__init__(**kwargs)
        if proposal_order not in PROPOSAL_ORDERS:
            raise ConfigError(
                "MODEL.RPN.PROPOSAL_ORDER={!r} is invalid; allowed: {}".format(
                    proposal_order, list(PROPOSAL_ORDERS)
                )
            )
        self.proposal_order = proposal_order
        if not isinstance(self.anchor_matcher, BestAnchorMatcher):
            self.anchor_matcher = BestAnchorMatcher.from_matcher(
                self.anchor_matcher, best_anchor_min_iou
            )
        elif best_anchor_min_iou != self.anchor_matcher.min_iou:
            raise ConfigError(
                "best_anchor_min_iou={!r} contradicts the given anchor_matcher's min_iou={!r}; "
                "allowed: give one of them".format(best_anchor_min_iou, self.anchor_matcher.min_iou)
            )
        if loss_normalization not in LOSS_NORMALIZATIONS:
            raise ConfigError(
                "MODEL.RPN.LOSS_NORMALIZATION={!r} is invalid; allowed: {}".format(
                    loss_normalization, list(LOSS_NORMALIZATIONS)
                )
            )
        if not loss_lambda > 0:
            raise ConfigError(
                "MODEL.RPN.LOSS_LAMBDA={!r} is invalid; allowed: a number > 0 (the paper: "
                "10)".format(loss_lambda)
            )
        if self.min_box_size < 0:
            raise ConfigError(
                "MODEL.PROPOSAL_GENERATOR.MIN_SIZE={!r} is invalid; allowed: a number >= 0 "
                "(the paper: 16)".format(self.min_box_size)
            )
        if sampler is None:
            sampler = build_sampler(
                batch_size_per_image=self.batch_size_per_image,
                positive_fraction=self.positive_fraction,
                bg_label=0,
            )
        if getattr(sampler, "needs_losses", False):
            # OHEMSampler & co. return every labelled example and rely on the ROI heads to mine
            # the hardest by loss; the RPN has no such step and would train on all anchors.
            raise ConfigError(
                "MODEL.RPN.SAMPLER.NAME={!r} is invalid: it needs the per-example losses, which "
                "only the ROI heads compute; allowed: {}".format(
                    type(sampler).__name__, rpn_sampler_names()
                )
            )
        self.sampler = sampler
        self.loss_normalization = loss_normalization
        self.loss_lambda = float(loss_lambda)
        self.min_size_in_original_pixels = bool(min_size_in_original_pixels)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        rpn = cfg.MODEL.RPN
        ret["sampler"] = build_sampler(
            rpn.SAMPLER,
            batch_size_per_image=rpn.BATCH_SIZE_PER_IMAGE,
            positive_fraction=rpn.POSITIVE_FRACTION,
            bg_label=0,
            config_prefix="MODEL.RPN",
        )
        ret["loss_normalization"] = rpn.LOSS_NORMALIZATION
        ret["loss_lambda"] = rpn.LOSS_LAMBDA
        ret["min_size_in_original_pixels"] = (
            cfg.MODEL.PROPOSAL_GENERATOR.MIN_SIZE_IN_ORIGINAL_PIXELS
        )
        ret["best_anchor_min_iou"] = rpn.BEST_ANCHOR_MIN_IOU
        ret["proposal_order"] = rpn.PROPOSAL_ORDER
        return ret

    # ----------------------------------------------------------------------------- labels
    def _subsample_labels(self, label: torch.Tensor) -> torch.Tensor:
        """Keep the sampler's positives (1) and negatives (0); set every other label to -1.

        Args:
            label (Tensor): (R,) labels -1 / 0 / 1; modified in place and returned.
        """
        pos_idx, neg_idx = self.sampler(label)
        label.fill_(-1)
        label.scatter_(0, pos_idx, 1)
        label.scatter_(0, neg_idx, 0)
        return label

    @staticmethod
    def anchors_inside_image(
        anchors: Boxes, image_size: Tuple[int, int], boundary_thresh: float = 0
    ) -> torch.Tensor:
        """(R,) bool mask of the anchors that take part in training: boxes are in continuous
        coordinates, the image spans ``[0, W] x [0, H]``, so inside means ``x1 >= -t``,
        ``y1 >= -t``, ``x2 <= W + t``, ``y2 <= H + t`` (t = ``boundary_thresh``). Unlike
        detectron2's ``Boxes.inside_box`` (strict ``x2 < W + t``), an anchor flush with the
        right or bottom border is inside, as in py-faster-rcnn (whose ``x2 < W`` is on
        inclusive pixel indices)."""
        t, (h, w), box = boundary_thresh, image_size, anchors.tensor
        return (box[:, 0] >= -t) & (box[:, 1] >= -t) & (box[:, 2] <= w + t) & (box[:, 3] <= h + t)

    @torch.no_grad()
    def _label_anchors(
        self, anchors: Boxes, gt_boxes: Boxes, image_size: Tuple[int, int]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Match anchors with GT boxes (no sampling).

        With ``anchor_boundary_thresh`` ``t >= 0`` only the anchors inside the image (up to
        that margin, :meth:`anchors_inside_image`: ``x1 >= -t, y1 >= -t, x2 <= W + t,
        y2 <= H + t``, so an anchor flush with the right or bottom border is inside) are
        matched; the others get label -1.
        Among the matched anchors: 1 if the IoU with some GT >= the high threshold (0.7) or
        the anchor is a GT's best (ties within :attr:`BestAnchorMatcher.TIE_RTOL` included)
        with an IoU above ``anchor_matcher.min_iou``, 0 if the max IoU < the low threshold
        (0.3), -1 otherwise.

        Returns:
            matched_idxs (Tensor): (R,) int64, index of the matched GT (0 where unmatched).
            labels (Tensor): (R,) int8, -1 ignore, 0 negative, 1 positive.
        """
        num_anchors, device = len(anchors), anchors.tensor.device
        if self.anchor_boundary_thresh >= 0:
            # not Boxes.inside_box: its strict x2 < W would drop the anchors flush with the
            # right or bottom border (whenever W or H is 8 mod 16 with the paper's anchors)
            inside = self.anchors_inside_image(anchors, image_size, self.anchor_boundary_thresh)
        else:
            inside = torch.ones(num_anchors, dtype=torch.bool, device=device)
        inside_idx = nonzero_tuple(inside)[0]
        matched_inside, labels_inside = self.anchor_matcher(
            pairwise_iou(gt_boxes, anchors[inside_idx])
        )
        matched_idxs = torch.zeros(num_anchors, dtype=torch.int64, device=device)
        labels = torch.full((num_anchors,), -1, dtype=torch.int8, device=device)
        matched_idxs[inside_idx] = matched_inside.to(device)
        labels[inside_idx] = labels_inside.to(device=device, dtype=torch.int8)
        return matched_idxs, labels

    @torch.jit.unused
    @torch.no_grad()
    def label_and_sample_anchors(
        self, anchors: List[Boxes], gt_instances: List[Instances]
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """Label (:meth:`_label_anchors`) and sample (``self.sampler``) the anchors per image.

        Returns:
            list[Tensor]: per image, (R,) labels: -1 ignore, 0 negative, 1 positive; only the
            sampled anchors are 0 or 1.
            list[Tensor]: per image, (R, 4) matched GT boxes (meaningful where label is 1).
        """
        anchors = Boxes.cat(anchors)
        gt_labels, matched_gt_boxes = [], []
        for gt in gt_instances:
            matched_idxs, labels = self._label_anchors(anchors, gt.gt_boxes, gt.image_size)
            gt_labels.append(self._subsample_labels(labels))
            if len(gt) == 0:
                matched_gt_boxes.append(torch.zeros_like(anchors.tensor))
            else:
                matched_gt_boxes.append(gt.gt_boxes[matched_idxs].tensor)
        return gt_labels, matched_gt_boxes

    # ----------------------------------------------------------------------------- losses
    def _loss_scales(
        self, anchors: List[Boxes], num_images: int, num_sampled: int, num_pos: int
    ) -> Tuple[float, float]:
        """(class-term, box-term) multipliers of the selected loss normalization, from the
        numbers of sampled (positive + negative) and positive anchors of the batch."""
        if self.loss_normalization == "detectron2":
            scale = 1.0 / (self.batch_size_per_image * num_images)
            return scale, scale
        num_sampled = max(num_sampled, 1)
        if self.loss_normalization == "paper":
            num_anchors = self.anchor_generator.num_anchors
            locations = sum(len(a) // k for a, k in zip(anchors, num_anchors)) * num_images
            return 1.0 / num_sampled, self.loss_lambda / locations
        return 1.0 / num_sampled, self.loss_lambda / max(num_pos, 1)

    @staticmethod
    def _objectness_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Summed loss of (K,) sigmoid logits or (K, 2) softmax scores vs labels 0 / 1."""
        if logits.dim() == 2:
            return F.cross_entropy(logits, labels.long(), reduction="sum")
        return F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="sum")

    @torch.jit.unused
    def losses(
        self,
        anchors: List[Boxes],
        pred_objectness_logits: List[torch.Tensor],
        gt_labels: List[torch.Tensor],
        pred_anchor_deltas: List[torch.Tensor],
        gt_boxes: List[torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        """Same arguments and outputs as :meth:`RPN.losses` (objectness logits may also be
        (N, Hi*Wi*A, 2)); normalized by ``self.loss_normalization``, then weighted by
        ``self.loss_weight`` (MODEL.RPN.LOSS_WEIGHT / BBOX_REG_LOSS_WEIGHT)."""
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)
        pos_mask, valid_mask = gt_labels == 1, gt_labels >= 0
        # both counts in one device-to-host copy (one sync on GPU)
        num_pos, num_neg = torch.stack([pos_mask.sum(), (gt_labels == 0).sum()]).tolist()
        storage = get_event_storage()
        storage.put_scalar("rpn/num_pos_anchors", num_pos / num_images)
        storage.put_scalar("rpn/num_neg_anchors", num_neg / num_images)

        loss_loc = _dense_box_regression_loss(
            anchors,
            self.box2box_transform,
            pred_anchor_deltas,
            gt_boxes,
            pos_mask,
            box_reg_loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
        )
        logits = cat(pred_objectness_logits, dim=1)[valid_mask]
        loss_cls = self._objectness_loss(logits, gt_labels[valid_mask])
        cls_scale, loc_scale = self._loss_scales(anchors, num_images, num_pos + num_neg, num_pos)
        losses = {"loss_rpn_cls": loss_cls * cls_scale, "loss_rpn_loc": loss_loc * loc_scale}
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}

    # ----------------------------------------------------------------------------- forward
    def min_box_sizes(self, images: ImageList) -> List[float]:
        """Per image, the minimum proposal side in input pixels.

        Raises:
            ValueError: when the size is in original pixels but ``images`` has no
                ``original_sizes`` (set by FRCNNGeneralizedRCNN).
        """
        sizes = images.image_sizes
        if not (self.min_size_in_original_pixels and self.min_box_size > 0):
            return [self.min_box_size] * len(sizes)
        originals = getattr(images, "original_sizes", None)
        if originals is None:
            raise ConfigError(
                "MODEL.PROPOSAL_GENERATOR.MIN_SIZE_IN_ORIGINAL_PIXELS=True needs each image's "
                "original size, which detectron2's GeneralizedRCNN does not give the RPN; allowed: "
                "MODEL.META_ARCHITECTURE 'FRCNNGeneralizedRCNN' (or set images.original_sizes), "
                "or MIN_SIZE_IN_ORIGINAL_PIXELS False (MIN_SIZE in input pixels)"
            )
        return [self.min_box_size * resize_scale(s, o) for s, o in zip(sizes, originals)]

    def forward(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        gt_instances: Optional[List[Instances]] = None,
    ):
        """Same as :meth:`RPN.forward`; also handles two-score heads and per-image min sizes."""
        features = [features[f] for f in self.in_features]
        anchors = self.anchor_generator(features)
        logits, deltas = flatten_rpn_outputs(
            *self.rpn_head(features), self.anchor_generator.num_anchors,
            self.anchor_generator.box_dim,
        )

        losses = {}
        if self.training:
            assert gt_instances is not None, "RPN requires gt_instances in training!"
            gt_labels, gt_boxes = self.label_and_sample_anchors(anchors, gt_instances)
            losses = self.losses(anchors, logits, gt_labels, deltas, gt_boxes)
            losses = self.nonfinite_outputs_to_losses(losses, logits + deltas)
        proposals = self.predict_proposals(
            anchors, logits, deltas, images.image_sizes, self.min_box_sizes(images)
        )
        return proposals, losses

    @staticmethod
    def nonfinite_outputs_to_losses(
        losses: Dict[str, torch.Tensor], outputs: List[torch.Tensor]
    ) -> Dict[str, torch.Tensor]:
        """In training, a non-finite RPN output (a NaN or Inf pixel, or diverged weights) makes
        every RPN loss term NaN, so that the trainer's non-finite-loss policy
        (``SOLVER.NONFINITE_LOSS``: "error" stops naming the terms, "skip" skips the step)
        decides, instead of an exception from inside the forward pass (detectron2's RPN
        raises ``FloatingPointError`` there, which no policy can catch). The loss of sampled
        anchors alone may miss such an output, while its gradient would still reach every
        weight of the backbone. No device-to-host copy: finite outputs add an exact 0.
        """
        if not losses or not outputs:
            return losses
        finite = torch.stack([torch.isfinite(x).all() for x in outputs]).all()
        first = next(iter(losses.values()))
        offset = torch.where(finite, first.new_zeros(()), first.new_full((), float("nan")))
        return {k: v + offset for k, v in losses.items()}

    # ----------------------------------------------------------------------------- proposals
    @staticmethod
    def objectness_scores(logits: torch.Tensor) -> torch.Tensor:
        """Ranking logits: sigmoid logits as they are; for (..., 2) scores fg - bg, the sigmoid
        logit of the softmax foreground probability (same ranking)."""
        return logits[..., 1] - logits[..., 0] if logits.dim() == 3 else logits

    def _top_proposals(
        self,
        proposals: List[torch.Tensor],
        scores: List[torch.Tensor],
        image_size: Tuple[int, int],
        min_size: float,
    ) -> List[Instances]:
        """The proposals of one image in ``self.proposal_order``
        (:func:`find_top_proposals_paper_order` or detectron2's :func:`find_top_rpn_proposals`),
        with the same result as that function.

        With one feature map, NMS first runs on the ``NMS_PREFIX_FACTOR * post_nms_topk``
        best-scored boxes only (when that is at most half of ``pre_nms_topk``, as at test time:
        1 200 of 6 000 for 300). Greedy NMS decides on a box from higher-scored boxes alone,
        so when that prefix already yields ``post_nms_topk`` boxes they are exactly the first
        ``post_nms_topk`` of the full run; otherwise the full run follows (at most
        (1/2)^2 of the NMS work extra). NMS dominates the RPN's time outside its layers.
        """
        pre, post = self.pre_nms_topk[self.training], self.post_nms_topk[self.training]
        find = (
            find_top_proposals_paper_order
            if self.proposal_order == "paper"
            else find_top_rpn_proposals
        )

        def run(pre_nms_topk):
            # training=False: non-finite boxes are dropped, never raised; in training forward()
            # turns them into non-finite losses for the trainer's policy
            # (see nonfinite_outputs_to_losses)
            return find(
                proposals, scores, [image_size], self.nms_thresh, pre_nms_topk, post, min_size,
                False,
            )

        prefix = self.NMS_PREFIX_FACTOR * post
        # not when traced: whether the prefix yields enough boxes depends on the data, and a
        # trace would freeze the branch it took on the example input
        if (not torch.jit.is_tracing() and len(proposals) == 1 and 2 * prefix <= pre
                and proposals[0].shape[1] > prefix):
            results = run(prefix)
            if len(results[0]) >= post:
                return results
        return run(pre)

    def predict_proposals(
        self,
        anchors: List[Boxes],
        pred_objectness_logits: List[torch.Tensor],
        pred_anchor_deltas: List[torch.Tensor],
        image_sizes: List[Tuple[int, int]],
        min_box_sizes: Optional[Sequence[float]] = None,
    ) -> List[Instances]:
        """:meth:`RPN.predict_proposals` with an optional per-image minimum size (input
        pixels; default ``self.min_box_size``), in ``self.proposal_order``
        (see :meth:`_top_proposals`)."""
        if min_box_sizes is None:
            min_box_sizes = [self.min_box_size] * len(image_sizes)
        with torch.no_grad():
            proposals = self._decode_proposals(anchors, pred_anchor_deltas)
            scores = [self.objectness_scores(x) for x in pred_objectness_logits]
            results = []
            for i, (size, min_size) in enumerate(zip(image_sizes, min_box_sizes)):
                # one image at a time (detectron2 treats images independently anyway), each
                # with its own minimum size
                results += self._top_proposals(
                    [p[i : i + 1] for p in proposals], [s[i : i + 1] for s in scores], size,
                    min_size,
                )
        if self.training:
            get_event_storage().put_scalar(
                "rpn/num_proposals", float(np.mean([len(r) for r in results]))
            )
        return results
