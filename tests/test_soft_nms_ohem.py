"""Soft-NMS (test time) and OHEM (the RoI sampler), against values worked out by hand."""
import math
import os
import unittest

import pytest
import torch

from tests.conftest import CONFIGS, TINY_MODEL, TINY_SCHEDULE, load_config, load_tool

# A (0.9) and B (0.8) overlap with IoU exactly 0.5: B = [0, 0, 10, 20] holds A = [0, 0, 10, 10],
# intersection 100, union 200. C (0.7) is far away.
BOXES = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 20], [50, 50, 60, 60]])
SCORES = torch.tensor([0.9, 0.8, 0.7])


class TestSoftNMS(unittest.TestCase):
    def test_linear(self):
        from frcnn_plugin.modeling.soft_nms import soft_nms

        keep, scores = soft_nms(BOXES, SCORES, "linear", iou_threshold=0.3)
        self.assertEqual(keep.tolist(), [0, 2, 1])  # B: 0.8 * (1 - 0.5) = 0.4, after C
        torch.testing.assert_close(scores, torch.tensor([0.9, 0.7, 0.4]))
        # IoU 0.5 below Nt = 0.6: B keeps its score
        keep, scores = soft_nms(BOXES, SCORES, "linear", iou_threshold=0.6)
        self.assertEqual(keep.tolist(), [0, 1, 2])
        torch.testing.assert_close(scores, SCORES)
        # the floor drops B (0.4 < 0.45)
        keep, _ = soft_nms(BOXES, SCORES, "linear", iou_threshold=0.3, score_threshold=0.45)
        self.assertEqual(keep.tolist(), [0, 2])

    def test_gaussian(self):
        from frcnn_plugin.modeling.soft_nms import soft_nms

        keep, scores = soft_nms(BOXES, SCORES, "gaussian", sigma=0.5)
        self.assertEqual(keep.tolist(), [0, 2, 1])
        b = 0.8 * math.exp(-0.25 / 0.5)  # 0.4852
        torch.testing.assert_close(scores, torch.tensor([0.9, 0.7, b]))

    def test_classes_ties_and_empty(self):
        from frcnn_plugin.modeling.soft_nms import batched_soft_nms, soft_nms

        # A and B in different classes: no decay
        keep, scores = batched_soft_nms(BOXES, SCORES, torch.tensor([0, 1, 0]), method="linear",
                                        iou_threshold=0.3)
        self.assertEqual(keep.tolist(), [0, 1, 2])
        torch.testing.assert_close(scores, SCORES)
        # equal scores, identical boxes: the lower index first, the other decays to 0 (linear)
        keep, scores = soft_nms(BOXES[:1].repeat(2, 1), torch.tensor([0.5, 0.5]), "linear")
        self.assertEqual(keep.tolist(), [0])
        keep, scores = soft_nms(torch.zeros(0, 4), torch.zeros(0), "gaussian")
        self.assertEqual((len(keep), len(scores)), (0, 0))
        with self.assertRaisesRegex(ValueError, "allowed: 'linear', 'gaussian'"):
            soft_nms(BOXES, SCORES, "hard")


class TestOHEMSelect(unittest.TestCase):
    def test_hardest_first_ties_by_index_and_nms(self):
        from frcnn_plugin.modeling.sampling import OHEMSampler

        losses = torch.tensor([0.1, 0.9, 0.5, 0.9, 0.3])
        boxes = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10],
                              [20, 0, 30, 10], [60, 0, 70, 10]])
        off = OHEMSampler(batch_size_per_image=3, bg_label=2, nms_thresh=1.0)
        self.assertEqual(off.select(losses, boxes).tolist(), [1, 3, 2])  # 0.9, 0.9 (tie), 0.5
        # NMS 0.7: box 3 is box 1 again (IoU 1), so the next hardest come in
        on = OHEMSampler(batch_size_per_image=3, bg_label=2, nms_thresh=0.7)
        self.assertEqual(on.select(losses, boxes).tolist(), [1, 2, 4])
        self.assertEqual(on.select(losses[:0], boxes[:0]).tolist(), [])
        # every labelled proposal is a candidate; -1 is left out
        pos, neg = off(torch.tensor([0, 2, -1, 1, 2]))
        self.assertEqual((pos.tolist(), neg.tolist()), ([0, 3], [1, 4]))
        with self.assertRaisesRegex(ValueError, "OHEM_NMS_THRESH=0.0"):
            OHEMSampler(batch_size_per_image=3, nms_thresh=0.0)


@pytest.mark.usefixtures("tiny_shapes", "one_thread")
class TestInTheModel(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_ohem_mines_the_highest_loss_rois(self):
        """The RoIs the box head is trained on are the candidates of highest loss, computed
        here from the predictor's outputs with the textbook formulas."""
        from detectron2.data import DatasetCatalog
        from detectron2.modeling import build_model
        from detectron2.structures import Boxes, Instances
        from detectron2.utils.events import EventStorage

        cfg = load_config("vgg16_frcnn_shapes_demo.yaml", *TINY_MODEL,
                          "MODEL.ROI_HEADS.SAMPLER.NAME", "OHEMSampler",
                          "MODEL.ROI_HEADS.OHEM_NMS_THRESH", "1.0",
                          "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA", "0.5")
        torch.manual_seed(0)
        model = build_model(cfg)
        heads = model.roi_heads
        record = DatasetCatalog.get("frcnn_test_train")[0]
        gt = Instances((64, 64), gt_boxes=Boxes(torch.tensor(
            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
             for a in record["annotations"]], dtype=torch.float32)),
            gt_classes=torch.tensor([a["category_id"] for a in record["annotations"]]))
        torch.manual_seed(1)
        xy, wh = torch.rand(60, 2) * 40, torch.rand(60, 2) * 20 + 8
        proposals = Instances((64, 64), proposal_boxes=Boxes(torch.cat([xy, xy + wh], 1)),
                              objectness_logits=torch.zeros(60))
        features = {"conv5": torch.randn(1, 512, 4, 4)}
        seen = []
        pooler_forward = heads.box_pooler.forward
        heads.box_pooler.forward = lambda x, boxes: seen.append(boxes[0].tensor.clone()) or \
            pooler_forward(x, boxes)
        heads.train()  # the demo's box head has no dropout: both passes see the same head
        with EventStorage() as storage:
            heads(None, features, [proposals], [gt])
        candidates, trained = seen[0], seen[1]
        self.assertEqual(len(trained), min(16, len(candidates)))
        # the losses, by hand: cross-entropy + smooth-L1 (beta 0.5) of the GT class's deltas
        with torch.no_grad(), EventStorage():
            sampled = heads.label_and_sample_proposals([proposals], [gt])[0]
            scores, deltas = heads.box_predictor(heads.box_head(
                heads.box_pooler([features["conv5"]], [sampled.proposal_boxes])))
        c = sampled.gt_classes
        ce = -torch.log_softmax(scores, 1)[torch.arange(len(c)), c]
        target = heads.box_predictor.box2box_transform.get_deltas(
            sampled.proposal_boxes.tensor, sampled.gt_boxes.tensor)
        d = (deltas.view(len(c), -1, 4)[torch.arange(len(c)), c.clamp(max=2)] - target).abs()
        box = torch.where(d < 0.5, 0.5 * d ** 2 / 0.5, d - 0.25).sum(1)
        loss = ce + torch.where(c < 3, box, torch.zeros_like(box))
        expected = sampled.proposal_boxes.tensor[torch.argsort(loss, descending=True)[:16]]
        self.assertEqual(sorted(map(tuple, trained.tolist())),
                         sorted(map(tuple, expected.tolist())))
        self.assertIn("roi_head/ohem_num_fg_samples", storage.latest())

    def test_ohem_on_a_batch_of_an_image_with_gt_and_one_without(self):
        """detectron2 leaves gt_boxes off the proposals of an image without GT: the mined RoIs
        of that image are its candidates of highest classification loss (all background),
        worked out here from the predictor's scores; the batch trains like the default
        sampler's."""
        from detectron2.data import DatasetCatalog
        from detectron2.modeling import build_model
        from detectron2.structures import Boxes, Instances
        from detectron2.utils.events import EventStorage

        cfg = load_config("vgg16_frcnn_shapes_demo.yaml", *TINY_MODEL,
                          "MODEL.ROI_HEADS.SAMPLER.NAME", "OHEMSampler",
                          "MODEL.ROI_HEADS.OHEM_NMS_THRESH", "1.0")
        torch.manual_seed(0)
        heads = build_model(cfg).roi_heads
        record = DatasetCatalog.get("frcnn_test_train")[0]
        with_gt = Instances((64, 64), gt_boxes=Boxes(torch.tensor(
            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
             for a in record["annotations"]], dtype=torch.float32)),
            gt_classes=torch.tensor([a["category_id"] for a in record["annotations"]]))
        without_gt = Instances((64, 64), gt_boxes=Boxes(torch.zeros(0, 4)),
                               gt_classes=torch.zeros(0, dtype=torch.int64))
        torch.manual_seed(1)
        proposals = []
        for _ in range(2):
            xy, wh = torch.rand(40, 2) * 40, torch.rand(40, 2) * 20 + 8
            proposals.append(Instances((64, 64), proposal_boxes=Boxes(torch.cat([xy, xy + wh], 1)),
                                       objectness_logits=torch.zeros(40)))
        features = {"conv5": torch.randn(2, 512, 4, 4)}
        seen = []
        pooler_forward = heads.box_pooler.forward
        heads.box_pooler.forward = lambda x, boxes: seen.append(
            [b.tensor.clone() for b in boxes]) or pooler_forward(x, boxes)
        heads.train()
        with EventStorage():
            _, losses = heads(None, features, proposals, [with_gt, without_gt])
        self.assertEqual(set(losses), {"loss_cls", "loss_box_reg"})
        self.assertTrue(all(bool(torch.isfinite(v)) for v in losses.values()), losses)
        # the image without GT: 40 proposals + no GT appended, all background candidates
        candidates, trained = seen[0][1], seen[1][1]
        self.assertEqual(len(candidates), 40)
        self.assertEqual(len(trained), 16)
        with torch.no_grad():
            scores, _ = heads.box_predictor(heads.box_head(
                heads.box_pooler([features["conv5"][1:]], [Boxes(candidates)])))
        background = scores.shape[1] - 1
        ce = -torch.log_softmax(scores, 1)[:, background]
        expected = candidates[torch.argsort(ce, descending=True)[:16]]
        self.assertEqual(sorted(map(tuple, trained.tolist())),
                         sorted(map(tuple, expected.tolist())))

    def test_ohem_loss_decreases(self):
        from detectron2.data import build_detection_train_loader
        from detectron2.engine import SimpleTrainer
        from detectron2.modeling import build_model
        from detectron2.solver import build_optimizer

        cfg = load_config("vgg16_frcnn_shapes_demo.yaml", *TINY_MODEL, *TINY_SCHEDULE,
                          "MODEL.ROI_HEADS.SAMPLER.NAME", "OHEMSampler", "SOLVER.BASE_LR", "0.01",
                          "DATASETS.TRAIN", "('frcnn_test_train',)")
        torch.manual_seed(0)
        model = build_model(cfg)
        trainer = SimpleTrainer(model, build_detection_train_loader(cfg),
                                build_optimizer(cfg, model))
        trainer.train(0, 10)
        losses = [v for v, _ in trainer.storage.history("total_loss").values()]
        self.assertEqual(len(losses), 10)
        self.assertTrue(all(math.isfinite(v) for v in losses))
        self.assertLess(sum(losses[-3:]) / 3, sum(losses[:3]) / 3)
        mined = trainer.storage.history("roi_head/ohem_num_fg_samples").latest() + \
            trainer.storage.history("roi_head/ohem_num_bg_samples").latest()
        self.assertLessEqual(mined, 16)  # BATCH_SIZE_PER_IMAGE of the tiny model

    def test_train_net_with_ohem_and_soft_nms(self):
        out = str(self.tmp / "ohem")
        train_net = load_tool("train_net")
        args = train_net.argument_parser().parse_args([
            "--config", os.path.join(CONFIGS, "vgg16_frcnn_shapes_demo.yaml"),
            *TINY_MODEL, *TINY_SCHEDULE, "MODEL.ROI_HEADS.SAMPLER.NAME", "OHEMSampler",
            "MODEL.ROI_HEADS.SOFT_NMS.METHOD", "gaussian",
            "DATASETS.TRAIN", "('frcnn_test_train',)", "DATASETS.TEST", "('frcnn_test_val',)",
            "OUTPUT_DIR", out])
        results = train_net.main(args)
        self.assertIn("AP50", results["bbox"])
