"""Swap: detectron2's own Mask R-CNN (the model zoo's common/models/mask_rcnn_fpn.py, R50-FPN)
whose ROI heads sample proposals with the plugin's sampler: FRCNNROIHeads is
StandardROIHeads with the sampler as an injected object, here the paper's BalancedRandomSampler
with its own seed (or OHEMSampler, or one of your own); boxes, masks and everything else are
detectron2's. detectron2's COCO 1x recipe::

    python tools/lazy_train_net.py --config-file configs/lazy/mask_rcnn_R50_FPN_frcnn_sampler.py
"""
from detectron2.config import LazyCall as L

from frcnn_plugin.lazy import checked_dataloader, model_zoo_config
from frcnn_plugin.modeling import FRCNNROIHeads
from frcnn_plugin.modeling.sampling import BalancedRandomSampler

model = model_zoo_config("common/models/mask_rcnn_fpn.py").model
model.roi_heads._target_ = FRCNNROIHeads
model.roi_heads.sampler = L(BalancedRandomSampler)(
    batch_size_per_image="${..batch_size_per_image}",   # 512 RoIs per image
    positive_fraction="${..positive_fraction}",         # <= 25 % foreground
    bg_label="${..num_classes}",
    seed=0,
)
model.backbone.bottom_up.freeze_at = 2

dataloader = checked_dataloader(model_zoo_config("common/data/coco.py").dataloader)
dataloader.train.mapper.use_instance_mask = True     # masks for the mask head
optimizer = model_zoo_config("common/optim.py").SGD
lr_multiplier = model_zoo_config("common/coco_schedule.py").lr_multiplier_1x
train = model_zoo_config("common/train.py").train
train.amp.precision = "auto"  # with train.amp.enabled (SOLVER.AMP): "auto", "bf16" or "fp16"
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.output_dir = "output/mask_rcnn_R50_FPN_frcnn_sampler_lazy"
