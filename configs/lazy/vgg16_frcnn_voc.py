"""VGG16 Faster R-CNN on PASCAL VOC 2007 (trainval -> test), the paper's VOC recipe (Table 3:
69.9 mAP), as a Python config: the twin of configs/vgg16_frcnn_voc.yaml. Schedule for 1 GPU,
1 image per mini-batch: lr 0.001 for 60k mini-batches, then 0.0001 for 20k. Evaluated by the
data set's evaluator_type (PascalVOCDetectionEvaluator: VOC07 11-point AP50 as "AP50")::

    python tools/lazy_train_net.py --config-file configs/lazy/vgg16_frcnn_voc.py
"""
from .vgg16_frcnn_coco import dataloader, model, optimizer, train  # noqa: F401

from frcnn_plugin.lazy import multistep_lr_multiplier

model.roi_heads.num_classes = 20

dataloader.train.dataset.names = "voc_2007_trainval"
dataloader.train.total_batch_size = 1
dataloader.test.dataset.names = "voc_2007_test"

optimizer.lr = 0.001
lr_multiplier = multistep_lr_multiplier(80000, steps=[60000], warmup_iters=1000)

train.output_dir = "output/vgg16_frcnn_voc07_lazy"
train.max_iter = 80000
train.checkpointer.period = 10000
train.eval_period = 0
