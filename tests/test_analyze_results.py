"""tools/analyze_results.py and tools/plot_metrics.py on hand-made ground truth, detections and
metrics, with the expected values worked out by hand. Real files, real COCOeval."""
import csv
import io
import json
import os
import unittest
from contextlib import redirect_stdout

import numpy as np
import pytest

from tests.conftest import load_tool

# 1 image of 100 x 100; boxes as COCO [x, y, w, h]
A1, B1, A2 = [10, 10, 20, 20], [50, 50, 20, 20], [10, 60, 20, 20]


def register(name, root, anns, categories=("a", "b")):
    """A COCO-format data set with one 100 x 100 image and ``anns`` [(category_id, bbox)]."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances
    from PIL import Image

    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    Image.new("RGB", (100, 100)).save(os.path.join(root, "images", "0.png"))
    data = {
        "images": [{"id": 1, "file_name": "0.png", "width": 100, "height": 100}],
        "annotations": [{"id": i + 1, "image_id": 1, "category_id": c, "bbox": b,
                         "area": b[2] * b[3], "iscrowd": 0} for i, (c, b) in enumerate(anns)],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(categories)],
    }
    json_file = os.path.join(root, "gt.json")
    with open(json_file, "w") as f:
        json.dump(data, f)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, json_file, os.path.join(root, "images"))
    return name


def det(category_id, bbox, score):
    return {"image_id": 1, "category_id": category_id, "bbox": bbox, "score": score}


class TestAnalyzeResults(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def run_tool(self, name, results, *args):
        path = str(self.tmp / (name + "_results.json"))
        with open(path, "w") as f:
            json.dump(results, f)
        out = str(self.tmp / (name + "_out"))
        with redirect_stdout(io.StringIO()) as buf:  # (a test may analyse twice into out)
            res = load_tool("analyze_results").main(
                ["--results", path, "--dataset", name, "--out-dir", out, "--overwrite", *args])
        return res, out, buf.getvalue()

    def test_ap_exact_and_shifted(self):
        name = register("frcnn_test_ana_ap", str(self.tmp / "ap"), [(1, A1), (1, B1)],
                        categories=("a",))
        res, out, text = self.run_tool(name, [det(1, A1, 0.9), det(1, B1, 0.8)])
        overall = res["rows"][-1]
        self.assertEqual((overall["AP"], overall["AP50"], overall["AP75"]), (100.0, 100.0, 100.0))
        # the second detection moved 5 px right: intersection 15 x 20 = 300, union 500, IoU 0.6:
        # a true positive at IoU 0.5, a false positive (after the first) at 0.75, so precision
        # is 1 up to recall 0.5: 51 of COCO's 101 recall points, AP75 = 51 / 101
        res, out, text = self.run_tool(name, [det(1, A1, 0.9), det(1, [55, 50, 20, 20], 0.8)])
        overall = res["rows"][-1]
        self.assertEqual(overall["AP50"], 100.0)
        self.assertAlmostEqual(overall["AP75"], 100 * 51 / 101, places=3)
        with open(os.path.join(out, "per_class_ap.csv")) as f:
            rows = list(csv.reader(f))
        self.assertEqual(rows[0], ["class", "AP", "AP50", "AP75", "APs", "APm", "APl"])
        self.assertEqual([r[0] for r in rows[1:]], ["a", "all"])
        self.assertIn("| all | ", text)
        for png in ("pr_curves.png", "confusion_matrix.png", "error_breakdown.png",
                    os.path.join("error_breakdown", "a.png")):
            self.assertGreater(os.path.getsize(os.path.join(out, png)), 5000, png)

    def test_confusion_matrix_by_hand(self):
        name = register("frcnn_test_ana_cm", str(self.tmp / "cm"), [(1, A1), (2, B1), (1, A2)])
        results = [
            det(1, A1, 0.9),  # a on a: true positive
            det(1, B1, 0.8),  # a on b: confusion
            det(2, [80, 0, 15, 15], 0.7),  # b on nothing: background
            det(2, A2, 0.3),  # below the score threshold: A2 counts as missed
        ]
        res, out, _ = self.run_tool(name, results)
        with open(os.path.join(out, "confusion_matrix.csv")) as f:
            rows = list(csv.reader(f))
        self.assertEqual(rows[0], ["gt \\ predicted", "a", "b", "background"])
        self.assertEqual(rows[1:], [["a", "1", "0", "1"], ["b", "1", "0", "0"],
                                    ["background", "0", "1", "0"]])
        # a lower score threshold takes the 4th detection: A2 found as b
        res, out, _ = self.run_tool(name, results, "--score-thresh", "0.2")
        matrix, _ = res["confusion"]
        self.assertEqual(matrix.tolist(), [[1, 1, 0], [1, 0, 0], [0, 1, 0]])

    def test_error_breakdown_forgives_the_class_confusion(self):
        # class a: a wrong-class detection on b's box scores higher than the true one on a's
        name = register("frcnn_test_ana_err", str(self.tmp / "err"), [(1, A1), (2, B1)])
        res, _, _ = self.run_tool(name, [det(1, B1, 0.9), det(1, A1, 0.8)])
        ps = res["breakdown"]["a"]
        aps = ps.mean(axis=1)
        # C50: FP then TP, precision 0.5 at recall 1 everywhere: AP 0.5; Oth forgives the FP
        self.assertAlmostEqual(aps[1], 0.5)
        self.assertAlmostEqual(aps[4], 1.0)
        self.assertAlmostEqual(aps[3], aps[2])  # no supercategories: Sim = Loc
        self.assertTrue(np.all(np.diff(aps) >= -1e-9), aps)  # each step forgives more
        self.assertEqual(aps[6], 1.0)

    def test_bad_inputs(self):
        from frcnn_plugin.cli import DataError, MissingFileError, UnknownDatasetError

        name = register("frcnn_test_ana_bad", str(self.tmp / "bad"), [(1, A1)])
        with self.assertRaisesRegex(DataError, r"image_id \[7\] not in the data set"):
            self.run_tool(name, [dict(det(1, A1, 0.9), image_id=7)])
        with self.assertRaisesRegex(DataError, r"category_id \[9\].*allowed: its category ids"):
            self.run_tool(name, [det(9, A1, 0.9)])
        with self.assertRaisesRegex(DataError, "not a COCO results file"):
            self.run_tool(name, {"annotations": []})
        with self.assertRaises(UnknownDatasetError):
            self.run_tool("frcnn_test_ana_nope", [])
        with self.assertRaises(MissingFileError):
            load_tool("analyze_results").main(["--results", str(self.tmp / "none.json"),
                                               "--dataset", name, "--out-dir", str(self.tmp)])
        res, _, _ = self.run_tool(name, [])  # no detections: zeros, not a crash
        self.assertEqual(res["rows"][-1]["AP50"], 0.0)
        self.assertEqual(res["confusion"][0].tolist(), [[0, 0, 1], [0, 0, 0], [0, 0, 0]])


class TestPlotMetrics(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def write(self, folder, losses, ap):
        os.makedirs(self.tmp / folder)
        path = self.tmp / folder / "metrics.json"
        with open(path, "w") as f:
            for i, v in enumerate(losses):
                f.write(json.dumps({"iteration": i, "total_loss": v, "loss_cls": v / 2,
                                    "lr": 0.01, "roi_head/num_fg_samples": 5}) + "\n")
            f.write("not json\n")
            f.write(json.dumps({"iteration": len(losses) - 1, "bbox/AP": ap}) + "\n")
        return str(path)

    def test_two_runs_overlaid(self):
        from frcnn_plugin.analysis.metrics import smooth

        a = self.write("plugin", [3.0, 2.0, 1.0, 0.5], 30.0)
        b = self.write("d2", [3.0, 2.5, 2.0, 1.5], 25.0)
        out = str(self.tmp / "m.png")
        with redirect_stdout(io.StringIO()), self.assertLogs(level="WARNING") as logs:
            runs = load_tool("plot_metrics").main([a, b, "--out", out, "--smooth", "3"])
        self.assertEqual(list(runs), ["plugin", "d2"])
        self.assertEqual(runs["plugin"]["bbox/AP"], [(3, 30.0)])
        self.assertEqual(runs["d2"]["total_loss"][1], (1, 2.5))
        self.assertTrue(any("line 5 is not a metrics record" in m for m in logs.output))
        self.assertGreater(os.path.getsize(out), 10000)
        # trailing moving median over 3: [3], [3, 2], [3, 2, 1], [2, 1, 0.5]
        self.assertEqual(smooth([3.0, 2.0, 1.0, 0.5], 3).tolist(), [3.0, 2.5, 2.0, 1.0])

    def test_errors(self):
        from frcnn_plugin.cli import ConfigError, DataError

        a = self.write("x", [1.0], 1.0)
        with self.assertRaisesRegex(ConfigError, "1 --label for 2 files"):
            load_tool("plot_metrics").main([a, a, "--label", "one"])
        empty = self.tmp / "empty.json"
        empty.write_text("{}\n")
        with self.assertRaisesRegex(DataError, "no metrics records"), \
                self.assertLogs(level="WARNING"):
            load_tool("plot_metrics").main([str(empty)])
