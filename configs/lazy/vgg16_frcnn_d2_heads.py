"""Swap: the VGG16 backbone (and VGG fc6/fc7 box head) under detectron2's own GeneralizedRCNN,
RPN, StandardRPNHead and StandardROIHeads, the Python twin of configs/vgg16_frcnn_d2_heads.yaml
(tests/test_lazy.py checks they build the same model): the paper's COCO recipe otherwise::

    python tools/lazy_train_net.py --config-file configs/lazy/vgg16_frcnn_d2_heads.py
"""
from detectron2.modeling import GeneralizedRCNN, StandardROIHeads
from detectron2.modeling.proposal_generator import RPN, StandardRPNHead

from .vgg16_frcnn_coco import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model._target_ = GeneralizedRCNN
del model.input_crop
del model.channels_last                   # applied by the plugin's meta-architecture only
rpn = model.proposal_generator
rpn._target_ = RPN
for key in ("sampler", "min_size_in_original_pixels", "best_anchor_min_iou",
            "loss_normalization", "loss_lambda", "proposal_order"):
    del rpn[key]
rpn.head._target_ = StandardRPNHead       # one sigmoid logit per anchor
model.roi_heads._target_ = StandardROIHeads
del model.roi_heads.sampler
del model.roi_heads.predictor_init       # read by the plugin's FRCNNROIHeads only
del rpn

train.output_dir = "output/vgg16_frcnn_d2_heads_coco_lazy"
