"""Python configs (detectron2's LazyConfig): every component from plain keyword arguments, the
configs under configs/lazy/ saved and reloaded, and each one against its YAML twin (same
parameters, same initial weights from one seed, same proposals, detections and losses)."""
import os

import pytest
import torch

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import frcnn_plugin  # noqa: F401
from frcnn_plugin.cli import ConfigError, MissingFileError
from frcnn_plugin.lazy import load_lazy_config
from frcnn_plugin.modeling.memory_format import is_channels_last

from .conftest import CONFIGS, TINY_MODEL, load_config

LAZY = os.path.join(CONFIGS, "lazy")
# YAML config -> its Python twin
TWINS = [
    ("vgg16_frcnn_shapes_demo.yaml", "vgg16_frcnn_shapes_demo.py"),
    ("vgg16_frcnn.yaml", "vgg16_frcnn_coco.py"),
    ("vgg16_frcnn_voc.yaml", "vgg16_frcnn_voc.py"),
    ("vgg16_frcnn_d2_heads.yaml", "vgg16_frcnn_d2_heads.py"),  # detectron2's RPN and ROI heads
]
# TINY_MODEL of conftest and the samplers seeded, written both ways
TINY_YAML = TINY_MODEL + [
    "MODEL.WEIGHTS", "", "MODEL.RPN.SAMPLER.SEED", "0", "MODEL.ROI_HEADS.SAMPLER.SEED", "0",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
]  # fmt: skip
TINY_LAZY = [
    "model.backbone.depth=11",
    "model.proposal_generator.anchor_generator.scales=[[1,2]]",  # base 16: 16 and 32 px
    "model.proposal_generator.head.num_anchors=6",
    "model.roi_heads.box_head.fc_dim=32",
    "model.roi_heads.batch_size_per_image=16",
    "model.proposal_generator.sampler.seed=0",
    "model.roi_heads.sampler.seed=0",
    "model.roi_heads.box_predictor.test_score_thresh=0.0",
]


def lazy(name, *overrides):
    return load_lazy_config(os.path.join(LAZY, name), overrides)


def _inputs(n=2, size=64, with_gt=True):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        x = {"image": torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8),
             "height": size, "width": size}
        if with_gt:
            inst = Instances((size, size))
            inst.gt_boxes = Boxes(torch.tensor([[8.0, 8.0, 40.0, 40.0], [20.0, 10.0, 60.0, 50.0]]))
            inst.gt_classes = torch.tensor([0, 1 + i])
            x["instances"] = inst
        out.append(x)
    return out


# ------------------------------------------------------------------------ plain arguments
def test_every_component_from_lazycall_without_cfg():
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.matcher import Matcher

    from frcnn_plugin.modeling import (
        VGG,
        FRCNNAnchorGenerator,
        FRCNNGeneralizedRCNN,
        FRCNNROIHeads,
        FRCNNRPN,
        SoftmaxRPNHead,
        VGGFCHead,
    )
    from frcnn_plugin.modeling.sampling import BalancedRandomSampler, OHEMSampler
    from frcnn_plugin.modeling.soft_nms import SoftNMSOutputLayers

    backbone = instantiate(
        L(VGG)(depth=11, norm="BN", freeze_at=1, out_features=["conv4", "conv5"])
    )
    assert backbone.output_shape()["conv5"].stride == 16
    assert not backbone.conv1_1.weight.requires_grad
    head = instantiate(L(VGGFCHead)(input_shape=L(ShapeSpec)(channels=8, height=7, width=7),
                                    fc_dim=16, dropout=0.0))
    assert head.fc6.in_features == 8 * 49 and head.output_shape.channels == 16
    anchors = instantiate(L(FRCNNAnchorGenerator)(strides=[16], aspect_ratios=[1.0],
                                                  octave_base_scale=4.0, scales_per_octave=3))
    assert anchors.num_anchors == [3]
    for cls in (BalancedRandomSampler, OHEMSampler):
        s = instantiate(L(cls)(batch_size_per_image=4, positive_fraction=0.5, bg_label=0))
        pos, neg = s(torch.tensor([1, 0, 0, -1]))
        assert len(pos) == 1 and len(neg) == 2
    rpn_head = instantiate(L(SoftmaxRPNHead)(in_channels=8, num_anchors=3))
    assert rpn_head.objectness_logits.out_channels == 6
    predictor = instantiate(L(SoftNMSOutputLayers)(
        input_shape=L(ShapeSpec)(channels=16), num_classes=2,
        box2box_transform=L(Box2BoxTransform)(weights=[10, 10, 5, 5]),
        soft_nms_method="gaussian"))
    assert predictor.soft_nms_method == "gaussian"
    # the meta architecture, RPN and ROI heads: the Python config builds from LazyCalls only
    cfg = lazy("vgg16_frcnn_shapes_demo.py", *TINY_LAZY)
    model = instantiate(cfg.model)
    assert type(model) is FRCNNGeneralizedRCNN
    assert type(model.proposal_generator) is FRCNNRPN
    assert type(model.roi_heads) is FRCNNROIHeads
    assert isinstance(model.proposal_generator.anchor_matcher, Matcher)
    assert model.roi_heads.sampler.bg_label == 3 and model.roi_heads.sampler.seed == 0


def test_bad_value_in_a_python_config_is_a_config_error():
    with pytest.raises(ConfigError, match="DEPTH=12"):
        instantiate(lazy("vgg16_frcnn_shapes_demo.py", "model.backbone.depth=12").model)


def test_load_lazy_config_errors(tmp_path):
    with pytest.raises(MissingFileError, match="not found"):
        load_lazy_config(str(tmp_path / "nope.py"))
    with pytest.raises(ConfigError, match="did you mean: train.max_iter"):
        lazy("vgg16_frcnn_shapes_demo.py", "train.max_itr=3")
    with pytest.raises(ConfigError, match="key=value"):
        lazy("vgg16_frcnn_shapes_demo.py", "train.max_iter")
    bad = tmp_path / "bad.py"
    bad.write_text("model = (\n")
    with pytest.raises(ConfigError, match="Cannot load"):
        load_lazy_config(str(bad))
    # a new argument of a LazyCall is allowed (detectron2's convention)
    cfg = lazy("vgg16_frcnn_shapes_demo.py", "model.roi_heads.box_predictor.use_sigmoid_ce=False")
    assert cfg.model.roi_heads.box_predictor.use_sigmoid_ce is False


# ------------------------------------------------------------------------ save and reload
@pytest.mark.parametrize("name", [t[1] for t in TWINS])
def test_python_config_saves_and_reloads(name, tmp_path):
    cfg = lazy(name)
    path = str(tmp_path / "saved.yaml")
    LazyConfig.save(cfg, path)
    assert os.listdir(str(tmp_path)) == ["saved.yaml"]  # no pickle fallback: no lambdas
    again = LazyConfig.load(path)
    LazyConfig.save(again, str(tmp_path / "again.yaml"))
    assert (tmp_path / "again.yaml").read_text() == (tmp_path / "saved.yaml").read_text()
    assert again.model.roi_heads.box_predictor.num_classes == cfg.model.roi_heads.num_classes
    if name == "vgg16_frcnn_shapes_demo.py":  # small enough to build twice
        torch.manual_seed(0)
        a = instantiate(cfg.model).state_dict()
        torch.manual_seed(0)
        b = instantiate(again.model).state_dict()
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------ YAML twins
@pytest.mark.parametrize("yaml_name,py_name", TWINS)
def test_twin_has_the_same_parameters_and_initial_weights(yaml_name, py_name):
    """Full-size models: same names, shapes, trainable flags and, from one seed, values."""
    cfg = load_config(yaml_name, "MODEL.WEIGHTS", "")
    torch.manual_seed(0)
    a = build_model(cfg)
    torch.manual_seed(0)
    b = instantiate(lazy(py_name).model)
    assert [(n, p.shape, p.requires_grad) for n, p in a.named_parameters()] == [
        (n, p.shape, p.requires_grad) for n, p in b.named_parameters()
    ]
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the same memory format: NHWC for the 600 px paper configs (measured faster on CPU), the
    # default layout for the 128 px demo and under detectron2's GeneralizedRCNN
    nhwc = yaml_name in ("vgg16_frcnn.yaml", "vgg16_frcnn_voc.yaml")
    assert is_channels_last(a.backbone) is nhwc and is_channels_last(b.backbone) is nhwc
    assert is_channels_last(a.proposal_generator.rpn_head) is nhwc
    assert is_channels_last(b.proposal_generator.rpn_head) is nhwc


@pytest.mark.parametrize("yaml_name,py_name", TWINS)
def test_twin_gives_the_same_proposals_detections_and_losses(yaml_name, py_name, one_thread):
    cfg = load_config(yaml_name, *TINY_YAML)
    torch.manual_seed(0)
    a = build_model(cfg)
    # detectron2's own samplers have no seed: they draw from torch's RNG, seeded below
    tiny = [o for o in TINY_LAZY if "d2_heads" not in py_name or ".sampler." not in o]
    b = instantiate(lazy(py_name, *tiny).model)
    b.load_state_dict(a.state_dict())
    losses = []
    for model in (a, b):
        model.train()
        torch.manual_seed(1)  # dropout
        with EventStorage():
            losses.append({k: v.detach() for k, v in model(_inputs()).items()})
    assert set(losses[0]) == set(losses[1]) and len(losses[0]) == 4
    for k in losses[0]:
        assert torch.equal(losses[0][k], losses[1][k]), k
    outputs = []
    for model in (a, b):
        model.eval()
        with torch.no_grad():
            x = _inputs(with_gt=False)
            images = model.preprocess_image(x)
            proposals, _ = model.proposal_generator(images, model.backbone(images.tensor))
            outputs.append((proposals, model(x)))
    for pa, pb in zip(outputs[0][0], outputs[1][0]):
        assert len(pa) > 0
        assert torch.equal(pa.proposal_boxes.tensor, pb.proposal_boxes.tensor)
        assert torch.equal(pa.objectness_logits, pb.objectness_logits)
    for da, db in zip(outputs[0][1], outputs[1][1]):
        da, db = da["instances"], db["instances"]
        assert len(da) > 0
        assert torch.equal(da.pred_boxes.tensor, db.pred_boxes.tensor)
        assert torch.equal(da.scores, db.scores) and torch.equal(da.pred_classes, db.pred_classes)


def test_demo_twin_has_the_same_schedule_data_and_seed():
    """The lazy demo reproduces the YAML demo's run: optimizer groups, LR at every iteration,
    loader settings, augmentations, seed, checkpoint and evaluation periods."""
    from detectron2.solver import build_lr_scheduler

    from frcnn_plugin.data import FRCNNDatasetMapper
    from frcnn_plugin.engine import Trainer

    ycfg = load_config("vgg16_frcnn_shapes_demo.yaml", *TINY_MODEL)
    lcfg = lazy("vgg16_frcnn_shapes_demo.py", *TINY_LAZY)
    torch.manual_seed(0)
    model = build_model(ycfg)
    yopt = Trainer.build_optimizer(ycfg, model)
    lcfg.optimizer.params.model = model
    lopt = instantiate(lcfg.optimizer)

    def groups(opt):
        by_param = {}
        for g in opt.param_groups:
            for p in g["params"]:
                by_param[id(p)] = (g["lr"], g["weight_decay"], g["momentum"], g["nesterov"])
        return by_param

    assert groups(yopt) == groups(lopt)
    ysched = build_lr_scheduler(ycfg, yopt)
    lmult = instantiate(lcfg.lr_multiplier)
    max_iter = ycfg.SOLVER.MAX_ITER
    assert lcfg.train.max_iter == max_iter
    for it in range(max_iter):
        assert ysched._multiplier(it / max_iter) == pytest.approx(lmult(it / max_iter), abs=0)
    assert lcfg.train.seed == ycfg.SEED == lcfg.dataloader.train.seed
    assert lcfg.train.checkpointer.period == ycfg.SOLVER.CHECKPOINT_PERIOD
    assert lcfg.train.eval_period == ycfg.TEST.EVAL_PERIOD
    train = lcfg.dataloader.train
    assert train.total_batch_size == ycfg.SOLVER.IMS_PER_BATCH
    assert train.num_workers == ycfg.DATALOADER.NUM_WORKERS
    assert [train.dataset.names] == list(ycfg.DATASETS.TRAIN)
    assert [lcfg.dataloader.test.dataset.names] == list(ycfg.DATASETS.TEST)
    ymap = FRCNNDatasetMapper(load_config("vgg16_frcnn_shapes_demo.yaml"), True)
    lmap = instantiate(train.mapper)

    def augs(mapper):
        return [(type(a).__name__, {k: list(v) if isinstance(v, (list, tuple)) else v
                                    for k, v in vars(a).items()})
                for a in mapper.augmentations.augs]

    assert augs(ymap) == augs(lmap)
    assert ymap.image_format == lmap.image_format
    assert ymap.use_instance_mask == lmap.use_instance_mask


@pytest.mark.usefixtures("tiny_shapes")
def test_inspect_pipeline_reads_a_python_config(one_thread, capsys):
    """The same table from the YAML demo and its Python twin (same seed, untrained)."""
    from frcnn_plugin.inspection.pipeline import trace_to_dict

    from .conftest import load_tool

    tool = load_tool("inspect_pipeline")
    common = ["--dataset", "frcnn_test_val", "--weights", ""]
    a = tool.main(["--config-file", os.path.join(CONFIGS, "vgg16_frcnn_shapes_demo.yaml")]
                  + common + TINY_MODEL)
    b = tool.main(["--config-file", os.path.join(LAZY, "vgg16_frcnn_shapes_demo.py")] + common
                  + [o for o in TINY_LAZY if ".sampler." not in o and "score_thresh" not in o]
                  + ["dataloader.test.mapper.augmentations.0.short_edge_length=64",
                     "dataloader.test.mapper.augmentations.0.max_size=64"])
    assert trace_to_dict(a)["stages"] == trace_to_dict(b)["stages"]
    assert "detections" in capsys.readouterr().out
