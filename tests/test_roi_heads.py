"""FRCNNROIHeads against the walk-through (800x800 image, 50x50 stride-16 random features,
2 000 proposals -> 128 RoIs, <= 32 foreground), and box encode/decode round trips."""
import unittest

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from detectron2.layers import ShapeSpec, batched_nms
from detectron2.modeling import build_roi_heads
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, ImageList, Instances, pairwise_iou
from detectron2.utils.events import EventStorage

from frcnn_plugin.modeling.roi_heads import FRCNNROIHeads
from frcnn_plugin.modeling.sampling import BalancedRandomSampler
from tests.conftest import load_config

SHAPE = {"conv5": ShapeSpec(channels=64, stride=16)}
NUM_CLASSES = 3


def build_heads(*opts):
    torch.manual_seed(0)
    cfg = load_config(
        "vgg16_frcnn.yaml",
        "MODEL.ROI_HEADS.NUM_CLASSES", str(NUM_CLASSES),
        "MODEL.ROI_BOX_HEAD.FC_DIM", "64",  # small fc6/fc7 for speed; the paper: 4096
        *opts,
    )
    return build_roi_heads(cfg, SHAPE)


def walkthrough(num_proposals=2000, seed=0):
    """GT instances and proposals: boxes jittered around the GTs (all IoUs) and random ones."""
    g = torch.Generator().manual_seed(seed)
    gt = Instances((800, 800))
    gt.gt_boxes = Boxes(torch.tensor([[100.0, 120, 300, 380], [420, 400, 700, 760],
                                      [40, 500, 180, 640]]))
    gt.gt_classes = torch.tensor([0, 1, 2])
    near = gt.gt_boxes.tensor.repeat(200, 1)
    near = near + torch.randn(near.shape, generator=g) * 40
    xy = torch.rand(num_proposals - len(near), 2, generator=g) * 700
    wh = torch.rand(num_proposals - len(near), 2, generator=g) * 250 + 16
    boxes = torch.cat([near, torch.cat([xy, xy + wh], dim=1)]).clamp(0, 800)
    boxes = torch.cat([boxes[:, :2], torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)], dim=1)
    proposals = Instances((800, 800), proposal_boxes=Boxes(boxes))
    proposals.objectness_logits = torch.randn(num_proposals, generator=g)
    features = {"conv5": torch.randn(1, 64, 50, 50, generator=g)}
    images = ImageList(torch.zeros(1, 3, 800, 800), [(800, 800)])
    return images, features, proposals, gt


class TestWalkThroughROIHeads(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.heads = build_heads()
        cls.images, cls.features, cls.proposals, cls.gt = walkthrough()

    def sample(self, heads=None, proposals=None):
        with EventStorage() as storage:
            (sampled,) = (heads or self.heads).label_and_sample_proposals(
                [proposals or self.proposals], [self.gt]
            )
        return sampled, {k: v.latest() for k, v in storage.histories().items()}

    def test_paper_components_and_values(self):
        heads = self.heads
        self.assertIsInstance(heads, FRCNNROIHeads)
        s = heads.sampler
        self.assertIsInstance(s, BalancedRandomSampler)
        self.assertEqual((s.batch_size_per_image, s.positive_fraction, s.bg_label),
                         (128, 0.25, NUM_CLASSES))
        self.assertTrue(heads.proposal_append_gt)
        pooler = heads.box_pooler.level_poolers[0]
        self.assertEqual(type(pooler).__name__, "RoIPool")
        self.assertEqual(tuple(heads.box_pooler.output_size), (7, 7))
        self.assertEqual(pooler.spatial_scale, 1.0 / 16)
        p = heads.box_predictor
        self.assertEqual(tuple(p.box2box_transform.weights), (10.0, 10.0, 5.0, 5.0))
        self.assertEqual(p.bbox_pred.out_features, 4 * NUM_CLASSES)  # class-specific
        self.assertEqual(p.cls_score.out_features, NUM_CLASSES + 1)
        self.assertEqual((p.test_score_thresh, p.test_nms_thresh, p.test_topk_per_image),
                         (0.05, 0.3, 100))

    def test_128_rois_at_most_32_foreground(self):
        sampled, stats = self.sample()
        self.assertEqual(len(sampled), 128)
        fg = sampled.gt_classes < NUM_CLASSES
        self.assertEqual(int(fg.sum()), 32)  # plenty of foreground here: exactly 25 %
        self.assertEqual((stats["roi_head/num_fg_samples"], stats["roi_head/num_bg_samples"]),
                         (32, 96))
        iou = pairwise_iou(sampled.proposal_boxes, sampled.gt_boxes).diagonal()
        self.assertTrue(bool((iou[fg] >= 0.5).all()))
        self.assertTrue(bool((iou[~fg] < 0.5).all()))
        best = pairwise_iou(sampled.proposal_boxes, self.gt.gt_boxes).max(dim=1).values
        self.assertTrue(bool((best[~fg] < 0.5).all()))  # background: no GT at >= 0.5
        matched_class = self.gt.gt_classes[pairwise_iou(
            sampled.proposal_boxes, self.gt.gt_boxes).argmax(dim=1)]
        self.assertTrue(torch.equal(sampled.gt_classes[fg], matched_class[fg]))

    def test_few_foreground_background_fills_in_and_gt_is_appended(self):
        far = Boxes(torch.tensor([[600.0, 20, 780, 200]]).repeat(500, 1))  # IoU 0 with all GTs
        proposals = Instances((800, 800), proposal_boxes=far, objectness_logits=torch.zeros(500))
        sampled, _ = self.sample(proposals=proposals)
        fg = sampled.gt_classes < NUM_CLASSES
        self.assertEqual((int(fg.sum()), len(sampled)), (3, 128))  # the 3 appended GT boxes
        self.assertTrue(torch.equal(sampled.proposal_boxes.tensor[fg].sort(0).values,
                                    self.gt.gt_boxes.tensor.sort(0).values))

    def test_background_iou_lower_bound_ignores_low_overlaps(self):
        heads = build_heads("MODEL.ROI_HEADS.IOU_THRESHOLDS", "[0.1, 0.5]",
                            "MODEL.ROI_HEADS.IOU_LABELS", "[-1, 0, 1]")
        sampled, _ = self.sample(heads=heads)
        bg = sampled.gt_classes == NUM_CLASSES
        best = pairwise_iou(sampled.proposal_boxes, self.gt.gt_boxes).max(dim=1).values
        self.assertTrue(bool(((best[bg] >= 0.1) & (best[bg] < 0.5)).all()))
        self.assertEqual(len(sampled), 128)
        # with [0.5] / [0, 1] (the walk-through) low-overlap proposals are background
        sampled, _ = self.sample()
        best = pairwise_iou(sampled.proposal_boxes, self.gt.gt_boxes).max(dim=1).values
        self.assertTrue(bool((best[sampled.gt_classes == NUM_CLASSES] < 0.1).any()))

    def test_deprecated_bg_iou_lo_warns_and_becomes_detectron2_keys(self):
        with self.assertWarnsRegex(FutureWarning, r"BG_IOU_LO is deprecated.*IOU_THRESHOLDS "
                                   r"\[0\.1, 0\.5\] with IOU_LABELS \[-1, 0, 1\]"):
            heads = build_heads("MODEL.ROI_HEADS.BG_IOU_LO", "0.1")
        _, labels = heads.proposal_matcher(torch.tensor([[0.05, 0.1, 0.3, 0.5, 0.9]]))
        self.assertEqual(labels.tolist(), [-1, 0, 0, 1, 1])
        _, labels = self.heads.proposal_matcher(torch.tensor([[0.0, 0.49, 0.5]]))
        self.assertEqual(labels.tolist(), [0, 0, 1])
        for value in ("0.5", "-0.1"):
            with self.assertRaises(ValueError) as ctx:
                build_heads("MODEL.ROI_HEADS.BG_IOU_LO", value)
            self.assertIn("MODEL.ROI_HEADS.BG_IOU_LO=" + value, str(ctx.exception))
            self.assertIn("allowed", str(ctx.exception))
        with self.assertRaises(ValueError) as ctx:
            build_heads("MODEL.ROI_HEADS.POSITIVE_FRACTION", "1.5")
        self.assertIn("MODEL.ROI_HEADS.POSITIVE_FRACTION=1.5", str(ctx.exception))

    def test_training_losses_and_inference_on_300_proposals(self):
        heads = self.heads
        with EventStorage():
            _, losses = heads(self.images, self.features, [self.proposals], [self.gt])
        self.assertEqual(set(losses), {"loss_cls", "loss_box_reg"})
        self.assertTrue(all(torch.isfinite(v) for v in losses.values()))
        heads.eval()
        try:
            with torch.no_grad():
                (det,), _ = heads(self.images, self.features, [self.proposals[:300]])
        finally:
            heads.train()
        self.assertLessEqual(len(det), 100)
        self.assertGreater(len(det), 0)
        self.assertTrue(bool((det.scores >= 0.05).all()))
        self.assertTrue(bool((det.pred_classes < NUM_CLASSES).all()))
        keep = batched_nms(det.pred_boxes.tensor, det.scores, det.pred_classes, 0.3)
        self.assertEqual(len(keep), len(det))  # per-class NMS at 0.3 already applied

    def test_roialign_is_selectable(self):
        heads = build_heads("MODEL.ROI_BOX_HEAD.POOLER_TYPE", "ROIAlignV2")
        self.assertEqual(type(heads.box_pooler.level_poolers[0]).__name__, "ROIAlign")
        with EventStorage():
            _, losses = heads(self.images, self.features, [self.proposals[:200]], [self.gt])
        self.assertTrue(all(torch.isfinite(v) for v in losses.values()))


class TestPredictorInit(unittest.TestCase):
    """fc 64 wide here: nn.Linear's default draws uniform within +-1/sqrt(64) (std
    1/sqrt(3 * 64) = 0.0722, biases too); the paper's: normal std 0.01 (class scores) and
    0.001 (box deltas), biases 0."""

    def test_paper_default_and_pytorch(self):
        for init, (cls_std, box_std, bias) in (("paper", (0.01, 0.001, False)),
                                               ("pytorch", (0.0722, 0.0722, True))):
            torch.manual_seed(0)
            heads = build_heads("MODEL.ROI_HEADS.NUM_CLASSES", "80", "MODEL.ROI_BOX_HEAD.FC_DIM",
                                "64", "MODEL.ROI_BOX_HEAD.PREDICTOR_INIT", init)
            pred = heads.box_predictor.requires_grad_(False)
            # 81 x 64 and 320 x 64 weights: the sample std within 3 % of the closed form
            self.assertAlmostEqual(float(pred.cls_score.weight.std()), cls_std,
                                   delta=0.03 * cls_std, msg=init)
            self.assertAlmostEqual(float(pred.bbox_pred.weight.std()), box_std,
                                   delta=0.03 * box_std, msg=init)
            if init == "pytorch":
                self.assertLessEqual(float(pred.bbox_pred.weight.abs().max()), 1 / 8)
            self.assertEqual(bool(pred.bbox_pred.bias.abs().max() > 0), bias, init)

    def test_bad_value_names_the_allowed(self):
        from frcnn_plugin.cli import ConfigError
        from frcnn_plugin.config_checks import validate_frcnn_config

        cfg = load_config("vgg16_frcnn.yaml", "MODEL.ROI_BOX_HEAD.PREDICTOR_INIT", "kaiming")
        with self.assertRaisesRegex(
                ConfigError, "MODEL.ROI_BOX_HEAD.PREDICTOR_INIT='kaiming'.*'paper', 'pytorch'"):
            validate_frcnn_config(cfg)

    def test_refused_where_no_heads_apply_it(self):
        """detectron2's StandardROIHeads do not read the key: 'pytorch' there is an error, not
        a silently different model; 'paper' (their own initialization) is accepted."""
        from benchmarks.peers import d2_builtin_config
        from frcnn_plugin.cli import ConfigError
        from frcnn_plugin.config_checks import validate_frcnn_config

        cfg = load_config("vgg16_frcnn_d2_heads.yaml", "MODEL.ROI_BOX_HEAD.PREDICTOR_INIT",
                          "pytorch")
        with self.assertRaisesRegex(
                ConfigError, "PREDICTOR_INIT='pytorch' with MODEL.ROI_HEADS.NAME="
                             "'StandardROIHeads'; allowed: 'paper'.*FRCNNROIHeads"):
            validate_frcnn_config(cfg)
        validate_frcnn_config(load_config("vgg16_frcnn_d2_heads.yaml"))
        # a subclass of FRCNNROIHeads applies it (accepted); an unregistered name does not
        from detectron2.modeling import ROI_HEADS_REGISTRY

        if "InitTestROIHeads" not in ROI_HEADS_REGISTRY:

            @ROI_HEADS_REGISTRY.register()
            class InitTestROIHeads(FRCNNROIHeads):
                pass

        validate_frcnn_config(load_config(
            "vgg16_frcnn.yaml", "MODEL.ROI_HEADS.NAME", "InitTestROIHeads",
            "MODEL.ROI_BOX_HEAD.PREDICTOR_INIT", "pytorch"))
        with self.assertRaisesRegex(ConfigError, "PREDICTOR_INIT='pytorch' with "
                                                 "MODEL.ROI_HEADS.NAME='NoSuchHeads'"):
            validate_frcnn_config(load_config(
                "vgg16_frcnn.yaml", "MODEL.ROI_HEADS.NAME", "NoSuchHeads",
                "MODEL.ROI_BOX_HEAD.PREDICTOR_INIT", "pytorch"))
        # the benchmark's detectron2 peer keeps detectron2's own initialization
        peer = d2_builtin_config(load_config("vgg16_frcnn_shapes_demo.yaml",
                                             "MODEL.ROI_BOX_HEAD.PREDICTOR_INIT", "pytorch"))
        self.assertEqual(peer.MODEL.ROI_BOX_HEAD.PREDICTOR_INIT, "paper")

    def test_constructor_argument(self):
        """Built from plain arguments (a Python config's ``roi_heads.predictor_init``): the
        same closed forms as through the YAML key; a bad value names the allowed ones."""
        from frcnn_plugin.cli import ConfigError

        cfg = load_config("vgg16_frcnn.yaml", "MODEL.ROI_HEADS.NUM_CLASSES", "80",
                          "MODEL.ROI_BOX_HEAD.FC_DIM", "64")
        torch.manual_seed(0)
        kwargs = FRCNNROIHeads.from_config(cfg, SHAPE)
        self.assertEqual(kwargs["predictor_init"], "paper")
        kwargs["predictor_init"] = "pytorch"
        pred = FRCNNROIHeads(**kwargs).box_predictor.requires_grad_(False)
        self.assertAlmostEqual(float(pred.bbox_pred.weight.std()), 0.0722, delta=0.03 * 0.0722)
        self.assertGreater(float(pred.cls_score.bias.abs().max()), 0)
        kwargs["predictor_init"] = "xavier"
        with self.assertRaisesRegex(ConfigError, "predictor_init\\)='xavier' is invalid; "
                                                 "allowed: 'paper', 'pytorch'"):
            FRCNNROIHeads(**kwargs)


@st.composite
def box_pairs(draw):
    """(anchors, targets) (N, 4) with sizes in [8, 500] and [1, 500]: width and height ratios
    stay below Box2BoxTransform's clamp (1000 / 16)."""
    n = draw(st.integers(1, 20))
    coord = st.floats(-200, 1000, allow_nan=False)
    src_size, dst_size = st.floats(8, 500), st.floats(1, 500)

    def boxes(size):
        xy = torch.tensor(draw(st.lists(st.tuples(coord, coord), min_size=n, max_size=n)))
        wh = torch.tensor(draw(st.lists(st.tuples(size, size), min_size=n, max_size=n)))
        return torch.cat([xy, xy + wh], dim=1).float()

    return boxes(src_size), boxes(dst_size)


class TestBoxCoding(unittest.TestCase):
    @settings(max_examples=50, deadline=None)
    @given(box_pairs(), st.sampled_from([(10.0, 10.0, 5.0, 5.0), (1.0, 1.0, 1.0, 1.0)]))
    def test_encode_decode_round_trip(self, pair, weights):
        anchors, targets = pair
        transform = Box2BoxTransform(weights=weights)
        deltas = transform.get_deltas(anchors, targets)
        decoded = transform.apply_deltas(deltas, anchors)
        torch.testing.assert_close(decoded, targets, rtol=1e-4, atol=2e-3)

    def test_deltas_are_the_tutorials_formulas(self):
        anchor = torch.tensor([[10.0, 20.0, 50.0, 100.0]])  # centre (30, 60), w 40, h 80
        target = torch.tensor([[20.0, 10.0, 80.0, 130.0]])  # centre (50, 70), w 60, h 120
        log15 = float(torch.log(torch.tensor(1.5)))
        want = torch.tensor([[20 / 40, 10 / 80, log15, log15]])
        got = Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0)).get_deltas(anchor, target)
        torch.testing.assert_close(got, want)
        got = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)).get_deltas(anchor, target)
        torch.testing.assert_close(got, want * torch.tensor([10.0, 10.0, 5.0, 5.0]))


if __name__ == "__main__":
    unittest.main()
