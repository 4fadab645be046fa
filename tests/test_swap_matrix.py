"""The swap matrix: each config trains a few iterations on CPU (detectron2's SimpleTrainer,
detectron2's data loader, small images) and runs inference.

Print the matrix: ``python -m tests.test_swap_matrix``.
"""
import math
import os
import unittest

import pytest
import torch

from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import SimpleTrainer
from detectron2.modeling import GeneralizedRCNN, build_model
from detectron2.modeling.proposal_generator.rpn import RPN, StandardRPNHead
from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.solver import build_optimizer

import frcnn_plugin  # noqa: F401  (registers the backbone, box head and data sets)
import frcnn_plugin.modeling.meta_arch  # noqa: F401
import frcnn_plugin.modeling.roi_heads  # noqa: F401
import frcnn_plugin.modeling.rpn  # noqa: F401
from frcnn_plugin.modeling.meta_arch import FRCNNGeneralizedRCNN
from frcnn_plugin.modeling.roi_heads import FRCNNROIHeads
from frcnn_plugin.modeling.rpn import FRCNNRPN, SoftmaxRPNHead
from tests.conftest import load_config

# 64x64 generated images resized to 96 (so the original-pixel min size is scaled by 1.5),
# anchors for 12-32 px objects, small fc layers, 2 images per batch, 2 iterations.
SMALL = [
    "DATASETS.TRAIN", "('frcnn_test_train',)", "DATASETS.TEST", "('frcnn_test_val',)",
    "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "96",
    "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "96",
    "MODEL.WEIGHTS", "", "MODEL.ROI_HEADS.NUM_CLASSES", "3",
    "MODEL.ANCHOR_GENERATOR.SIZES", "[[24, 48, 72]]", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.001", "DATALOADER.NUM_WORKERS", "0",
]
ITERATIONS = 2
# No ImageNet weights here: the ResNet's FrozenBN (identity statistics) would let random
# activations explode; train BN instead, and a ResNet-18 body for speed (same C4 layout).
R_FAST = ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
          "MODEL.RESNETS.NORM", "BN"]

# name -> (config, extra opts, (meta-arch, proposal generator, RPN head, ROI heads))
MATRIX = {
    "a: VGG16 + plugin RPN/ROI heads": (
        "vgg16_frcnn.yaml", [], (FRCNNGeneralizedRCNN, FRCNNRPN, SoftmaxRPNHead, FRCNNROIHeads)),
    "b: VGG16 + detectron2 RPN/StandardROIHeads": (
        "vgg16_frcnn_d2_heads.yaml", [], (GeneralizedRCNN, RPN, StandardRPNHead, StandardROIHeads)),
    "c: R50-C4 config (test: R18 body, BN) + plugin heads": (
        "R50_C4_frcnn_heads.yaml", R_FAST,
        (FRCNNGeneralizedRCNN, FRCNNRPN, SoftmaxRPNHead, FRCNNROIHeads)),
    "demo: shapes demo (inherits the Base)": (
        "vgg16_frcnn_shapes_demo.yaml", ["MODEL.ROI_BOX_HEAD.FC_DIM", "64"],
        (FRCNNGeneralizedRCNN, FRCNNRPN, SoftmaxRPNHead, FRCNNROIHeads)),
}


def train_and_infer(config, *opts):
    """Train ``ITERATIONS`` iterations, then predict one validation batch.

    Returns:
        model, list of per-iteration loss dicts, the logged statistics, the predictions.
    """
    cfg = load_config(config, *SMALL, *opts)
    torch.manual_seed(0)
    model = build_model(cfg)
    trainer = SimpleTrainer(model, build_detection_train_loader(cfg), build_optimizer(cfg, model))
    trainer.train(0, ITERATIONS)
    storage = trainer.storage
    names = [k for k in storage.histories() if k.startswith("loss_")] + ["total_loss"]
    losses = [{k: storage.history(k).values()[i][0] for k in names} for i in range(ITERATIONS)]
    stats = {k: v.latest() for k, v in storage.histories().items()}
    model.eval()
    with torch.no_grad():
        batch = next(iter(build_detection_test_loader(cfg, cfg.DATASETS.TEST[0])))
        outputs = model(batch)
    return model, losses, stats, outputs


@pytest.mark.usefixtures("tiny_shapes")
class TestSwapMatrix(unittest.TestCase):
    def check(self, name):
        config, opts, classes = MATRIX[name]
        model, losses, stats, outputs = train_and_infer(config, *opts)
        parts = (model, model.proposal_generator, model.proposal_generator.rpn_head,
                 model.roi_heads)
        self.assertEqual(tuple(type(p) for p in parts), classes)
        for step in losses:
            self.assertEqual(set(step) - {"total_loss"},
                             {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"})
            self.assertTrue(all(math.isfinite(v) for v in step.values()), step)
        for key in ("rpn/num_pos_anchors", "rpn/num_neg_anchors",
                    "roi_head/num_fg_samples", "roi_head/num_bg_samples"):
            self.assertIn(key, stats)
        if classes[1] is FRCNNRPN:
            self.assertIn("rpn/num_proposals", stats)
        self.assertEqual(len(outputs), 1)
        inst = outputs[0]["instances"]
        self.assertEqual(inst.image_size, (64, 64))  # back in original pixels
        self.assertTrue({"pred_boxes", "scores", "pred_classes"} <= set(inst.get_fields()))
        print("\n{}: {}".format(name, format_losses(losses)))

    def test_a_vgg16_plugin_heads(self):
        self.check("a: VGG16 + plugin RPN/ROI heads")

    def test_b_vgg16_detectron2_heads(self):
        self.check("b: VGG16 + detectron2 RPN/StandardROIHeads")

    def test_c_r50_c4_plugin_heads(self):
        self.check("c: R50-C4 config (test: R18 body, BN) + plugin heads")

    def test_demo_config_still_builds_and_trains(self):
        self.check("demo: shapes demo (inherits the Base)")


def format_losses(losses):
    return " | ".join(
        "it{}: ".format(i + 1) + ", ".join("{}={:.4f}".format(k, v) for k, v in step.items())
        for i, step in enumerate(losses)
    )


if __name__ == "__main__":  # print the matrix
    import tempfile

    from frcnn_plugin.data import register_shapes_dataset

    root = tempfile.mkdtemp()
    register_shapes_dataset("frcnn_test_train", os.path.join(root, "train"), 8, image_size=64,
                            seed=0, min_size=12, max_size=32)
    register_shapes_dataset("frcnn_test_val", os.path.join(root, "val"), 4, image_size=64,
                            seed=1, min_size=12, max_size=32)
    for row, (config, opts, _) in MATRIX.items():
        _, losses, stats, outputs = train_and_infer(config, *opts)
        print("{:45s} {}".format(row, format_losses(losses)))
        print("{:45s} stats: {}; detections: {}".format(
            "", {k: round(v, 1) for k, v in stats.items() if "/" in k and "num" in k},
            len(outputs[0]["instances"])))
