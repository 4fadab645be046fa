"""Mixed precision (issue 26): SOLVER.AMP / TEST.AMP, bf16 through the model's own autocast.

Every test runs on any CPU: one without native bf16 emulates it (slower, the same numbers up to
rounding), so the models are the tiny one (VGG11, 64 px) in channels-last. Tolerances: bf16
keeps 8 significant bits (relative rounding 2^-9 = 0.2 % per value); a VGG11 feature map after
8 convolutions was measured within 1-2 % of float32, so 5 % is the bound used for features and
losses computed from the same samples.
"""
import logging
import os
import tempfile
import unittest

import torch
from omegaconf import OmegaConf

from detectron2.modeling import build_model
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes

import frcnn_plugin  # noqa: F401
from frcnn_plugin.cli import ConfigError
from frcnn_plugin.config_checks import validate_frcnn_config
from frcnn_plugin.modeling import precision
from frcnn_plugin.modeling.precision import (
    apply_autocast,
    autocast_dtypes,
    float32_region,
    inference_precision,
    lazy_training_precision,
    resolve_precision,
    training_precision,
)
from frcnn_plugin.modeling.quantize import prepare_for_inference
from tests.conftest import TINY_MODEL, TINY_SCHEDULE, load_config

DEMO = "vgg16_frcnn_shapes_demo.yaml"


def tiny(*opts):
    return load_config(DEMO, *TINY_MODEL, "MODEL.CHANNELS_LAST", "True",
                       "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", *opts)


def batch(seed=0, n=2):
    """Images with one box each (a square of another colour), for training."""
    from detectron2.structures import Instances

    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        image = torch.randint(0, 60, (3, 64, 64), generator=g, dtype=torch.uint8)
        x0, y0 = 8 + 4 * i, 10 + 2 * i
        image[:, y0:y0 + 24, x0:x0 + 24] = 200
        inst = Instances((64, 64))
        inst.gt_boxes = Boxes(torch.tensor([[x0, y0, x0 + 24, y0 + 24]], dtype=torch.float32))
        inst.gt_classes = torch.tensor([i % 3])
        out.append({"image": image, "height": 64, "width": 64, "instances": inst})
    return out


def rel(a, b):
    return float((a - b).norm() / b.norm())


class TestResolve(unittest.TestCase):
    def _capability(self, cpuinfo_flags):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "cpuinfo")
            with open(path, "w") as f:
                f.write("processor\t: 0\nflags\t\t: {}\n".format(cpuinfo_flags))
            original = precision._cpu_flags
            precision._cpu_flags = lambda: original(path)
            try:
                os.environ.pop("FRCNN_CPU_BF16", None)
                return resolve_precision("auto", "cpu")
            finally:
                precision._cpu_flags = original

    def test_auto_on_a_cpu_with_amx_or_avx512_bf16_is_bf16(self):
        for flags in ("fpu sse avx2 avx512f amx_bf16 amx_tile", "avx2 avx512f avx512_bf16"):
            dtype, why = self._capability(flags)
            self.assertIs(dtype, torch.bfloat16, flags)
            self.assertIn("auto: bf16", why)

    def test_auto_on_a_cpu_without_native_bf16_is_float32_with_the_reason(self):
        # the flags of an AMD EPYC (Zen 3): AVX2, no AVX-512
        dtype, why = self._capability("fpu sse sse2 avx avx2 fma f16c")
        self.assertIsNone(dtype)
        self.assertIn("float32", why)
        self.assertIn("amx_bf16", why)

    def test_forced_by_the_environment(self):
        os.environ["FRCNN_CPU_BF16"] = "1"
        try:
            self.assertIs(resolve_precision("auto", "cpu")[0], torch.bfloat16)
            os.environ["FRCNN_CPU_BF16"] = "0"
            self.assertIsNone(resolve_precision("auto", "cpu")[0])
        finally:
            del os.environ["FRCNN_CPU_BF16"]

    def test_explicit_values(self):
        self.assertIs(resolve_precision("bf16", "cpu")[0], torch.bfloat16)
        self.assertIs(resolve_precision("fp16", "cuda")[0], torch.float16)

    def test_bad_values_are_named_with_what_is_allowed(self):
        with self.assertRaises(ConfigError) as e:
            validate_frcnn_config(tiny("SOLVER.AMP.PRECISION", "bfloat8"))
        self.assertIn("SOLVER.AMP.PRECISION='bfloat8'", str(e.exception))
        self.assertIn("'auto', 'bf16', 'fp16'", str(e.exception))
        with self.assertRaises(ConfigError) as e:
            validate_frcnn_config(tiny("TEST.AMP.ENABLED", "True", "TEST.AMP.PRECISION", "fp16"))
        self.assertIn("TEST.AMP.PRECISION='fp16' with MODEL.DEVICE='cpu'", str(e.exception))
        self.assertIn("'bf16' or 'auto'", str(e.exception))
        with self.assertRaises(ConfigError) as e:
            lazy_training_precision(OmegaConf.create(
                {"device": "cpu", "amp": {"enabled": True, "precision": "half"}}))
        self.assertIn("train.amp.precision='half'", str(e.exception))

    def test_keys_off_mean_float32(self):
        cfg = tiny()
        self.assertIsNone(training_precision(cfg))
        self.assertIsNone(inference_precision(cfg))
        self.assertIsNone(lazy_training_precision(OmegaConf.create(
            {"device": "cpu", "amp": {"enabled": False}})))

    def test_deprecated_key_maps_to_test_amp_bf16_with_a_warning(self):
        precision._logged.clear()
        cfg = tiny("MODEL.BF16_AUTOCAST", "True")
        with self.assertLogs("frcnn_plugin.modeling.precision", logging.WARNING) as logs:
            self.assertIs(inference_precision(cfg), torch.bfloat16)
        self.assertIn("TEST.AMP.ENABLED True with TEST.AMP.PRECISION bf16", logs.output[0])
        self.assertIsNone(training_precision(cfg))  # it never applied to training
        model = prepare_for_inference(cfg, build_model(cfg).eval())
        self.assertEqual(autocast_dtypes(model.backbone), (None, torch.bfloat16))


class TestBF16Model(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)
        cls.cfg = tiny()
        cls.fp32 = build_model(cls.cfg)
        cls.bf16 = build_model(cls.cfg)
        cls.bf16.load_state_dict(cls.fp32.state_dict())
        apply_autocast(cls.bf16, torch.bfloat16, torch.bfloat16)

    def _losses(self, model, n=2):
        from detectron2.utils.events import EventStorage

        if model is self.bf16:  # the same weights and batch-norm statistics as fp32
            model.load_state_dict(self.fp32.state_dict())
        model.train()
        torch.manual_seed(1)  # the same anchor and RoI samples for both models
        with EventStorage(0):
            return model(batch(n=n))

    def test_training_losses_float32_and_close_to_fp32(self):
        ref, out = self._losses(self.fp32), self._losses(self.bf16)
        self.assertEqual(sorted(out), sorted(ref))
        for k in out:
            self.assertEqual(out[k].dtype, torch.float32, k)
            self.assertTrue(torch.isfinite(out[k]), k)
        # the RPN's samples do not depend on the predictions: the same anchors in both
        for k in ("loss_rpn_cls", "loss_rpn_loc"):
            self.assertLess(abs(float(out[k].detach() - ref[k].detach())),
                            0.05 * float(ref[k].detach()) + 1e-4, k)

    def test_inference_outputs_float32_and_close_to_fp32(self):
        images = [{"image": b["image"]} for b in batch()]
        self.bf16.load_state_dict(self.fp32.state_dict())  # batch-norm statistics of other tests
        for m in (self.fp32, self.bf16):
            m.eval()
        with torch.no_grad():
            x = self.fp32.preprocess_image(images).tensor
            ref = self.fp32.backbone(x)["conv5"]
            feat = self.bf16.backbone(x)["conv5"]
            self.assertEqual(feat.dtype, torch.float32)
            self.assertLess(rel(feat, ref), 0.05)
            out = self.bf16(images)
        for r in out:
            inst = r["instances"]
            self.assertGreater(len(inst), 0)
            self.assertEqual(inst.pred_boxes.tensor.dtype, torch.float32)
            self.assertEqual(inst.scores.dtype, torch.float32)

    def test_gradients_reach_float32_master_weights(self):
        self.bf16.zero_grad()
        sum(self._losses(self.bf16).values()).backward()
        w = self.bf16.backbone.conv1_1.weight if hasattr(self.bf16.backbone, "conv1_1") else \
            next(self.bf16.backbone.parameters())
        self.assertEqual(w.dtype, torch.float32)
        self.assertEqual(w.grad.dtype, torch.float32)
        self.assertTrue(torch.isfinite(w.grad).all())
        self.assertGreater(float(w.grad.abs().sum()), 0)

    def test_a_few_bf16_steps_lower_the_loss_of_a_batch(self):
        torch.manual_seed(0)
        model = build_model(self.cfg)
        apply_autocast(model, train_dtype=torch.bfloat16)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        totals = []
        for _ in range(4):
            losses = self._losses(model, n=1)
            total = sum(losses.values())
            self.assertTrue(torch.isfinite(total))
            totals.append(float(total.detach()))
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
        self.assertLess(totals[-1], totals[0])

    def test_state_dict_unchanged_by_the_autocast(self):
        self.assertEqual(list(self.bf16.state_dict()), list(self.fp32.state_dict()))


class TestRoIPoolingUnderAutocast(unittest.TestCase):
    def test_pooler_in_float32_inside_an_autocast_region(self):
        features = [torch.randn(1, 8, 16, 16)]
        boxes = [Boxes(torch.tensor([[0.0, 0.0, 40.0, 40.0], [16.0, 8.0, 60.0, 50.0]]))]
        for pooler_type in ("ROIPool", "ROIAlignV2"):
            pooler = ROIPooler((2, 2), (1 / 4,), 0, pooler_type)
            # a bf16 feature map (what a backbone under autocast gives): the same as pooling its
            # float32 values, and float32 out
            bf16 = [features[0].bfloat16()]
            expected = pooler([bf16[0].float()], boxes)
            float32_region(pooler)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = pooler(bf16, boxes)
            self.assertEqual(out.dtype, torch.float32, pooler_type)
            torch.testing.assert_close(out, expected, rtol=0, atol=0)

    def test_whole_model_under_a_users_autocast(self):
        # a plain float32 model run inside the user's own autocast, both poolers: the plugin's
        # ROI heads pool in float32 (torchvision's CPU roi_pool has no bf16 kernel)
        for pooler_type in ("ROIPool", "ROIAlignV2"):
            cfg = tiny("MODEL.ROI_BOX_HEAD.POOLER_TYPE", pooler_type)
            model = build_model(cfg).eval()
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                out = model([{"image": batch()[0]["image"]}])[0]["instances"]
            self.assertTrue(torch.isfinite(out.pred_boxes.tensor).all(), pooler_type)


class TestTrainerPrecision(unittest.TestCase):
    def test_bf16_training_through_the_trainer(self):
        from detectron2.engine import AMPTrainer, SimpleTrainer

        from frcnn_plugin.engine import Trainer

        with tempfile.TemporaryDirectory() as out:
            cfg = tiny(*TINY_SCHEDULE, "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", out,
                       "DATASETS.TEST", "()", "SOLVER.AMP.ENABLED", "True",
                       "SOLVER.AMP.PRECISION", "bf16", "TEST.AMP.ENABLED", "True",
                       "TEST.AMP.PRECISION", "bf16")
            validate_frcnn_config(cfg)
            cfg.freeze()
            trainer = Trainer(cfg)
            # bf16 in the model's own autocast with SimpleTrainer: no float16 AMPTrainer on CPU
            self.assertIs(type(trainer._trainer), SimpleTrainer)
            self.assertNotIsInstance(trainer._trainer, AMPTrainer)
            self.assertEqual(autocast_dtypes(trainer.model.backbone),
                             (torch.bfloat16, torch.bfloat16))
            trainer.train()
            self.assertTrue(cfg.SOLVER.AMP.ENABLED)  # the config is left as it was
            total = trainer.storage.history("total_loss").values()
            self.assertEqual(len(total), 2)
            self.assertTrue(all(torch.isfinite(torch.tensor(v)) for v, _ in total))
