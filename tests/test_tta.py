"""Test-time augmentation (TEST.AUG) with FRCNNGeneralizedRCNN: one scale without flip gives the
plain model's detections; every augmented input carries the original size the RPN needs; the
training tools' --eval-only add the *_TTA results."""
import io
import json
import os
from contextlib import redirect_stdout

import pytest
import torch

from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from detectron2.utils.env import seed_all_rng

from frcnn_plugin.data import register_shapes_dataset
from frcnn_plugin.errors import ConfigError
from frcnn_plugin.modeling.tta import FRCNNGeneralizedRCNNWithTTA
from tests.conftest import CONFIGS, TINY_MODEL, load_config, load_tool

DEMO = os.path.join(CONFIGS, "vgg16_frcnn_shapes_demo.yaml")
DEMO_PY = os.path.join(CONFIGS, "lazy", "vgg16_frcnn_shapes_demo.py")
# the RPN drops proposals under 16 px of the original image: it needs the original size
OPTS = TINY_MODEL + ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
                     "MODEL.PROPOSAL_GENERATOR.MIN_SIZE", "16", "SEED", "0"]


@pytest.fixture(scope="module")
def tta_data(tmp_path_factory):
    """Two 128 px generated images (shown to the tiny model at 64 px)."""
    name = "frcnn_tta_val"
    if name not in DatasetCatalog.list():
        register_shapes_dataset(name, str(tmp_path_factory.mktemp("tta")), 2, image_size=128,
                                seed=3, min_size=24, max_size=64)
    return name, DatasetCatalog.get(name)


def tiny_model(*opts):
    cfg = load_config(DEMO, *(OPTS + list(opts)))
    seed_all_rng(0)
    return cfg, build_model(cfg).eval()


def test_one_scale_no_flip_gives_the_plain_detections(tta_data, one_thread):
    _, dicts = tta_data
    cfg, model = tiny_model("TEST.AUG.MIN_SIZES", "(64,)", "TEST.AUG.MAX_SIZE", "64",
                            "TEST.AUG.FLIP", "False")
    tta = FRCNNGeneralizedRCNNWithTTA(cfg, model)
    mapper = DatasetMapper(cfg, False)
    with torch.no_grad():
        for record in dicts:
            plain = model([mapper(dict(record))])[0]["instances"]
            # TTA reads the file itself and resizes once, as the plain test mapper does
            aug = tta([{k: record[k] for k in ("file_name", "height", "width")}])[0]["instances"]
            assert len(plain) > 0 and len(aug) == len(plain)
            order_p = torch.argsort(plain.scores, descending=True, stable=True)
            order_a = torch.argsort(aug.scores, descending=True, stable=True)
            torch.testing.assert_close(aug.scores[order_a], plain.scores[order_p])
            torch.testing.assert_close(aug.pred_classes[order_a], plain.pred_classes[order_p])
            torch.testing.assert_close(aug.pred_boxes.tensor[order_a],
                                       plain.pred_boxes.tensor[order_p], atol=1e-3, rtol=1e-5)


def test_every_augmented_input_carries_the_original_size(tta_data, one_thread):
    _, dicts = tta_data
    cfg, model = tiny_model("TEST.AUG.MIN_SIZES", "(48, 64, 80)", "TEST.AUG.MAX_SIZE", "80",
                            "TEST.AUG.FLIP", "True")
    seen = []
    hook = model.proposal_generator.register_forward_pre_hook(
        lambda module, args: seen.append((list(args[0].image_sizes),
                                          list(args[0].original_sizes))))
    try:
        with torch.no_grad():
            FRCNNGeneralizedRCNNWithTTA(cfg, model, batch_size=2)(
                [{"file_name": dicts[0]["file_name"], "height": 128, "width": 128}])
    finally:
        hook.remove()
    image_sizes = [s for batch in seen for s in batch[0]]
    original = [s for batch in seen for s in batch[1]]
    # 3 scales x (plain, flipped): inputs of 48, 64 and 80 px, each from the 128 px original
    assert sorted(tuple(s) for s in image_sizes) == [(48, 48)] * 2 + [(64, 64)] * 2 + \
        [(80, 80)] * 2
    assert [tuple(s) for s in original] == [(128, 128)] * 6


def test_tta_refuses_a_model_without_roi_heads():
    cfg = load_config("retinanet_R50_FPN_octave_anchors.yaml", "MODEL.WEIGHTS", "")
    model = build_model(cfg)
    with pytest.raises(ConfigError, match="allowed: GeneralizedRCNN"):
        FRCNNGeneralizedRCNNWithTTA(cfg, model)


def test_train_net_eval_only_adds_the_tta_results(tta_data, tmp_path, one_thread):
    name, _ = tta_data
    with redirect_stdout(io.StringIO()):
        res = load_tool("train_net").cli(
            ["--config-file", DEMO, "--eval-only"] + OPTS
            + ["DATASETS.TEST", "('{}',)".format(name), "OUTPUT_DIR", str(tmp_path),
               "TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(48, 64)",
               "TEST.AUG.MAX_SIZE", "64"])
    assert set(res) == {"bbox", "bbox_TTA"} and "AP" in res["bbox_TTA"]
    assert os.path.isfile(os.path.join(tmp_path, "inference_TTA", name,
                                       "coco_instances_results.json"))
    with open(os.path.join(tmp_path, "eval_results.json")) as f:
        assert set(json.load(f)) == {"bbox", "bbox_TTA"}


def test_lazy_eval_only_adds_the_tta_results(tta_data, tmp_path, one_thread):
    name, _ = tta_data
    with redirect_stdout(io.StringIO()):
        res = load_tool("lazy_train_net").cli(
            ["--config-file", DEMO_PY, "--eval-only", "train.output_dir=" + str(tmp_path),
             "dataloader.test.dataset.names=" + name, "model.backbone.depth=11",
             "model.roi_heads.box_head.fc_dim=32", "test.aug.enabled=True",
             "test.aug.min_sizes=[64,96]", "test.aug.max_size=96"])
    assert set(res) == {"bbox", "bbox_TTA"}
    assert os.path.isfile(os.path.join(tmp_path, "inference_TTA",
                                       "coco_instances_results.json"))
