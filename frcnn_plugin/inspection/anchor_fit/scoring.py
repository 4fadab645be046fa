"""Scoring anchor sets against GT boxes on the config's real anchor grid.

:class:`AnchorFitter` builds the config's anchor generator (``build_anchor_generator`` on the
backbone's output shapes) for any :class:`AnchorSpec` and lays it on the feature maps of each
image size. Their sizes are the backbone's own: its forward on the meta device (shapes only, no
computation) for the image padded to its ``size_divisibility``, as the model pads it. E.g.
VGG's four max-pools round down: an 801-pixel side gives 50 cells, not ceil(801 / 16) = 51.
Only the anchors that take part in training count: those inside the image when
``MODEL.RPN.BOUNDARY_THRESH >= 0``, all of them otherwise (and for RetinaNet).

Measured per GT box (:class:`FitStats`): its best anchor IoU, and the number of anchors it makes
positive (IoU >= the high threshold, ``MODEL.RPN.IOU_THRESHOLDS[-1]``, or equal to its best
IoU, as detectron2's Matcher with low-quality matches).
"""
import copy
import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
import torch

from detectron2.modeling import build_backbone
from detectron2.modeling.anchor_generator import build_anchor_generator
from detectron2.structures import Boxes, pairwise_iou

from ...config_checks import config_errors
from ...modeling.anchor_generator import per_level_lists
from ...modeling.matcher import BestAnchorMatcher
from ...modeling.rpn import FRCNNRPN

__all__ = ["MID_IOU", "AnchorSpec", "FitStats", "AnchorFitter"]

MID_IOU = 0.5


@dataclass(frozen=True)
class AnchorSpec:
    """Anchor sizes (sqrt of area, input pixels) and aspect ratios (h / w), per feature map."""

    sizes: Tuple[Tuple[float, ...], ...]
    ratios: Tuple[Tuple[float, ...], ...]

    @staticmethod
    def make(sizes, ratios) -> "AnchorSpec":
        return AnchorSpec(tuple(tuple(float(v) for v in s) for s in sizes),
                          tuple(tuple(float(v) for v in r) for r in ratios))

    def as_dict(self):
        return {"sizes": [list(s) for s in self.sizes], "ratios": [list(r) for r in self.ratios]}


@dataclass
class FitStats:
    """Fit of one anchor set to the GT boxes.

    Attributes:
        best_iou (ndarray): (G,) best IoU of each GT box with the anchors taking part.
        positives (ndarray): (G,) anchors each GT box makes positive (IoU >= high threshold,
            or equal to its best IoU > 0).
        thresholds (tuple): (low, high) IoU thresholds of the anchor matcher.
    """

    best_iou: np.ndarray
    positives: np.ndarray
    thresholds: Tuple[float, float]

    @property
    def num_gt(self) -> int:
        return int(len(self.best_iou))

    def share(self, predicate) -> float:
        return float(np.mean(predicate(self.best_iou))) if self.num_gt else float("nan")

    @property
    def share_high(self) -> float:
        """Share of GT boxes whose best anchor has IoU >= the high threshold (0.7)."""
        return self.share(lambda x: x >= self.thresholds[1])

    @property
    def share_mid(self) -> float:
        """Share with best IoU >= 0.5."""
        return self.share(lambda x: x >= MID_IOU)

    @property
    def share_low(self) -> float:
        """Share with best IoU < the low threshold (0.3): boxes matched only as a GT's best."""
        return self.share(lambda x: x < self.thresholds[0])

    def key(self):
        """Sort key of a candidate: share >= high threshold, then mean best IoU."""
        return (round(self.share_high, 9), float(np.mean(self.best_iou)) if self.num_gt else 0.0)

    def as_dict(self) -> Dict[str, float]:
        lo, hi = self.thresholds
        pos = self.positives
        return {
            "num_gt": self.num_gt,
            "share_best_iou_ge_{:g}".format(hi): self.share_high,
            "share_best_iou_ge_{:g}".format(MID_IOU): self.share_mid,
            "share_best_iou_lt_{:g}".format(lo): self.share_low,
            "mean_best_iou": float(np.mean(self.best_iou)) if self.num_gt else float("nan"),
            "positives_per_gt_mean": float(np.mean(pos)) if self.num_gt else float("nan"),
            "positives_per_gt_median": float(np.median(pos)) if self.num_gt else float("nan"),
            "positives_per_gt_min": int(np.min(pos)) if self.num_gt else 0,
            "gt_without_positive": int(np.sum(pos == 0)),
        }


class AnchorFitter:
    """Scores anchor sets (:class:`AnchorSpec`) against GT boxes with a config's anchor
    generator class, strides, offset and matcher thresholds."""

    def __init__(self, cfg):
        """
        Args:
            cfg (CfgNode): a config (not modified); RetinaNet configs use
                MODEL.RETINANET.IN_FEATURES / IOU_THRESHOLDS, all others MODEL.RPN's.
        """
        self.cfg = cfg.clone()
        self.cfg.defrost()
        retinanet = cfg.MODEL.META_ARCHITECTURE == "RetinaNet"
        node = cfg.MODEL.RETINANET if retinanet else cfg.MODEL.RPN
        with config_errors(cfg):
            with torch.device("meta"):  # for output shapes only: no memory, no initialization
                self.backbone = build_backbone(self.cfg).eval()
            shapes = self.backbone.output_shape()
            self.in_features = list(node.IN_FEATURES)
            self.input_shapes = [shapes[f] for f in self.in_features]
            self.current = self.spec_of(build_anchor_generator(self.cfg, self.input_shapes))
        self.size_divisibility = int(getattr(self.backbone, "size_divisibility", 0) or 0)
        self.input_channels = len(cfg.MODEL.PIXEL_MEAN)
        self.thresholds = (float(node.IOU_THRESHOLDS[0]), float(node.IOU_THRESHOLDS[-1]))
        self.boundary_thresh = -1 if retinanet else int(cfg.MODEL.RPN.BOUNDARY_THRESH)
        self.generator_name = cfg.MODEL.ANCHOR_GENERATOR.NAME
        self._grid_sizes: Dict[Tuple[int, int], List[Tuple[int, int]]] = {}

    @property
    def strides(self) -> List[int]:
        return [int(s.stride) for s in self.input_shapes]

    def spec_of(self, generator) -> AnchorSpec:
        """Sizes and ratios of a built generator (FRCNNAnchorGenerator keeps them; detectron2's
        DefaultAnchorGenerator: from the config keys, as it read them)."""
        n = len(self.input_shapes)
        ag = self.cfg.MODEL.ANCHOR_GENERATOR
        sizes = getattr(generator, "sizes", None) or per_level_lists(ag.SIZES, n, "sizes", "size")
        ratios = getattr(generator, "aspect_ratios", None) or per_level_lists(
            ag.ASPECT_RATIOS, n, "aspect_ratios", "ratio")
        return AnchorSpec.make(sizes, ratios)

    def config_keys(self, spec: AnchorSpec) -> Dict[str, object]:
        """MODEL.ANCHOR_GENERATOR keys that give ``spec``: SIZES and ASPECT_RATIOS (one list
        when all levels are equal), and, for FRCNNAnchorGenerator, SCALES / OCTAVE_BASE_SCALE /
        BASE_SIZES reset when set (SIZES is used only with SCALES empty and the octave off)."""

        def compact(levels, cast):
            levels = [[cast(v) for v in lvl] for lvl in levels]
            return levels[:1] if all(lvl == levels[0] for lvl in levels) else levels

        keys = {"SIZES": compact(spec.sizes, _nice),
                "ASPECT_RATIOS": compact(spec.ratios, lambda v: float("{:.3g}".format(v)))}
        ag = self.cfg.MODEL.ANCHOR_GENERATOR
        if ag.get("SCALES", []) or ag.get("OCTAVE_BASE_SCALE", 0.0):
            keys.update({"SCALES": [], "OCTAVE_BASE_SCALE": 0.0})
        if ag.get("BASE_SIZES", []):
            keys["BASE_SIZES"] = []
        return keys

    def build_generator(self, spec: AnchorSpec):
        cfg = self.cfg.clone()
        for k, v in self.config_keys(spec).items():
            cfg.MODEL.ANCHOR_GENERATOR[k] = copy.deepcopy(v)
        return build_anchor_generator(cfg, self.input_shapes)

    def grid_sizes(self, image_size: Tuple[int, int]) -> List[Tuple[int, int]]:
        """(Hi, Wi) of each anchor feature map for an input of ``image_size`` (h, w): the
        backbone's output for that input padded to its ``size_divisibility`` (a forward on the
        meta device: shapes only), e.g. (50, 50) for VGG16 and 801 x 801."""
        key = (int(image_size[0]), int(image_size[1]))
        if key not in self._grid_sizes:
            d = self.size_divisibility
            padded = [int(math.ceil(s / d) * d) if d > 0 else s for s in key]
            with torch.no_grad():
                features = self.backbone(
                    torch.empty((1, self.input_channels, *padded), device="meta"))
            self._grid_sizes[key] = [tuple(int(v) for v in features[f].shape[-2:])
                                     for f in self.in_features]
        return self._grid_sizes[key]

    def anchors(self, generator, image_size) -> Boxes:
        """The anchors that take part in training for an image of ``image_size``."""
        feats = [torch.empty((1, 0) + g) for g in self.grid_sizes(image_size)]
        anchors = Boxes.cat(generator(feats))
        if self.boundary_thresh >= 0:  # the RPN's rule: flush with the border is inside
            anchors = anchors[FRCNNRPN.anchors_inside_image(anchors, image_size,
                                                            self.boundary_thresh)]
        return anchors

    def evaluate(self, spec: AnchorSpec, gts) -> FitStats:
        """Fit of ``spec`` to ``gts`` (from :func:`dataset_gt_boxes`)."""
        generator = self.build_generator(spec)
        by_size: Dict[tuple, list] = {}
        for size, boxes in gts:
            by_size.setdefault(tuple(size), []).append(boxes)
        best, positives = [], []
        for size, group in by_size.items():
            anchors = self.anchors(generator, size)
            gt = Boxes(torch.as_tensor(np.concatenate(group), dtype=torch.float32))
            if len(anchors) == 0:
                best.append(np.zeros(len(gt)))
                positives.append(np.zeros(len(gt), dtype=np.int64))
                continue
            iou = pairwise_iou(gt, anchors)
            b = iou.max(dim=1).values
            # the RPN's rule (BestAnchorMatcher): ties within a relative tolerance
            tied = iou >= (b * (1.0 - BestAnchorMatcher.TIE_RTOL))[:, None]
            pos = (iou >= self.thresholds[1]) | (tied & (b[:, None] > 0))
            best.append(b.numpy().astype(np.float64))
            positives.append(pos.sum(dim=1).numpy())
        if not best:
            return FitStats(np.zeros(0), np.zeros(0, dtype=np.int64), self.thresholds)
        return FitStats(np.concatenate(best), np.concatenate(positives), self.thresholds)


def _nice(v: float):
    """Integers as int, other values rounded to 3 significant digits."""
    v = float(v)
    return int(round(v)) if abs(v - round(v)) < 1e-6 else float("{:.3g}".format(v))
