"""tools/benchmark.py end to end on tiny settings, the peers' settings, the synthetic COCO data,
and the exactness of the RPN's NMS shortcut. Nothing here asserts a timing."""
import json
import math
import os
import unittest

import pytest
import torch

from tests.conftest import CONFIGS, load_config, load_tool

DEMO = os.path.join(CONFIGS, "vgg16_frcnn_shapes_demo.yaml")
# 64 px images, VGG11, fc6/fc7 of 32, two images per iteration, the test data sets.
TINY = [
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
    "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
    "MODEL.VGG.DEPTH", "11", "MODEL.ROI_BOX_HEAD.FC_DIM", "32",
    "MODEL.ANCHOR_GENERATOR.SIZES", "[[16, 32]]", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "SOLVER.IMS_PER_BATCH", "2",
    "DATASETS.TRAIN", "('frcnn_test_train',)", "DATASETS.TEST", "('frcnn_test_val',)",
]
SHORT = ["--iters", "2", "--warmup", "1", "--repeats", "1", "--num-images", "4"]


def run_tool(tmp_path, *args):
    # a new file per run: the tool refuses to replace an earlier result
    out = str(tmp_path / "bench-{}.json".format(len(list(tmp_path.glob("bench-*.json")))))
    argv = ["--config-file", DEMO, *SHORT, "--json", out, *args, *TINY]
    results = load_tool("benchmark").main(argv)
    with open(out) as f:
        saved = json.load(f)
    return results, saved


def positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.usefixtures("tiny_shapes")
class TestBenchmarkTool(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def check_common(self, saved, kinds):
        self.assertEqual(list(saved["models"]), kinds)
        self.assertEqual(saved["settings"]["threads"], torch.get_num_threads())
        for kind in kinds:
            model = saved["models"][kind]
            self.assertEqual(model["threads"], saved["settings"]["threads"])
            self.assertTrue(positive(model["memory"]["peak_mb"]), kind)
            self.assertEqual(model["memory"]["peak_kind"], "process_rss_hwm")
        self.assertTrue(saved["machine"]["cpu_model"])

    def test_train_with_both_peers_in_separate_processes(self):
        results, saved = run_tool(self.tmp, "--task", "train")
        self.check_common(saved, ["plugin", "torchvision", "d2"])
        self.assertTrue(saved["settings"]["isolated_processes"])
        self.assertEqual(saved["settings"]["input"]["images_per_iter"], 2)
        self.assertEqual(saved["settings"]["input"]["input_sizes_hw"], ["64x64"])
        for kind, model in saved["models"].items():
            self.assertEqual(model["step_time_s"]["n"], 2)
            self.assertTrue(positive(model["step_time_s"]["median"]), kind)
            self.assertGreaterEqual(model["step_time_s"]["p90"], model["step_time_s"]["median"])
            self.assertTrue(positive(model["iters_per_s"]["median"]), kind)
            stages = model["breakdown"]["mean_s"]
            for stage in ("backbone", "rpn_head", "box_head", "backward", "optimizer", "total"):
                self.assertTrue(positive(stages[stage]), (kind, stage))
            self.assertTrue(0 < stages["outside_fraction"] < 1, kind)
        self.assertGreater(saved["models"]["torchvision"]["model"]["weights_from_plugin"], 0)
        plugin = saved["models"]["plugin"]
        for peer in ("torchvision", "d2"):
            ratios, other = saved["ratios"][peer], saved["models"][peer]
            self.assertAlmostEqual(
                ratios["step_time_median"],
                plugin["step_time_s"]["median"] / other["step_time_s"]["median"])
            self.assertAlmostEqual(
                ratios["iters_per_s_median"],
                plugin["iters_per_s"]["median"] / other["iters_per_s"]["median"])
            self.assertAlmostEqual(ratios["peak_memory"],
                                   plugin["memory"]["peak_mb"] / other["memory"]["peak_mb"])
        targets = saved["targets"]
        self.assertEqual(set(targets),
                         {"train_step_vs_torchvision", "train_outside_network_fraction"})
        self.assertEqual(targets["train_step_vs_torchvision"]["value"],
                         saved["ratios"]["torchvision"]["step_time_median"])
        self.assertIsInstance(targets["train_outside_network_fraction"]["met"], bool)
        self.assertEqual(saved["ratios"], results["ratios"])
        from benchmarks.report import format_report

        report = format_report(saved)
        for kind, model in saved["models"].items():
            self.assertGreaterEqual(model["memory"]["minor_page_faults_per_iter"], 0, kind)
        self.assertIn("| minor page faults per iteration (median of rounds) ", report)

    def test_inference_and_data_in_process(self):
        _, saved = run_tool(self.tmp, "--task", "inference", "--peers", "torchvision",
                            "--no-isolate", "--repeats", "2")  # rounds interleaved
        self.check_common(saved, ["plugin", "torchvision"])
        for kind, model in saved["models"].items():
            latency = model["latency_s"]
            self.assertEqual(latency["n"], 4)
            self.assertEqual(len(model["per_round_median_s"]), 2)
            self.assertTrue(positive(latency["median"]), kind)
            self.assertGreaterEqual(latency["p90"], latency["median"])
            self.assertGreater(model["detections_per_image"], 0)  # score threshold 0
        ratio = saved["ratios"]["torchvision"]["latency_median"]
        self.assertAlmostEqual(ratio, saved["models"]["plugin"]["latency_s"]["median"]
                               / saved["models"]["torchvision"]["latency_s"]["median"])
        self.assertIn("inference_vs_torchvision", saved["targets"])

        _, saved = run_tool(self.tmp, "--task", "data", "--no-isolate")
        data = saved["models"]["plugin"]
        self.assertEqual(list(saved["models"]), ["plugin"])  # the loader has no peers
        self.assertTrue(positive(data["images_per_s"]["median"]))
        self.assertEqual(data["images_per_batch"], 2)
        self.assertEqual(saved["ratios"], {})


@pytest.mark.usefixtures("tiny_shapes")
class TestScalingTask(unittest.TestCase):
    """--task scaling on tiny sweeps: the points, their inputs, and the derived figures."""

    def test_sweeps_table_and_plot(self):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            plot = os.path.join(tmp, "scaling.png")
            results = load_tool("benchmark").main(
                ["--config-file", DEMO, "--task", "scaling", "--peers", "torchvision",
                 "--no-isolate", "--iters", "1", "--warmup", "0", "--repeats", "1",
                 "--num-images", "1", "--sizes", "32,48", "--proposals", "5,20",
                 "--gt-boxes", "1,4", "--image-size", "32x48", "--plot", plot, *TINY])
            with open(plot, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        points = results["points"]
        self.assertEqual([(p["sweep"], p["value"]) for p in points],
                         [("size", 32), ("size", 48), ("proposals", 5), ("proposals", 20),
                          ("gt_boxes", 1), ("gt_boxes", 4)])
        # short side S shown as S x round(5 S / 3): 32 -> 53.3 -> 53, 48 -> 80; the others at
        # the base size
        self.assertEqual([p["input_hw"] for p in points],
                         [["32x53"], ["48x80"]] + [["32x48"]] * 4)
        self.assertEqual([p.get("mean_gt_boxes") for p in points[4:]], [1, 4])
        for p in points[2:4]:  # the proposals each image got: at most the top-k asked
            for kind in ("plugin", "torchvision"):
                self.assertTrue(0 < p["models"][kind]["proposals_per_image"] <= p["value"])
        for p in points:
            for kind in ("plugin", "torchvision"):
                m = p["models"][kind]
                self.assertTrue(positive(m["time_s"]) and positive(m["peak_mb"]), (p, kind))
                # every stage is in the network or outside it: the parts add up to the whole
                parts = m["network_s"] + m["outside_s"]
                if p["task"] == "train":
                    parts += m["backward_s"] + m["optimizer_s"]
                self.assertAlmostEqual(parts, m["mean_total_s"], places=9)
                self.assertAlmostEqual(m["outside_fraction"], m["outside_s"] / m["mean_total_s"])
        for first, second in ((0, 1), (2, 3), (4, 5)):
            a, b = points[first]["models"]["plugin"], points[second]["models"]["plugin"]
            self.assertEqual(a["growth"]["time_s"], 1.0)
            self.assertAlmostEqual(b["growth"]["time_s"], b["time_s"] / a["time_s"])
            self.assertAlmostEqual(b["growth"]["outside_s"], b["outside_s"] / a["outside_s"])
        tv = points[1]["models"]["torchvision"]
        self.assertAlmostEqual(results["ratios"]["size=48"]["torchvision"]["time"],
                               points[1]["models"]["plugin"]["time_s"] / tv["time_s"])
        report = load_tool("benchmark").format_report(results)
        self.assertRegex(report, r"\|\s*48\s*\|\s*48x80\s*\|\s*plugin\s*\|")
        self.assertIn("GT boxes per image (training)", report)

    def test_size_hw_and_points(self):
        from benchmarks.scaling import size_hw, sweep_points

        # the paper's 600 x 1000 and the default sweep, by hand: 5/3 of each short side
        self.assertEqual([size_hw(s) for s in (300, 450, 600, 800, 1000)],
                         [(300, 500), (450, 750), (600, 1000), (800, 1333), (1000, 1667)])
        points = sweep_points([], [300], [7], (600, 1000))
        self.assertEqual(points[0]["overrides"], {
            "INPUT.MIN_SIZE_TEST": 600, "INPUT.MAX_SIZE_TEST": 1000,
            "MODEL.RPN.POST_NMS_TOPK_TEST": 300})
        self.assertEqual((points[1]["task"], points[1]["boxes_per_image"]), ("train", 7))
        self.assertEqual(points[1]["overrides"]["SOLVER.IMS_PER_BATCH"], 1)

    def test_bad_sweep_values(self):
        from frcnn_plugin.cli import run_cli

        for flag, value in (("--sizes", "0,600"), ("--proposals", "many"), ("--gt-boxes", "")):
            with self.assertRaises(SystemExit) as e:
                run_cli(load_tool("benchmark").main,
                        ["--config-file", DEMO, "--task", "scaling", flag, value])
            self.assertEqual(e.exception.code, 2)
        with self.assertRaises(SystemExit) as e:
            run_cli(load_tool("benchmark").main,
                    ["--config-file", DEMO, "--task", "train", "--plot", "x.png"])
        self.assertEqual(e.exception.code, 2)


class TestPeers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from benchmarks import build_benchmark_model

        cls.cfg = load_config(DEMO, *TINY[:-4], "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "1000",
                              "MODEL.RPN.POST_NMS_TOPK_TEST", "50")
        cls.plugin, _ = build_benchmark_model(cls.cfg, "plugin", seed=0)
        cls.peer, cls.info = build_benchmark_model(cls.cfg, "torchvision", seed=0)

    def test_torchvision_settings_come_from_the_config(self):
        cfg, tv = self.cfg, self.peer.model
        rpn, heads, box = cfg.MODEL.RPN, cfg.MODEL.ROI_HEADS, cfg.MODEL.ROI_BOX_HEAD
        self.assertEqual(tv.rpn._pre_nms_top_n, {"training": 1000, "testing": 6000})
        self.assertEqual(tv.rpn._post_nms_top_n, {"training": 2000, "testing": 50})
        self.assertEqual(tv.rpn.nms_thresh, rpn.NMS_THRESH)
        self.assertEqual(tv.rpn.fg_bg_sampler.batch_size_per_image, 256)
        self.assertEqual(tv.rpn.fg_bg_sampler.positive_fraction, 0.5)
        self.assertEqual((tv.rpn.proposal_matcher.low_threshold,
                          tv.rpn.proposal_matcher.high_threshold), (0.3, 0.7))
        self.assertTrue(tv.rpn.proposal_matcher.allow_low_quality_matches)
        self.assertEqual(tv.roi_heads.fg_bg_sampler.batch_size_per_image, 16)
        self.assertEqual(tv.roi_heads.fg_bg_sampler.positive_fraction, 0.25)
        self.assertEqual((tv.roi_heads.proposal_matcher.low_threshold,
                          tv.roi_heads.proposal_matcher.high_threshold), (0.5, 0.5))
        self.assertEqual(tv.roi_heads.box_coder.weights, tuple(box.BBOX_REG_WEIGHTS))
        pool = tv.roi_heads.box_roi_pool.pool  # the demo config's ROIAlignV2
        self.assertEqual(type(pool).__name__, "RoIAlign")
        self.assertTrue(pool.aligned)
        self.assertEqual(torch.nn.modules.utils._pair(pool.output_size), (7, 7))
        self.assertEqual(pool.spatial_scale, 1 / 16)
        self.assertEqual(tv.roi_heads.box_head.fc6.in_features, 512 * 7 * 7)
        self.assertEqual(tv.roi_heads.box_head.fc7.out_features, box.FC_DIM)
        # the plugin's VGGFCHead with TwoMLPHead's parameters and initialization: without
        # dropout the same function as torchvision's TwoMLPHead; fresh weights not N(0, 0.01)
        from torchvision.models.detection.faster_rcnn import TwoMLPHead

        head = tv.roi_heads.box_head
        ref = TwoMLPHead(512 * 7 * 7, box.FC_DIM)
        self.assertEqual({k: v.shape for k, v in ref.state_dict().items()},
                         {k: v.shape for k, v in head.state_dict().items()})
        from benchmarks.peers import torchvision_box_head

        fresh = torchvision_box_head(512, 7, 32, 0.0)
        bound = 1 / (512 * 7 * 7) ** 0.5  # nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in))
        self.assertLessEqual(fresh.fc6.weight.abs().max().item(), bound)  # N(0, 0.01) exceeds it
        ref.load_state_dict(head.state_dict())
        x = torch.randn(3, 512, 7, 7)
        was = head.training
        try:
            head.eval()
            torch.testing.assert_close(head(x), ref(x))
        finally:
            head.train(was)
        self.assertEqual(tv.roi_heads.box_predictor.cls_score.out_features, heads.NUM_CLASSES + 1)
        self.assertEqual(tv.roi_heads.score_thresh, heads.SCORE_THRESH_TEST)
        self.assertEqual(tv.roi_heads.nms_thresh, heads.NMS_THRESH_TEST)
        self.assertEqual(tv.roi_heads.detections_per_img, cfg.TEST.DETECTIONS_PER_IMAGE)
        self.assertEqual(tv.transform.min_size, (cfg.INPUT.MIN_SIZE_TEST,))
        self.assertEqual(tv.transform.max_size, cfg.INPUT.MAX_SIZE_TEST)
        self.assertEqual(tv.transform.image_mean, [m / 255 for m in cfg.MODEL.PIXEL_MEAN])
        self.assertEqual(tv.transform.image_std, [s / 255 for s in cfg.MODEL.PIXEL_STD])
        self.assertEqual(tv.transform.size_divisible, 1)
        # the plugin's own backbone class, same depth and norm, same initial weights
        self.assertIs(type(tv.backbone.body), type(self.plugin.backbone))
        for (k, a), b in zip(self.plugin.backbone.state_dict().items(),
                             tv.backbone.body.state_dict().values()):
            self.assertTrue(torch.equal(a, b), k)

    def test_same_anchors_and_objectness_as_the_plugin(self):
        from detectron2.structures import ImageList

        feature = torch.randn(1, 512, 5, 7)
        anchors = self.plugin.proposal_generator.anchor_generator([feature])[0].tensor
        images = ImageList(torch.zeros(1, 3, 80, 112), [(80, 112)])
        self.assertTrue(torch.equal(self.peer.model.rpn.anchor_generator(images, [feature])[0],
                                    anchors))
        with torch.no_grad():  # softmax fg probability == sigmoid of torchvision's logit
            (plugin_logits,), _ = self.plugin.proposal_generator.rpn_head([feature])
            (tv_logits,), _ = self.peer.model.rpn.head([feature])
            a = tv_logits.shape[1]
            fg = torch.softmax(torch.stack([plugin_logits[:, :a], plugin_logits[:, a:]]), 0)[1]
            torch.testing.assert_close(torch.sigmoid(tv_logits), fg)

    def test_roi_pool_and_roi_align_map_to_torchvision_ops(self):
        from benchmarks import build_torchvision_peer

        for pooler, op, aligned in (("ROIPool", "RoIPool", None), ("ROIAlign", "RoIAlign", False)):
            cfg = self.cfg.clone()
            cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE = pooler
            pool = build_torchvision_peer(cfg).model.roi_heads.box_roi_pool.pool
            self.assertEqual(type(pool).__name__, op)
            self.assertEqual(pool.spatial_scale, 1 / 16)
            if aligned is not None:
                self.assertEqual(pool.aligned, aligned)

    def test_adapter_trains_and_returns_instances(self):
        from detectron2.structures import Boxes, Instances

        from benchmarks import build_benchmark_model

        peer, _ = build_benchmark_model(self.cfg, "torchvision", seed=1)  # trained here
        image = torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8)
        inst = Instances((64, 80), gt_boxes=Boxes(torch.tensor([[8.0, 8.0, 40.0, 48.0]])),
                         gt_classes=torch.tensor([2]))
        peer.train()
        losses = peer([{"image": image, "instances": inst}])
        self.assertEqual(set(losses), {"loss_classifier", "loss_box_reg", "loss_objectness",
                                       "loss_rpn_box_reg"})
        self.assertTrue(all(torch.isfinite(v) for v in losses.values()))
        peer.eval()
        peer.model.roi_heads.score_thresh = 0.0
        with torch.no_grad():
            (out,) = peer([{"image": image, "height": 128, "width": 160}])
        det = out["instances"]
        self.assertEqual(det.image_size, (128, 160))
        self.assertGreater(len(det), 0)
        self.assertTrue(((det.pred_classes >= 0) & (det.pred_classes < 3)).all())
        self.assertLessEqual(float(det.pred_boxes.tensor[:, 2].max()), 160)

    def test_d2_peer_uses_detectron2_builtins(self):
        from benchmarks import d2_builtin_config

        cfg = d2_builtin_config(self.cfg)
        self.assertEqual((cfg.MODEL.META_ARCHITECTURE, cfg.MODEL.PROPOSAL_GENERATOR.NAME,
                          cfg.MODEL.RPN.HEAD_NAME, cfg.MODEL.ROI_HEADS.NAME),
                         ("GeneralizedRCNN", "RPN", "StandardRPNHead", "StandardROIHeads"))
        self.assertEqual(cfg.MODEL.ROI_BOX_HEAD.NAME, self.cfg.MODEL.ROI_BOX_HEAD.NAME)
        self.assertEqual(cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN, 1000)


class TestInputs(unittest.TestCase):
    def test_synthetic_coco_shapes(self):
        import tempfile

        from benchmarks.inputs import COCO_IMAGE_SIZES, write_synthetic_coco

        with tempfile.TemporaryDirectory() as root:
            with open(write_synthetic_coco(root, 4, seed=1)) as f:
                coco = json.load(f)
            self.assertEqual(len(coco["categories"]), 80)
            sizes = {im["id"]: (im["height"], im["width"]) for im in coco["images"]}
            self.assertTrue(all(s in COCO_IMAGE_SIZES for s in sizes.values()))
            self.assertEqual({a["image_id"] for a in coco["annotations"]}, set(sizes))
            for a in coco["annotations"]:
                x, y, w, h = a["bbox"]
                height, width = sizes[a["image_id"]]
                self.assertTrue(w > 0 and h > 0 and x >= 0 and y >= 0)
                self.assertTrue(x + w <= width and y + h <= height)
            self.assertEqual(len(os.listdir(os.path.join(root, "images"))), 4)

    def test_missing_coco_names_the_path(self):
        from benchmarks.inputs import dataset_dicts

        from detectron2.data import MetadataCatalog

        json_file = MetadataCatalog.get("coco_2017_val").json_file
        if os.path.exists(json_file):
            self.skipTest("COCO val2017 is present")
        with self.assertRaises(FileNotFoundError) as e:
            dataset_dicts(load_config(DEMO), "coco_2017_val", is_train=False)
        self.assertIn(os.path.abspath(json_file), str(e.exception))
        self.assertIn("DETECTRON2_DATASETS", str(e.exception))


@unittest.skipUnless(hasattr(__import__("mmap"), "MADV_NOHUGEPAGE"), "Linux madvise only")
class TestPageFaults(unittest.TestCase):
    """The benchmark counts, per timed iteration, the pages the process touched fresh from the
    system (the cost of an allocator that unmaps freed blocks)."""

    def session_faults(self, step):
        from benchmarks.measure import Session

        session = Session(step, lambda rounds, walls, memory, breakdown: memory,
                          torch.device("cpu"), warmup=1)
        session.round(2)
        session.round(2)
        return session.finish()["minor_page_faults_per_iter"]

    def test_fresh_pages_counted_once_per_page(self):
        import mmap

        size = 32 * 2 ** 20
        pages = size // mmap.PAGESIZE  # one fault at the first touch of each (no huge pages)

        def touch(i, timed):
            m = mmap.mmap(-1, size)  # fresh anonymous memory, as glibc maps a large block
            m.madvise(mmap.MADV_NOHUGEPAGE)
            for offset in range(0, size, mmap.PAGESIZE):
                m[offset] = 1
            m.close()  # given back to the system, as glibc's free of that block
            return {"total": 0.0}

        faults = self.session_faults(touch)
        self.assertGreaterEqual(faults, pages)
        self.assertLess(faults, pages + 200)  # the interpreter's own few
        self.assertLess(self.session_faults(lambda i, timed: {"total": 0.0}), 200)

    def test_allocator_settings_recorded(self):
        from unittest import mock

        from benchmarks.stats import machine_info

        env = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "34359738368",
               "OMP_NUM_THREADS": "2"}
        with mock.patch.dict(os.environ, env):
            info = machine_info(torch.device("cpu"))
        self.assertEqual(info["allocator_env"], {"MALLOC_MMAP_MAX_": "0",
                                                 "MALLOC_TRIM_THRESHOLD_": "34359738368"})


class TestRPNShortcut(unittest.TestCase):
    """FRCNNRPN runs test-time NMS on a prefix first; the result must be the full function's,
    in either proposal order (find_top_proposals_paper_order or find_top_rpn_proposals)."""

    def test_same_proposals_as_the_full_run(self):
        from detectron2.modeling import build_model
        from detectron2.modeling.proposal_generator.proposal_utils import find_top_rpn_proposals

        from frcnn_plugin.modeling.rpn import find_top_proposals_paper_order

        for order, find in (("paper", find_top_proposals_paper_order),
                            ("detectron2", find_top_rpn_proposals)):
            rpn = build_model(load_config(DEMO, "MODEL.RPN.PROPOSAL_ORDER", order))
            rpn = rpn.proposal_generator
            for seed, spread, training in ((0, 400, False), (1, 3, False), (2, 400, True)):
                rpn.train(training)
                g = torch.Generator().manual_seed(seed)
                centres = torch.rand(7000, 2, generator=g) * spread + 100  # spread 3: few kept
                sizes = torch.rand(7000, 2, generator=g) * 60 + 20
                boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], 1)[None]
                scores = torch.randn(1, 7000, generator=g)
                (ours,) = rpn._top_proposals([boxes], [scores], (600, 600), 16.0)
                (ref,) = find(
                    [boxes], [scores], [(600, 600)], rpn.nms_thresh, rpn.pre_nms_topk[training],
                    rpn.post_nms_topk[training], 16.0, training)
                self.assertTrue(torch.equal(ours.proposal_boxes.tensor, ref.proposal_boxes.tensor))
                self.assertTrue(torch.equal(ours.objectness_logits, ref.objectness_logits))
                if spread == 3:
                    self.assertLess(len(ref), rpn.post_nms_topk[False])  # the fallback was taken
