"""FRCNNGeneralizedRCNN's original sizes and FRCNNDatasetMapper's input scale, under resizing
and INPUT.CROP (the paper's minimum proposal size is in original-image pixels)."""
import unittest

import numpy as np
import torch

from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from frcnn_plugin.data import INPUT_SCALE_KEY, FRCNNDatasetMapper
from frcnn_plugin.data.dataset_mapper import input_scale
from frcnn_plugin.modeling.meta_arch import original_sizes
from tests.conftest import TINY_MODEL, load_config

DEMO = "vgg16_frcnn_shapes_demo.yaml"


class TestInputScale(unittest.TestCase):
    def test_crop_then_resize(self):
        # a 200 x 300 crop of an 800 x 600 image, resized to 400 x 600: 2 input px per pixel
        t = T.TransformList(
            [T.CropTransform(100, 50, 300, 200), T.ResizeTransform(200, 300, 400, 600)]
        )
        self.assertEqual(input_scale(t), (2.0, 2.0))

    def test_resize_flip_and_unequal_scales(self):
        t = T.TransformList([T.ResizeTransform(100, 200, 50, 300), T.HFlipTransform(300)])
        self.assertEqual(input_scale(t), (0.5, 1.5))

    def test_original_sizes_from_the_scale_or_the_record(self):
        inputs = [{INPUT_SCALE_KEY: (2.0, 2.0), "height": 800, "width": 600},
                  {"height": 300, "width": 500}, {}]
        sizes = original_sizes(inputs, [(400, 600), (600, 1000), (64, 64)])
        # the crop's 200 x 300 pixels, not the 800 x 600 record; then the record; then the input
        self.assertEqual(sizes, [(200.0, 300.0), (300, 500), (64, 64)])


class TestMapperAndModel(unittest.TestCase):
    def test_mapper_records_the_scale_of_a_real_crop(self):
        from frcnn_plugin.data import prepare_dataset
        from detectron2.data import DatasetCatalog

        prepare_dataset("frcnn_shapes_train")
        record = DatasetCatalog.get("frcnn_shapes_train")[0]
        cfg = load_config(DEMO, "INPUT.CROP.ENABLED", "True", "INPUT.CROP.TYPE", "absolute",
                          "INPUT.CROP.SIZE", "[64, 64]", "INPUT.MIN_SIZE_TRAIN", "(96,)",
                          "INPUT.MAX_SIZE_TRAIN", "1000", "INPUT.RANDOM_FLIP", "none")
        out = FRCNNDatasetMapper(cfg, True)(record)
        # a 64 x 64 crop resized to a shorter side of 96: 1.5 input px per original px
        self.assertEqual(tuple(out["image"].shape[-2:]), (96, 96))
        np.testing.assert_allclose(out[INPUT_SCALE_KEY], (1.5, 1.5))

    def test_crop_without_the_scale_is_a_clear_error(self):
        cfg = load_config(DEMO, *TINY_MODEL, "INPUT.CROP.ENABLED", "True",
                          "MODEL.PROPOSAL_GENERATOR.MIN_SIZE", "16")
        model = build_model(cfg).train()
        image = torch.zeros(3, 64, 64)
        inputs = [{"image": image, "height": 128, "width": 128, "file_name": "a.png"}]
        with EventStorage(), self.assertRaises(ValueError) as ctx:
            model.preprocess_image(inputs)
        self.assertIn("INPUT.CROP.ENABLED=True", str(ctx.exception))
        self.assertIn("FRCNNDatasetMapper", str(ctx.exception))
        inputs[0][INPUT_SCALE_KEY] = (1.0, 0.5)
        images = model.preprocess_image(inputs)
        self.assertEqual(images.original_sizes, [(64.0, 128.0)])
        self.assertEqual(model.proposal_generator.min_box_sizes(images), [16 * 0.75])


if __name__ == "__main__":
    unittest.main()
