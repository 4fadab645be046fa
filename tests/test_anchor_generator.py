import unittest

import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling import ANCHOR_GENERATOR_REGISTRY, build_anchor_generator, build_model
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import frcnn_plugin.modeling.anchor_generator  # noqa: F401  (registers FRCNNAnchorGenerator)
from frcnn_plugin.modeling.anchor_generator import FRCNNAnchorGenerator
from tests.conftest import load_config

PAPER = dict(strides=[16], base_sizes=[16], scales=[[8, 16, 32]], aspect_ratios=[0.5, 1, 2])
RETINANET_STRIDES = [8, 16, 32, 64, 128]


def _features(*hws):
    return [torch.zeros(1, 1, h, w) for h, w in hws]


def _shapes(*strides):
    return [ShapeSpec(channels=8, stride=s) for s in strides]


class TestPresets(unittest.TestCase):
    def test_registered_and_interface(self):
        self.assertIs(ANCHOR_GENERATOR_REGISTRY.get("FRCNNAnchorGenerator"), FRCNNAnchorGenerator)
        gen = FRCNNAnchorGenerator(**PAPER, offset=0.5)
        self.assertEqual(gen.num_anchors, [9])
        self.assertEqual(gen.box_dim, 4)

    def test_paper_800x800(self):
        cfg = load_config("vgg16_frcnn_paper_anchors.yaml")
        gen = build_anchor_generator(cfg, _shapes(16))
        self.assertIsInstance(gen, FRCNNAnchorGenerator)
        anchors = gen(_features((50, 50)))[0]
        self.assertEqual(len(anchors), 22500)
        # Closed form: location (i, j) row major, then scale (outer), then ratio (inner).
        i, j, s, r = torch.meshgrid(
            torch.arange(50.0), torch.arange(50.0), torch.tensor([8.0, 16, 32]),
            torch.tensor([0.5, 1.0, 2.0]), indexing="ij")
        h, w = 16 * s * r.sqrt(), 16 * s / r.sqrt()
        cx, cy = 16 * j + 8, 16 * i + 8
        expected = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).view(-1, 4)
        torch.testing.assert_close(anchors.tensor, expected, atol=1e-4, rtol=0)
        self.assertEqual(int(anchors.inside_box((800, 800), 0).sum()), 8940)
        areas = sorted({round(a) for a in anchors.area().tolist()})
        self.assertEqual(areas, [128**2, 256**2, 512**2])

    def test_tutorial_256x256(self):
        cfg = load_config("anchors_tutorial.yaml")
        gen = build_anchor_generator(cfg, _shapes(32))
        self.assertEqual(gen.sizes, [[64.0, 128.0, 256.0]])
        anchors = gen(_features((16, 16)))[0]
        self.assertEqual(len(anchors), 2304)
        centres = anchors.get_centers().view(16, 16, 9, 2)
        self.assertTrue((centres[1, 2] == torch.tensor([64.0, 32.0])).all())  # 32 j, 32 i

    def test_retinanet_octave(self):
        cfg = load_config("retinanet_R50_FPN_octave_anchors.yaml")
        gen = build_anchor_generator(cfg, _shapes(*RETINANET_STRIDES))
        self.assertEqual(gen.num_anchors, [9] * 5)
        self.assertEqual(gen.sizes[0][0], 32.0)
        self.assertAlmostEqual(gen.sizes[-1][-1], 512 * 2 ** (2 / 3), places=6)  # 812.7
        self.assertAlmostEqual(gen.sizes[-1][-1], 812.749, places=3)
        # Identical to the model zoo's Base-RetinaNet SIZES with DefaultAnchorGenerator.
        sizes = [[x, x * 2 ** (1.0 / 3), x * 2 ** (2.0 / 3)] for x in [32, 64, 128, 256, 512]]
        ref = DefaultAnchorGenerator(
            sizes=sizes, aspect_ratios=[[0.5, 1.0, 2.0]], strides=RETINANET_STRIDES, offset=0.0)
        feats = _features((100, 167), (50, 84), (25, 42), (13, 21), (7, 11))
        for a, b in zip(gen(feats), ref(feats)):
            self.assertTrue(torch.equal(a.tensor, b.tensor))

    def test_same_yaml_name_swapped(self):
        for name, strides in (("Base-VGG16-FRCNN.yaml", [16]),
                              ("Base-RCNN-FPN.yaml", [4, 8, 16, 32, 64])):
            shapes = _shapes(*strides)
            ref = build_anchor_generator(load_config(name), shapes)
            gen = build_anchor_generator(
                load_config(name, "MODEL.ANCHOR_GENERATOR.NAME", "FRCNNAnchorGenerator"), shapes)
            self.assertIs(type(ref), DefaultAnchorGenerator)
            self.assertIsInstance(gen, FRCNNAnchorGenerator)
            feats = _features(*[(max(1, 96 // s), max(1, 64 // s)) for s in strides])
            for a, b in zip(gen(feats), ref(feats)):
                self.assertTrue(torch.equal(a.tensor, b.tensor))

    def test_scales_equal_explicit_sizes(self):
        strides = [4, 8, 16, 32, 64]
        cfg = load_config("R50_FPN_frcnn_anchors.yaml")
        gen = build_anchor_generator(cfg, _shapes(*strides))
        ref = DefaultAnchorGenerator(
            sizes=[[32], [64], [128], [256], [512]], aspect_ratios=[[0.5, 1.0, 2.0]],
            strides=strides, offset=cfg.MODEL.ANCHOR_GENERATOR.OFFSET)
        feats = _features((32, 24), (16, 12), (8, 6), (4, 3), (2, 2))
        for a, b in zip(gen(feats), ref(feats)):
            self.assertTrue(torch.equal(a.tensor, b.tensor))
        # Per-level base sizes and scales, several ratios.
        gen = FRCNNAnchorGenerator(strides=[8, 16], base_sizes=[10, 20],
                                   scales=[[1, 2], [3, 4]], aspect_ratios=[[1.0], [0.5, 2.0]])
        ref = DefaultAnchorGenerator(sizes=[[10, 20], [60, 80]],
                                     aspect_ratios=[[1.0], [0.5, 2.0]], strides=[8, 16])
        feats = _features((5, 7), (3, 4))
        self.assertEqual(gen.num_anchors, [2, 4])
        for a, b in zip(gen(feats), ref(feats)):
            self.assertTrue(torch.equal(a.tensor, b.tensor))


class TestCache(unittest.TestCase):
    def test_cache(self):
        gen = FRCNNAnchorGenerator(**PAPER)
        first = gen(_features((6, 5)))[0].tensor
        again = gen(_features((6, 5)))[0].tensor
        self.assertIs(again, first)
        other = gen(_features((5, 6)))[0].tensor
        self.assertEqual(other.shape, first.shape)
        self.assertFalse(torch.equal(other, first))
        fresh = DefaultAnchorGenerator._grid_anchors(gen, [(5, 6)])[0]
        self.assertTrue(torch.equal(other, fresh))
        small = FRCNNAnchorGenerator(**PAPER, cache_size=1)
        a = small(_features((6, 5)))[0].tensor
        small(_features((5, 6)))
        self.assertEqual(len(small._cache), 1)
        self.assertIsNot(small(_features((6, 5)))[0].tensor, a)
        self.assertTrue(torch.equal(small(_features((6, 5)))[0].tensor, a))
        with torch.inference_mode():  # inference tensors are kept apart from training ones
            self.assertIsNot(gen(_features((6, 5)))[0].tensor, first)
        gen.float()  # moving the module (.to, .half, ...) drops the cache
        self.assertEqual(len(gen._cache), 0)
        off = FRCNNAnchorGenerator(**PAPER, cache_size=0)
        self.assertIsNot(off(_features((6, 5)))[0].tensor, off(_features((6, 5)))[0].tensor)


class TestBadConfig(unittest.TestCase):
    def assert_bad(self, key, *opts, strides=(16,), allowed=None):
        cfg = load_config("vgg16_frcnn_paper_anchors.yaml", *opts)
        with self.assertRaises(ValueError) as ctx:
            build_anchor_generator(cfg, _shapes(*strides))
        msg = str(ctx.exception)
        self.assertIn("MODEL.ANCHOR_GENERATOR." + key, msg)
        if allowed:
            self.assertIn(allowed, msg)

    def test_ratios(self):
        self.assert_bad("ASPECT_RATIOS", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "[]")
        self.assert_bad("ASPECT_RATIOS", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "[[0.5, 0.0]]",
                        allowed="positive")
        self.assert_bad("ASPECT_RATIOS", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", "[[1.0], []]",
                        strides=(8, 16), allowed="non-empty")

    def test_sizes(self):
        base = ("MODEL.ANCHOR_GENERATOR.BASE_SIZES", "[]", "MODEL.ANCHOR_GENERATOR.SCALES", "[]")
        self.assert_bad("SIZES", *base, "MODEL.ANCHOR_GENERATOR.SIZES", "[[128, -256]]",
                        allowed="positive")
        self.assert_bad("SIZES", *base, "MODEL.ANCHOR_GENERATOR.SIZES", "[]")
        self.assert_bad("BASE_SIZES", "MODEL.ANCHOR_GENERATOR.BASE_SIZES", "[0]",
                        allowed="positive")
        self.assert_bad("BASE_SIZES", "MODEL.ANCHOR_GENERATOR.SCALES", "[]",
                        allowed="MODEL.ANCHOR_GENERATOR.SCALES")  # base size without scales

    def test_scales(self):
        self.assert_bad("SCALES", "MODEL.ANCHOR_GENERATOR.SCALES", "[[8, 0, 32]]",
                        allowed="positive")
        self.assert_bad("SCALES", "MODEL.ANCHOR_GENERATOR.SCALES", "[[]]", allowed="non-empty")
        self.assert_bad("OCTAVE_BASE_SCALE", "MODEL.ANCHOR_GENERATOR.SCALES", "[]",
                        "MODEL.ANCHOR_GENERATOR.OCTAVE_BASE_SCALE", "-1.0")
        self.assert_bad("SCALES_PER_OCTAVE", "MODEL.ANCHOR_GENERATOR.SCALES", "[]",
                        "MODEL.ANCHOR_GENERATOR.OCTAVE_BASE_SCALE", "4.0",
                        "MODEL.ANCHOR_GENERATOR.SCALES_PER_OCTAVE", "0")

    def test_level_count(self):
        self.assert_bad("SCALES", "MODEL.ANCHOR_GENERATOR.SCALES", "[[8], [16]]",
                        strides=(8, 16, 32), allowed="give 1 level (used for all) or 3")
        self.assert_bad("BASE_SIZES", "MODEL.ANCHOR_GENERATOR.BASE_SIZES", "[8, 16]",
                        strides=(8, 16, 32))
        self.assert_bad("ASPECT_RATIOS", "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS",
                        "[[1.0], [2.0]]", strides=(16,))
        self.assert_bad("SIZES", "MODEL.ANCHOR_GENERATOR.BASE_SIZES", "[]",
                        "MODEL.ANCHOR_GENERATOR.SCALES", "[]",
                        "MODEL.ANCHOR_GENERATOR.SIZES", "[[32], [64]]", strides=(8, 16, 32))

    def test_scales_and_octave(self):
        self.assert_bad("OCTAVE_BASE_SCALE", "MODEL.ANCHOR_GENERATOR.OCTAVE_BASE_SCALE", "4.0",
                        allowed="give one of them")

    def test_offset(self):
        for value in ("1.0", "-0.1"):
            self.assert_bad("OFFSET", "MODEL.ANCHOR_GENERATOR.OFFSET", value, allowed="[0, 1)")


def _inputs(size, boxes_per_image):
    torch.manual_seed(0)
    inputs = []
    for boxes in boxes_per_image:
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.gt_classes = torch.arange(len(boxes)) % 3
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
        inputs.append({"image": image, "instances": inst})
    return inputs


class TestDropIn(unittest.TestCase):
    """One training-mode forward of each model, with FRCNNAnchorGenerator built from the YAML."""

    def _train_forward(self, model, gen, inputs):
        self.assertIsInstance(gen, FRCNNAnchorGenerator)
        torch.manual_seed(0)
        model.train()
        with EventStorage():
            losses = model(inputs)
        self.assertTrue(losses)
        for name, value in losses.items():
            self.assertTrue(torch.isfinite(value).all(), name)
        return model, losses

    def _cache_intact(self, gen):
        # The model must not have modified the shared cached anchors in place.
        self.assertTrue(gen._cache)
        for (level, h, w, *_), anchors in gen._cache.items():
            ref = DefaultAnchorGenerator._grid_anchors(gen, [(h, w)] * (level + 1))[level]
            self.assertTrue(torch.equal(anchors, ref))

    def test_vgg16_frcnn_octave(self):
        cfg = load_config("vgg16_frcnn_octave.yaml", "MODEL.WEIGHTS", "", "MODEL.VGG.DEPTH", 11,
                          "MODEL.ROI_BOX_HEAD.FC_DIM", 64, "MODEL.ROI_HEADS.NUM_CLASSES", 3)
        torch.manual_seed(0)
        model = build_model(cfg)
        gen = model.proposal_generator.anchor_generator
        self.assertEqual([round(s, 1) for s in gen.sizes[0]], [128.0, 161.3, 203.2])
        # 224x224: the 128-203 px anchors fit inside, so the paper's boundary rule keeps some.
        inputs = _inputs(224, [[[40, 30, 200, 180]], [[10, 20, 150, 140], [100, 90, 210, 220]]])
        _, losses = self._train_forward(model, gen, inputs)
        self.assertGreater(losses["loss_rpn_cls"].detach().item(), 0)
        self._cache_intact(gen)

    def test_rpn_r18_fpn(self):
        cfg = load_config("R50_FPN_frcnn_anchors.yaml", "MODEL.WEIGHTS", "",
                          "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
                          "MODEL.ROI_HEADS.NUM_CLASSES", 3, "MODEL.FPN.OUT_CHANNELS", 32,
                          "MODEL.ROI_BOX_HEAD.FC_DIM", 64)
        torch.manual_seed(0)
        model = build_model(cfg)
        gen = model.proposal_generator.anchor_generator
        self.assertEqual(gen.sizes, [[32.0], [64.0], [128.0], [256.0], [512.0]])
        inputs = _inputs(128, [[[20, 30, 80, 100]], [[5, 5, 60, 50], [64, 70, 120, 124]]])
        _, losses = self._train_forward(model, gen, inputs)
        self.assertGreater(losses["loss_rpn_cls"].detach().item(), 0)
        self._cache_intact(gen)

    def test_retinanet_r18_octave(self):
        cfg = load_config("retinanet_R50_FPN_octave_anchors.yaml", "MODEL.WEIGHTS", "",
                          "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
                          "MODEL.RETINANET.NUM_CLASSES", 3, "MODEL.FPN.OUT_CHANNELS", 32,
                          "MODEL.RETINANET.NUM_CONVS", 1)
        torch.manual_seed(0)
        model = build_model(cfg)
        gen = model.anchor_generator
        self.assertEqual(gen.num_anchors, [9] * 5)
        inputs = _inputs(128, [[[20, 30, 80, 100]], [[5, 5, 60, 50]]])
        _, losses = self._train_forward(model, gen, inputs)
        self.assertEqual(set(losses), {"loss_cls", "loss_box_reg"})
        self._cache_intact(gen)


if __name__ == "__main__":
    unittest.main()
