"""Swap: detectron2's own RetinaNet (the model zoo's common/models/retinanet.py, R50-FPN) with the
plugin's FRCNNAnchorGenerator making its octave anchors (base = each level's stride, scales
4 x 2^(i/3), i = 0, 1, 2: P3 32, 40.3, 50.8 px ... P7 512, 645.1, 812.7 px), the Python twin of
configs/retinanet_R50_FPN_octave_anchors.yaml; detectron2's COCO 1x recipe::

    python tools/lazy_train_net.py --config-file configs/lazy/retinanet_R50_FPN_octave_anchors.py
"""
from detectron2.config import LazyCall as L

from frcnn_plugin.lazy import checked_dataloader, model_zoo_config
from frcnn_plugin.modeling import FRCNNAnchorGenerator

model = model_zoo_config("common/models/retinanet.py").model
model.anchor_generator = L(FRCNNAnchorGenerator)(
    strides=[8, 16, 32, 64, 128],
    base_sizes=[],                    # [] = each level's stride
    octave_base_scale=4.0,
    scales_per_octave=3,
    aspect_ratios=[0.5, 1.0, 2.0],    # h / w
    offset=0.0,                       # detectron2's RetinaNet: centres at stride x i
)
model.backbone.bottom_up.freeze_at = 2
model.smooth_l1_beta = 0.0

dataloader = checked_dataloader(model_zoo_config("common/data/coco.py").dataloader)
optimizer = model_zoo_config("common/optim.py").SGD
optimizer.lr = 0.01                   # RetinaNet's learning rate
lr_multiplier = model_zoo_config("common/coco_schedule.py").lr_multiplier_1x
train = model_zoo_config("common/train.py").train
train.amp.precision = "auto"  # with train.amp.enabled (SOLVER.AMP): "auto", "bf16" or "fp16"
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.output_dir = "output/retinanet_R50_FPN_octave_anchors_lazy"
