"""End to end through tools/train_net.py: DefaultTrainer, detectron2's loader, COCOEvaluator."""

import json
import math
import os
import subprocess
import sys
import unittest

import pytest

from tests.conftest import CONFIGS, REPO, TINY_MODEL, TINY_SCHEDULE, load_tool

TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
DEMO = os.path.join(CONFIGS, "vgg16_frcnn_shapes_demo.yaml")


# Small and fast: 64x64 images, 3 iterations, small fc layers; scores kept down to 0 so that the
# untrained detector still produces detections to evaluate.
SMALL = [
    "DATASETS.TRAIN", "('frcnn_test_train',)", "DATASETS.TEST", "('frcnn_test_val',)",
    *TINY_MODEL, *TINY_SCHEDULE,
]  # fmt: skip


def same_metrics(a, b):
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a
    )


@pytest.mark.usefixtures("tiny_shapes")
class TestTrainNet(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.out = str(tmp_path / "out")

    def test_train_evaluate_then_eval_only_reproduces(self):
        train_net = load_tool("train_net")
        parser = train_net.argument_parser()
        args = parser.parse_args(["--config", DEMO, "OUTPUT_DIR", self.out] + SMALL)
        results = train_net.main(args)

        final = os.path.join(self.out, "model_final.pth")
        self.assertTrue(os.path.isfile(final))
        with open(os.path.join(self.out, "last_checkpoint")) as f:
            self.assertEqual(f.read().strip(), "model_final.pth")
        self.assertTrue(os.path.isfile(os.path.join(self.out, "config.yaml")))
        preds = os.path.join(self.out, "inference", "frcnn_test_val", "coco_instances_results.json")
        with open(preds) as f:
            self.assertGreater(len(json.load(f)), 0)
        with open(os.path.join(self.out, "metrics.json")) as f:
            rows = [json.loads(line) for line in f]
        self.assertTrue(any("total_loss" in r for r in rows))
        self.assertIn("bbox/AP50", rows[-1])
        self.assertEqual(set(results), {"bbox"})
        self.assertTrue({"AP", "AP50", "AP75"} <= set(results["bbox"]))

        args = parser.parse_args(
            [
                "--config-file",
                DEMO,
                "--eval-only",
                "OUTPUT_DIR",
                self.out + "_eval",
                "MODEL.WEIGHTS",
                final,
            ]
            + SMALL
        )
        again = train_net.main(args)
        self.assertTrue(same_metrics(results["bbox"], again["bbox"]), (results, again))


class TestTrainNetBadConfig(unittest.TestCase):
    def run_cli(self, *extra):
        return subprocess.run(
            [sys.executable, TRAIN_NET, "--config", DEMO, *extra],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=300,
        )

    def test_unknown_key(self):
        proc = self.run_cli("MODEL.VGG.DEPHT", "16")
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(
            "Invalid config from the command line: Non-existent key: MODEL.VGG.DEPHT. "
            "Did you mean: MODEL.VGG.DEPTH?",
            proc.stderr,
        )

    def test_bad_value_and_type(self):
        train_net = load_tool("train_net")
        parser = train_net.argument_parser()
        args = parser.parse_args(
            [
                "--config",
                DEMO,
                "MODEL.VGG.DEPTH",
                "17",
                "OUTPUT_DIR",
                os.path.join(REPO, "output", "never_written"),
            ]
        )
        with self.assertRaisesRegex(
            ValueError, r"MODEL.VGG.DEPTH=17 .*allowed: \[11, 13, 16, 19\]"
        ):
            train_net.main(args)
        args = parser.parse_args(["--config", DEMO, "MODEL.VGG.DEPTH", "'sixteen'"])
        with self.assertRaisesRegex(ValueError, "(?i)type mismatch"):
            train_net.setup(args)

    def test_missing_config_file(self):
        proc = subprocess.run(
            [sys.executable, TRAIN_NET, "--config", "nope.yaml"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("Config file not found: nope.yaml", proc.stderr)


class TestConfigErrors(unittest.TestCase):
    def test_unknown_key_in_file_names_file_and_suggests(self):
        import tempfile

        train_net = load_tool("train_net")
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(
                '_BASE_: "{}"\nMODEL:\n  ROI_HEADS:\n    BATCH_SIZE_PER_IMGE: 128\n'.format(DEMO)
            )
        try:
            args = train_net.argument_parser().parse_args(["--config", f.name])
            with self.assertRaisesRegex(
                ValueError,
                "Invalid config from .*yaml: Non-existent "
                "config key: MODEL.ROI_HEADS.BATCH_SIZE_PER_IMGE. Did you "
                "mean: MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
            ):
                train_net.setup(args)
        finally:
            os.remove(f.name)
