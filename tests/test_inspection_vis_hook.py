"""PredictionVisHook: pictures of predictions vs GT put into EventStorage during training."""
import types
import unittest

import numpy as np
import pytest

from detectron2.engine import IterationTimer, PeriodicWriter
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from tests.conftest import load_config

SMALL = [
    "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64", "MODEL.VGG.DEPTH", "11",
    "MODEL.ANCHOR_GENERATOR.SIZES", "[[16, 32]]", "MODEL.ROI_BOX_HEAD.FC_DIM", "32",
    "DATASETS.TEST", "('frcnn_test_val',)", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
]


@pytest.mark.usefixtures("tiny_shapes")
class TestPredictionVisHook(unittest.TestCase):
    def test_after_step_puts_images(self):
        from frcnn_plugin.engine.vis_hook import PredictionVisHook
        from frcnn_plugin.inspection import draw

        cfg = load_config("vgg16_frcnn_shapes_demo.yaml", *SMALL, "TEST.VIS_PERIOD", "2",
                          "TEST.VIS_NUM_IMAGES", "2", "TEST.VIS_SCORE_THRESH", "0.0")
        hook = PredictionVisHook(cfg)
        self.assertEqual((hook.period, hook.num_images, hook.dataset_name),
                         (2, 2, "frcnn_test_val"))
        model = build_model(cfg)
        model.train()
        with EventStorage(0) as storage:
            hook.trainer = types.SimpleNamespace(iter=0, max_iter=10, storage=storage, model=model)
            hook.after_step()  # iteration 1: not a multiple of 2
            self.assertEqual(storage._vis_data, [])
            hook.trainer.iter = 1
            storage.iter = 1
            hook.after_step()
        self.assertTrue(model.training)  # restored after drawing in eval mode
        self.assertEqual([d[0] for d in storage._vis_data],
                         ["val_predictions/0", "val_predictions/1"])
        for _, img, it in storage._vis_data:
            self.assertEqual(it, 1)
            self.assertEqual(img.dtype, np.uint8)
            self.assertEqual(img.shape, (3, 256, 256))  # 64 px zoomed x4
            colors = {tuple(c) for c in np.unique(img.reshape(3, -1).T, axis=0)}
            self.assertIn(draw.GT, colors)
            self.assertIn(draw.PREDICTION, colors)

    def test_maybe_add_vis_hook(self):
        from frcnn_plugin.engine.vis_hook import PredictionVisHook, maybe_add_vis_hook

        off = types.SimpleNamespace(cfg=load_config("vgg16_frcnn_shapes_demo.yaml", *SMALL))
        hooks = [IterationTimer(), PeriodicWriter([])]
        self.assertEqual(maybe_add_vis_hook(off, list(hooks)), hooks)
        on = types.SimpleNamespace(cfg=load_config("vgg16_frcnn_shapes_demo.yaml", *SMALL,
                                                   "TEST.VIS_PERIOD", "5"))
        new = maybe_add_vis_hook(on, list(hooks))
        self.assertEqual(len(new), 3)
        self.assertIsInstance(new[1], PredictionVisHook)
        self.assertIsInstance(new[2], PeriodicWriter)
        self.assertEqual(new[1].period, 5)
        with self.assertRaises(ValueError):
            PredictionVisHook(period=-1, dataset_name="frcnn_test_val", input_cfg=on.cfg)


def test_default_is_off():
    cfg = load_config("vgg16_frcnn_shapes_demo.yaml")
    assert cfg.TEST.VIS_PERIOD == 0 and cfg.TEST.VIS_NUM_IMAGES == 4


@pytest.mark.usefixtures("tiny_shapes")
def test_two_iterations_write_images_to_tensorboard(tmp_path):
    """DefaultTrainer + maybe_add_vis_hook: the pictures reach TensorBoard's event file."""
    from detectron2.engine import DefaultTrainer
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from frcnn_plugin.engine.vis_hook import maybe_add_vis_hook

    class VisTrainer(DefaultTrainer):
        def build_hooks(self):
            return maybe_add_vis_hook(self, super().build_hooks())

    cfg = load_config(
        "vgg16_frcnn_shapes_demo.yaml", *SMALL, "DATASETS.TRAIN", "('frcnn_test_train',)",
        "DATASETS.TEST", "()", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16", "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()",
        "SOLVER.CHECKPOINT_PERIOD", "100", "TEST.VIS_PERIOD", "1", "TEST.VIS_NUM_IMAGES", "1",
        "OUTPUT_DIR", str(tmp_path),
    )
    trainer = VisTrainer(cfg)
    trainer.train()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert "val_predictions/0" in events.Tags()["images"]
    assert [e.step for e in events.Images("val_predictions/0")] == [0, 1]
