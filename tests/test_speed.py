"""Inference speed options (issue 13): truncated SVD of fc6/fc7, channels-last, int8 fc layers.
Every test uses the tiny model (VGG11, fc6/fc7 of 32, 64 px images); nothing asserts a timing."""
import os
import tempfile
import unittest

import pytest

import torch
from torch import nn

from detectron2.modeling import build_model

import frcnn_plugin  # noqa: F401
from frcnn_plugin.cli import CheckpointError, ConfigError, OutputExistsError
from frcnn_plugin.config_checks import validate_frcnn_config
from frcnn_plugin.engine.checkpoint import AtomicCheckpointer
from frcnn_plugin.modeling.fc_svd import SVDLinear, compress_fc_state_dict, truncated_svd
from tests.conftest import TINY_MODEL, load_config, load_tool

DEMO = "vgg16_frcnn_shapes_demo.yaml"
FC6, FC7 = "roi_heads.box_head.fc6", "roi_heads.box_head.fc7"


def tiny(*opts):
    return load_config(DEMO, *TINY_MODEL, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", *opts)


def trained_like(cfg, seed=0):
    """The tiny model with random weights of a trained model's scale (so that fc6's spectrum is
    not flat); eval mode."""
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.roi_heads.parameters():
            p.normal_(0, 0.05)
        # a decaying spectrum, as trained layers have
        for fc in (model.roi_heads.box_head.fc6, model.roi_heads.box_head.fc7):
            if isinstance(fc, nn.Linear):
                u, s, vh = torch.linalg.svd(fc.weight, full_matrices=False)
                s = s * torch.exp(-torch.arange(len(s), dtype=s.dtype) / 6)
                fc.weight.copy_((u * s) @ vh)
    return model


class TestTruncatedSVD(unittest.TestCase):
    def test_full_rank_reproduces_the_layer(self):
        torch.manual_seed(0)
        linear = nn.Linear(48, 20)
        svd = SVDLinear.from_linear(linear, rank=20)
        x = torch.randn(5, 48)
        torch.testing.assert_close(svd(x), linear(x), atol=1e-5, rtol=1e-4)
        self.assertLess(svd.last_error["relative_error"], 1e-6)

    def test_rank_k_error_is_the_closed_form(self):
        torch.manual_seed(1)
        w = torch.randn(30, 50, dtype=torch.float64)
        s = torch.linalg.svdvals(w)
        for k in (1, 7, 29):
            v, us, error = truncated_svd(w, k)
            dropped = float(s[k:].pow(2).sum().sqrt())
            self.assertAlmostEqual(error["frobenius_error"], dropped, places=8)
            self.assertAlmostEqual(float(torch.linalg.norm(w - us @ v)), dropped, places=8)
            self.assertAlmostEqual(error["relative_error"], dropped / float(torch.linalg.norm(w)))
            self.assertEqual(error["compressed_parameters"], k * (30 + 50))
            self.assertEqual(tuple(v.shape), (k, 50))
            self.assertEqual(tuple(us.shape), (30, k))

    def test_bad_ranks(self):
        with self.assertRaises(ValueError):
            truncated_svd(torch.randn(4, 6), 5)
        with self.assertRaises(ValueError):
            SVDLinear(6, 4, 0)
        for ranks, named in (("[-1, 0]", "integers >= 0"), ("[4]", "[rank of fc6"),
                             ("[1.5, 2]", "integers >= 0")):
            with self.assertRaises(ConfigError) as e:
                validate_frcnn_config(tiny("MODEL.ROI_BOX_HEAD.FC_SVD_RANKS", ranks))
            self.assertIn("MODEL.ROI_BOX_HEAD.FC_SVD_RANKS", str(e.exception))
            self.assertIn(named, str(e.exception))
        with self.assertRaises(ConfigError) as e:  # fc7 is 32 -> 32
            build_model(tiny("MODEL.ROI_BOX_HEAD.FC_SVD_RANKS", "[8, 33]"))
        self.assertIn("allowed: 0 (off) or 1 ... 32", str(e.exception))
        with self.assertRaises(ConfigError) as e:
            validate_frcnn_config(tiny("MODEL.ROI_BOX_HEAD.FC_SVD_RANKS", "[8, 4]",
                                       "MODEL.ROI_BOX_HEAD.NAME", "FastRCNNConvFCHead"))
        self.assertIn("VGGFCHead", str(e.exception))


class TestSVDCheckpoints(unittest.TestCase):
    """A full checkpoint loaded into a model with ranks, tools/compress_fc.py's file loaded
    with the same ranks, other ranks and none."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.full = trained_like(tiny())
        cls.path = os.path.join(cls.tmp.name, "model_final.pth")
        torch.save({"model": cls.full.state_dict(), "iteration": 3}, cls.path)
        torch.manual_seed(0)
        cls.inputs = [{"image": torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)}]

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def load(self, path, *opts):
        model = build_model(tiny(*opts)).eval()
        AtomicCheckpointer(model).load(path)
        return model

    def check_factors(self, model, layer, rank, loaded_full=True):
        full = self.full.state_dict()[layer + ".weight"]
        svd = model.get_submodule(layer)
        self.assertIsInstance(svd, SVDLinear)
        self.assertEqual(svd.rank, rank)
        s = torch.linalg.svdvals(full.double())
        error = float(torch.linalg.norm(full.double() - svd.full_weight().double()))
        self.assertAlmostEqual(error, float(s[rank:].pow(2).sum().sqrt()), places=4)
        if loaded_full:  # else the logged error is that of the factors the checkpoint had
            self.assertAlmostEqual(svd.last_error["frobenius_error"], error, places=4)

    def test_full_checkpoint_is_factorized_at_load(self):
        with self.assertLogs("frcnn_plugin.modeling.fc_svd", "INFO") as logs:
            model = self.load(self.path, "MODEL.ROI_BOX_HEAD.FC_SVD_RANKS", "[8, 4]")
        self.assertTrue(any("fc6: truncated SVD rank 8 of 32" in m for m in logs.output))
        self.assertTrue(any("relative Frobenius error" in m for m in logs.output))
        self.check_factors(model, FC6, 8)
        self.check_factors(model, FC7, 4)
        for name, p in self.full.state_dict().items():  # the rest is untouched
            if not name.startswith((FC6, FC7)):
                self.assertTrue(torch.equal(p, model.state_dict()[name]), name)
        # full rank: the same detections
        model = self.load(self.path, "MODEL.ROI_BOX_HEAD.FC_SVD_RANKS", "[32, 32]")
        with torch.no_grad():
            a = self.full(self.inputs)[0]["instances"]
            b = model(self.inputs)[0]["instances"]
        torch.testing.assert_close(b.scores, a.scores, atol=1e-4, rtol=1e-3)
        torch.testing.assert_close(b.pred_boxes.tensor, a.pred_boxes.tensor, atol=1e-2,
                                   rtol=1e-4)

    def test_plain_load_state_dict_factorizes_too(self):
        model = build_model(tiny("MODEL.ROI_BOX_HEAD.FC_SVD_RANKS", "[8, 0]")).eval()
        incompatible = model.load_state_dict(self.full.state_dict())
        self.assertEqual((incompatible.missing_keys, incompatible.unexpected_keys), ([], []))
        self.check_factors(model, FC6, 8)
        self.assertIsInstance(model.roi_heads.box_head.fc7, nn.Linear)

    def test_compress_tool_round_trip(self):
        tool = load_tool("compress_fc")
        out = os.path.join(self.tmp.name, "svd.pth")
        errors = tool.main([self.path, out, "--ranks", "8", "4"])
        self.assertEqual(set(errors), {FC6, FC7})
        saved = torch.load(out, map_location="cpu", weights_only=True)
        self.assertEqual(saved["fc_svd"]["ranks"], {FC6: 8, FC7: 4})
        self.assertNotIn("iteration", saved)
        self.assertEqual(tuple(saved["model"][FC6 + ".v.weight"].shape), (8, 512 * 7 * 7))
        self.assertNotIn(FC6 + ".weight", saved["model"])
        # same ranks: loaded as they are
        same = self.load(out, "MODEL.ROI_BOX_HEAD.FC_SVD_RANKS", "[8, 4]")
        direct = self.load(self.path, "MODEL.ROI_BOX_HEAD.FC_SVD_RANKS", "[8, 4]")
        for k, v in direct.state_dict().items():
            torch.testing.assert_close(same.state_dict()[k], v, msg=k)
        # lower rank: re-factorized from the product (the top 2 of a rank-8 matrix)
        lower = self.load(out, "MODEL.ROI_BOX_HEAD.FC_SVD_RANKS", "[2, 4]")
        self.check_factors(lower, FC6, 2, loaded_full=False)
        # SVD off: the product, W_k
        plain = self.load(out)
        torch.testing.assert_close(plain.roi_heads.box_head.fc6.weight,
                                   direct.roi_heads.box_head.fc6.full_weight())
        torch.testing.assert_close(plain.roi_heads.box_head.fc7.bias,
                                   self.full.roi_heads.box_head.fc7.bias)
        # refuses to overwrite; a bad rank is a user error
        with self.assertRaises(OutputExistsError):
            tool.main([self.path, out])
        with self.assertRaises(CheckpointError) as e:
            tool.main([self.path, out, "--overwrite", "--ranks", "40", "4"])
        self.assertIn("allowed: 0 (off) or 1 ... 32", str(e.exception))
        with self.assertRaises(CheckpointError):
            compress_fc_state_dict({"a.weight": torch.zeros(2, 2)}, {FC6: 1})


class TestChannelsLast(unittest.TestCase):
    """MODEL.CHANNELS_LAST: same outputs, losses and gradients as the default layout."""

    @classmethod
    def setUpClass(cls):
        cls.default = trained_like(tiny())
        cls.nhwc = build_model(tiny("MODEL.CHANNELS_LAST", "True")).eval()
        cls.nhwc.load_state_dict(cls.default.state_dict())
        torch.manual_seed(0)
        cls.images = [torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8) for _ in range(2)]

    def test_weights_and_features_are_channels_last(self):
        from frcnn_plugin.modeling.memory_format import is_channels_last

        self.assertTrue(is_channels_last(self.nhwc.backbone))
        self.assertTrue(is_channels_last(self.nhwc.proposal_generator.rpn_head))
        self.assertFalse(is_channels_last(self.default.backbone))
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            feature = self.nhwc.backbone(x)["conv5"]
            ref = self.default.backbone(x)["conv5"]
        self.assertTrue(feature.is_contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(feature, ref, atol=1e-4, rtol=1e-4)

    def test_same_detections(self):
        inputs = [{"image": im} for im in self.images]
        with torch.no_grad():
            for a, b in zip(self.default(inputs), self.nhwc(inputs)):
                a, b = a["instances"], b["instances"]
                self.assertEqual(len(a), len(b))
                torch.testing.assert_close(b.scores, a.scores, atol=1e-4, rtol=1e-4)
                torch.testing.assert_close(b.pred_boxes.tensor, a.pred_boxes.tensor, atol=1e-3,
                                           rtol=1e-4)
                self.assertTrue(torch.equal(b.pred_classes, a.pred_classes))

    def test_same_losses_and_gradients(self):
        from detectron2.structures import Boxes, Instances
        from detectron2.utils.events import EventStorage

        inst = Instances((64, 80), gt_boxes=Boxes(torch.tensor([[8.0, 8.0, 40.0, 48.0]])),
                         gt_classes=torch.tensor([1]))
        inputs = [{"image": im, "instances": inst} for im in self.images]
        grads = []
        for model in (self.default, self.nhwc):
            torch.manual_seed(3)  # the samplers draw the same anchors and RoIs
            model.train()
            model.zero_grad()
            try:
                with EventStorage(0):
                    losses = model(inputs)
                sum(losses.values()).backward()
            finally:
                model.eval()
            grads.append((losses, {n: p.grad.clone() for n, p in model.named_parameters()
                                   if p.grad is not None}))
        (la, ga), (lb, gb) = grads
        for k in la:
            torch.testing.assert_close(lb[k], la[k], atol=1e-4, rtol=1e-3, msg=k)
        self.assertEqual(set(ga), set(gb))
        # Per tensor, by relative norm: where two values of a max-pool window are within
        # rounding of each other, the layouts can pick different maxima, which moves that
        # element's gradient to its neighbour (seen: conv3_2's weight gradient, 0.15 % of its norm
        # apart, one element 2.7e-4 of 0.013); the absolute term is for the conv biases before a
        # batch norm, whose gradient is zero up to rounding.
        for n in ga:
            diff, scale = float((gb[n] - ga[n]).norm()), float(ga[n].norm())
            self.assertLessEqual(diff, 1e-2 * scale + 1e-5, n)
        self.assertTrue(self.nhwc.backbone.conv1_1.weight.grad.is_contiguous(
            memory_format=torch.channels_last))

    def test_needs_the_plugins_meta_architecture(self):
        with self.assertRaises(ConfigError) as e:
            validate_frcnn_config(tiny("MODEL.CHANNELS_LAST", "True",
                                       "MODEL.META_ARCHITECTURE", "GeneralizedRCNN"))
        self.assertIn("FRCNNGeneralizedRCNN", str(e.exception))


class TestInt8(unittest.TestCase):
    """MODEL.ROI_BOX_HEAD.FC_INT8: int8 fc layers close to fp32. Tolerance: the box head's
    output within 5 % (relative Frobenius norm) and the class probabilities within 0.05."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.fp32 = trained_like(tiny())
        cls.path = os.path.join(cls.tmp.name, "model.pth")
        torch.save({"model": cls.fp32.state_dict()}, cls.path)
        torch.manual_seed(0)
        cls.features = torch.randn(20, 512, 7, 7).relu()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def build(self, *opts):
        from frcnn_plugin.inspection.cli import build_inspection_model

        cfg = tiny(*opts)
        validate_frcnn_config(cfg)
        model, _ = build_inspection_model(cfg, self.path)
        return model

    def check_close(self, model, predictor):
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        quantized = [n for n, m in model.roi_heads.named_modules()
                     if isinstance(m, DynamicLinear)]
        self.assertIn("box_head.fc6", quantized)
        self.assertEqual("box_predictor.cls_score" in quantized, predictor)
        with torch.no_grad():
            ref = self.fp32.roi_heads.box_head(self.features)
            out = model.roi_heads.box_head(self.features)
            self.assertLess(float((out - ref).norm() / ref.norm()), 0.05)
            p_ref = self.fp32.roi_heads.box_predictor(ref)[0].softmax(-1)
            p_out = model.roi_heads.box_predictor(out)[0].softmax(-1)
            self.assertLess(float((p_out - p_ref).abs().max()), 0.05)

    def test_int8_close_to_fp32_without_deprecation_warnings(self):
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = self.build("MODEL.ROI_BOX_HEAD.FC_INT8", "True")
        self.assertEqual([str(w.message)[:60] for w in caught
                          if issubclass(w.category, DeprecationWarning)], [])
        self.check_close(model, predictor=False)
        image = [{"image": torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)}]
        with torch.no_grad():
            self.assertGreater(len(model(image)[0]["instances"]), 0)

    def test_int8_with_predictor_and_svd(self):
        model = self.build("MODEL.ROI_BOX_HEAD.FC_INT8", "True",
                           "MODEL.ROI_BOX_HEAD.FC_INT8_PREDICTOR", "True",
                           "MODEL.ROI_BOX_HEAD.FC_SVD_RANKS", "[32, 32]")
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        self.assertIsInstance(model.roi_heads.box_head.fc6.v, DynamicLinear)
        self.assertIsInstance(model.roi_heads.box_predictor.bbox_pred, DynamicLinear)
        with torch.no_grad():
            ref = self.fp32.roi_heads.box_head(self.features)
            out = model.roi_heads.box_head(self.features)
        # four int8 layers (two per SVD layer) instead of two: measured 0.05, bound 0.1
        self.assertLess(float((out - ref).norm() / ref.norm()), 0.1)

    def test_inference_only_and_cpu_only(self):
        from types import SimpleNamespace

        from frcnn_plugin.modeling.quantize import prepare_for_inference, quantize_fc_int8

        model = build_model(tiny()).eval()  # a config without the keys (a LazyConfig) is a no-op
        self.assertIs(prepare_for_inference(SimpleNamespace(lazy=True), model), model)

        with self.assertRaises(ConfigError) as e:
            quantize_fc_int8(build_model(tiny()).train())
        self.assertIn("inference only", str(e.exception))
        cfg = tiny("MODEL.ROI_BOX_HEAD.FC_INT8", "True")
        cfg.MODEL.DEVICE = "cuda"
        with self.assertRaises(ConfigError) as e:
            validate_frcnn_config(cfg)
        self.assertIn("MODEL.DEVICE cpu", str(e.exception))


@pytest.mark.usefixtures("tiny_shapes")
class TestVariantsBenchmark(unittest.TestCase):
    """tools/benchmark.py --task variants end to end on the tiny model (2 training iterations,
    in process): every variant evaluated and timed, ratios consistent. No timing asserted."""

    def test_variants_task(self):
        import json

        from tests.test_benchmark import DEMO as DEMO_PATH
        from tests.test_benchmark import TINY

        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "variants.json")
            load_tool("benchmark").main([
                "--config-file", DEMO_PATH, "--task", "variants", "--peers", "torchvision",
                "--variants", "channels_last+svd+int8", "--svd-ranks", "8,4",
                "--iters", "1", "--warmup", "0", "--repeats", "2", "--num-images", "1",
                "--no-isolate", "--json", out, *TINY, "SOLVER.MAX_ITER", "2",
                "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()"])
            with open(out) as f:
                saved = json.load(f)
        labels = ["plugin fp32", "plugin channels_last+svd+int8", "torchvision fp32",
                  "torchvision channels_last+svd+int8"]  # fp32 added first
        self.assertEqual(list(saved["models"]), labels)
        self.assertEqual(saved["settings"]["input"]["svd_ranks"], [8, 4])
        fp32, tv = saved["models"]["plugin fp32"], saved["models"]["torchvision fp32"]
        for label in labels:
            m, r = saved["models"][label], saved["ratios"][label]
            self.assertIn("AP50", m["bbox"], label)
            self.assertEqual(m["latency_s"]["n"], 2)
            self.assertAlmostEqual(r["latency_vs_fp32"],
                                   m["latency_s"]["median"] / fp32["latency_s"]["median"])
            self.assertAlmostEqual(r["latency_vs_torchvision_fp32"],
                                   m["latency_s"]["median"] / tv["latency_s"]["median"])
        self.assertEqual(saved["ratios"]["plugin fp32"]["AP_minus_fp32"], 0)
        self.assertEqual(saved["models"]["plugin channels_last+svd+int8"]["model"]["svd_ranks"],
                         [8, 4])


@pytest.mark.usefixtures("tiny_shapes")
class TestOnnxRuntimeVariant(unittest.TestCase):
    """The built-in ``onnx`` and ``onnx_int8`` variants: the trained plugin exported and run by
    ONNX Runtime, in the same table; the fp32 file's AP is the eager model's (exported outputs
    agree within 1e-5 px)."""

    def test_onnx_row_has_the_fp32_accuracy(self):
        import json

        from benchmarks.tricks import onnx_runtime_available
        from tests.test_benchmark import DEMO as DEMO_PATH
        from tests.test_benchmark import TINY

        if not onnx_runtime_available():
            self.skipTest("onnx / onnxruntime not installed (pip install -e .[export])")
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "variants.json")
            load_tool("benchmark").main([
                "--config-file", DEMO_PATH, "--task", "variants", "--peers", "torchvision",
                "--variants", "onnx,onnx_int8", "--iters", "1", "--warmup", "0", "--repeats", "1",
                "--num-images", "1", "--no-isolate", "--json", out, *TINY,
                "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()"])
            with open(out) as f:
                saved = json.load(f)
        # a backend runs the plugin only: no "torchvision onnx" row
        self.assertEqual(list(saved["models"]), ["plugin fp32", "plugin onnx", "plugin onnx_int8",
                                                 "torchvision fp32"])
        fp32, onnx = saved["models"]["plugin fp32"], saved["models"]["plugin onnx"]
        self.assertEqual(onnx["model"]["backend"], "onnxruntime")
        int8 = saved["models"]["plugin onnx_int8"]
        self.assertEqual(int8["model"]["calibration_images"], 8)  # frcnn_test_train has 8
        self.assertIn("AP50", int8["bbox"])
        for key in ("AP", "AP50", "AP75"):
            self.assertAlmostEqual(onnx["bbox"][key], fp32["bbox"][key], delta=0.05, msg=key)

    def test_exported_models_stay_in_eval_mode(self):
        from frcnn_plugin.export.backends import ExportedModel

        model = ExportedModel("m.onnx", {})
        self.assertFalse(model.training)
        self.assertIs(model.train(False), model)
        with self.assertRaisesRegex(ValueError, "inference only"):
            model.train()


class TestBF16(unittest.TestCase):
    def test_bf16_autocast_close_to_fp32_and_float32_outputs(self):
        from frcnn_plugin.modeling.quantize import prepare_for_inference

        fp32 = trained_like(tiny())
        cfg = tiny("MODEL.BF16_AUTOCAST", "True")
        bf16 = build_model(cfg).eval()
        bf16.load_state_dict(fp32.state_dict())
        prepare_for_inference(cfg, bf16)
        prepare_for_inference(cfg, bf16)  # idempotent
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            feature = bf16.backbone(x)["conv5"]
            ref = fp32.backbone(x)["conv5"]
            self.assertEqual(feature.dtype, torch.float32)
            # bf16 has 8 bits of mantissa: ~1 % per layer
            self.assertLess(float((feature - ref).norm() / ref.norm()), 0.05)
            image = [{"image": torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)}]
            out = bf16(image)[0]["instances"]
        self.assertGreater(len(out), 0)
        self.assertEqual(out.scores.dtype, torch.float32)


class TestPeersGetTheTricks(unittest.TestCase):
    def test_train_and_inference_tasks_give_peers_the_configs_tricks(self):
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        from benchmarks import build_benchmark_model
        from benchmarks.tricks import apply_config_tricks
        from frcnn_plugin.modeling.memory_format import is_channels_last

        cfg = tiny("MODEL.CHANNELS_LAST", "True", "MODEL.ROI_BOX_HEAD.FC_INT8", "True",
                   "MODEL.ROI_BOX_HEAD.FC_SVD_RANKS", "[8, 0]")
        for kind in ("plugin", "d2", "torchvision"):
            model, _ = build_benchmark_model(cfg, kind)
            self.assertEqual(apply_config_tricks(cfg, kind, model, inference=True),
                             ["channels_last", "svd", "int8"], kind)
            inner = model.model if kind == "torchvision" else model
            self.assertTrue(is_channels_last(inner.backbone), kind)
            head = inner.roi_heads.box_head
            self.assertIsInstance(head.fc6.v, DynamicLinear, kind)
            self.assertIsInstance(head.fc7, DynamicLinear, kind)
        model, _ = build_benchmark_model(cfg, "torchvision")
        self.assertEqual(apply_config_tricks(cfg, "torchvision", model, inference=False),
                         ["channels_last", "svd"])
        self.assertIsInstance(model.model.roi_heads.box_head.fc6, SVDLinear)


class TestVariantHook(unittest.TestCase):
    def test_registered_backend_is_built_by_its_builder(self):
        from benchmarks import tricks

        calls = []

        def builder(cfg, weights, example):
            calls.append((weights, example))
            return build_model(cfg).eval(), {"backend": "dummy"}

        with self.assertRaises(ValueError):
            tricks.register_variant("int8", builder)  # a built-in trick's name
        tricks.register_variant("dummy_backend", builder)
        try:
            self.assertEqual(tricks.parse_variant("dummy_backend"), ("dummy_backend",))
            _, info = tricks.build_variant(tiny(), "plugin", "dummy_backend", "w.pth",
                                           example={"image": None})
            self.assertEqual(info["backend"], "dummy")
            self.assertEqual(calls, [("w.pth", {"image": None})])
            with self.assertRaises(ValueError):
                tricks.build_variant(tiny(), "torchvision", "dummy_backend", "w.pth")
        finally:
            tricks.VARIANT_BUILDERS.pop("dummy_backend")
        with self.assertRaises(ValueError):
            tricks.parse_variant("int8+fp16")
