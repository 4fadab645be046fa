import os
import subprocess
import sys
import tempfile
import unittest

import torch
import torchvision

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

import frcnn_plugin  # noqa: F401
from frcnn_plugin.modeling import VGG
from frcnn_plugin.weights import convert_torchvision_vgg, load_state_dict_file, save_checkpoint
from tests.conftest import REPO, load_config


def torchvision_state(arch):
    """A state dict with torchvision's keys and shapes and random values (no download)."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    if arch.endswith("_bn"):  # non-trivial BN statistics, so that a mix-up would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
    return model, model.state_dict()


class TestConvertVGG16(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tv_model, cls.tv_state = torchvision_state("vgg16")
        cls.tmp = tempfile.TemporaryDirectory()
        cls.path = os.path.join(cls.tmp.name, "vgg16_tv.pth")
        torch.save(cls.tv_state, cls.path)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_cli_round_trip_into_faster_rcnn(self):
        out = os.path.join(self.tmp.name, "d2.pth")
        subprocess.run(
            [sys.executable, os.path.join(REPO, "tools", "convert_vgg_weights.py"), self.path, out],
            check=True,
            capture_output=True,
        )
        cfg = load_config("Base-VGG16-FRCNN.yaml", "MODEL.ROI_HEADS.NUM_CLASSES", "3")
        model = build_model(cfg).eval()
        ckpt = torch.load(out, map_location="cpu", weights_only=True)
        incompatible = model.load_state_dict(ckpt["model"], strict=False)
        self.assertEqual(incompatible.unexpected_keys, [])
        missing = [
            k
            for k in incompatible.missing_keys
            if k.startswith(("backbone.", "roi_heads.box_head."))
        ]
        self.assertEqual(missing, [])
        # Everything else that is missing is what ImageNet has no weights for.
        self.assertTrue(
            all(
                k.startswith(("proposal_generator.", "roi_heads.box_predictor."))
                or k in ("pixel_mean", "pixel_std")
                for k in incompatible.missing_keys
            )
        )

        # Through detectron2's own checkpointer: the same tensors end up in the model.
        model2 = build_model(cfg).eval()
        DetectionCheckpointer(model2).load(out)
        self.assertTrue(
            torch.equal(model2.backbone.conv5_3.weight, self.tv_state["features.28.weight"])
        )
        self.assertTrue(
            torch.equal(model2.roi_heads.box_head.fc6.weight, self.tv_state["classifier.0.weight"])
        )

        # The converted backbone computes torchvision's features without the 5th max-pool.
        x = torch.randn(1, 3, 64, 96)
        with torch.no_grad():
            ours = model2.backbone(x)["conv5"]
            theirs = self.tv_model.features[:-1](x)
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
        # and fc6/fc7 compute torchvision's classifier (eval mode: dropout off)
        pooled = torch.randn(2, 512, 7, 7)
        with torch.no_grad():
            torch.testing.assert_close(
                model2.roi_heads.box_head(pooled), self.tv_model.classifier[:5](pooled.flatten(1))
            )

    def test_refuses_to_overwrite_and_writes_atomically(self):
        out = os.path.join(self.tmp.name, "exists.pth")
        with open(out, "w") as f:
            f.write("precious")
        proc = subprocess.run(
            [sys.executable, os.path.join(REPO, "tools", "convert_vgg_weights.py"), self.path, out],
            capture_output=True,
            text=True,
        )
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("--overwrite", proc.stderr)
        with open(out) as f:
            self.assertEqual(f.read(), "precious")
        self.assertEqual(
            sorted(os.listdir(self.tmp.name)),
            sorted([n for n in os.listdir(self.tmp.name) if ".tmp-" not in n]),
        )

    def test_bad_inputs(self):
        with self.assertRaisesRegex(FileNotFoundError, "nope.pth"):
            load_state_dict_file(os.path.join(self.tmp.name, "nope.pth"))
        corrupt = os.path.join(self.tmp.name, "corrupt.pth")
        with open(self.path, "rb") as f, open(corrupt, "wb") as g:
            g.write(f.read(1000))  # a truncated download
        with self.assertRaisesRegex(ValueError, "corrupt.pth"):
            load_state_dict_file(corrupt)
        with self.assertRaisesRegex(ValueError, "layer1.0.conv1.weight"):
            convert_torchvision_vgg({"layer1.0.conv1.weight": torch.zeros(1)})
        partial = {k: v for k, v in self.tv_state.items() if not k.startswith("features.28")}
        with self.assertRaisesRegex(ValueError, "12 convolutions"):
            convert_torchvision_vgg(partial)


class TestConvertVGG16BN(unittest.TestCase):
    def test_bn_variant_matches_torchvision(self):
        tv_model, state = torchvision_state("vgg16_bn")
        converted, info = convert_torchvision_vgg(state, include_fc=False)
        self.assertEqual(info, {"depth": 16, "norm": "BN"})
        vgg = VGG(depth=16, norm="BN").eval()
        incompatible = vgg.load_state_dict(
            {k[len("backbone.") :]: v for k, v in converted.items()}, strict=True
        )
        self.assertEqual(list(incompatible.missing_keys), [])
        x = torch.randn(1, 3, 48, 48)
        with torch.no_grad():
            torch.testing.assert_close(
                vgg(x)["conv5"], tv_model.eval().features[:-1](x), rtol=1e-4, atol=1e-5
            )

    def test_save_checkpoint_roundtrip(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "sub", "c.pth")
            save_checkpoint({"a": torch.ones(2)}, path)
            self.assertTrue(
                torch.equal(torch.load(path, weights_only=True)["model"]["a"], torch.ones(2))
            )
            with self.assertRaises(FileExistsError):
                save_checkpoint({"a": torch.zeros(2)}, path)
            save_checkpoint({"a": torch.zeros(2)}, path, overwrite=True)
            self.assertEqual(os.listdir(os.path.dirname(path)), ["c.pth"])


class TestConvertCaffeVGG16(unittest.TestCase):
    """The Caffe VGG16 as PyTorch reimplementations ship it: torchvision's keys
    (``vgg16_caffe.pth``) or Caffe's layer names; BGR input, Caffe means, std 1."""

    # VGG16's convolutions in torchvision's ``features`` (ReLUs and max-pools in between)
    CONV_INDEX = {
        "conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10, "conv3_2": 12,
        "conv3_3": 14, "conv4_1": 17, "conv4_2": 19, "conv4_3": 21, "conv5_1": 24,
        "conv5_2": 26, "conv5_3": 28,
    }  # fmt: skip

    @classmethod
    def setUpClass(cls):
        _, cls.tv_keys = torchvision_state("vgg16")  # a locally made "vgg16_caffe.pth"
        cls.caffe_names = {}
        for name, i in cls.CONV_INDEX.items():
            for p in ("weight", "bias"):
                tv_key = "features.{}.{}".format(i, p)
                cls.caffe_names["{}.{}".format(name, p)] = cls.tv_keys[tv_key]
        for fc, i in (("fc6", 0), ("fc7", 3), ("fc8", 6)):
            for p in ("weight", "bias"):
                tv_key = "classifier.{}.{}".format(i, p)
                cls.caffe_names["{}.{}".format(fc, p)] = cls.tv_keys[tv_key]
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_both_key_layouts_give_the_same_checkpoint(self):
        from frcnn_plugin.weights import convert_vgg_weights

        a, info = convert_vgg_weights(self.tv_keys, source="caffe")
        b, _ = convert_vgg_weights(self.caffe_names, source="caffe")
        self.assertEqual(list(a), list(b))
        for k in a:
            self.assertTrue(torch.equal(a[k], b[k]), k)
        self.assertTrue(
            torch.equal(b["backbone.conv4_2.weight"], self.caffe_names["conv4_2.weight"])
        )
        self.assertTrue(torch.equal(b["roi_heads.box_head.fc7.bias"], self.caffe_names["fc7.bias"]))
        self.assertNotIn("fc8", " ".join(b))
        self.assertEqual(info["depth"], 16)
        self.assertEqual(info["input"]["INPUT.FORMAT"], "BGR")
        with self.assertRaisesRegex(ValueError, "--source caffe"):
            convert_vgg_weights(self.caffe_names)  # torchvision by default
        with self.assertRaisesRegex(ValueError, "allowed: torchvision, caffe"):
            convert_vgg_weights(self.tv_keys, source="mxnet")
        with self.assertRaisesRegex(ValueError, "pool5.weight"):
            convert_vgg_weights(dict(self.caffe_names, **{"pool5.weight": torch.zeros(1)}), "caffe")

    def test_cli_and_preset_feed_bgr_minus_caffe_means(self):
        src = os.path.join(self.tmp.name, "vgg16_caffe.pth")
        out = os.path.join(self.tmp.name, "vgg16_caffe_d2.pth")
        torch.save(self.caffe_names, src)
        proc = subprocess.run(
            [sys.executable, os.path.join(REPO, "tools", "convert_vgg_weights.py"), src, out,
             "--source", "caffe"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        self.assertIn("INPUT.FORMAT 'BGR'", proc.stdout)
        self.assertIn("MODEL.PIXEL_STD [1.0,1.0,1.0]", proc.stdout)
        cfg = load_config("vgg16_frcnn_caffe.yaml", "MODEL.WEIGHTS", out)
        self.assertEqual(cfg.INPUT.FORMAT, "BGR")
        model = build_model(cfg).eval()
        DetectionCheckpointer(model).load(out)
        # a BGR image of constant (110, 120, 130): minus py-faster-rcnn's means, by hand
        image = torch.tensor([110.0, 120.0, 130.0]).view(3, 1, 1).expand(3, 32, 48).clone()
        x = model.preprocess_image([{"image": image}]).tensor[0, :, :32, :48]
        expected = torch.tensor([7.0199, 4.0535, 7.2283]).view(3, 1, 1).expand(3, 32, 48)
        torch.testing.assert_close(x, expected, rtol=0, atol=1e-4)
        # conv1_1 of the plugin's backbone is the Caffe conv1_1 on that input
        with torch.no_grad():
            ours = torch.relu(model.backbone.conv1_1(x[None]))
        reference = torch.relu(torch.nn.functional.conv2d(
            expected[None], self.caffe_names["conv1_1.weight"], self.caffe_names["conv1_1.bias"],
            padding=1))
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)
