"""tools/browse_dataset.py and tools/print_config.py: on a DATASETS.REGISTER data set made
here, with one box of zero width, an image whose only box lies outside it, and an unreadable
image file; expectations written from the annotations, not from the tools."""
import io
import json
import os
from contextlib import redirect_stdout

import numpy as np
import pytest
from PIL import Image

from tests.conftest import CONFIGS, load_tool
from tests.own_data import write_config

DEMO = os.path.join(CONFIGS, "vgg16_frcnn_shapes_demo.yaml")
DEMO_PY = os.path.join(CONFIGS, "lazy", "vgg16_frcnn_shapes_demo.py")


@pytest.fixture(scope="module")
def own_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("browse")
    images = root / "images"
    images.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(images / name)
    (images / "c.png").write_bytes(b"not a png")
    coco = {
        "images": [{"id": i + 1, "file_name": n, "width": 64, "height": 64}
                   for i, n in enumerate(("a.png", "b.png", "c.png"))],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 20], "area": 400,
             "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [30, 30, 0, 10], "area": 0,
             "iscrowd": 0},  # zero width: dropped
            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [70, 70, 10, 10], "area": 100,
             "iscrowd": 0},  # wholly outside the 64x64 image: dropped, the image refused
            {"id": 4, "image_id": 3, "category_id": 1, "bbox": [8, 8, 16, 16], "area": 256,
             "iscrowd": 0},  # its file is not an image
        ],
    }
    with open(root / "ann.json", "w") as f:
        json.dump(coco, f)
    entry = {"NAME": "browse_own", "FORMAT": "coco", "JSON_FILE": str(root / "ann.json"),
             "IMAGE_ROOT": str(images)}
    return write_config(root / "cfg.yaml", DEMO, [entry], ["browse_own"], ["browse_own"])


def run(tool, argv):
    with redirect_stdout(io.StringIO()) as out:
        result = load_tool(tool).main(argv)
    return result, out.getvalue()


def test_browse_annotations_marks_dropped_boxes_and_refused_images(own_config, tmp_path):
    res, text = run("browse_dataset", ["--config-file", own_config, "--output-dir",
                                       str(tmp_path / "out")])
    a, b, c = res["views"]
    assert (a.labels, a.dropped, a.refused) == (
        ["cat", "dropped (zero or negative width or height): dog"], [False, True], None)
    assert a.boxes[0] == [4, 4, 24, 24]  # XYWH 4, 4, 20, 20
    assert b.dropped == [True] and "wholly outside the image" in b.labels[0]
    assert b.refused.startswith("refused: no usable annotation")
    assert c.image is None and c.refused.startswith("refused: unreadable image")
    assert sorted(os.listdir(tmp_path / "out")) == ["00000_a.png", "00001_b.png", "00002_c.png"]
    with Image.open(tmp_path / "out" / "00000_a.png") as im:
        assert im.size == (400, 400)  # a 64 px image is drawn at 400 px, room for labels
    assert "2 refused" in text and "2 box(es) dropped" in text


def test_browse_dataloader_contact_sheet_and_no_overwrite(own_config, tmp_path):
    sheet = tmp_path / "sheet.png"
    res, _ = run("browse_dataset", ["--config-file", own_config, "--source", "dataloader",
                                    "--contact-sheet", str(sheet), "-n", "2", "--tile", "100"])
    # the training loader keeps a.png only (b refused, c unreadable), its one valid box,
    # resized from 64 to the demo's 128 px (and maybe flipped)
    assert [v.name for v in res["views"]] == ["a.png", "a.png"]
    for v in res["views"]:
        assert v.labels == ["cat"] and v.image.shape == (128, 128, 3)
        assert sorted([v.boxes[0][2] - v.boxes[0][0], v.boxes[0][3] - v.boxes[0][1]]) == [40, 40]
    with Image.open(sheet) as im:
        assert im.size == (200, 100)  # 2 tiles of 100 px in one row
    before = sheet.read_bytes()
    with pytest.raises(Exception, match="exists"):
        run("browse_dataset", ["--config-file", own_config, "--contact-sheet", str(sheet)])
    assert sheet.read_bytes() == before


def test_browse_python_config(tmp_path):
    res, _ = run("browse_dataset", ["--config-file", DEMO_PY, "--contact-sheet",
                                    str(tmp_path / "s.png"), "-n", "1"])
    assert res["dataset"] == "frcnn_shapes_train" and res["views"][0].labels


def test_print_config_yaml_marks_the_changed_and_the_plugin_keys(own_config):
    _, text = run("print_config", ["--config-file", own_config, "SOLVER.MAX_ITER", "7"])
    lines = text.splitlines()
    # detectron2's defaults: 80 classes, 40 000 iterations, GeneralizedRCNN; the demo and
    # own_config set 2 classes, the override 7 iterations
    assert "    NUM_CLASSES: 2  # * default: 80" in lines
    assert "  MAX_ITER: 7  # * default: 40000" in lines
    assert "  META_ARCHITECTURE: FRCNNGeneralizedRCNN  # * default: GeneralizedRCNN" in lines
    assert "  VGG:  # +" in lines  # the plugin's key
    assert "  MASK_ON: false" in lines  # as detectron2's default: unmarked
    assert any(line.startswith("  REGISTER: [{") and "browse_own" in line for line in lines)
    _, changed = run("print_config", ["--config-file", own_config, "--changed-only"])
    assert "  MASK_ON: false" not in changed.splitlines() and "NUM_CLASSES: 2" in changed


def test_print_config_python_and_output(tmp_path):
    out = tmp_path / "merged.txt"
    run("print_config", ["--config-file", DEMO_PY, "--output", str(out), "train.max_iter=9"])
    lines = out.read_text().splitlines()
    # torch.optim.SGD's lr default 0.001; detectron2's common/train.py: max_iter 90 000
    assert "  lr: 0.02  # * default: 0.001" in lines
    assert "  max_iter: 9  # * default: 90000" in lines
    assert "  seed: 42  # +" in lines  # the plugin's train key
    with pytest.raises(Exception, match="exists"):
        run("print_config", ["--config-file", DEMO_PY, "--output", str(out)])
