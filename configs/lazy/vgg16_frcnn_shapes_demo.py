"""The embedded demo as a Python config, the twin of configs/vgg16_frcnn_shapes_demo.yaml:
VGG16-BN Faster R-CNN trained from scratch on the generated shapes, on CPU, with the same
model, data, schedule and seed (the same run through tools/lazy_train_net.py)::

    python tools/lazy_train_net.py --config-file configs/lazy/vgg16_frcnn_shapes_demo.py
"""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from frcnn_plugin.lazy import checked_dataloader, model_zoo_config, multistep_lr_multiplier

from .common.models.vgg16_frcnn import model

SEED = 42
IMS_PER_BATCH = 8
MAX_ITER = 250

# --- model: the paper's VGG16 Faster R-CNN, batch-norm, from scratch, 3 classes, 128 px
model.channels_last = False          # no faster at 128 px (docs/benchmarks*.md)
model.backbone.norm = "BN"           # the batch-norm variant trains from scratch
model.backbone.freeze_at = 0         # train every layer
model.proposal_generator.anchor_generator.scales = [[2, 4, 6]]  # 32, 64, 96 px anchors
model.proposal_generator.min_box_size = 0
model.roi_heads.num_classes = 3
model.roi_heads.batch_size_per_image = 64
model.roi_heads.box_head.fc_dim = 512
model.roi_heads.box_head.dropout = 0.0
# not the paper's, measured better here (docs/accuracy.md): RoIAlign and
# the predictor's nn.Linear initialization
model.roi_heads.box_pooler.pooler_type = "ROIAlignV2"
model.roi_heads.predictor_init = "pytorch"

# --- data: the generated shapes (registered by importing frcnn_plugin), 128 px, RGB
dataloader = checked_dataloader(model_zoo_config("common/data/coco.py").dataloader)
dataloader.train.dataset.names = "frcnn_shapes_train"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=[128], max_size=128, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.mapper.image_format = "RGB"
dataloader.train.total_batch_size = IMS_PER_BATCH
dataloader.train.num_workers = 0
dataloader.train.seed = SEED
dataloader.test.dataset.names = "frcnn_shapes_val"
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=128, max_size=128, sample_style="choice"),
]
dataloader.test.num_workers = 0

# --- solver: SGD lr 0.02, momentum 0.9, weight decay 5e-4; 50 warm-up iterations, x0.1 at 200
optimizer = model_zoo_config("common/optim.py").SGD
optimizer.lr = 0.02
optimizer.momentum = 0.9
optimizer.weight_decay = 0.0005
lr_multiplier = multistep_lr_multiplier(MAX_ITER, steps=[200], warmup_iters=50)

train = model_zoo_config("common/train.py").train
train.output_dir = "output/shapes_demo_lazy"
train.init_checkpoint = ""
train.max_iter = MAX_ITER
train.checkpointer.period = 100
train.eval_period = 0                # evaluated once, after the last iteration
train.log_period = 20
train.device = "cpu"
train.amp.enabled = False            # SOLVER.AMP.ENABLED: mixed-precision training
train.amp.precision = "auto"         # SOLVER.AMP.PRECISION: "auto", "bf16" or "fp16"
train.seed = SEED
train.nonfinite_loss = "error"       # SOLVER.NONFINITE_LOSS ("skip": skip such steps)
train.nonfinite_loss_max_skips = 10
train.sync_check_period = 0          # SOLVER.SYNC_CHECK_PERIOD
train.vis_period = 0                 # TEST.VIS_PERIOD: pictures of predictions in TensorBoard
train.vis_num_images = 4
train.vis_score_thresh = 0.5

# --- test-time augmentation (detectron2's TEST.AUG keys in lower case): off; with
# test.aug.enabled=True, tools/lazy_train_net.py --eval-only also evaluates with it
test = dict(aug=dict(enabled=False, min_sizes=[96, 128, 160], max_size=4000, flip=True))
