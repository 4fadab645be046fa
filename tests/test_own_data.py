"""Own data sets from the config (DATASETS.REGISTER): COCO and VOC written by the test, trained
and evaluated through tools/train_net.py; the errors for bad entries and missing files."""
import os

import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator

from frcnn_plugin.cli import ConfigError, MissingFileError
from frcnn_plugin.data import register_datasets
from frcnn_plugin.data.checks import load_dataset_dicts
from tests import own_data
from tests.conftest import CONFIGS, TINY_MODEL, TINY_SCHEDULE, load_tool

DEMO = os.path.join(CONFIGS, "vgg16_frcnn_shapes_demo.yaml")


def _train(config_file, out, *extra):
    """tools/train_net.py main(): 3 iterations of the tiny model, then evaluation."""
    train_net = load_tool("train_net")
    args = train_net.argument_parser().parse_args(
        ["--config-file", config_file, "OUTPUT_DIR", out, *TINY_MODEL, *TINY_SCHEDULE, *extra])
    return train_net, args


def test_coco_entry_trains_and_evaluates_with_coco_evaluator(tmp_path, one_thread):
    json_file, image_root = own_data.write_coco(str(tmp_path / "coco"))
    name = "own_coco_" + tmp_path.name
    config = own_data.write_config(
        tmp_path / "cfg.yaml", DEMO,
        [{"NAME": name, "FORMAT": "coco", "JSON_FILE": json_file, "IMAGE_ROOT": image_root}],
        train=[name], test=[name])
    train_net, args = _train(config, str(tmp_path / "out"))
    results = train_net.main(args)

    assert set(results) == {"bbox"}
    # COCOEvaluator's keys: AP by size and per class, with the JSON's class names
    assert {"AP", "AP50", "APs", "AP-cat", "AP-dog"} <= set(results["bbox"])
    assert os.path.isfile(str(tmp_path / "out" / "inference" / name /
                              "coco_instances_results.json"))
    meta = MetadataCatalog.get(name)
    assert meta.evaluator_type == "coco"
    assert meta.thing_classes == own_data.CLASSES
    assert meta.thing_dataset_id_to_contiguous_id == {5: 0, 9: 1}
    cfg = train_net.load_config(args)  # the same entry registered again: a no-op
    assert isinstance(train_net.Trainer.build_evaluator(cfg, name), COCOEvaluator)


def test_voc_entry_trains_and_evaluates_with_voc_evaluator(tmp_path, one_thread):
    root = own_data.write_voc(str(tmp_path / "VOC"), split="trainval")
    name = "own_voc_" + tmp_path.name
    entry = {"NAME": name, "FORMAT": "voc", "ROOT": root, "SPLIT": "trainval",
             "CLASS_NAMES": own_data.CLASSES}  # YEAR: 2007 by default
    config = own_data.write_config(tmp_path / "cfg.yaml", DEMO, [entry], [name], [name])
    train_net, args = _train(config, str(tmp_path / "out"))
    results = train_net.main(args)

    # PascalVOCDetectionEvaluator's keys (COCOEvaluator's would add APs, APm, APl, AP-<class>)
    assert set(results) == {"bbox"} and set(results["bbox"]) == {"AP", "AP50", "AP75"}
    assert not os.path.exists(str(tmp_path / "out" / "inference" / name))
    cfg = train_net.load_config(args)
    evaluator = train_net.Trainer.build_evaluator(cfg, name)
    assert isinstance(evaluator, PascalVOCDetectionEvaluator)
    assert evaluator._is_2007  # YEAR 2007: VOC2007's 11-point AP

    dicts = load_dataset_dicts(name)
    assert [d["image_id"] for d in dicts] == ["000001", "000002", "000003", "000004"]
    # detectron2's VOC loader: 1-based XML coordinates -> 0-based boxes
    assert dicts[1]["annotations"][0]["bbox"] == [30.0, 20.0, 60.0, 58.0]
    assert dicts[1]["annotations"][0]["category_id"] == 1


def _load(config_file, *opts):
    from frcnn_plugin.config import load_frcnn_config

    return load_frcnn_config(config_file, opts)


def test_missing_json_names_path_and_key(tmp_path, capsys):
    name = "own_missing_" + tmp_path.name
    missing = str(tmp_path / "nope.json")
    os.makedirs(str(tmp_path / "images"))
    config = own_data.write_config(
        tmp_path / "cfg.yaml", DEMO,
        [{"NAME": name, "FORMAT": "coco", "JSON_FILE": missing,
          "IMAGE_ROOT": str(tmp_path / "images")}], [name], [name])
    _load(config)  # registering reads nothing
    with pytest.raises(MissingFileError, match=r"annotation file not found: {} \(DATASETS"
                       r"\.REGISTER\[0\]\.JSON_FILE\)".format(missing)):
        load_dataset_dicts(name)

    train_net = load_tool("train_net")  # the tool: one error paragraph, exit status 2
    with pytest.raises(SystemExit) as exit_info:
        train_net.cli(["--config-file", config, "OUTPUT_DIR", str(tmp_path / "out"), *TINY_MODEL])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error: Data set {!r}: annotation file not found: {}".format(name, missing) in err
    assert "Traceback" not in err


def test_unknown_format_and_bad_entries(tmp_path):
    config = own_data.write_config(
        tmp_path / "cfg.yaml", DEMO, [{"NAME": "own_yolo", "FORMAT": "yolo"}], [], [])
    with pytest.raises(ConfigError, match=r"DATASETS.REGISTER\[0\].FORMAT='yolo' is invalid; "
                       r"allowed: 'coco' or 'voc'"):
        _load(config)
    assert "own_yolo" not in DatasetCatalog.list()
    with pytest.raises(ConfigError, match=r"JSON_FLE is not a key .*did you mean JSON_FILE"):
        register_datasets([{"name": "own_typo", "format": "coco", "json_fle": "a.json"}])
    with pytest.raises(ConfigError, match=r"\[1\] \(FORMAT 'voc'\) lacks SPLIT, CLASS_NAMES"):
        register_datasets([{"NAME": "own_a", "FORMAT": "coco", "JSON_FILE": "a",
                            "IMAGE_ROOT": "b"}, {"NAME": "own_b", "FORMAT": "voc", "ROOT": "r"}])
    assert "own_a" not in DatasetCatalog.list()  # all entries are checked before any is added
    with pytest.raises(ConfigError, match=r"YEAR=2010 is invalid"):
        register_datasets([{"NAME": "own_c", "FORMAT": "voc", "ROOT": "r", "SPLIT": "test",
                            "CLASS_NAMES": ["a"], "YEAR": 2010}])


def test_reregistration_same_entry_is_noop_other_entry_is_error(tmp_path):
    name = "own_again_" + tmp_path.name
    entry = {"NAME": name, "FORMAT": "coco", "JSON_FILE": str(tmp_path / "a.json"),
             "IMAGE_ROOT": str(tmp_path)}
    assert register_datasets([entry]) == [name]
    assert register_datasets([dict(entry)]) == [name]
    with pytest.raises(ConfigError, match=r"NAME='{}' is registered already .*b\.json".format(
            name)):
        register_datasets([dict(entry, JSON_FILE=str(tmp_path / "b.json"))])
    with pytest.raises(ConfigError, match=r"'frcnn_shapes_val' is registered already"):
        register_datasets([dict(entry, NAME="frcnn_shapes_val")])


def test_voc_missing_split_file_and_missing_image(tmp_path):
    root = own_data.write_voc(str(tmp_path / "VOC"), split="test")
    name = "own_voc_split_" + tmp_path.name
    register_datasets([{"NAME": name, "FORMAT": "voc", "ROOT": root, "SPLIT": "trainval",
                        "CLASS_NAMES": own_data.CLASSES}])
    split_file = os.path.join(root, "ImageSets", "Main", "trainval.txt")
    with pytest.raises(MissingFileError, match=r"split file not found: {} \(DATASETS\.REGISTER"
                       r"\[0\]\.SPLIT='trainval' under DATASETS\.REGISTER\[0\]\.ROOT\)".format(
                           split_file)):
        load_dataset_dicts(name)

    other = "own_voc_image_" + tmp_path.name
    register_datasets([{"NAME": other, "FORMAT": "voc", "ROOT": root, "SPLIT": "test",
                        "CLASS_NAMES": own_data.CLASSES}])
    image = os.path.join(root, "JPEGImages", "000003.jpg")
    os.remove(image)
    with pytest.raises(MissingFileError, match=r"1 of 4 image files not found \(DATASETS\.REGISTER"
                       r"\[0\]\.ROOT\), e\.g\. {}".format(image)):
        load_dataset_dicts(other)
