"""Stage-by-stage inspection and anchor pictures (tools/inspect_pipeline.py,
tools/visualize_anchors.py, frcnn_plugin.inspection), on 64 px generated images."""

import json
import os
import re
import unittest

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import REPO, TINY_MODEL, load_config, load_tool

DEMO = "vgg16_frcnn_shapes_demo.yaml"
# a small, fast variant of the demo model for 64x64 images: 4x4 feature map, 2 sizes x 3 ratios
SMALL = [*TINY_MODEL, "MODEL.DEVICE", "cpu"]


pytestmark = pytest.mark.usefixtures("one_thread")


def gt_boxes(dataset, index):
    from detectron2.data import DatasetCatalog
    from detectron2.structures import BoxMode

    record = DatasetCatalog.get(dataset)[index]
    return [
        BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in record["annotations"]
    ]


@pytest.mark.usefixtures("tiny_shapes")
class TestInspectPipeline(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_dataset_image_table_and_json(self):
        tool = load_tool("inspect_pipeline")
        out = str(self.tmp / "stages.json")
        trace = tool.main(
            [
                "--config-file",
                os.path.join(REPO, "configs", DEMO),
                "--dataset",
                "frcnn_test_train",
                "--index",
                "1",
                "--json",
                out,
            ]
            + SMALL
        )
        with open(out) as f:
            data = json.load(f)
        s = data["summary"]
        self.assertEqual(s["input"], [3, 64, 64])
        self.assertEqual(s["feature/conv5"], [512, 4, 4])
        self.assertEqual(s["anchors"], 4 * 4 * 6)
        self.assertEqual(s["anchors_inside"], int(trace.inside.sum()))
        self.assertLess(s["anchors_inside"], s["anchors"])
        labels = s["anchor_labels"]
        self.assertEqual(sum(labels.values()), s["anchors"])
        self.assertGreaterEqual(labels["ignored"], s["anchors"] - s["anchors_inside"])
        num_gt = len(gt_boxes("frcnn_test_train", 1))
        self.assertGreaterEqual(labels["positive"], 1)
        self.assertLessEqual(labels["positive"], s["anchors_inside"])
        sampled = s["anchors_sampled"]
        self.assertEqual(sampled["positive"], labels["positive"])  # fewer than 128 positives
        self.assertEqual(sampled["negative"], min(labels["negative"], 256 - labels["positive"]))
        self.assertEqual(s["rpn_objectness"], [1, 12, 4, 4])  # softmax: 2 x 6 anchors
        self.assertEqual(s["rpn_deltas"], [1, 24, 4, 4])
        self.assertGreaterEqual(s["proposals_pre_nms"], s["proposals_post_nms"])
        rois = s["rois_sampled"]
        self.assertLessEqual(rois["foreground"], 4)  # 16 RoIs, <= 25 % foreground
        self.assertGreaterEqual(rois["foreground"], 1)  # the GT boxes are appended
        self.assertEqual(
            rois["foreground"] + rois["background"], min(16, s["proposals_post_nms"] + num_gt)
        )
        self.assertEqual(s["roi_pooled_sampled"], [sum(rois.values()), 512, 7, 7])
        n = s["proposals_post_nms"]
        self.assertEqual(s["roi_pooled"], [n, 512, 7, 7])
        self.assertEqual(s["box_head"], [n, 32])
        self.assertEqual(s["cls_scores"], [n, 4])
        self.assertEqual(s["box_deltas"], [n, 12])
        self.assertEqual(s["detections"], len(trace.detections))
        self.assertEqual([r["key"] for r in data["stages"]][:2], ["input", "feature/conv5"])

    def test_image_without_gt_resizes_and_says_na(self):
        from contextlib import redirect_stdout
        from io import StringIO

        path = str(self.tmp / "image.png")
        Image.fromarray(np.full((60, 80, 3), 90, dtype=np.uint8)).save(path)
        tool = load_tool("inspect_pipeline")
        buf = StringIO()
        with redirect_stdout(buf):
            trace = tool.main(
                ["--config-file", os.path.join(REPO, "configs", DEMO), "--image", path] + SMALL
            )
        s = trace.summary
        self.assertEqual(s["input"], [3, 48, 64])  # ResizeShortestEdge(64, 64) of 60x80
        self.assertEqual(s["feature/conv5"], [512, 3, 4])
        self.assertEqual(s["anchors"], 3 * 4 * 6)
        for key in ("anchor_labels", "anchors_sampled", "rois_sampled", "roi_pooled_sampled"):
            self.assertIsNone(s[key])
        self.assertIsNotNone(s["proposals_post_nms"])
        table = buf.getvalue()
        self.assertIn("| anchor labels: positive / negative / ignored | n/a", table)
        self.assertIn("no ground truth", table)

    def test_paper_numbers_on_800x800(self):
        """The walk-through: 800x800 -> 50x50x512 -> 22 500 anchors, 8 940 inside, 128 RoIs of
        which <= 32 foreground, pooled to 128x512x7x7 (the VGG16 forward is replaced by a
        zero feature map of the right shape, to stay fast)."""
        from detectron2.modeling import build_model

        from frcnn_plugin.inspection import load_image_input, trace_pipeline

        cfg = load_config(
            "Base-VGG16-FRCNN.yaml",
            "INPUT.MIN_SIZE_TEST",
            "800",
            "INPUT.MAX_SIZE_TEST",
            "1333",
            "MODEL.ROI_HEADS.NUM_CLASSES",
            "1",
            "MODEL.ROI_BOX_HEAD.FC_DIM",
            "16",
        )
        model = build_model(cfg)
        model.backbone.forward = lambda x: {"conv5": torch.zeros(1, 512, 50, 50)}
        path = str(self.tmp / "800.png")
        Image.fromarray(np.zeros((800, 800, 3), dtype=np.uint8)).save(path)
        inp = load_image_input(cfg, path, [[200, 200, 456, 456]])
        s = trace_pipeline(model, inp).summary
        self.assertEqual(s["input"], [3, 800, 800])
        self.assertEqual(s["anchors"], 22500)
        self.assertEqual(s["anchors_inside"], 8940)
        self.assertEqual(s["anchors_sampled"]["positive"] + s["anchors_sampled"]["negative"], 256)
        self.assertEqual(s["proposals_pre_nms"], 6000)
        self.assertLessEqual(s["proposals_post_nms"], 300)
        rois = s["rois_sampled"]
        self.assertEqual(rois["foreground"] + rois["background"], 128)
        self.assertLessEqual(rois["foreground"], 32)
        self.assertEqual(s["roi_pooled_sampled"], [128, 512, 7, 7])
        self.assertEqual(s["cls_scores"][1], 2)


def readme_table(heading):
    """The rows of the first table in a code block of the documentation's section ``heading``
    (README.md or the docs/ page it moved to), as cell lists."""
    from tests.docs_text import section

    block = re.search(r"```\n(\|.*?)```", section(heading), re.S).group(1)
    return [[c.strip() for c in line.split("|")[1:-1]] for line in block.strip().splitlines()]


class TestTraceAndRendering(unittest.TestCase):
    """The trace is plain data, leaves the model as it was, and renders as the docs show."""

    # the docs' "One image, stage by stage": the paper's setting, its three GT boxes, --mode train
    GT = [[375, 37.5, 668.75, 331.25], [12.5, 312.5, 400, 700], [525, 287.5, 800, 562.5]]
    # rows whose value does not depend on the weights (anchors, labels, sampling, head shapes)
    WEIGHT_FREE = (
        "input (after resize)", "backbone conv5", "anchors", "anchors inside the image",
        "anchor labels: positive / negative / ignored", "anchors sampled: positive / negative",
        "RPN head objectness", "RPN head deltas", "proposals before NMS",
        "RoI pooling (sampled RoIs)",
    )  # fmt: skip

    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def paper_trace(self):
        from detectron2.modeling import build_model

        from frcnn_plugin.inspection import load_image_input, trace_pipeline

        cfg = load_config(
            "Base-VGG16-FRCNN.yaml", "INPUT.MIN_SIZE_TEST", "800", "INPUT.MAX_SIZE_TEST",
            "1333", "MODEL.ROI_HEADS.NUM_CLASSES", "1", "MODEL.ROI_BOX_HEAD.FC_DIM", "16",
        )  # fmt: skip
        torch.manual_seed(0)
        model = build_model(cfg)
        # the VGG16 forward replaced by a feature map of the right shape, to stay fast
        model.backbone.forward = lambda x: {"conv5": torch.zeros(1, 512, 50, 50)}
        path = str(self.tmp / "800.png")
        Image.fromarray(np.zeros((800, 800, 3), dtype=np.uint8)).save(path)
        return model, trace_pipeline(model, load_image_input(cfg, path, self.GT), mode="train")

    def test_readme_table_structure(self):
        from frcnn_plugin.inspection.pipeline import format_table, stage_name, trace_to_dict

        readme = readme_table("### One image, stage by stage")
        _, trace = self.paper_trace()
        table = format_table(trace.stages).splitlines()
        ours = [[c.strip() for c in line.split("|")[1:-1]] for line in table]
        self.assertEqual(ours[0], ["stage", "value", "details"])
        self.assertEqual([len(r) for r in ours], [3] * len(ours))
        self.assertEqual([r[0] for r in ours], [r[0] for r in readme])  # names, in order
        self.assertEqual(len(set(len(line) for line in table)), 1)  # aligned columns
        for theirs, mine in zip(readme[2:], ours[2:]):
            if theirs[0] in self.WEIGHT_FREE:
                self.assertEqual(mine, theirs)
            elif not theirs[0].startswith("RoIs sampled"):  # details say the proposal count
                self.assertEqual(mine[2], theirs[2], theirs[0])
        data = trace_to_dict(trace)
        self.assertEqual([r["stage"] for r in data["stages"]], [r[0] for r in readme[2:]])
        self.assertEqual([stage_name(s.key) for s in trace.stages], [r[0] for r in readme[2:]])
        json.dumps(data)  # plain data
        self.assertEqual(data["summary"]["anchors"], 22500)

    def test_model_state_unchanged(self):
        """No attribute of the live RPN is set while tracing (not even temporarily), and the
        training flags come back as they were."""
        model, _ = self.paper_trace()
        model.eval()
        pg = model.proposal_generator
        before = dict(vars(pg))
        topk = dict(pg.post_nms_topk)

        def refuse(self, name, value):
            if name == "training" and value == self.training:  # eval() on an eval module
                return object.__setattr__(self, name, value)
            raise AssertionError("the trace set {} on the live RPN".format(name))

        pg.__class__ = type("Frozen", (type(pg),), {"__setattr__": refuse})
        from frcnn_plugin.inspection import load_image_input, trace_pipeline

        cfg = load_config("Base-VGG16-FRCNN.yaml", "INPUT.MIN_SIZE_TEST", "800")
        path = str(self.tmp / "800.png")
        inp = load_image_input(cfg, path, self.GT)
        for mode in ("train", "test"):
            trace_pipeline(model, inp, mode=mode)
        self.assertEqual(set(vars(pg)), set(before))
        for k, v in before.items():
            self.assertIs(vars(pg)[k], v, k)
        self.assertEqual(pg.post_nms_topk, topk)
        object.__setattr__(pg, "__class__", type(pg).__mro__[1])
        model.train()
        trace = trace_pipeline(model, inp, mode="test")
        self.assertTrue(all(m.training for m in model.modules()))  # restored
        self.assertEqual(trace.summary["proposals_pre_nms"], 6000)  # test-time top-k all along


def pixel(img, x, y):
    return tuple(int(v) for v in img[int(y), int(x)])


@pytest.mark.usefixtures("tiny_shapes")
class TestVisualizeAnchors(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.out = str(tmp_path / "pictures")

    def test_pictures(self):
        from frcnn_plugin.inspection import draw

        tool = load_tool("visualize_anchors")
        written = tool.main(
            [
                "--config-file",
                os.path.join(REPO, "configs", DEMO),
                "--dataset",
                "frcnn_test_train",
                "--index",
                "1",
                "--out-dir",
                self.out,
            ]
            + SMALL
        )
        names = {
            "base_anchors",
            "shifted_anchors",
            "iou_heatmap",
            "positive_anchors",
            "rpn_samples",
            "roi_samples",
        }
        self.assertEqual(set(written), names)
        scale = 6  # 64 px zoomed to >= 384 px
        boxes = gt_boxes("frcnn_test_train", 1)  # 64 px images: not resized
        pictures = {}
        for name in names:
            img = np.asarray(Image.open(os.path.join(self.out, name + ".png")).convert("RGB"))
            pictures[name] = img
            self.assertGreater(len(np.unique(img.reshape(-1, 3), axis=0)), 10, name)
            if name == "base_anchors":  # padded so that the 45 px anchors fit
                self.assertGreater(img.shape[0], 64 * scale)
                continue
            self.assertEqual(img.shape, (64 * scale, 64 * scale, 3), name)
            if name == "shifted_anchors":
                continue
            x0, y0, x1, y1 = boxes[0]
            ymid, xmid = (y0 + y1) / 2 * scale, (x0 + x1) / 2 * scale
            for x, y in (
                (x0 * scale + 1, ymid),
                (x1 * scale - 2, ymid),
                (xmid, y0 * scale + 1),
                (xmid, y1 * scale - 2),
            ):
                self.assertEqual(pixel(img, x, y), draw.GT, (name, x, y))
        colors = {
            n: {tuple(c) for c in np.unique(p.reshape(-1, 3), axis=0)} for n, p in pictures.items()
        }
        self.assertIn(draw.POSITIVE, colors["positive_anchors"])
        self.assertNotIn(draw.PREDICTION, colors["positive_anchors"])  # no --weights
        self.assertIn(draw.POSITIVE, colors["rpn_samples"])
        self.assertIn(draw.NEGATIVE, colors["rpn_samples"])
        self.assertIn(draw.POSITIVE, colors["roi_samples"])
        self.assertIn(draw.NEGATIVE, colors["roi_samples"])
        self.assertIn(draw.ANCHOR_COLORS[0], colors["base_anchors"])
        self.assertIn(draw.ANCHOR_COLORS[1], colors["base_anchors"])
        self.assertIn(draw.ANCHOR_COLORS[2], colors["shifted_anchors"])

    def test_heatmap_peaks_at_the_gt(self):
        from detectron2.modeling import build_model

        from frcnn_plugin.inspection import load_dataset_input, trace_pipeline
        from frcnn_plugin.inspection.anchor_viz import iou_heatmap

        cfg = load_config(DEMO, *SMALL)
        trace = trace_pipeline(build_model(cfg), load_dataset_input(cfg, "frcnn_test_train", 1))
        heat = iou_heatmap(trace, gt_index=0)
        self.assertEqual(heat.shape, (4, 4))
        i, j = np.unravel_index(np.argmax(heat), heat.shape)
        x0, y0, x1, y1 = trace.gt.gt_boxes.tensor[0].tolist()
        # the best location's centre lies inside the GT box
        self.assertTrue(x0 <= j * 16 + 8 <= x1 and y0 <= i * 16 + 8 <= y1)
        self.assertTrue(0 < heat.max() <= 1)


@pytest.mark.usefixtures("tiny_shapes")
class TestInspectionWeights(unittest.TestCase):
    """--weights: default MODEL.WEIGHTS, '' untrained, clear load errors; random heads are not
    drawn as predictions."""

    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = str(tmp_path)

    def checkpoint(self, name, keep=lambda key: True):
        """A checkpoint of a tiny model initialized from another seed (123) than the tools'
        SEED, restricted to the keys ``keep`` accepts; returns (path, state dict)."""
        import torch
        from detectron2.modeling import build_model
        from detectron2.utils.env import seed_all_rng

        seed_all_rng(123)
        cfg = load_config(DEMO, *SMALL)
        state = {k: v for k, v in build_model(cfg).state_dict().items() if keep(k)}
        path = os.path.join(self.tmp, name)
        torch.save({"model": state}, path)
        return path, state

    def test_weights_default_empty_and_missing(self):
        import torch

        from frcnn_plugin.cli import MissingFileError
        from frcnn_plugin.inspection.cli import build_inspection_model, input_parser, setup_cfg

        full, state = self.checkpoint("full.pth")
        parser = input_parser("x")
        base = ["--config-file", DEMO, "--image", "x.png"]
        self.assertIsNone(parser.parse_args(base).weights)  # not given: MODEL.WEIGHTS
        self.assertEqual(parser.parse_args(base + ["--weights", ""]).weights, "")

        def loaded(model):  # which randomly initialized parameters equal the checkpoint's
            return [torch.equal(p, state[n]) for n, p in model.named_parameters()
                    if p.numel() > 1 and float(state[n].std()) > 0]

        config = os.path.join(REPO, "configs", DEMO)
        cfg = setup_cfg(config, SMALL + ["MODEL.WEIGHTS", full, "SEED", "0"])
        model, untrained = build_inspection_model(cfg, None)  # MODEL.WEIGHTS is loaded
        self.assertGreater(len(loaded(model)), 10)
        self.assertTrue(all(loaded(model)))
        self.assertEqual(untrained, [])
        model, untrained = build_inspection_model(cfg, "")  # '' = untrained, not MODEL.WEIGHTS
        self.assertFalse(any(loaded(model)))
        self.assertEqual(untrained, ["proposal_generator", "roi_heads.box_predictor"])

        missing = os.path.join(self.tmp, "missing.pth")
        for weights, mw in ((None, missing), (missing, full)):
            cfg = setup_cfg(config, SMALL + ["MODEL.WEIGHTS", mw])
            with self.assertRaisesRegex(MissingFileError, "Checkpoint not found: " + missing):
                build_inspection_model(cfg, weights)

    def run_tool(self, *extra):
        """visualize_anchors: (predictions drawn?, positives drawn?, printed text)."""
        from contextlib import redirect_stdout
        from io import StringIO

        from frcnn_plugin.inspection import draw

        out = os.path.join(self.tmp, "pictures_" + str(len(os.listdir(self.tmp))))
        buf = StringIO()
        with redirect_stdout(buf):
            load_tool("visualize_anchors").main(
                ["--config-file", os.path.join(REPO, "configs", DEMO), "--dataset",
                 "frcnn_test_train", "--index", "1", "--out-dir", out, *extra] + SMALL)
        img = np.asarray(Image.open(os.path.join(out, "positive_anchors.png")).convert("RGB"))
        colors = {tuple(c) for c in np.unique(img.reshape(-1, 3), axis=0)}
        return draw.PREDICTION in colors, draw.POSITIVE in colors, buf.getvalue()

    def test_imagenet_like_weights_draw_no_predictions(self):
        # what tools/convert_vgg_weights.py writes: the backbone and fc6/fc7 only
        imagenet, _ = self.checkpoint(
            "imagenet.pth", lambda k: k.startswith(("backbone.", "roi_heads.box_head.")))
        predicted, positive, text = self.run_tool("--weights", imagenet)
        self.assertFalse(predicted)
        self.assertTrue(positive)
        self.assertIn("random weights in proposal_generator, roi_heads.box_predictor", text)
        self.assertIn("no predictions drawn (--force-predictions", text)

        predicted, _, text = self.run_tool("--weights", imagenet, "--force-predictions")
        self.assertTrue(predicted)
        self.assertIn("drawn anyway", text)

        # every head in the checkpoint: predictions, no note
        predicted, _, text = self.run_tool("--weights", self.checkpoint("full.pth")[0])
        self.assertTrue(predicted)
        self.assertNotIn("random weights", text)

        # the RPN, but not the box predictor: still random heads
        rpn, _ = self.checkpoint("rpn.pth", lambda k: not k.startswith("roi_heads.box_pred"))
        predicted, _, text = self.run_tool("--weights", rpn)
        self.assertFalse(predicted)
        self.assertIn("random weights in roi_heads.box_predictor (", text)

        # no weights at all
        predicted, _, text = self.run_tool("--weights", "")
        self.assertFalse(predicted)
        self.assertIn("random weights in proposal_generator, roi_heads.box_predictor", text)
