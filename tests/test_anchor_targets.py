"""FRCNNRPN's anchor labels against an independent oracle and hand-worked corner cases.

The oracle (:mod:`tests.rpn_oracle`) is the paper's rule written in float64 NumPy from the paper
and the anchor formula of the configs, not from the plugin's or detectron2's code: its own
anchors (centres 16 j + 8, sizes 128, 256, 512, ratios h / w 0.5, 1, 2), the continuous inside
test ``x1 >= 0, y1 >= 0, x2 <= W, y2 <= H``, float64 IoU, each GT's best inside anchors (ties
within a stated relative tolerance) positive when that IoU is above ``min_iou`` (0), positives
where the best IoU >= 0.7, negatives where it is < 0.3. The plugin's labels (before sampling)
must equal the oracle's element by element.

The hand-worked cases use square anchors (ASPECT_RATIOS [[1.0]]: 128, 256, 512 px boxes centred
at 16 i + 8), whose corners are integers, so every IoU below is a ratio of integers.
"""
import math
import unittest

import numpy as np
import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling import build_proposal_generator
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import frcnn_plugin.modeling.meta_arch  # noqa: F401  (registers)
from frcnn_plugin.modeling.matcher import BestAnchorMatcher
from tests import rpn_oracle
from tests.conftest import load_config

SHAPE = {"conv5": ShapeSpec(channels=8, stride=16)}
SIZE = 800  # the walk-through's 800 x 800 image: a 50 x 50 feature map
SQUARE = ("MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "[[1.0]]")
# (H, W): the walk-through's square image and the paper's 600 x 1000 input, both orientations
PAPER_SIZES = ((800, 800), (600, 1000), (1000, 600))


def grid(height, width):
    """VGG16's conv5 size for an input of height x width: 4 max-pools of stride 2 (floor)."""
    return height // 16, width // 16


def oracle_labels(gt_boxes, height, width, min_iou=0.0, ratios=rpn_oracle.PAPER_RATIOS):
    """The oracle's (anchors (R, 4), labels (R,) -1/0/1, best GT index (R,)) for the paper's
    anchors (with ``ratios``) on the conv5 grid of a height x width input."""
    anchors = rpn_oracle.paper_anchors(*grid(height, width), ratios=ratios)
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    labels = rpn_oracle.rpn_labels(anchors, gt, height, width, min_iou=min_iou)
    argmax = np.zeros(len(anchors), dtype=np.int64)
    if len(gt):
        argmax = rpn_oracle.iou_matrix(gt, anchors).argmax(axis=0)
    return anchors, labels, argmax


def build_rpn(*opts):
    torch.manual_seed(0)
    return build_proposal_generator(load_config("vgg16_frcnn.yaml", *opts), SHAPE)


def anchors_of(rpn, size=(SIZE, SIZE)):
    gh, gw = grid(*size)
    return Boxes.cat(rpn.anchor_generator([torch.zeros(1, 8, gh, gw)]))


def gt_instances(boxes, size=(SIZE, SIZE)):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    gt = Instances(size, gt_boxes=Boxes(boxes))
    gt.gt_classes = torch.zeros(len(boxes), dtype=torch.int64)
    return gt


def compare(rpn, boxes, size=(SIZE, SIZE), min_iou=0.0, ratios=rpn_oracle.PAPER_RATIOS):
    """Assert the plugin's labels (before sampling) equal the oracle's, element by element, and
    the matched GT of every positive is its best GT. Both get the same (float32) GT boxes.

    Returns:
        (plugin labels, oracle labels), as NumPy arrays.
    """
    anchors = anchors_of(rpn, size)
    gt_boxes = gt_instances(boxes, size).gt_boxes
    want_anchors, want, want_gt = oracle_labels(
        gt_boxes.tensor.numpy(), *size, min_iou=min_iou, ratios=ratios)
    # the same anchors, in the same order, up to float32 rounding
    np.testing.assert_allclose(anchors.tensor.numpy(), want_anchors, rtol=0, atol=1e-3)
    matched, labels = rpn._label_anchors(anchors, gt_boxes, size)
    labels = labels.numpy().astype(np.int64)
    np.testing.assert_array_equal(labels, want)
    pos = want == 1
    if len(gt_boxes) > 1:  # the matched GT of a positive is its best GT
        np.testing.assert_array_equal(matched.numpy()[pos], want_gt[pos])
    return labels, want


class TestAgainstOracle(unittest.TestCase):
    """The labels of FRCNNRPN equal the oracle's."""

    @classmethod
    def setUpClass(cls):
        cls.rpn = build_rpn()

    def check(self, boxes, rpn=None, min_iou=0.0, ratios=rpn_oracle.PAPER_RATIOS):
        return compare(rpn or self.rpn, boxes, min_iou=min_iou, ratios=ratios)[0]

    def test_walkthrough_boxes(self):
        self.check([[100.0, 120, 300, 380], [420, 400, 700, 760], [40, 500, 180, 640],
                    [0, 0, 60, 90]])

    def test_random_boxes_of_all_sizes_including_border_ones(self):
        # Square anchors (integer corners) and the paper's 9 (sqrt(2) sides: the ties between
        # shapes hold only up to rounding, see TestPaperRule).
        for rpn, ratios in ((build_rpn(*SQUARE), (1.0,)), (self.rpn, rpn_oracle.PAPER_RATIOS)):
            g = np.random.default_rng(0)
            for _ in range(5):
                n = int(g.integers(1, 8))
                xy = g.uniform(-50, SIZE, size=(n, 2))
                wh = np.exp(g.uniform(np.log(4), np.log(600), size=(n, 2)))
                boxes = np.clip(np.concatenate([xy, xy + wh], 1), 0, SIZE).round(1)
                boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
                self.check(boxes.tolist(), rpn=rpn, ratios=ratios)

    def test_legacy_rule_below_zero(self):
        rpn = build_rpn("MODEL.RPN.BEST_ANCHOR_MIN_IOU", "-1.0")
        self.check([[0.0, 0, 6, 6], [300, 300, 420, 460]], rpn=rpn, min_iou=-1.0)


def containing_anchors(gt, size=128.0, ratios=rpn_oracle.PAPER_RATIOS, stride=16, offset=0.5):
    """By hand: how many anchors of one ``size`` (per ratio) contain the box ``gt``. An anchor of
    half sides (hw, hh) centred at (cx, cy) on the grid contains it when
    cx - hw <= x1 and cx + hw >= x2 (the same in y), i.e. cx in [x2 - hw, x1 + hw]."""
    x1, y1, x2, y2 = gt

    def on_grid(lo, hi):  # grid centres (k + offset) * stride in [lo, hi]
        return max(0, math.floor(hi / stride - offset) - math.ceil(lo / stride - offset) + 1)

    counts = []
    for r in ratios:
        hw, hh = size / math.sqrt(r) / 2, size * math.sqrt(r) / 2
        counts.append(on_grid(x2 - hw, x1 + hw) * on_grid(y2 - hh, y1 + hh))
    return counts


class TestPaperRule(unittest.TestCase):
    """The paper's 9 anchors at 800 x 800, 600 x 1000 and 1000 x 600 (H x W): FRCNNRPN's labels
    equal the oracle's element by element."""

    @classmethod
    def setUpClass(cls):
        cls.rpn = build_rpn()

    def compare(self, boxes, size):
        return compare(self.rpn, boxes, size)

    def test_inside_counts(self):
        # 600 and 1000 are 8 mod 16: the 128-px anchors centred 64 px from the right or bottom
        # border end exactly on it, and are inside (800 is 0 mod 16: no anchor is flush)
        want = {(800, 800): 8940, (600, 1000): 8044, (1000, 600): 8044}
        for size in PAPER_SIZES:
            anchors = rpn_oracle.paper_anchors(*grid(*size))
            inside = rpn_oracle.inside_image(anchors, *size)
            self.assertEqual(int(inside.sum()), want[size], size)
            ours, _ = self.compare([], size)  # no GT: every inside anchor is negative
            self.assertEqual(int((ours == 0).sum()), want[size], size)
            self.assertEqual(int((ours == 1).sum()), 0)
            np.testing.assert_array_equal(ours == 0, inside)
            # the mask the RPN (and the stage-by-stage trace) uses
            mask = self.rpn.anchors_inside_image(anchors_of(self.rpn, size), size, 0)
            np.testing.assert_array_equal(mask.numpy(), inside)
        # the flush ones: 188 more than a strict x2 < W, y2 < H would keep
        anchors = rpn_oracle.paper_anchors(*grid(600, 1000))
        strict = ((anchors[:, :2] >= 0).all(1) & (anchors[:, 2] < 1000) & (anchors[:, 3] < 600))
        self.assertEqual(8044 - int(strict.sum()), 188)

    def test_boundary_thresh_is_a_margin_on_every_side(self):
        rpn = build_rpn("MODEL.RPN.BOUNDARY_THRESH", "20")
        for size in PAPER_SIZES:
            h, w = size
            _, labels = rpn._label_anchors(anchors_of(rpn, size), gt_instances([], size).gt_boxes,
                                           size)
            # the image grown by 20 px on every side, i.e. anchors shifted by (20, 20)
            shifted = rpn_oracle.paper_anchors(*grid(*size)) + 20.0
            want = rpn_oracle.inside_image(shifted, h + 40, w + 40)
            np.testing.assert_array_equal(labels.numpy() == 0, want)

    def test_gts_flush_with_each_border(self):
        for h, w in PAPER_SIZES:
            boxes = [
                [0.0, 200, 100, 300],  # left
                [300, 0, 420, 90],  # top
                [w - 100, 400, w, 480],  # right
                [500, h - 60, 640, h],  # bottom
                [w - 250, h - 180, w, h],  # bottom right corner
            ]
            ours, _ = self.compare(boxes, (h, w))
            self.assertGreater(int((ours == 1).sum()), 0)
            for box in boxes:  # each one alone has a positive
                ours, _ = self.compare([box], (h, w))
                self.assertGreater(int((ours == 1).sum()), 0, (h, w, box))

    def test_gts_equal_to_anchors_of_each_shape(self):
        for size in PAPER_SIZES:
            h, w = size
            anchors = rpn_oracle.paper_anchors(*grid(*size))
            inside = np.flatnonzero(rpn_oracle.inside_image(anchors, h, w))
            picks = []
            for k in range(6):  # 128 and 256 px, ratios 0.5, 1, 2 (sizes outer, ratios inner)
                shape = inside[inside % 9 == k]
                # the inside anchor of that shape nearest the bottom-right corner, and one near
                # the centre
                far = shape[np.argmax(anchors[shape, 2] + anchors[shape, 3])]
                centre = shape[np.argmin(np.abs(anchors[shape, :2] + anchors[shape, 2:]
                                                - [w, h]).sum(1))]
                picks += [far, centre]
            for i in picks:
                box = anchors[i].astype(np.float32).tolist()  # the GT the plugin gets
                ours, want = self.compare([box], size)
                self.assertEqual((ours[i], want[i]), (1, 1), (size, anchors[i]))

    def test_gt_equal_to_the_flush_anchor_is_positive(self):
        # [872, 8, 1000, 136]: the 128 x 128 anchor centred at (936, 72) = (16 * 58 + 8, 16 * 4
        # + 8), flush with the right border of the 600 x 1000 input
        anchors = rpn_oracle.paper_anchors(*grid(600, 1000))
        index = 9 * (4 * 62 + 58) + 1  # location (row 4, column 58); size 128, ratio 1
        self.assertEqual(anchors[index].tolist(), [872.0, 8.0, 1000.0, 136.0])
        ours, want = self.compare([[872.0, 8, 1000, 136]], (600, 1000))
        self.assertEqual((ours[index], want[index]), (1, 1))
        # the same mirrored at 1000 x 600: [8, 872, 136, 1000], flush with the bottom
        anchors = rpn_oracle.paper_anchors(*grid(1000, 600))
        index = 9 * (58 * 37 + 4) + 1
        self.assertEqual(anchors[index].tolist(), [8.0, 872.0, 136.0, 1000.0])
        ours, want = self.compare([[8.0, 872, 136, 1000]], (1000, 600))
        self.assertEqual((ours[index], want[index]), (1, 1))

    def test_small_gts_tie_across_the_three_shapes(self):
        # Inside a 128-px anchor of any ratio, a small GT's IoU is its area / 128^2 (the same
        # for the three shapes in exact arithmetic); every other anchor has a lower IoU. So its
        # best anchors are all the 128-px anchors that contain it.
        for gt in ([400.0, 300, 420, 320], [400.0, 302, 430, 332], [213.0, 245, 233, 265]):
            per_shape = containing_anchors(gt)
            self.assertGreater(min(per_shape), 0)
            for size in PAPER_SIZES:
                ours, want = self.compare([gt], size)
                self.assertEqual(int((want == 1).sum()), sum(per_shape), (gt, size))
                self.assertEqual(int((ours == 1).sum()), sum(per_shape), (gt, size))
        # the review's figures: 7 * 7 + 10 * 5 + 5 * 10 and 6 * 6 + 4 * 10 + 10 * 4
        self.assertEqual(sum(containing_anchors([400.0, 300, 420, 320])), 149)
        self.assertEqual(sum(containing_anchors([400.0, 302, 430, 332])), 116)

    def test_zero_area_gt_makes_no_positive(self):
        for size in PAPER_SIZES:
            empty, _ = self.compare([], size)
            for zero in ([400.0, 300, 400, 340], [400.0, 300, 460, 300], [400.0, 300, 400, 300]):
                ours, _ = self.compare([zero], size)
                np.testing.assert_array_equal(ours, empty)  # all inside anchors negative
                # beside another GT, the positives are that GT's only
                other, _ = self.compare([[100.0, 100, 300, 260]], size)
                ours, _ = self.compare([zero, [100.0, 100, 300, 260]], size)
                np.testing.assert_array_equal(ours == 1, other == 1)


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
        inside = rpn_oracle.inside_image(rpn_oracle.paper_anchors(*grid(SIZE, SIZE)), SIZE, SIZE)
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
    def test_ties_within_the_relative_tolerance(self):
        self.assertEqual(BestAnchorMatcher.TIE_RTOL, rpn_oracle.TIE_RTOL)
        m = BestAnchorMatcher([0.3, 0.7], [0, -1, 1], True, min_iou=0.0)
        best = 0.5
        iou = torch.tensor([[best, best * (1 - 1e-6), best * (1 - 1e-3), 0.1]],
                           dtype=torch.float64)
        # a relative 1e-6 below the best is a tie, 1e-3 below is not (0.4995: ignored)
        self.assertEqual(m(iou)[1].tolist(), [1, 1, -1, 0])
        # float32: the anchors' rounding
        self.assertEqual(m(iou.float())[1].tolist(), [1, 1, -1, 0])

    def test_rows_below_the_floor_are_not_promoted_even_within_the_tolerance(self):
        m = BestAnchorMatcher([0.3, 0.7], [0, -1, 1], True, min_iou=0.1)
        iou = torch.tensor([[0.1, 0.1 * (1 - 1e-6), 0.05], [0.0, 0.0, 0.25]])
        self.assertEqual(m(iou)[1].tolist(), [0, 0, 1])

    def test_negative_floor_is_the_literal_rule_on_every_row(self):
        m = BestAnchorMatcher([0.3, 0.7], [0, -1, 1], True, min_iou=-1.0)
        self.assertEqual(m(torch.zeros(1, 4))[1].tolist(), [1, 1, 1, 1])  # all tie at 0
        iou = torch.tensor([[0.2, 0.1, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
        self.assertEqual(m(iou)[1].tolist(), [1, 1, 1, 1])
        m = BestAnchorMatcher([0.3, 0.7], [0, -1, 1], True, min_iou=0.0)
        self.assertEqual(m(iou)[1].tolist(), [1, 0, 0, 0])

    def test_no_gt_and_no_prediction(self):
        m = BestAnchorMatcher([0.3, 0.7], [0, -1, 1], True, min_iou=0.0)
        self.assertEqual(m(torch.zeros(0, 3))[1].tolist(), [0, 0, 0])
        self.assertEqual(m(torch.zeros(2, 0))[1].tolist(), [])

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
