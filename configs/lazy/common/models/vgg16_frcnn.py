"""Faster R-CNN with VGG16 (Ren et al., 2015) with the paper's settings, as a Python config:
the twin of configs/Base-VGG16-FRCNN.yaml (same modules, same parameter names, same outputs;
tests/test_lazy.py checks it). Every component is the plugin's class built from plain keyword
arguments; swap any of them, e.g. ``model.roi_heads.box_head = L(FastRCNNConvFCHead)(...)``.

COCO's 80 classes; task files set ``model.roi_heads.num_classes`` and the data."""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import FastRCNNOutputLayers

from frcnn_plugin.modeling import (
    VGG,
    FRCNNAnchorGenerator,
    FRCNNGeneralizedRCNN,
    FRCNNROIHeads,
    FRCNNRPN,
    SoftmaxRPNHead,
    VGGFCHead,
)
from frcnn_plugin.modeling.sampling import BalancedRandomSampler

# Arguments in the order the YAML builders construct the modules, so that one torch seed
# initializes both models alike.
model = L(FRCNNGeneralizedRCNN)(
    # conv1_1 ... conv5_3 without the 5th max-pool: conv5 at stride 16, 512 channels
    backbone=L(VGG)(depth=16, norm="", out_features=["conv5"], freeze_at=2, init="pytorch"),
    proposal_generator=L(FRCNNRPN)(
        in_features=["conv5"],
        # base 16 x scales 8, 16, 32 (128, 256, 512 px) x ratios 0.5, 1, 2; centres 16 i + 8
        anchor_generator=L(FRCNNAnchorGenerator)(
            strides=[16], base_sizes=[16], scales=[[8, 16, 32]],
            aspect_ratios=[[0.5, 1.0, 2.0]], offset=0.5,
        ),
        anchor_matcher=L(Matcher)(
            thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True
        ),
        # two softmax scores per anchor
        head=L(SoftmaxRPNHead)(in_channels=512, num_anchors=9, box_dim=4, conv_dims=[-1]),
        box2box_transform=L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0]),
        batch_size_per_image=256,
        positive_fraction=0.5,
        sampler=L(BalancedRandomSampler)(
            batch_size_per_image="${..batch_size_per_image}",
            positive_fraction="${..positive_fraction}",
            bg_label=0,
        ),
        pre_nms_topk=[12000, 6000],   # train, test
        post_nms_topk=[2000, 300],
        nms_thresh=0.7,
        min_box_size=16,
        min_size_in_original_pixels=True,   # 16 px of the original image, as the paper
        anchor_boundary_thresh=0,     # cross-boundary anchors ignored in training
        best_anchor_min_iou=0.0,      # a GT's best anchor is positive only if it overlaps it
        loss_weight={"loss_rpn_cls": 1.0, "loss_rpn_loc": 1.0},
        box_reg_loss_type="smooth_l1",
        smooth_l1_beta=1.0,
        loss_normalization="paper",   # class / sampled anchors, box * 10 / anchor locations
        loss_lambda=10.0,
        proposal_order="paper",       # clip, drop sides < min size, top-k, NMS, top-k
    ),
    roi_heads=L(FRCNNROIHeads)(
        num_classes=80,
        batch_size_per_image=128,
        positive_fraction=0.25,
        sampler=L(BalancedRandomSampler)(
            batch_size_per_image="${..batch_size_per_image}",
            positive_fraction="${..positive_fraction}",
            bg_label="${..num_classes}",
        ),
        # foreground >= 0.5, background [0, 0.5): the walk-through's and py-faster-rcnn's
        # end-to-end rule (BG_THRESH_LO 0.0); Fast R-CNN's band [0.1, 0.5): [0.1, 0.5], [-1, 0, 1]
        proposal_matcher=L(Matcher)(
            thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False
        ),
        proposal_append_gt=True,
        # the box predictor's initial weights: "paper" (normal std 0.01 / 0.001, detectron2's)
        # or "pytorch" (nn.Linear's default, torchvision's); MODEL.ROI_BOX_HEAD.PREDICTOR_INIT
        predictor_init="paper",
        box_in_features=["conv5"],
        box_pooler=L(ROIPooler)(
            output_size=7, scales=[1.0 / 16], sampling_ratio=0, pooler_type="ROIPool"
        ),
        # fc6 25088 -> 4096, fc7 4096 -> 4096
        box_head=L(VGGFCHead)(
            input_shape=L(ShapeSpec)(channels=512, height=7, width=7), fc_dim=4096, dropout=0.5
        ),
        box_predictor=L(FastRCNNOutputLayers)(
            input_shape=L(ShapeSpec)(channels="${...box_head.fc_dim}"),
            num_classes="${..num_classes}",
            box2box_transform=L(Box2BoxTransform)(weights=[10.0, 10.0, 5.0, 5.0]),
            cls_agnostic_bbox_reg=False,
            smooth_l1_beta=1.0,
            box_reg_loss_type="smooth_l1",
            loss_weight={"loss_box_reg": 1.0},
            test_score_thresh=0.05,
            test_nms_thresh=0.3,
            test_topk_per_image=100,
        ),
    ),
    # torchvision's ImageNet VGG16 weights: RGB, ImageNet mean/std times 255
    pixel_mean=[123.675, 116.28, 103.53],
    pixel_std=[58.395, 57.12, 57.375],
    input_format="RGB",
    vis_period=0,
    input_crop=False,
    # backbone + RPN head in NHWC: faster for VGG16 on CPU at 600x1000 (docs/benchmarks*.md)
    channels_last=True,
)
