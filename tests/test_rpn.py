"""FRCNNRPN and SoftmaxRPNHead against the walk-through: one 800x800 image, VGG16's stride-16
geometry (50x50 features; random, cheap features with 64 channels instead of a VGG forward)."""
import unittest

import numpy as np
import torch
import torch.nn.functional as F

from detectron2.layers import ShapeSpec
from detectron2.modeling import build_proposal_generator
from detectron2.structures import Boxes, ImageList, Instances, pairwise_iou
from detectron2.utils.events import EventStorage

import frcnn_plugin.modeling.meta_arch  # noqa: F401  (registers)
from frcnn_plugin.modeling.rpn import (
    FRCNNRPN,
    SoftmaxRPNHead,
    find_top_proposals_paper_order,
    flatten_rpn_outputs,
    resize_scale,
)
from frcnn_plugin.cli import ConfigError
from frcnn_plugin.modeling.sampling import (
    FRCNN_SAMPLER_REGISTRY,
    BalancedRandomSampler,
    OHEMSampler,
    build_sampler,
)
from tests import rpn_oracle
from tests.conftest import load_config

SHAPE = {"conv5": ShapeSpec(channels=64, stride=16)}
GT_BOXES = [[100.0, 120, 300, 380], [420, 400, 700, 760], [40, 500, 180, 640], [0, 0, 60, 90]]


def build_rpn(*opts):
    torch.manual_seed(0)
    return build_proposal_generator(load_config("vgg16_frcnn.yaml", *opts), SHAPE)


def walkthrough_inputs(original=(800, 800), boxes=GT_BOXES):
    images = ImageList(torch.zeros(1, 3, 800, 800), [(800, 800)])
    images.original_sizes = [original]
    features = {"conv5": torch.randn(1, 64, 50, 50, generator=torch.Generator().manual_seed(0))}
    gt = Instances((800, 800), gt_boxes=Boxes(torch.tensor(boxes)))
    gt.gt_classes = torch.zeros(len(boxes), dtype=torch.int64)
    return images, features, gt


def expected_labels(anchors, gt_boxes, size=(800, 800)):
    """The paper's rule from the independent float64 oracle (:mod:`tests.rpn_oracle`: its own
    anchors, continuous inside test, IoU and tie rule), checked to describe the same anchors.

    Returns:
        (labels (R,) int8 tensor, inside (R,) bool tensor).
    """
    height, width = size
    ours = rpn_oracle.paper_anchors(height // 16, width // 16)
    np.testing.assert_allclose(anchors.tensor.numpy(), ours, rtol=0, atol=1e-3)
    labels = rpn_oracle.rpn_labels(ours, gt_boxes.tensor.numpy(), height, width)
    inside = rpn_oracle.inside_image(ours, height, width)
    return torch.from_numpy(labels).to(torch.int8), torch.from_numpy(inside)


class TestWalkThroughRPN(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rpn = build_rpn()
        cls.images, cls.features, cls.gt = walkthrough_inputs()
        cls.anchors = Boxes.cat(cls.rpn.anchor_generator([cls.features["conv5"]]))

    def test_paper_components_and_values(self):
        rpn = self.rpn
        self.assertIsInstance(rpn, FRCNNRPN)
        self.assertIsInstance(rpn.rpn_head, SoftmaxRPNHead)
        self.assertEqual(rpn.rpn_head.objectness_logits.out_channels, 2 * 9)
        self.assertEqual(rpn.rpn_head.anchor_deltas.out_channels, 4 * 9)
        for conv in (rpn.rpn_head.conv, rpn.rpn_head.objectness_logits):
            self.assertLess(abs(conv.weight.std().item() - 0.01), 0.002)
            self.assertEqual(conv.bias.abs().max().item(), 0.0)
        s = rpn.sampler
        self.assertIsInstance(s, BalancedRandomSampler)
        self.assertEqual((s.batch_size_per_image, s.positive_fraction, s.bg_label), (256, 0.5, 0))
        self.assertEqual((rpn.pre_nms_topk, rpn.post_nms_topk),
                         ({True: 12000, False: 6000}, {True: 2000, False: 300}))
        self.assertEqual((rpn.nms_thresh, rpn.min_box_size, rpn.anchor_boundary_thresh),
                         (0.7, 16.0, 0))
        self.assertEqual((rpn.loss_normalization, rpn.loss_lambda, rpn.smooth_l1_beta),
                         ("paper", 10.0, 1.0))
        self.assertTrue(rpn.min_size_in_original_pixels)

    def test_anchor_geometry_22500_anchors_8940_inside(self):
        self.assertEqual(len(self.anchors), 50 * 50 * 9)
        self.assertEqual(int(self.anchors.inside_box((800, 800), 0).sum()), 8940)

    def test_labels_follow_the_paper_exactly(self):
        matched, labels = self.rpn._label_anchors(self.anchors, self.gt.gt_boxes, (800, 800))
        expected, inside = expected_labels(self.anchors, self.gt.gt_boxes)
        self.assertTrue(torch.equal(labels, expected))
        self.assertTrue(bool((labels[~inside] == -1).all()))
        self.assertLessEqual(int((labels >= 0).sum()), 8940)
        # Every GT has a positive anchor matched to it, also the one in the corner whose best
        # anchors are all cross-boundary: its best inside anchor. detectron2's RPN matches all
        # anchors first and discards the outside ones afterwards, which leaves that GT none.
        iou = pairwise_iou(self.gt.gt_boxes, self.anchors)
        ours = [int(((labels == 1) & (matched == g)).sum()) for g in range(len(iou))]
        _, d2_labels = self.rpn.anchor_matcher(iou)
        d2_labels[~inside] = -1
        d2 = [int(((d2_labels == 1) & (iou[g] > 0)).sum()) for g in range(len(iou))]
        self.assertTrue(all(n > 0 for n in ours))
        self.assertEqual(d2[3], 0)

    def test_sample_256_at_most_128_positives_from_the_labelled_inside_anchors(self):
        _, labelled = self.rpn._label_anchors(self.anchors, self.gt.gt_boxes, (800, 800))
        _, inside = expected_labels(self.anchors, self.gt.gt_boxes)
        (sampled,), _ = self.rpn.label_and_sample_anchors([self.anchors], [self.gt])
        pos, neg = sampled == 1, sampled == 0
        self.assertLess(int(pos.sum()), 128)  # few positives: negatives fill in
        self.assertEqual(int(pos.sum()), int((labelled == 1).sum()))
        self.assertEqual(int(pos.sum() + neg.sum()), 256)
        self.assertTrue(bool((labelled[pos] == 1).all() and (labelled[neg] == 0).all()))
        self.assertFalse(bool(((pos | neg) & ~inside).any()))  # none ignored or outside

    def test_many_positives_are_capped_at_128(self):
        inside = self.anchors.tensor[self.anchors.inside_box((800, 800), 0)]
        gt = Instances((800, 800), gt_boxes=Boxes(inside[::40]))  # 224 GTs = anchors
        (sampled,), _ = self.rpn.label_and_sample_anchors([self.anchors], [gt])
        self.assertEqual((int((sampled == 1).sum()), int((sampled == 0).sum())), (128, 128))

    def test_2000_proposals_in_training_300_at_test_and_statistics(self):
        rpn = self.rpn
        try:
            with EventStorage() as storage:
                proposals, losses = rpn(self.images, self.features, [self.gt])
            rpn.eval()
            with torch.no_grad():
                test_proposals, test_losses = rpn(self.images, self.features)
        finally:
            rpn.train()
        self.assertEqual(len(proposals[0]), 2000)
        self.assertEqual(len(test_proposals[0]), 300)
        self.assertEqual(test_losses, {})
        self.assertEqual(set(losses), {"loss_rpn_cls", "loss_rpn_loc"})
        latest = {k: v.latest() for k, v in storage.histories().items()}
        self.assertEqual(latest["rpn/num_proposals"], 2000)
        self.assertEqual(latest["rpn/num_pos_anchors"] + latest["rpn/num_neg_anchors"], 256)
        boxes = proposals[0].proposal_boxes
        sides = boxes.tensor[:, 2:] - boxes.tensor[:, :2]
        self.assertTrue(bool((sides >= 16).all()))  # min size 16 (the paper's order keeps 16)
        self.assertTrue(bool((boxes.tensor >= 0).all() and (boxes.tensor <= 800).all()))  # clip
        scores = proposals[0].objectness_logits
        self.assertTrue(bool((scores[:-1] >= scores[1:]).all()))  # sorted by objectness


class TestProposalOrder(unittest.TestCase):
    """MODEL.RPN.PROPOSAL_ORDER on three boxes of a 100 x 100 image, min size 16, pre-NMS top 2:
    A 10 x 10 (score 3), B 16 x 16 (score 2), C 40 x 40 (score 1), no overlaps.
    paper: drop sides < 16 (A) -> top 2 (B, C) -> NMS -> [B, C].
    detectron2: top 2 (A, B) -> drop sides <= 16 (A and B) -> NMS -> []."""

    BOXES = torch.tensor([[[10.0, 10, 20, 20], [30, 30, 46, 46], [50, 50, 90, 90]]])
    SCORES = torch.tensor([[3.0, 2.0, 1.0]])

    def proposals(self, order):
        rpn = build_rpn("MODEL.RPN.PROPOSAL_ORDER", order, "MODEL.RPN.PRE_NMS_TOPK_TEST", "2",
                        "MODEL.RPN.POST_NMS_TOPK_TEST", "10").eval()
        (result,) = rpn._top_proposals([self.BOXES], [self.SCORES], (100, 100), 16.0)
        return result.proposal_boxes.tensor.tolist(), result.objectness_logits.tolist()

    def test_paper_order(self):
        self.assertEqual(self.proposals("paper"), ([[30, 30, 46, 46], [50, 50, 90, 90]], [2, 1]))

    def test_detectron2_order(self):
        self.assertEqual(self.proposals("detectron2"), ([], []))

    def test_paper_order_clips_before_measuring(self):
        # [-30, 10, 12, 40] clipped to [0, 10, 12, 40]: 12 px wide < 16, dropped; the box
        # [90, 0, 130, 20] clipped to [90, 0, 100, 20]: 10 px wide, dropped.
        boxes = torch.tensor([[[-30.0, 10, 12, 40], [90, 0, 130, 20], [0, 0, 100, 100]]])
        (result,) = find_top_proposals_paper_order(
            [boxes], [torch.tensor([[3.0, 2.0, 1.0]])], [(100, 100)], 0.7, 10, 10, 16.0, False
        )
        self.assertEqual(result.proposal_boxes.tensor.tolist(), [[0.0, 0.0, 100.0, 100.0]])

    def test_paper_order_nms_and_post_topk(self):
        # D and E overlap with IoU 10000 / 11000 = 0.91 > 0.7: E (lower
        # score) is suppressed; F is
        # apart; post-NMS top 1 keeps D only.
        boxes = torch.tensor([[[0.0, 0, 100, 100], [0, 0, 100, 110], [200, 200, 300, 300]]])
        scores = torch.tensor([[5.0, 4.0, 3.0]])
        (all_kept,) = find_top_proposals_paper_order(
            [boxes], [scores], [(400, 400)], 0.7, 10, 10, 16.0, False)
        (top1,) = find_top_proposals_paper_order(
            [boxes], [scores], [(400, 400)], 0.7, 10, 1, 16.0, False)
        self.assertEqual(all_kept.objectness_logits.tolist(), [5.0, 3.0])
        self.assertEqual(top1.objectness_logits.tolist(), [5.0])

    def test_non_finite_boxes(self):
        boxes = torch.tensor([[[0.0, 0, 50, 50], [float("nan"), 0, 50, 50]]])
        scores = torch.tensor([[1.0, 2.0]])
        (result,) = find_top_proposals_paper_order(
            [boxes], [scores], [(100, 100)], 0.7, 10, 10, 0.0, False)
        self.assertEqual(result.objectness_logits.tolist(), [1.0])
        with self.assertRaises(FloatingPointError):
            find_top_proposals_paper_order([boxes], [scores], [(100, 100)], 0.7, 10, 10, 0.0,
                                           True)

    def test_bad_order_names_the_key(self):
        with self.assertRaisesRegex(ValueError, r"MODEL.RPN.PROPOSAL_ORDER='best'.*allowed"):
            build_rpn("MODEL.RPN.PROPOSAL_ORDER", "best")


class TestLosses(unittest.TestCase):
    """The three normalizations against the formulas, on the same labels and predictions."""

    @classmethod
    def setUpClass(cls):
        rpn = build_rpn()
        images, features, gt = walkthrough_inputs()
        cls.anchors = rpn.anchor_generator([features["conv5"]])
        torch.manual_seed(1)
        (cls.labels,), (cls.matched,) = rpn.label_and_sample_anchors(cls.anchors, [gt])
        cls.logits = torch.randn(1, 22500, 2)
        cls.deltas = torch.randn(1, 22500, 4) * 0.1
        valid, pos = cls.labels >= 0, cls.labels == 1
        cls.ce = F.cross_entropy(cls.logits[0][valid], cls.labels[valid].long(), reduction="sum")
        target = rpn.box2box_transform.get_deltas(cls.anchors[0].tensor[pos], cls.matched[pos])
        cls.l1 = F.smooth_l1_loss(cls.deltas[0][pos], target, beta=1.0, reduction="sum")
        cls.num_valid, cls.num_pos = int(valid.sum()), int(pos.sum())

    def losses(self, *opts):
        rpn = build_rpn(*opts)
        with EventStorage():
            out = rpn.losses(self.anchors, [self.logits], [self.labels.clone()], [self.deltas],
                             [self.matched])
        return out["loss_rpn_cls"].item(), out["loss_rpn_loc"].item()

    def test_detectron2_paper_and_positives(self):
        n = "MODEL.RPN.LOSS_NORMALIZATION"
        self.assertEqual(self.num_valid, 256)
        cases = {
            "detectron2": (self.ce / 256, self.l1 / 256),
            "paper": (self.ce / 256, 10 * self.l1 / (50 * 50)),
            "positives": (self.ce / 256, 10 * self.l1 / self.num_pos),
        }
        for mode, expected in cases.items():
            for got, want in zip(self.losses(n, mode), expected):
                self.assertAlmostEqual(got, want.item(), places=5, msg=mode)
        got = self.losses(n, "paper", "MODEL.RPN.LOSS_LAMBDA", "1.0",
                          "MODEL.RPN.LOSS_WEIGHT", "2.0", "MODEL.RPN.BBOX_REG_LOSS_WEIGHT", "3.0")
        self.assertAlmostEqual(got[0], 2 * self.ce.item() / 256, places=5)
        self.assertAlmostEqual(got[1], 6 * self.l1.item() / 2500, places=5)

    def test_sigmoid_head_uses_binary_cross_entropy(self):
        rpn = build_rpn("MODEL.RPN.HEAD_NAME", "StandardRPNHead")
        logit = self.logits[..., 1] - self.logits[..., 0]
        with EventStorage():
            out = rpn.losses(self.anchors, [logit], [self.labels.clone()], [self.deltas],
                             [self.matched])
        # CE over two scores == BCE over their difference
        self.assertAlmostEqual(out["loss_rpn_cls"].item(), self.ce.item() / 256, places=5)


class TestHeadsAndOptions(unittest.TestCase):
    def test_two_score_layout_and_ranking(self):
        x = torch.arange(18, dtype=torch.float32).view(1, 18, 1, 1).repeat(1, 1, 2, 3)
        deltas = torch.arange(36, dtype=torch.float32).view(1, 36, 1, 1).repeat(1, 1, 2, 3)
        (flat,), (flat_deltas,) = flatten_rpn_outputs([x], [deltas], [9])
        self.assertEqual(tuple(flat.shape), (1, 2 * 3 * 9, 2))
        self.assertEqual(flat[0, :9, 0].tolist(), list(range(9)))  # background: channels 0..8
        self.assertEqual(flat[0, :9, 1].tolist(), list(range(9, 18)))  # foreground: 9..17
        # deltas: anchor a of a location has channels 4a .. 4a + 3
        self.assertEqual(flat_deltas[0, 1].tolist(), [4.0, 5.0, 6.0, 7.0])
        (sigmoid,), _ = flatten_rpn_outputs([x[:, :9]], [deltas], [9])
        self.assertEqual(sigmoid[0, :9].tolist(), list(range(9)))  # detectron2's layout
        scores = torch.randn(5, 2)
        diff = FRCNNRPN.objectness_scores(scores[None])[0]
        torch.testing.assert_close(torch.sigmoid(diff), scores.softmax(-1)[:, 1])
        with self.assertRaises(ValueError):
            flatten_rpn_outputs([torch.zeros(1, 5, 2, 2)], [torch.zeros(1, 36, 2, 2)], [9])

    def test_sigmoid_head_forward(self):
        rpn = build_rpn("MODEL.RPN.HEAD_NAME", "StandardRPNHead")
        images, features, gt = walkthrough_inputs()
        with EventStorage():
            proposals, losses = rpn(images, features, [gt])
        self.assertEqual(len(proposals[0]), 2000)
        self.assertTrue(all(torch.isfinite(v) for v in losses.values()))

    def test_min_size_in_original_pixels(self):
        rpn = build_rpn()
        images, _, _ = walkthrough_inputs(original=(400, 400))  # resized x2
        self.assertEqual(rpn.min_box_sizes(images), [32.0])
        self.assertEqual(resize_scale((600, 1000), (300, 500)), 2.0)
        del images.original_sizes
        with self.assertRaises(ValueError) as ctx:
            rpn.min_box_sizes(images)
        message = str(ctx.exception)
        self.assertIn("MODEL.PROPOSAL_GENERATOR.MIN_SIZE_IN_ORIGINAL_PIXELS=True", message)
        self.assertIn("FRCNNGeneralizedRCNN", message)
        rpn = build_rpn("MODEL.PROPOSAL_GENERATOR.MIN_SIZE_IN_ORIGINAL_PIXELS", "False")
        self.assertEqual(rpn.min_box_sizes(images), [16.0])  # input pixels, as detectron2

    def test_min_size_is_applied_per_image(self):
        rpn = build_rpn().eval()
        images, features, _ = walkthrough_inputs()
        images = ImageList(torch.zeros(2, 3, 800, 800), [(800, 800), (800, 800)])
        images.original_sizes = [(800, 800), (100, 100)]  # min sizes 16 and 128
        features = {"conv5": features["conv5"].repeat(2, 1, 1, 1)}
        with torch.no_grad():
            a, b = rpn(images, features)[0]
        self.assertTrue(bool(a.proposal_boxes.nonempty(threshold=16).all()))
        self.assertTrue(bool(b.proposal_boxes.nonempty(threshold=128).all()))
        self.assertFalse(bool(a.proposal_boxes.nonempty(threshold=128).all()))

    def test_cross_boundary_anchors_kept_with_negative_boundary_thresh(self):
        rpn = build_rpn("MODEL.RPN.BOUNDARY_THRESH", "-1")
        _, features, gt = walkthrough_inputs()
        anchors = Boxes.cat(rpn.anchor_generator([features["conv5"]]))
        _, labels = rpn._label_anchors(anchors, gt.gt_boxes, (800, 800))
        self.assertTrue(bool((labels[~anchors.inside_box((800, 800), 0)] >= 0).any()))

    def test_sampler_swap_by_name(self):
        if "TakeFirstSampler" not in FRCNN_SAMPLER_REGISTRY:

            @FRCNN_SAMPLER_REGISTRY.register()
            class TakeFirstSampler(BalancedRandomSampler):
                def __call__(self, labels):
                    pos = torch.nonzero(labels == 1).flatten()[:1]
                    return pos, torch.nonzero(labels == 0).flatten()[:3]

        rpn = build_rpn("MODEL.RPN.SAMPLER.NAME", "TakeFirstSampler")
        _, features, gt = walkthrough_inputs()
        anchors = rpn.anchor_generator([features["conv5"]])
        (labels,), _ = rpn.label_and_sample_anchors(anchors, [gt])
        self.assertEqual((int((labels == 1).sum()), int((labels == 0).sum())), (1, 3))

    def test_samplers_that_need_losses_are_refused(self):
        # OHEMSampler returns every labelled anchor and leaves the mining by loss to the ROI
        # heads; the RPN has no such step, so it would train on all ~9 000 labelled anchors.
        with self.assertRaises(ConfigError) as ctx:
            build_rpn("MODEL.RPN.SAMPLER.NAME", "OHEMSampler")
        message = str(ctx.exception)
        self.assertIn("MODEL.RPN.SAMPLER.NAME='OHEMSampler'", message)
        allowed = message.split("allowed:", 1)[1]
        self.assertIn("'BalancedRandomSampler'", allowed)
        self.assertNotIn("OHEMSampler", allowed)

        # also when the object is given directly (Python configs), and for any such sampler
        class LossMiner(BalancedRandomSampler):
            needs_losses = True

        kwargs = FRCNNRPN.from_config(load_config("vgg16_frcnn.yaml"), SHAPE)
        for sampler in (OHEMSampler(batch_size_per_image=256),
                        LossMiner(batch_size_per_image=256, positive_fraction=0.5)):
            kwargs["sampler"] = sampler
            with self.assertRaisesRegex(ConfigError, "MODEL.RPN.SAMPLER.NAME='{}'.*allowed".format(
                    type(sampler).__name__)):
                FRCNNRPN(**kwargs)
        kwargs["sampler"] = build_sampler(batch_size_per_image=256, positive_fraction=0.5)
        self.assertIs(FRCNNRPN(**kwargs).sampler, kwargs["sampler"])

    def test_softmax_head_with_detectron2_rpn_is_a_clear_error(self):
        from detectron2.modeling.proposal_generator.rpn import RPN

        with self.assertRaises(ValueError) as ctx:
            build_rpn("MODEL.PROPOSAL_GENERATOR.NAME", "RPN")
        message = str(ctx.exception)
        self.assertIn("MODEL.PROPOSAL_GENERATOR.NAME='RPN'", message)
        self.assertIn("'FRCNNRPN'", message)
        self.assertIn("'StandardRPNHead'", message)
        # with the sigmoid head detectron2's RPN builds and runs on the same config
        rpn = build_rpn("MODEL.PROPOSAL_GENERATOR.NAME", "RPN",
                        "MODEL.RPN.HEAD_NAME", "StandardRPNHead")
        self.assertIs(type(rpn), RPN)

    def test_config_errors_name_key_value_and_allowed(self):
        cases = [
            (("MODEL.RPN.LOSS_NORMALIZATION", "mean"), "MODEL.RPN.LOSS_NORMALIZATION='mean'"),
            (("MODEL.RPN.LOSS_LAMBDA", "0.0"), "MODEL.RPN.LOSS_LAMBDA=0.0"),
            (("MODEL.RPN.POSITIVE_FRACTION", "0.0"), "MODEL.RPN.POSITIVE_FRACTION=0.0"),
            (("MODEL.RPN.BATCH_SIZE_PER_IMAGE", "0"), "MODEL.RPN.BATCH_SIZE_PER_IMAGE=0"),
            (("MODEL.RPN.SAMPLER.NAME", "Nope"), "MODEL.RPN.SAMPLER.NAME='Nope'"),
        ]
        for opts, message in cases:
            with self.assertRaises(ValueError) as ctx:
                build_rpn(*opts)
            self.assertIn(message, str(ctx.exception))
            self.assertIn("allowed", str(ctx.exception))


if __name__ == "__main__":
    unittest.main()
