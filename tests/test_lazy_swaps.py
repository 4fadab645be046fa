"""The swap configs under configs/lazy/: the plugin's components inside detectron2's own
LazyConfig models (RetinaNet with FRCNNAnchorGenerator octave anchors, Mask R-CNN with the
plugin's ROI sampler, the VGG16 backbone under StandardROIHeads) train on the generated shapes:
a few SGD steps on one batch give finite, decreasing losses.

Made small for CPU: ResNet-18 in place of ResNet-50 (batch norm, as there are no pretrained
weights), 64 px images, 2 per batch."""
import math
import os

import pytest
import torch

from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.events import EventStorage

from frcnn_plugin.lazy import load_lazy_config

from .conftest import CONFIGS
from .test_lazy import TINY_LAZY

LAZY = os.path.join(CONFIGS, "lazy")
DATA = [
    "dataloader.train.mapper.augmentations.0.short_edge_length=[64]",
    "dataloader.train.mapper.augmentations.0.max_size=64",
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0",
    "train.init_checkpoint=",
]
# no pretrained weights: batch norm, nothing frozen (frozen norms of random weights do not
# normalize)
RESNET18 = ["model.backbone.bottom_up.stem.norm=BN", "model.backbone.bottom_up.stages.norm=BN",
            "model.backbone.bottom_up.freeze_at=0"]
STEPS = 6


@pytest.fixture(scope="module")
def shapes_with_masks(tiny_shapes):
    """frcnn_test_train with each box as its polygon mask (for the mask head)."""
    name = "frcnn_test_train_masks"
    if name not in DatasetCatalog.list():
        def load():
            dicts = DatasetCatalog.get("frcnn_test_train")
            for d in dicts:
                for a in d["annotations"]:
                    x, y, w, h = a["bbox"]  # XYWH_ABS, as the shapes' COCO json
                    a["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
            return dicts

        DatasetCatalog.register(name, load)
        meta = MetadataCatalog.get("frcnn_test_train")
        MetadataCatalog.get(name).set(thing_classes=list(meta.thing_classes),
                                      evaluator_type="coco")
    return name


def resnet18(cfg):
    """ResNet-18 in place of the config's ResNet-50 (a test-size backbone)."""
    stages = cfg.model.backbone.bottom_up.stages
    stages.depth = 18
    del stages.stride_in_1x1  # a bottleneck-block argument
    top = cfg.model.backbone.get("top_block")
    if top is not None and "in_channels" in top:
        top.in_channels = 512
    return cfg


def raw_losses(cfg, steps=STEPS):
    """SGD steps on one batch of the config's training loader; the total loss before each
    step, times RetinaNet's running loss normalizer where there is one (it moves from 100
    towards the number of foreground anchors, so the normalized loss is not comparable from
    step to step)."""
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    model.train()
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    batch = next(iter(instantiate(cfg.dataloader.train)))
    totals = []
    with EventStorage():
        for _ in range(steps):
            losses = model(batch)
            total = sum(losses.values())
            totals.append(float(total.detach()) * float(getattr(model, "loss_normalizer", 1.0)))
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
    return model, totals


def assert_decreasing(totals):
    assert all(math.isfinite(t) for t in totals), totals
    assert totals[-1] < totals[0], totals


@pytest.mark.usefixtures("tiny_shapes")
def test_retinanet_with_frcnn_octave_anchors_trains(one_thread):
    from frcnn_plugin.modeling import FRCNNAnchorGenerator

    cfg = resnet18(load_lazy_config(
        os.path.join(LAZY, "retinanet_R50_FPN_octave_anchors.py"),
        DATA + RESNET18 + ["dataloader.train.dataset.names=frcnn_test_train",
                           "model.num_classes=3"],
    ))
    model, totals = raw_losses(cfg)
    generator = model.anchor_generator
    assert type(generator) is FRCNNAnchorGenerator
    assert generator.sizes[0] == pytest.approx([32.0, 32 * 2 ** (1 / 3), 32 * 2 ** (2 / 3)])
    assert_decreasing(totals)


def test_mask_rcnn_with_the_plugin_sampler_trains(shapes_with_masks, one_thread):
    from frcnn_plugin.modeling import FRCNNROIHeads
    from frcnn_plugin.modeling.sampling import BalancedRandomSampler

    cfg = resnet18(load_lazy_config(
        os.path.join(LAZY, "mask_rcnn_R50_FPN_frcnn_sampler.py"),
        DATA + RESNET18 + ["dataloader.train.dataset.names=" + shapes_with_masks,
                           "model.roi_heads.num_classes=3",
                           "model.roi_heads.batch_size_per_image=64",
                           "optimizer.lr=0.005"],
    ))
    model, totals = raw_losses(cfg)
    assert type(model.roi_heads) is FRCNNROIHeads
    sampler = model.roi_heads.sampler
    assert type(sampler) is BalancedRandomSampler
    assert (sampler.batch_size_per_image, sampler.bg_label, sampler.seed) == (64, 3, 0)
    assert_decreasing(totals)


@pytest.mark.usefixtures("tiny_shapes")
def test_vgg16_under_detectron2_standard_roi_heads_trains(one_thread):
    from detectron2.modeling import GeneralizedRCNN, StandardROIHeads
    from detectron2.modeling.proposal_generator import RPN

    from frcnn_plugin.modeling import VGG

    cfg = load_lazy_config(
        os.path.join(LAZY, "vgg16_frcnn_d2_heads.py"),
        DATA + [o for o in TINY_LAZY if ".sampler." not in o] + [
            "dataloader.train.dataset.names=frcnn_test_train",
            "model.roi_heads.num_classes=3",
            "model.backbone.freeze_at=0",
            "model.backbone.norm=BN",
            "model.roi_heads.box_head.dropout=0.0",
            "optimizer.lr=0.002",
        ],
    )
    model, totals = raw_losses(cfg)
    assert type(model) is GeneralizedRCNN and type(model.backbone) is VGG
    assert type(model.proposal_generator) is RPN
    assert type(model.roi_heads) is StandardROIHeads
    assert_decreasing(totals)
