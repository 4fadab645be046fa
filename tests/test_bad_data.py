"""Bad input: config values, data sets, images, boxes, checkpoints, output folder.

Each case gets a clear error naming the problem, or, for faults in single samples, a logged and
counted skip (the catalogue is in docs/reliability.md, "Bad input: what happens").
"""

import json
import os
import unittest
import uuid

import pytest
import torch
from PIL import Image
from torch import nn

from tests.conftest import load_config, load_tool
from tests.test_reliability import DEMO, TINY


def write_coco(root, num_images=6, edit=None):
    """A small COCO-format data set (64x64 shapes) in ``root``; ``edit(data)`` may change the
    loaded JSON before it is written back. Returns (json_file, image_root)."""
    from frcnn_plugin.data import generate_shapes_dataset

    json_file = generate_shapes_dataset(
        str(root), num_images, image_size=64, seed=3, min_size=12, max_size=32
    )
    if edit is not None:
        with open(json_file) as f:
            data = json.load(f)
        edit(data)
        with open(json_file, "w") as f:
            json.dump(data, f)
    return json_file, os.path.join(str(root), "images")


def register(json_file, image_root):
    """Register a COCO-format data set under a fresh name; returns the name."""
    from detectron2.data.datasets import register_coco_instances

    name = "bad_data_" + uuid.uuid4().hex[:8]
    register_coco_instances(name, {}, json_file, image_root)
    return name


def train_cfg(name, *opts):
    return load_config(
        "vgg16_frcnn_shapes_demo.yaml", *TINY, "DATASETS.TRAIN", "('{}',)".format(name), *opts
    )


class TestConfig(unittest.TestCase):
    def validate(self, *opts):
        from frcnn_plugin.config_checks import validate_frcnn_config

        return validate_frcnn_config(load_config("vgg16_frcnn_shapes_demo.yaml", *opts))

    def test_shipped_configs_are_valid(self):
        from frcnn_plugin.config_checks import validate_frcnn_config
        from tests.conftest import CONFIGS

        names = sorted(n for n in os.listdir(CONFIGS) if n.endswith(".yaml"))
        self.assertIn("vgg16_frcnn_voc_caffe.yaml", names)
        for name in names:
            with self.subTest(name):
                validate_frcnn_config(load_config(name))

    def test_sampler_values(self):
        with self.assertRaisesRegex(
            ValueError,
            r"MODEL.RPN.POSITIVE_FRACTION=1.5 is invalid; " r"allowed: a number in \(0, 1\]",
        ):
            self.validate("MODEL.RPN.POSITIVE_FRACTION", "1.5")
        with self.assertRaisesRegex(
            ValueError,
            r"MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE=0 is " r"invalid; allowed: an integer > 0",
        ):
            self.validate("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "0")

    def test_best_anchor_floor_and_proposal_order(self):
        with self.assertRaises(ValueError) as ctx:
            self.validate("MODEL.RPN.BEST_ANCHOR_MIN_IOU", "1.0", "MODEL.RPN.PROPOSAL_ORDER",
                          "'sorted'")
        msg = str(ctx.exception)
        self.assertIn("MODEL.RPN.BEST_ANCHOR_MIN_IOU=1.0 is invalid; allowed: a number in "
                      "[-1, 1)", msg)
        self.assertIn("MODEL.RPN.PROPOSAL_ORDER='sorted' is invalid; allowed: 'paper' or "
                      "'detectron2'", msg)
        self.validate("MODEL.RPN.BEST_ANCHOR_MIN_IOU", "-1.0", "MODEL.RPN.PROPOSAL_ORDER",
                      "'detectron2'")

    def test_iou_thresholds_out_of_order_and_labels(self):
        with self.assertRaisesRegex(
            ValueError,
            r"MODEL.RPN.IOU_THRESHOLDS=\[0.7, 0.3\] is " r"invalid; allowed: .*increasing order",
        ):
            self.validate("MODEL.RPN.IOU_THRESHOLDS", "[0.7, 0.3]")
        with self.assertRaisesRegex(
            ValueError,
            r"MODEL.ROI_HEADS.IOU_LABELS=\[0, 1, 1\] has 3 "
            r"labels; allowed: one more label than",
        ):
            self.validate("MODEL.ROI_HEADS.IOU_LABELS", "[0, 1, 1]")

    def test_anchor_values_and_all_problems_listed(self):
        with self.assertRaises(ValueError) as ctx:
            self.validate(
                "MODEL.ANCHOR_GENERATOR.SIZES",
                "[[-32, 64]]",
                "MODEL.ANCHOR_GENERATOR.OFFSET",
                "1.0",
                "SOLVER.NONFINITE_LOSS",
                "'ignore'",
                "DATALOADER.INVALID_BOXES",
                "'keep'",
            )
        msg = str(ctx.exception)
        self.assertIn("Invalid config (4 problems)", msg)
        self.assertIn("MODEL.ANCHOR_GENERATOR.SIZES=[[-32, 64]] is invalid", msg)
        self.assertIn(
            "MODEL.ANCHOR_GENERATOR.OFFSET=1.0 is invalid; allowed: a number in [0, 1)", msg
        )
        self.assertIn("SOLVER.NONFINITE_LOSS='ignore' is invalid; allowed: 'error' or 'skip'", msg)
        self.assertIn("DATALOADER.INVALID_BOXES='keep' is invalid; allowed: 'drop' or 'error'", msg)

    def test_unknown_and_ill_typed_keys_through_setup(self):
        train_net = load_tool("train_net")
        parser = train_net.argument_parser()
        with self.assertRaisesRegex(
            ValueError,
            "Non-existent key: SOLVER.NONFINITE_LOS. Did you " "mean: SOLVER.NONFINITE_LOSS",
        ):
            train_net.setup(parser.parse_args(["--config", DEMO, "SOLVER.NONFINITE_LOS", "'skip'"]))
        with self.assertRaisesRegex(
            ValueError, "(?i)type mismatch.*SOLVER.NONFINITE_LOSS_MAX_SKIPS"
        ):
            train_net.setup(
                parser.parse_args(["--config", DEMO, "SOLVER.NONFINITE_LOSS_MAX_SKIPS", "'many'"])
            )

    def test_output_dir_not_writable(self):
        import tempfile

        train_net = load_tool("train_net")
        with tempfile.NamedTemporaryFile() as blocker:  # a file where the folder should be
            args = train_net.argument_parser().parse_args(
                ["--config", DEMO, "OUTPUT_DIR", os.path.join(blocker.name, "out")]
            )
            with self.assertRaisesRegex(
                    OSError, r"OUTPUT_DIR .*/out: .* is a file, not a folder, so the folder "
                             r"cannot be written there"):
                train_net.setup(args)


class TestDatasetFiles(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def load(self, name):
        from frcnn_plugin.data.checks import load_dataset_dicts

        return load_dataset_dicts(name)

    def test_missing_json(self):
        name = register(str(self.tmp / "nope.json"), str(self.tmp))
        with self.assertRaisesRegex(
            FileNotFoundError,
            "Data set '{}': annotation file not found: " ".*nope.json".format(name),
        ):
            self.load(name)

    def test_missing_image_folder(self):
        json_file, _ = write_coco(self.tmp / "d")
        name = register(json_file, str(self.tmp / "no_images"))
        with self.assertRaisesRegex(FileNotFoundError, "image folder not found: .*no_images"):
            self.load(name)

    def test_malformed_json(self):
        bad = self.tmp / "bad.json"
        bad.write_text('{"images": [')
        with self.assertRaisesRegex(ValueError, r"bad.json is not valid JSON \(Expecting value"):
            self.load(register(str(bad), str(self.tmp)))
        bad.write_text("[1, 2, 3]")
        with self.assertRaisesRegex(ValueError, "cannot load .*bad.json .*COCO-format"):
            self.load(register(str(bad), str(self.tmp)))

    def test_no_images_and_unregistered(self):
        empty = self.tmp / "empty.json"
        empty.write_text(
            json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]})
        )
        with self.assertRaisesRegex(ValueError, "is empty: no images in .*empty.json"):
            self.load(register(str(empty), str(self.tmp)))
        with self.assertRaisesRegex(KeyError, "not registered"):
            self.load("no_such_data_set")


def _bad_boxes(data):
    anns = data["annotations"]
    w = data["images"][0]["width"]
    anns[0]["bbox"] = [10, 10, 0, 5]  # zero width
    anns[1]["bbox"] = [10, 10, -4, 8]  # negative width
    anns[2]["bbox"] = [float("nan"), 3, 4, 5]  # NaN
    anns[3]["bbox"] = [w + 10, 5, 8, 8]  # wholly outside the image
    anns[4]["bbox"] = [-4, 20, 10, 10]  # partly outside: kept (detectron2 clips it)


class TestBoxesAndEmptyImages(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_invalid_boxes_dropped_with_counts(self):
        from frcnn_plugin.data.checks import load_train_dataset_dicts

        name = register(*write_coco(self.tmp, edit=_bad_boxes))
        with open(os.path.join(str(self.tmp), "annotations.json")) as f:
            total = len(json.load(f)["annotations"])
        with self.assertLogs("frcnn_plugin.data.checks", "WARNING") as logs:
            dicts = load_train_dataset_dicts(
                train_cfg(name, "DATALOADER.FILTER_EMPTY_ANNOTATIONS", "False")
            )
        self.assertEqual(sum(len(d["annotations"]) for d in dicts), total - 4)
        msg = "\n".join(logs.output)
        self.assertIn("dropped 4 invalid box(es) in", msg)
        self.assertIn(
            "1 NaN or infinite coordinates, 2 zero or negative width or height, 1 wholly "
            "outside the image",
            msg,
        )
        self.assertIn("image id 1 (", msg)

    def test_invalid_box_error_mode_names_image(self):
        from frcnn_plugin.data.checks import load_train_dataset_dicts

        name = register(*write_coco(self.tmp, edit=_bad_boxes))
        with self.assertRaisesRegex(
            ValueError,
            r"image id \d+ \(.*\.png, 64x64\): bbox \[10, 10, "
            r"0, 5\] is zero or negative width or height",
        ):
            load_train_dataset_dicts(train_cfg(name, "DATALOADER.INVALID_BOXES", "'error'"))

    def test_images_without_annotations_and_crowd_only(self):
        from frcnn_plugin.data.checks import load_train_dataset_dicts

        def edit(data):
            data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 1]
            for a in data["annotations"]:
                if a["image_id"] == 2:
                    a["iscrowd"] = 1

        name = register(*write_coco(self.tmp, edit=edit))
        with self.assertLogs("detectron2.data.build", "INFO") as logs:
            dicts = load_train_dataset_dicts(train_cfg(name))
        self.assertEqual(sorted(d["image_id"] for d in dicts), [3, 4, 5, 6])
        # detectron2's own filter (filter_images_with_only_crowd_annotations) did it
        self.assertIn("Removed 2 images with no usable annotations. 4 images left.",
                      "\n".join(logs.output))

    def test_boxes_checked_before_empty_images_are_filtered(self):
        """Why the plugin composes detectron2's steps instead of calling
        get_detection_dataset_dicts: image 1's only boxes are invalid (zero width); the plugin
        drops them, then the image; detectron2's function keeps the image and its boxes."""
        from detectron2.data import get_detection_dataset_dicts

        from frcnn_plugin.data.checks import load_train_dataset_dicts

        def edit(data):
            for a in data["annotations"]:
                if a["image_id"] == 1:
                    a["bbox"][2] = 0

        name = register(*write_coco(self.tmp, edit=edit))
        ours = load_train_dataset_dicts(train_cfg(name))
        theirs = get_detection_dataset_dicts([name], filter_empty=True)
        self.assertEqual(sorted(d["image_id"] for d in ours), [2, 3, 4, 5, 6])
        self.assertEqual(sorted(d["image_id"] for d in theirs), [1, 2, 3, 4, 5, 6])

    def test_no_usable_image_left(self):
        from frcnn_plugin.data.checks import load_train_dataset_dicts

        def edit(data):
            for a in data["annotations"]:
                a["iscrowd"] = 1

        name = register(*write_coco(self.tmp, edit=edit))
        with self.assertRaisesRegex(ValueError, "No usable training images in DATASETS.TRAIN"):
            load_train_dataset_dicts(train_cfg(name))


def _corrupt_images(image_root):
    """Images 2..5 of a shapes data set: truncated, deleted, grayscale, RGBA; image 6: garbage."""
    path = lambda i: os.path.join(image_root, "{:06d}.png".format(i - 1))  # noqa: E731
    with open(path(2), "rb") as f:
        head = f.read(200)
    with open(path(2), "wb") as f:
        f.write(head)
    os.remove(path(3))
    Image.open(path(4)).convert("L").save(path(4))
    Image.open(path(5)).convert("RGBA").save(path(5))
    with open(path(6), "wb") as f:
        f.write(b"not an image at all")
    return path


class TestBadImages(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def dicts(self):
        from detectron2.data.datasets import load_coco_json

        json_file, image_root = write_coco(self.tmp)
        self.path = _corrupt_images(image_root)
        return load_coco_json(json_file, image_root)

    def test_skipped_counted_or_converted(self):
        from detectron2.data import DatasetMapper

        from frcnn_plugin.data.mappers import SKIPPED_KEY, SkipBadSamples, pop_skipped

        dicts = self.dicts()
        cfg = train_cfg("frcnn_test_train")
        good = dicts[0]
        mapper = SkipBadSamples(DatasetMapper(cfg, True), [good], max_consecutive=3)
        with self.assertLogs("frcnn_plugin.data.mappers", "WARNING") as logs:
            outs = [mapper(d) for d in dicts]
        self.assertEqual([o.get(SKIPPED_KEY, 0) for o in outs], [0, 1, 1, 0, 0, 1])
        self.assertEqual(mapper.num_skipped, 3)
        for o in outs:
            self.assertEqual(tuple(o["image"].shape), (3, 64, 64))  # grayscale, RGBA converted
        msg = "\n".join(logs.output)
        for i, reason in ((2, "truncated"), (3, "No such file"), (6, "cannot identify image")):
            self.assertRegex(
                msg,
                r"Skipping training image {} \(image id {}\): .*{}".format(self.path(i), i, reason),
            )
        self.assertEqual(pop_skipped(outs), 3)
        self.assertFalse(any(SKIPPED_KEY in o for o in outs))

    def test_wrong_size_is_skipped(self):
        from detectron2.data import DatasetMapper

        from frcnn_plugin.data.mappers import SkipBadSamples

        dicts = self.dicts()
        wrong = dict(dicts[0], width=80)
        mapper = SkipBadSamples(DatasetMapper(train_cfg("frcnn_test_train"), True), [dicts[0]])
        with self.assertLogs("frcnn_plugin.data.mappers", "WARNING") as logs:
            mapper(wrong)
        self.assertIn("SizeMismatchError", "\n".join(logs.output))

    def test_too_many_bad_samples_in_a_row(self):
        from detectron2.data import DatasetMapper

        from frcnn_plugin.data.mappers import SkipBadSamples

        dicts = self.dicts()
        bad = [dicts[1], dicts[2], dicts[5]]
        mapper = SkipBadSamples(
            DatasetMapper(train_cfg("frcnn_test_train"), True), bad, max_consecutive=4
        )
        with self.assertLogs("frcnn_plugin.data.mappers", "WARNING"):
            with self.assertRaisesRegex(
                RuntimeError,
                r"4 training images in a row could not be "
                r"used \(DATALOADER.MAX_CONSECUTIVE_BAD",
            ):
                mapper(bad[0])

    def test_test_images_fail_clearly(self):
        from detectron2.data import DatasetMapper

        from frcnn_plugin.data.checks import load_test_dataset_dicts
        from frcnn_plugin.data.mappers import NameBadImages

        json_file, image_root = write_coco(self.tmp)
        _corrupt_images(image_root)
        name = register(json_file, image_root)
        cfg = train_cfg(name)
        with self.assertRaisesRegex(
            FileNotFoundError,
            "Data set '{}': 1 of 6 image files not " "found, e.g. .*000002.png".format(name),
        ):
            load_test_dataset_dicts(cfg, name)
        from frcnn_plugin.data.checks import load_dataset_dicts

        mapper = NameBadImages(DatasetMapper(cfg, False), name)
        with self.assertRaisesRegex(
            RuntimeError,
            r"Cannot read test image .*000005.png \(image id " r"6\) of data set '{}'".format(name),
        ):
            mapper(load_dataset_dicts(name)[5])


class TestTrainingOnMessyData(unittest.TestCase):
    """Training goes on through every per-sample fault at once, and counts the skips."""

    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_trains_and_counts(self):
        from frcnn_plugin.engine import Trainer
        from tests.test_reliability import tiny_cfg

        def edit(data):
            _bad_boxes(data)
            data["images"].append(dict(data["images"][0], id=99))  # without annotations

        json_file, image_root = write_coco(self.tmp / "data", edit=edit)
        _corrupt_images(image_root)
        name = register(json_file, image_root)
        cfg = tiny_cfg(self.tmp / "out", "DATASETS.TRAIN", "('{}',)".format(name))
        with self.assertLogs("frcnn_plugin.data", "WARNING") as logs:
            trainer = Trainer(cfg)
            trainer.resume_or_load(resume=False)
            trainer.train()
        self.assertEqual(trainer.iter, 3)
        # 5 images, 3 unreadable; 6 samples drawn: each unreadable one met once at least
        self.assertGreaterEqual(trainer.storage.history("data/skipped_samples").latest(), 3)
        self.assertRegex("\n".join(logs.output), "dropped [1-9] invalid box")


class TestCheckpoints(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.dir = str(tmp_path)

    def model(self):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))

    def checkpoint(self, name="model.pth", model=None):
        from frcnn_plugin.engine import AtomicCheckpointer

        AtomicCheckpointer(model or self.model(), self.dir, save_to_disk=True).save(
            name[: -len(".pth")], iteration=5
        )
        return os.path.join(self.dir, name)

    def checkpointer(self, model=None):
        from frcnn_plugin.engine import AtomicCheckpointer

        return AtomicCheckpointer(model or self.model(), self.dir)

    def test_missing_weights_path(self):
        with self.assertRaisesRegex(FileNotFoundError, "Checkpoint not found: /no/such/w.pth"):
            self.checkpointer().resume_or_load("/no/such/w.pth", resume=False)

    def test_corrupt_and_truncated(self):
        path = self.checkpoint()
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        with self.assertRaisesRegex(
            ValueError,
            "Cannot read checkpoint .*model.pth: it is " "corrupt, truncated or not a PyTorch",
        ):
            self.checkpointer().load(path)
        with open(path, "wb") as f:
            f.write(b"\x00garbage" * 10)
        with self.assertRaisesRegex(ValueError, "Cannot read checkpoint"):
            self.checkpointer().load(path)

    def test_wrong_architecture(self):
        other = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 3))  # same names, other shapes
        path = self.checkpoint(model=other)
        with self.assertRaisesRegex(
            ValueError, "does not fit the model: none of its 4 tensors " "matches a model parameter"
        ):
            self.checkpointer().load(path)

    def test_resume_with_another_model_fails(self):
        self.checkpoint("model_0000005.pth")
        wider = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 1))
        with self.assertRaisesRegex(
            ValueError,
            r"Cannot resume from .*model_0000005.pth: the "
            r"model differs .*2\.weight \(2, 4, 1, 1\) "
            r"\(model: \(5, 4, 1, 1\)\)",
        ):
            self.checkpointer(wider).resume_or_load("", resume=True)
        # fine-tuning (not resuming) from a partly fitting checkpoint is allowed, as detectron2
        self.checkpointer(wider).load(os.path.join(self.dir, "model_0000005.pth"))

    def test_tag_naming_a_missing_file(self):
        self.checkpoint("model_0000005.pth")
        os.remove(os.path.join(self.dir, "model_0000005.pth"))
        with self.assertRaisesRegex(
            FileNotFoundError,
            "Cannot resume: .*last_checkpoint names " ".*model_0000005.pth, which does not exist",
        ):
            self.checkpointer().resume_or_load("", resume=True)
