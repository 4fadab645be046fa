"""The accuracy ablation (tools/ablate_accuracy.py): its plan, its statistics, and one tiny run
end to end with resuming. Nothing here asserts an accuracy or a timing."""
import json
import os
import unittest

import pytest

from tests.conftest import CONFIGS, load_config, load_tool

DEMO = os.path.join(CONFIGS, "vgg16_frcnn_shapes_demo.yaml")
TINY = [
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
    "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
    "MODEL.VGG.DEPTH", "11", "MODEL.ROI_BOX_HEAD.FC_DIM", "32",
    "MODEL.ANCHOR_GENERATOR.SIZES", "[[16, 32]]", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "1",
    "SOLVER.STEPS", "()", "DATASETS.TRAIN", "('frcnn_test_train',)",
    "DATASETS.TEST", "('frcnn_test_val',)",
]  # fmt: skip


def fake(row, seed, ap50, time_s=10.0):
    return {"row": row, "seed": seed, "bbox": {"AP": ap50 / 2, "AP50": ap50, "AP75": 0.0},
            "train_time_s": time_s}


class TestStatistics(unittest.TestCase):
    def test_mean_and_sample_std_by_hand(self):
        from frcnn_plugin.benchmark.ablation import format_table, summarize

        results = {
            "a": fake("plugin", 0, 40.0, 9.0), "b": fake("plugin", 1, 50.0, 10.0),
            "c": fake("plugin", 2, 60.0, 11.0),
            "d": fake("torchvision (own init)", 0, 45.0),
            "e": fake("torchvision (own init)", 1, 45.0),
        }  # fmt: skip
        summary = summarize(results)
        self.assertEqual([e["row"] for e in summary], ["plugin", "torchvision (own init)"])
        # AP50 40, 50, 60: mean 50, sample std sqrt((100 + 0 + 100) / 2) = 10
        self.assertEqual(summary[0]["AP50"], (50.0, 10.0))
        self.assertEqual(summary[0]["AP"], (25.0, 5.0))
        self.assertEqual(summary[0]["seeds"], [0, 1, 2])
        self.assertEqual(summary[1]["AP50"], (45.0, 0.0))
        table = format_table(summary).splitlines()
        self.assertEqual(table[0], "| run | seeds | AP | AP50 | AP75 | Δ AP50 | train s |")
        self.assertEqual(table[2], "| plugin | 3 | 25.0 ± 5.0 | 50.0 ± 10.0 | 0.0 ± 0.0 | – "
                                   "| 10 ± 1 |")
        self.assertIn("| 45.0 ± 0.0 | 0.0 ± 0.0 | -5.0 |", table[3])


class TestPlan(unittest.TestCase):
    def test_switches_already_in_the_config_are_skipped(self):
        from frcnn_plugin.benchmark.ablation import plan_runs

        cfg = load_config("vgg16_frcnn_shapes_demo.yaml", "MODEL.ROI_BOX_HEAD.POOLER_TYPE",
                          "ROIAlignV2")
        runs = plan_runs(cfg, ["roialign", "rpn_sigmoid_head"], ["torchvision (own init)"], [0, 1])
        self.assertEqual(
            [(r["row"], r["seed"]) for r in runs],
            [("plugin", 0), ("plugin", 1), ("plugin + rpn_sigmoid_head", 0),
             ("plugin + rpn_sigmoid_head", 1), ("torchvision (own init)", 0),
             ("torchvision (own init)", 1)],
        )
        self.assertEqual(runs[2]["overrides"], {"MODEL.RPN.HEAD_NAME": "StandardRPNHead"})
        self.assertEqual((runs[4]["kind"], runs[4]["init"]), ("torchvision", "own"))
        with self.assertRaisesRegex(ValueError, "switch 'bigger'; allowed: vgg_init_torchvision"):
            plan_runs(cfg, ["bigger"], [], [0])


@pytest.mark.usefixtures("tiny_shapes", "one_thread")
class TestTool(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.out = str(tmp_path / "ablation")

    def test_tiny_run_and_resume(self):
        tool = load_tool("ablate_accuracy")
        argv = ["--config-file", DEMO, "--seeds", "1", "--switches", "vgg_init_torchvision",
                "--peers", "torchvision (own init)", "--out-dir", self.out, *TINY]
        results = tool.main(argv)
        self.assertEqual(sorted(results), [
            "plugin + test_nms_0.5|0", "plugin + vgg_init_torchvision|0", "plugin|0",
            "torchvision (own init) + test_nms_0.5|0", "torchvision (own init)|0"])
        # a test-time row: the base row's training, evaluated with the switch
        test_row = results["plugin + test_nms_0.5|0"]
        self.assertEqual(test_row["train_time_s"], results["plugin|0"]["train_time_s"])
        self.assertEqual(test_row["overrides"], {"MODEL.ROI_HEADS.NMS_THRESH_TEST": 0.5})
        for r in results.values():
            self.assertIn("AP50", r["bbox"])
            self.assertEqual(r["iters"], 2)
        self.assertEqual(results["torchvision (own init)|0"]["model"]["init"], "own")
        path = os.path.join(self.out, "ablation.json")
        before = os.stat(path).st_mtime_ns
        again = tool.main(argv)  # everything is there: nothing is trained again
        self.assertEqual(os.stat(path).st_mtime_ns, before)
        self.assertEqual(json.loads(json.dumps(again, default=str)).keys(), results.keys())
        with open(os.path.join(self.out, "ablation.md")) as f:
            self.assertEqual(len(f.read().strip().splitlines()), 2 + 5)

    def test_test_time_variant_with_the_same_keys_gives_the_same_ap(self):
        """The retrained-free evaluation rebuilds the model with the keys and loads the trained
        weights: with the keys' own values it must give the base evaluation's AP exactly."""
        from frcnn_plugin.benchmark.accuracy import train_and_evaluate
        from frcnn_plugin.data.checks import load_train_dataset_dicts

        cfg = load_config("vgg16_frcnn_shapes_demo.yaml", *TINY)
        result = train_and_evaluate(
            cfg, "plugin", load_train_dataset_dicts(cfg), seed=0, output_dir=self.out,
            test_variants={"same": {"MODEL.ROI_HEADS.NMS_THRESH_TEST":
                                    cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST}})
        # (json: NaN, e.g. the AP of an absent size, compares equal to itself)
        self.assertEqual(json.dumps(result["test_variants"]["same"], sort_keys=True),
                         json.dumps(result["bbox"], sort_keys=True))
