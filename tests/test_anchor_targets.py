"""FRCNNRPN's anchor labels against an independent oracle and hand-worked corner cases.

The oracle is a NumPy port of the anchor-target steps of the stage-by-stage walk-through
(py-faster-rcnn's ``anchor_target_layer``): keep the anchors inside the image, IoU in float64,
negatives where the best IoU < 0.3, each GT's best anchors (ties included) positive, positives
where the best IoU >= 0.7 -- with the one change under test: a GT's best anchors are promoted
only when that IoU is above ``min_iou`` (py-faster-rcnn: always, also at IoU 0).

The hand-worked cases use square anchors (ASPECT_RATIOS [[1.0]]: 128, 256, 512 px boxes centred
at 16 i + 8), whose corners are integers, so every IoU below is a ratio of integers.
"""
import unittest

import numpy as np
import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling import build_proposal_generator
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import frcnn_plugin.modeling.meta_arch  # noqa: F401  (registers)
from frcnn_plugin.modeling.matcher import BestAnchorMatcher
from tests.conftest import load_config

SHAPE = {"conv5": ShapeSpec(channels=8, stride=16)}
SIZE = 800  # the walk-through's 800 x 800 image: a 50 x 50 feature map
SQUARE = ("MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "[[1.0]]")


def oracle_labels(anchors, gt_boxes, height, width, min_iou=0.0, lo=0.3, hi=0.7):
    """Walk-through anchor targets in NumPy: (labels (R,) -1/0/1, best GT index (R,))."""
    anchors = np.asarray(anchors, dtype=np.float64)
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.full(len(anchors), -1, dtype=np.int64)
    argmax = np.zeros(len(anchors), dtype=np.int64)
    inside = np.where(
        (anchors[:, 0] >= 0) & (anchors[:, 1] >= 0)
        & (anchors[:, 2] < width) & (anchors[:, 3] < height)
    )[0]
    if len(gt) == 0:
        labels[inside] = 0
        return labels, argmax
    a = anchors[inside]
    iw = np.minimum(a[:, None, 2], gt[None, :, 2]) - np.maximum(a[:, None, 0], gt[None, :, 0])
    ih = np.minimum(a[:, None, 3], gt[None, :, 3]) - np.maximum(a[:, None, 1], gt[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_g = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    overlaps = inter / (area_a[:, None] + area_g[None, :] - inter)  # (inside, G)
    max_overlaps = overlaps.max(axis=1)
    sub = np.full(len(a), -1, dtype=np.int64)
    sub[max_overlaps < lo] = 0
    gt_max = overlaps.max(axis=0)
    for g in range(len(gt)):
        if gt_max[g] > min_iou:
            sub[overlaps[:, g] == gt_max[g]] = 1
    sub[max_overlaps >= hi] = 1
    labels[inside] = sub
    argmax[inside] = overlaps.argmax(axis=1)
    return labels, argmax


def build_rpn(*opts):
    torch.manual_seed(0)
    return build_proposal_generator(load_config("vgg16_frcnn.yaml", *opts), SHAPE)


def anchors_of(rpn):
    return Boxes.cat(rpn.anchor_generator([torch.zeros(1, 8, SIZE // 16, SIZE // 16)]))


def gt_instances(boxes):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    gt = Instances((SIZE, SIZE), gt_boxes=Boxes(boxes))
    gt.gt_classes = torch.zeros(len(boxes), dtype=torch.int64)
    return gt


class TestAgainstOracle(unittest.TestCase):
    """The labels of FRCNNRPN equal the oracle's."""

    @classmethod
    def setUpClass(cls):
        cls.rpn = build_rpn()

    def check(self, boxes, rpn=None, min_iou=0.0):
        rpn = rpn or self.rpn
        anchors = anchors_of(rpn)
        gt_boxes = gt_instances(boxes).gt_boxes
        matched, labels = rpn._label_anchors(anchors, gt_boxes, (SIZE, SIZE))
        want, want_gt = oracle_labels(anchors.tensor.numpy(), gt_boxes.tensor.numpy(), SIZE,
                                      SIZE, min_iou)
        np.testing.assert_array_equal(labels.numpy(), want)
        pos = want == 1
        if len(boxes) > 1:  # the matched GT of a positive is its best GT
            np.testing.assert_array_equal(matched.numpy()[pos], want_gt[pos])
        return labels

    def test_walkthrough_boxes(self):
        self.check([[100.0, 120, 300, 380], [420, 400, 700, 760], [40, 500, 180, 640],
                    [0, 0, 60, 90]])

    def test_random_boxes_of_all_sizes_including_border_ones(self):
        # Square anchors: translated anchors that contain a box tie exactly in float32 and
        # float64 alike (the 9 anchors' sqrt(2) sides make such ties depend on rounding).
        rpn = build_rpn(*SQUARE)
        g = np.random.default_rng(0)
        for _ in range(5):
            n = int(g.integers(1, 8))
            xy = g.uniform(-50, SIZE, size=(n, 2))
            wh = np.exp(g.uniform(np.log(4), np.log(600), size=(n, 2)))
            boxes = np.clip(np.concatenate([xy, xy + wh], 1), 0, SIZE).round(1)
            boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
            self.check(boxes.tolist(), rpn=rpn)

    def test_legacy_rule_below_zero(self):
        rpn = build_rpn("MODEL.RPN.BEST_ANCHOR_MIN_IOU", "-1.0")
        self.check([[0.0, 0, 6, 6], [300, 300, 420, 460]], rpn=rpn, min_iou=-1.0)


class TestCornerCases(unittest.TestCase):
    def labels(self, boxes, *opts):
        rpn = build_rpn(*opts)
        anchors = anchors_of(rpn)
        matched, labels = rpn._label_anchors(anchors, gt_instances(boxes).gt_boxes, (SIZE, SIZE))
        return rpn, anchors, matched, labels

    def test_gt_overlapping_no_inside_anchor_gets_no_positive(self):
        # The smallest inside anchors nearest the corner start at x0 = 8 (128 x 128),
        # 13.5 (181 x 91) and 10.7 (91 x 181) px: none overlaps [0, 0, 6, 6] (IoU 0).
        rpn, anchors, _, labels = self.labels([[0.0, 0, 6, 6]])
        inside = anchors.inside_box((SIZE, SIZE), 0)
        self.assertEqual(int(inside.sum()), 8940)
        self.assertEqual(int((labels == 1).sum()), 0)
        self.assertEqual(int((labels == 0).sum()), 8940)  # all IoU 0 < 0.3
        with EventStorage():
            (sampled,), _ = rpn.label_and_sample_anchors([anchors], [gt_instances([[0, 0, 6, 6]])])
        self.assertEqual((int((sampled == 1).sum()), int((sampled == 0).sum())), (0, 256))

    def test_legacy_rule_makes_every_inside_anchor_positive(self):
        # The bug this key guards against: all 8 940 inside anchors tie at IoU 0.
        rpn, anchors, _, labels = self.labels([[0.0, 0, 6, 6]], "MODEL.RPN.BEST_ANCHOR_MIN_IOU",
                                              "-1.0")
        self.assertEqual(int((labels == 1).sum()), 8940)
        (sampled,), _ = rpn.label_and_sample_anchors([anchors], [gt_instances([[0, 0, 6, 6]])])
        self.assertEqual((int((sampled == 1).sum()), int((sampled == 0).sum())), (128, 0))

    def test_gt_on_the_border_gets_its_best_inside_anchor(self):
        # Square anchors: the inside one nearest the corner, [8, 8, 136, 136], has IoU
        # 92^2 / (100^2 + 128^2 - 92^2) = 8464 / 17920 = 0.472 with [0, 0, 100, 100]; the next
        # ones: [24, 24, 152, 152] 5776 / 20608 = 0.280, [8, 8, 264, 264] 8464 / 67072 = 0.126.
        _, anchors, matched, labels = self.labels([[0.0, 0, 100, 100]], *SQUARE)
        pos = torch.nonzero(labels == 1).flatten()
        self.assertEqual(anchors.tensor[pos].tolist(), [[8.0, 8.0, 136.0, 136.0]])
        self.assertEqual(matched[pos].tolist(), [0])

    def test_two_gts_sharing_their_best_anchors(self):
        # 40 x 128 boxes at x 372..412 and 376..416, y 328..456. A 128-px anchor with centre y
        # 392 contains the first for centre x in [412 - 64, 372 + 64] = [348, 436] (360 ... 424)
        # and the second for x in [352, 440] (360 ... 440), IoU 40 * 128 / 128^2 = 0.3125 each
        # (ignored by the thresholds alone): 5 best anchors shared, 6 positives in all.
        boxes = [[372.0, 328, 412, 456], [376, 328, 416, 456]]
        _, anchors, matched, labels = self.labels(boxes, *SQUARE)
        pos = torch.nonzero(labels == 1).flatten()
        centres = ((anchors.tensor[pos, :2] + anchors.tensor[pos, 2:]) / 2).tolist()
        self.assertEqual(sorted(centres), [[x, 392.0] for x in (360.0, 376, 392, 408, 424, 440)])
        self.assertTrue(bool((anchors.tensor[pos, 2] - anchors.tensor[pos, 0] == 128).all()))
        # the anchor at x 440 overlaps the first box less (36 * 128 / (128^2 + 4 * 128))
        by_x = dict(zip([c[0] for c in centres], matched[pos].tolist()))
        self.assertEqual(by_x[440.0], 1)

    def test_identical_gts_tie_and_the_min_iou_key(self):
        # A 40 x 40 box in 36 square 128-px anchors (centres 360 ... 440 in x and y): IoU
        # 1600 / 16384 = 0.0977 each, the box's best, ties included; min IoU 0.1 drops them.
        boxes = [[380.0, 380, 420, 420]] * 2
        _, _, _, labels = self.labels(boxes, *SQUARE)
        self.assertEqual(int((labels == 1).sum()), 36)
        _, _, _, labels = self.labels(boxes, *SQUARE, "MODEL.RPN.BEST_ANCHOR_MIN_IOU", "0.1")
        self.assertEqual(int((labels == 1).sum()), 0)

    def test_image_without_gt(self):
        rpn, anchors, _, labels = self.labels([])
        self.assertEqual(int((labels == 0).sum()), 8940)
        self.assertEqual(int((labels == 1).sum()), 0)
        gt = gt_instances([])
        with EventStorage():
            (sampled,), (matched,) = rpn.label_and_sample_anchors([anchors], [gt])
            self.assertEqual((int((sampled == 1).sum()), int((sampled == 0).sum())), (0, 256))
            self.assertEqual(float(matched.abs().sum()), 0.0)
            losses = rpn.losses([anchors], [torch.zeros(1, len(anchors), 2)], [sampled],
                                [torch.zeros(1, len(anchors), 4)], [matched])
        # class term: 256 negatives at softmax (0.5, 0.5): ln 2 each, / 256; no box term
        self.assertAlmostEqual(losses["loss_rpn_cls"].item(), float(np.log(2)), places=5)
        self.assertEqual(losses["loss_rpn_loc"].item(), 0.0)


class TestMatcher(unittest.TestCase):
    def test_rows_below_the_floor_are_not_promoted(self):
        m = BestAnchorMatcher([0.3, 0.7], [0, -1, 1], True, min_iou=0.0)
        iou = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.5, 0.5]])
        _, labels = m(iou)
        # GT 0 overlaps nothing; GT 1's best (0.5, a tie) promotes predictions 1 and 2
        self.assertEqual(labels.tolist(), [0, 1, 1])

    def test_bad_value_names_the_key(self):
        with self.assertRaisesRegex(ValueError, r"BEST_ANCHOR_MIN_IOU=1\.5.*allowed"):
            build_rpn("MODEL.RPN.BEST_ANCHOR_MIN_IOU", "1.5")

    def test_plain_matcher_given_by_keyword_is_upgraded(self):
        rpn = build_rpn("MODEL.RPN.BEST_ANCHOR_MIN_IOU", "0.25")
        self.assertIsInstance(rpn.anchor_matcher, BestAnchorMatcher)
        self.assertEqual(rpn.anchor_matcher.min_iou, 0.25)
        self.assertEqual(rpn.anchor_matcher.thresholds[1:-1], [0.3, 0.7])


if __name__ == "__main__":
    unittest.main()
