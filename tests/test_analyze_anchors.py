"""Anchor fit analysis (tools/analyze_anchors.py, frcnn_plugin.inspection.anchor_fit) on data
sets of known boxes, registered as plain dicts (no image files: only annotations and sizes)."""

import io
import json
import os
import re
import unittest
from contextlib import redirect_stdout

import numpy as np
import pytest
import yaml
from PIL import Image

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode

from tests.conftest import REPO, load_config, load_tool

DEMO = "vgg16_frcnn_shapes_demo.yaml"
# 64x64 images, stride 16 (4x4 grid, centres 8, 24, 40, 56), anchors 16 and 32 px x 3 ratios
SMALL = [
    "INPUT.MIN_SIZE_TEST",
    "64",
    "INPUT.MAX_SIZE_TEST",
    "64",
    "MODEL.VGG.DEPTH",
    "11",
    "MODEL.ANCHOR_GENERATOR.SIZES",
    "[[16, 32]]",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def register(name, boxes_per_image, size=(64, 64)):
    """A data set of plain dicts with XYXY boxes; re-registering replaces it."""

    def load():
        return [
            {
                "file_name": "none_{}.png".format(i),
                "image_id": i,
                "height": size[0],
                "width": size[1],
                "annotations": [
                    {"bbox": list(b), "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0}
                    for b in boxes
                ],
            }
            for i, boxes in enumerate(boxes_per_image)
        ]

    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, load)
    return name


def run_tool(argv):
    buf = io.StringIO()
    with redirect_stdout(buf):
        result = load_tool("analyze_anchors").main(argv)
    return result, buf.getvalue()


class TestAnchorFit(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_boxes_equal_to_anchors(self):
        # square anchors of 16 and 32 px inside the image (centres at 8 + 16 k)
        boxes = [[[16, 16, 32, 32], [0, 0, 16, 16]], [[8, 8, 40, 40]], [[24, 24, 56, 56]]]
        name = register("frcnn_test_fit_exact", boxes)
        out = str(self.tmp / "fit")
        result, text = run_tool(
            [
                "--config-file",
                os.path.join(REPO, "configs", DEMO),
                "--dataset",
                name,
                "--out-dir",
                out,
                "--json",
                os.path.join(out, "fit.json"),
            ]
            + SMALL
        )
        st = result.current_stats
        self.assertEqual(st.num_gt, 4)
        self.assertEqual(st.share_high, 1.0)
        self.assertEqual(st.share_mid, 1.0)
        self.assertEqual(st.share_low, 0.0)
        np.testing.assert_allclose(st.best_iou, 1.0, rtol=1e-6)
        self.assertTrue(np.all(st.positives >= 1))
        self.assertEqual(result.suggested_stats.share_high, 1.0)
        self.assertIn(
            "| current | [[16, 32]] | [[0.5, 1.0, 2.0]] | 100.0 % | 100.0 % | 0.0 %", text
        )
        png = os.path.join(out, "anchor_fit.png")
        img = np.asarray(Image.open(png).convert("RGB"))
        self.assertGreater(img.shape[1], 300)
        self.assertGreater(len(np.unique(img.reshape(-1, 3), axis=0)), 10)
        with open(os.path.join(out, "fit.json")) as f:
            self.assertEqual(json.load(f)["current"]["share_best_iou_ge_0.7"], 1.0)

    def test_report_structure_is_the_readmes(self):
        """The documented report (docs/inspection.md, Anchor fit of a data set) is the reference:
        the same lines, table header and rows, with other numbers and lists."""
        from tests.docs_text import section

        reference = re.search(r"```\n(Anchor fit of .*?)```",
                              section("## Anchor fit of a data set"), re.S).group(1)
        name = register("frcnn_test_fit_readme", [[[16, 16, 32, 32]], [[8, 8, 40, 40]]])
        _, text = run_tool(["--config-file", os.path.join(REPO, "configs", DEMO), "--dataset",
                            name] + SMALL)

        def shape(report, dataset):
            report = report.replace(dataset, "DATASET")
            report = re.sub(r"\[[\[\]\d., ]*\]", "[list]", report)
            return re.sub(r"\d+(\.\d+)?", "N", report).strip().splitlines()

        self.assertEqual(shape(text, name), shape(reference, "frcnn_shapes_train"))
        header = [c.strip() for c in text.splitlines()[4].split("|")[1:-1]]
        self.assertEqual(header, ["anchors", "sizes", "ratios", "best IoU ≥ 0.7", "≥ 0.5",
                                  "< 0.3", "positives per GT (mean / min)"])

    def test_boxes_far_from_anchors_get_a_better_suggestion(self):
        # tall thin 8x40 boxes (h/w = 5) on the anchor centres: no anchor reaches IoU 0.7
        boxes = [[[cx - 4, cy - 20, cx + 4, cy + 20]] for cx in (8, 24, 40, 56) for cy in (24, 40)]
        name = register("frcnn_test_fit_far", boxes)
        result, text = run_tool(
            ["--config-file", os.path.join(REPO, "configs", DEMO), "--dataset", name] + SMALL
        )
        self.assertEqual(result.current_stats.share_high, 0.0)
        self.assertEqual(result.current_stats.share_mid, 0.0)  # best IoU 0.46 (16 px, h/w 2)
        self.assertGreaterEqual(result.suggested_stats.share_high, 0.9)
        # same number of sizes and ratios (the RPN head keeps its shape)
        self.assertEqual([len(s) for s in result.suggested.sizes], [2])
        self.assertEqual([len(r) for r in result.suggested.ratios], [3])
        self.assertTrue(any(r >= 4 for r in result.suggested.ratios[0]))

        # the printed YAML pastes into the config and gives the promised share
        block = text[text.index("MODEL:\n  ANCHOR_GENERATOR:") :]
        cfg = load_config(DEMO, *SMALL)
        cfg.merge_from_other_cfg(CfgNode(yaml.safe_load(block)))
        from frcnn_plugin.inspection import analyze_dataset

        again = analyze_dataset(cfg, name)
        self.assertEqual(again.current_stats.share_high, result.suggested_stats.share_high)

    def test_scales_config_and_resizing(self):
        """FRCNNAnchorGenerator with BASE_SIZES x SCALES; 32x32 images resized to 64 (boxes x2);
        the YAML resets SCALES so that SIZES applies."""
        boxes = [[[0, 0, 8, 8]], [[8, 8, 16, 16]]]  # 8 px -> 16 px boxes after resizing
        name = register("frcnn_test_fit_resize", boxes, size=(32, 32))
        cfg = load_config(
            "vgg16_frcnn_paper_anchors.yaml",
            *SMALL[:6],
            "MODEL.ANCHOR_GENERATOR.SCALES",
            "[[1, 2]]"
        )
        from frcnn_plugin.inspection import analyze_dataset
        from frcnn_plugin.inspection.anchor_fit import format_report

        result = analyze_dataset(cfg, name)
        self.assertEqual(result.image_sizes, [(64, 64), (64, 64)])
        np.testing.assert_allclose(result.gt_boxes[1], [16, 16, 32, 32])
        self.assertEqual(result.current.sizes, ((16.0, 32.0),))
        self.assertEqual(result.current_stats.share_high, 1.0)  # both are anchors
        self.assertEqual(result.current_stats.num_gt, 2)
        text = format_report(result)
        self.assertIn("SCALES: []", text)
        self.assertIn("FRCNNAnchorGenerator", text)


class TestFeatureGrid(unittest.TestCase):
    """The anchor grid has the backbone's own feature size, e.g. VGG's max-pools round down."""

    def test_vgg_floors_and_matches_a_real_forward(self):
        import torch
        from detectron2.modeling import build_backbone

        from frcnn_plugin.inspection.anchor_fit import AnchorFitter

        cfg = load_config(DEMO, *SMALL)
        fitter = AnchorFitter(cfg)
        # 4 max-pools of stride 2, rounding down: 801 -> 400 -> 200 -> 100 -> 50 (ceil(801 / 16)
        # would be 51); 817 -> 408 -> 204 -> 102 -> 51; 800 -> 50
        self.assertEqual(fitter.grid_sizes((801, 817)), [(50, 51)])
        self.assertEqual(fitter.grid_sizes((800, 800)), [(50, 50)])
        # the anchors are laid on that grid: 50 x 51 locations x 2 sizes x 3 ratios
        generator = fitter.build_generator(fitter.current)
        fitter.boundary_thresh = -1  # all anchors, inside the image or not
        self.assertEqual(len(fitter.anchors(generator, (801, 817))), 50 * 51 * 6)
        # the same sizes as a real forward of the backbone (a small input: fast on the CPU)
        backbone = build_backbone(cfg).eval()
        for size in ((72, 40), (47, 33), (64, 64)):
            with torch.no_grad():
                real = backbone(torch.zeros(1, 3, *size))["conv5"].shape[-2:]
            self.assertEqual(fitter.grid_sizes(size), [tuple(real)], size)
        self.assertEqual(fitter.grid_sizes((72, 40)), [(4, 2)])  # ceil would give (5, 3)

    def test_size_divisibility_pads_first(self):
        from frcnn_plugin.inspection.anchor_fit import AnchorFitter

        # R50-FPN pads to a multiple of 32, then P2 ... P6 have strides 4 ... 64:
        # 801 -> 832: 208, 104, 52, 26, 13; 100 -> 128: 32, 16, 8, 4, 2
        fitter = AnchorFitter(load_config("R50_FPN_frcnn_anchors.yaml"))
        self.assertEqual(fitter.size_divisibility, 32)
        self.assertEqual(fitter.grid_sizes((801, 100)),
                         [(208, 32), (104, 16), (52, 8), (26, 4), (13, 2)])
