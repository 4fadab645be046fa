"""add_frcnn_config and the config checks (frcnn_plugin.config, frcnn_plugin.config_checks)."""

import unittest

from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_anchor_generator

from frcnn_plugin import add_frcnn_config
from frcnn_plugin.cli import ConfigError
from frcnn_plugin.config_checks import config_errors, validate_frcnn_config
from tests.conftest import load_config


class TestAddConfigTwice(unittest.TestCase):
    def test_second_call_keeps_merged_values(self):
        cfg = add_frcnn_config(get_cfg())
        cfg.merge_from_list([
            "MODEL.VGG.DEPTH", "11", "MODEL.VGG.OUT_FEATURES", "['conv4', 'conv5']",
            "MODEL.RPN.SAMPLER.SEED", "3", "MODEL.ANCHOR_GENERATOR.SCALES", "[[1, 2]]",
            "SOLVER.NONFINITE_LOSS", "skip", "TEST.VIS_PERIOD", "7",
            "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "64",  # a detectron2 key
        ])  # fmt: skip
        again = add_frcnn_config(cfg)
        self.assertIs(again, cfg)
        self.assertEqual(cfg.MODEL.VGG.DEPTH, 11)
        self.assertEqual(cfg.MODEL.VGG.OUT_FEATURES, ["conv4", "conv5"])
        self.assertEqual(cfg.MODEL.RPN.SAMPLER.SEED, 3)
        self.assertEqual(cfg.MODEL.RPN.SAMPLER.NAME, "BalancedRandomSampler")  # untouched
        self.assertEqual(cfg.MODEL.ANCHOR_GENERATOR.SCALES, [[1, 2]])
        self.assertEqual(cfg.SOLVER.NONFINITE_LOSS, "skip")
        self.assertEqual(cfg.TEST.VIS_PERIOD, 7)
        self.assertEqual(cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE, 64)

    def test_missing_keys_and_nodes_are_added(self):
        cfg = add_frcnn_config(get_cfg())
        del cfg.MODEL["VGG"]  # a whole node
        del cfg.MODEL.RPN.SAMPLER["SEED"]  # one key of a node
        cfg.MODEL.ROI_HEADS.SAMPLER.SEED = 5
        add_frcnn_config(cfg)
        self.assertEqual(cfg.MODEL.VGG.DEPTH, 16)  # the documented defaults
        self.assertEqual(cfg.MODEL.VGG.NORM, "")
        self.assertEqual(cfg.MODEL.RPN.SAMPLER.SEED, -1)
        self.assertEqual(cfg.MODEL.ROI_HEADS.SAMPLER.SEED, 5)

    def test_defaults_do_not_alias_between_configs(self):
        a = add_frcnn_config(get_cfg())
        b = add_frcnn_config(get_cfg())
        a.MODEL.VGG.OUT_FEATURES.append("conv4")
        self.assertEqual(b.MODEL.VGG.OUT_FEATURES, ["conv5"])


class TestAnchorSizesCheck(unittest.TestCase):
    """MODEL.ANCHOR_GENERATOR.SIZES is checked only where it is used."""

    def anchors(self, cfg, strides=(16,)):
        validate_frcnn_config(cfg)
        gen = build_anchor_generator(cfg, [ShapeSpec(channels=8, stride=s) for s in strides])
        return gen.sizes

    def test_sizes_empty_with_scales(self):
        # the paper: base 16 x scales 8, 16, 32
        cfg = load_config("vgg16_frcnn_paper_anchors.yaml", "MODEL.ANCHOR_GENERATOR.SIZES", "[]")
        self.assertEqual(self.anchors(cfg), [[128.0, 256.0, 512.0]])

    def test_sizes_empty_with_octave_scales(self):
        cfg = load_config("retinanet_R50_FPN_octave_anchors.yaml",
                          "MODEL.ANCHOR_GENERATOR.SIZES", "[[]]")
        sizes = self.anchors(cfg, strides=(8, 16, 32, 64, 128))
        # stride 8 x 4.0 x 2^(i/3): 32, 40.3, 50.8
        self.assertEqual([round(s, 1) for s in sizes[0]], [32.0, 40.3, 50.8])

    def test_sizes_empty_where_used(self):
        for name, opts in (
            ("vgg16_frcnn_paper_anchors.yaml", ["MODEL.ANCHOR_GENERATOR.SCALES", "[]"]),
            ("vgg16_frcnn.yaml", []),  # DefaultAnchorGenerator
            ("vgg16_frcnn_paper_anchors.yaml",  # FRCNNAnchorGenerator's octave off, no scales
             ["MODEL.ANCHOR_GENERATOR.SCALES", "[]", "MODEL.ANCHOR_GENERATOR.BASE_SIZES", "[]",
              "MODEL.ANCHOR_GENERATOR.OCTAVE_BASE_SCALE", "0.0"]),
        ):
            cfg = load_config(name, *opts, "MODEL.ANCHOR_GENERATOR.SIZES", "[]")
            with self.assertRaisesRegex(ConfigError, r"MODEL.ANCHOR_GENERATOR.SIZES=\[\] is "
                                        r"invalid; allowed: a non-empty list"):
                validate_frcnn_config(cfg)


class TestRPNSamplerCheck(unittest.TestCase):
    """MODEL.RPN.SAMPLER.NAME: a sampler that needs losses (OHEMSampler) is refused up front."""

    def test_ohem_for_the_rpn_is_refused_with_the_other_errors(self):
        cfg = load_config("vgg16_frcnn.yaml", "MODEL.RPN.SAMPLER.NAME", "OHEMSampler",
                          "MODEL.RPN.NMS_THRESH", "0.0")
        with self.assertRaises(ConfigError) as ctx:
            validate_frcnn_config(cfg)
        message = str(ctx.exception)
        self.assertIn("2 problems", message)  # listed beside the other bad value
        self.assertIn("MODEL.RPN.NMS_THRESH=0.0", message)
        line = [x for x in message.splitlines() if "MODEL.RPN.SAMPLER.NAME" in x][0]
        self.assertIn("MODEL.RPN.SAMPLER.NAME='OHEMSampler'", line)
        allowed = line.split("allowed:", 1)[1]
        self.assertIn("'BalancedRandomSampler'", allowed)
        self.assertNotIn("OHEMSampler", allowed)

    def test_ohem_in_the_roi_heads_and_unread_rpn_key_pass(self):
        validate_frcnn_config(load_config("vgg16_frcnn.yaml", "MODEL.ROI_HEADS.SAMPLER.NAME",
                                          "OHEMSampler"))
        # detectron2's RPN does not read MODEL.RPN.SAMPLER
        validate_frcnn_config(load_config("vgg16_frcnn_d2_heads.yaml", "MODEL.RPN.SAMPLER.NAME",
                                          "OHEMSampler"))


class TestConfigErrors(unittest.TestCase):
    """config_errors: what components reject while they are built becomes a ConfigError."""

    def test_value_naming_a_key_and_unregistered_name(self):
        from detectron2.modeling import build_model

        cfg = load_config("vgg16_frcnn_shapes_demo.yaml", "MODEL.VGG.DEPTH", "17")
        with self.assertRaisesRegex(ConfigError, r"MODEL.VGG.DEPTH=17 .*allowed: \[11, 13, 16, 19"):
            with config_errors(cfg):
                build_model(cfg)
        cfg = load_config("vgg16_frcnn_shapes_demo.yaml", "MODEL.RPN.HEAD_NAME", "SoftmaxHead")
        with self.assertRaisesRegex(ConfigError, "MODEL.RPN.HEAD_NAME='SoftmaxHead' is not "
                                    "registered in detectron2's RPN_HEAD_REGISTRY; allowed: "
                                    ".*SoftmaxRPNHead, StandardRPNHead"):
            with config_errors(cfg):
                build_model(cfg)

    def test_other_errors_pass_unchanged(self):
        cfg = load_config("vgg16_frcnn_shapes_demo.yaml")
        for error in (ValueError("shape mismatch (2, 3)"), KeyError("x"),
                      ValueError("FOO.BAR=1 is not a key of the config")):
            with self.assertRaises(type(error)) as cm:
                with config_errors(cfg):
                    raise error
            self.assertIs(cm.exception, error)
