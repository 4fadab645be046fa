"""VGG16 Faster R-CNN on COCO 2017 (train2017 -> val2017), the paper's COCO recipe, as a Python
config: the twin of configs/vgg16_frcnn.yaml. Schedule for 8 GPUs, 1 image each (lr 0.003 for
240k mini-batches, then 0.0003 for 80k); with N GPUs scale the batch and lr by N/8::

    python tools/lazy_train_net.py --config-file configs/lazy/vgg16_frcnn_coco.py --num-gpus 8

Initialize from torchvision's ImageNet VGG16: python tools/convert_vgg_weights.py
(docs/training.md).
"""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from frcnn_plugin.lazy import checked_dataloader, model_zoo_config, multistep_lr_multiplier

from .common.models.vgg16_frcnn import model

MAX_ITER = 320000

model.roi_heads.num_classes = 80

dataloader = checked_dataloader(model_zoo_config("common/data/coco.py").dataloader)
dataloader.train.dataset.names = "coco_2017_train"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=[600], max_size=1000, sample_style="choice"),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.mapper.image_format = "RGB"
dataloader.train.total_batch_size = 8
dataloader.test.dataset.names = "coco_2017_val"
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=600, max_size=1000, sample_style="choice"),
]

optimizer = model_zoo_config("common/optim.py").SGD
optimizer.lr = 0.003
optimizer.momentum = 0.9
optimizer.weight_decay = 0.0005
lr_multiplier = multistep_lr_multiplier(MAX_ITER, steps=[240000], warmup_iters=1000)

train = model_zoo_config("common/train.py").train
train.amp.precision = "auto"  # with train.amp.enabled (SOLVER.AMP): "auto", "bf16" or "fp16"
train.output_dir = "output/vgg16_frcnn_coco_lazy"
train.init_checkpoint = "weights/vgg16_imagenet_d2.pth"
train.max_iter = MAX_ITER
train.checkpointer.period = 20000
train.eval_period = 0
train.seed = -1
train.nonfinite_loss = "error"
train.nonfinite_loss_max_skips = 10
train.sync_check_period = 0
