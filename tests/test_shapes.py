"""The generated shapes data sets: the demo's default unchanged, and the harder options."""
import hashlib
import json
import os
import unittest

import numpy as np
import pytest
from PIL import Image


def generate(root, n, **kwargs):
    from frcnn_plugin.data.shapes import generate_shapes_dataset

    with open(generate_shapes_dataset(str(root), n, **kwargs)) as f:
        return json.load(f)


def pixels_md5(path):
    return hashlib.md5(np.asarray(Image.open(path)).tobytes()).hexdigest()


def overlap_over_smaller(a, b):
    """a, b: [x, y, w, h]."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return 0.0 if w <= 0 or h <= 0 else w * h / min(a[2] * a[3], b[2] * b[3])


class TestShapes(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_default_is_the_demo_data_set_as_before(self):
        # recorded from the generator before the harder options existed (seed 0, 128 px)
        data = generate(self.tmp / "d", 4, image_size=128, seed=0)
        boxes = [a["bbox"] for a in data["annotations"]]
        self.assertEqual(len(boxes), 10)
        self.assertEqual(boxes[:3], [[60, 6, 47, 47], [2, 50, 62, 62], [84, 46, 44, 44]])
        images = self.tmp / "d" / "images"
        self.assertEqual(pixels_md5(images / "000000.png"), "f497ce89614dfd232c3d2aa275eb2b2b")
        self.assertEqual(pixels_md5(images / "000003.png"), "1e358f7e39d742bc888248b2f057f1d8")

    def test_harder_options(self):
        size = 96
        data = generate(self.tmp / "h", 12, image_size=size, seed=3, max_objects=10, min_size=12,
                        max_size=48, max_overlap=0.5, aspect_ratios=(0.25, 4.0), border=True,
                        clutter=6, texture=True)
        boxes = [a["bbox"] for a in data["annotations"]]
        for x, y, w, h in boxes:  # clipped to the image, never empty
            self.assertGreaterEqual(min(x, y), 0)
            self.assertLessEqual(max(x + w, y + h), size)
            self.assertGreaterEqual(min(w, h), 2)
        # some shapes cross the border (clipped boxes touch an edge), some are not square
        self.assertTrue(any(x == 0 or y == 0 or x + w == size or y + h == size
                            for x, y, w, h in boxes))
        inside = [(w, h) for x, y, w, h in boxes if 0 < x and 0 < y and x + w < size > y + h]
        ratios = [h / w for w, h in inside]
        self.assertTrue(any(r > 1.5 for r in ratios) and any(r < 1 / 1.5 for r in ratios))
        by_image = {}
        for a in data["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a["bbox"])
        self.assertGreater(max(len(v) for v in by_image.values()), 4)
        overlaps = [overlap_over_smaller(a, b) for v in by_image.values() for i, a in enumerate(v)
                    for b in v[i + 1:]]
        self.assertLess(max(overlaps), 0.5)
        self.assertGreater(max(overlaps), 0.2)  # more than the default allows
        # textured backgrounds vary far more than the default's noise (std 12)
        img = np.asarray(Image.open(self.tmp / "h" / "images" / "000000.png"), dtype=float)
        self.assertGreater(img.std(axis=(0, 1)).mean(), 20)

    def test_bad_options(self):
        with self.assertRaisesRegex(ValueError, "unknown shapes option.*'blur'.*allowed: "):
            generate(self.tmp / "x", 1, blur=True)
        with self.assertRaisesRegex(ValueError, r"aspect_ratios=\(2, 1\)"):
            generate(self.tmp / "y", 1, aspect_ratios=(2, 1))
        self.assertFalse(os.path.exists(self.tmp / "x"))

    def test_hard_builtin_is_registered_lazily(self):
        from detectron2.data import DatasetCatalog, MetadataCatalog

        import frcnn_plugin  # noqa: F401

        self.assertIn("frcnn_shapes_hard_train", DatasetCatalog.list())
        self.assertEqual(MetadataCatalog.get("frcnn_shapes_hard_val").thing_classes,
                         ["square", "circle", "triangle"])
