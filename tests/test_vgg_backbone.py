import unittest

import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, ROI_BOX_HEAD_REGISTRY, build_backbone

import frcnn_plugin  # noqa: F401  (registers)
from frcnn_plugin.modeling import VGG, VGGFCHead
from tests.conftest import load_config


class TestRegistry(unittest.TestCase):
    def test_names_resolve(self):
        self.assertIs(BACKBONE_REGISTRY.get("build_vgg_backbone"), frcnn_plugin.build_vgg_backbone)
        self.assertIs(ROI_BOX_HEAD_REGISTRY.get("VGGFCHead"), VGGFCHead)


class TestVGG(unittest.TestCase):
    def test_vgg16_800_gives_50x50x512(self):
        cfg = load_config("Base-VGG16-FRCNN.yaml")
        backbone = build_backbone(cfg)
        self.assertIsInstance(backbone, VGG)
        self.assertEqual(backbone.output_shape(), {"conv5": ShapeSpec(channels=512, stride=16)})
        self.assertEqual(sum(len(b) for b in backbone.blocks), 13)  # conv1_1 ... conv5_3
        # A cheap check of the spatial arithmetic at 800x800: conv layers keep the size, the
        # four max-pools halve it; run it on one channel-light forward through VGG11.
        vgg11 = VGG(depth=11).eval()
        with torch.no_grad():
            out = vgg11(torch.zeros(1, 3, 800, 800))["conv5"]
        self.assertEqual(tuple(out.shape), (1, 512, 50, 50))

    def test_odd_sizes_and_multiple_outputs(self):
        vgg = VGG(depth=16, out_features=["conv3", "conv4", "conv5"]).eval()
        with torch.no_grad():
            out = vgg(torch.randn(2, 3, 70, 97))
        self.assertEqual({k: tuple(v.shape) for k, v in out.items()}, {
            "conv3": (2, 256, 17, 24), "conv4": (2, 512, 8, 12), "conv5": (2, 512, 4, 6)})
        self.assertEqual([s.stride for s in vgg.output_shape().values()], [4, 8, 16])
        self.assertTrue(all((v >= 0).all() for v in out.values()))  # after ReLU

    def test_depths_and_norm(self):
        for depth, n_convs in ((11, 8), (13, 10), (16, 13), (19, 16)):
            vgg = VGG(depth=depth, norm="BN")
            self.assertEqual(sum(len(b) for b in vgg.blocks), n_convs)
            self.assertIsInstance(vgg.conv1_1.norm, torch.nn.BatchNorm2d)
            self.assertIsNotNone(vgg.conv1_1.bias)  # as torchvision's vgg16_bn
        self.assertIsNone(VGG(depth=16).conv1_1.norm)

    def test_only_needed_blocks_built(self):
        vgg = VGG(depth=16, out_features=["conv3"])
        self.assertFalse(hasattr(vgg, "conv4_1"))

    def test_freeze_at_2_freezes_conv1_conv2(self):
        vgg = VGG(depth=16, norm="BN", freeze_at=2)
        vgg.train()
        x = torch.randn(2, 3, 32, 32)
        vgg(x)["conv5"].sum().backward()
        for name, p in vgg.named_parameters():
            frozen = name.startswith(("conv1_", "conv2_"))
            self.assertEqual(p.requires_grad, not frozen, name)
            if frozen:
                self.assertIsNone(p.grad, name)
            else:
                self.assertIsNotNone(p.grad, name)
                self.assertGreater(p.grad.abs().sum().item(), 0, name)
        # frozen BN layers keep their statistics in training mode
        from detectron2.layers import FrozenBatchNorm2d

        self.assertIsInstance(vgg.conv2_2.norm, FrozenBatchNorm2d)
        self.assertIsInstance(vgg.conv3_1.norm, torch.nn.BatchNorm2d)

    def test_freeze_from_config(self):
        cfg = load_config("Base-VGG16-FRCNN.yaml", "MODEL.BACKBONE.FREEZE_AT", "3")
        vgg = build_backbone(cfg)
        self.assertFalse(vgg.conv3_3.weight.requires_grad)
        self.assertTrue(vgg.conv4_1.weight.requires_grad)

    def test_bad_values(self):
        with self.assertRaisesRegex(ValueError, r"MODEL.VGG.DEPTH=17.*\[11, 13, 16, 19\]"):
            VGG(depth=17)
        with self.assertRaisesRegex(ValueError, r"MODEL.VGG.OUT_FEATURES=\['res4'\]"):
            VGG(out_features=["res4"])
        with self.assertRaisesRegex(ValueError, r"FREEZE_AT=6"):
            VGG(freeze_at=6)
        with self.assertRaisesRegex(ValueError, "gn"):
            VGG(norm="gn")
        with self.assertRaisesRegex(ValueError, "MODEL.VGG.INIT='kaiming'.*'torchvision'"):
            VGG(init="kaiming")

    def test_init(self):
        """conv3_1 (128 -> 256 channels, 3x3): torchvision's init is Kaiming-normal with fan-out,
        std sqrt(2 / (256 * 9)) = 0.0295; PyTorch's default is uniform with bound
        1 / sqrt(fan_in), std 1 / sqrt(3 * 128 * 9) = 0.0170."""
        torch.manual_seed(0)
        tv = VGG(depth=11, norm="BN", out_features=["conv3"], init="torchvision")
        tv.requires_grad_(False)
        w = tv.conv3_1.weight
        self.assertAlmostEqual(float(w.std()), (2 / (256 * 9)) ** 0.5, delta=0.0005)
        self.assertAlmostEqual(float(w.mean()), 0.0, delta=0.0005)
        self.assertEqual(float(tv.conv3_1.bias.abs().max()), 0.0)
        self.assertTrue(torch.equal(tv.conv3_1.norm.weight, torch.ones(256)))
        default = VGG(depth=11, out_features=["conv3"]).conv3_1.requires_grad_(False)
        self.assertAlmostEqual(float(default.weight.std()), (3 * 128 * 9) ** -0.5, delta=0.0005)
        self.assertLessEqual(float(default.weight.abs().max()), (128 * 9) ** -0.5)
        self.assertNotEqual(float(default.bias.abs().max()), 0.0)


class TestVGGFCHead(unittest.TestCase):
    def test_shapes_and_dropout(self):
        head = VGGFCHead(ShapeSpec(channels=512, height=7, width=7), fc_dim=4096, dropout=0.5)
        self.assertEqual(tuple(head.fc6.weight.shape), (4096, 25088))
        self.assertEqual(tuple(head.fc7.weight.shape), (4096, 4096))
        self.assertEqual(head.output_shape.channels, 4096)
        x = torch.randn(3, 512, 7, 7)
        head.eval()
        with torch.no_grad():
            a, b = head(x), head(x)
        self.assertTrue(torch.equal(a, b))  # no dropout at inference
        head.train()
        with torch.no_grad():
            c = head(x)
        self.assertFalse(torch.equal(a, c))  # dropout in training

    def test_from_config(self):
        cfg = load_config("Base-VGG16-FRCNN.yaml", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
                          "MODEL.ROI_BOX_HEAD.DROPOUT", "0.0")
        head = ROI_BOX_HEAD_REGISTRY.get("VGGFCHead")(cfg, ShapeSpec(channels=8, height=7, width=7))
        self.assertEqual(tuple(head.fc6.weight.shape), (64, 392))
        self.assertIsInstance(head.dropout, torch.nn.Identity)
        with self.assertRaisesRegex(ValueError, "DROPOUT=1.5"):
            VGGFCHead(ShapeSpec(channels=8, height=7, width=7), dropout=1.5)
