"""Opt-in pictures of predictions against GT during training, for TensorBoard.

:class:`PredictionVisHook` draws, every ``TEST.VIS_PERIOD`` iterations and after the last one,
the model's predictions (magenta, score >= ``TEST.VIS_SCORE_THRESH``) and the GT boxes (green)
on the first ``TEST.VIS_NUM_IMAGES`` images of ``DATASETS.TEST[0]``, and hands each picture to
detectron2's ``EventStorage.put_image`` (as ``val_predictions/<index>``, a (3, H, W) uint8 RGB
array); detectron2's ``TensorboardXWriter`` writes it to TensorBoard. Images are resized as at
test time; only the main process draws. ``TEST.VIS_PERIOD: 0`` (default) turns it off.

Wire it into a trainer with :func:`maybe_add_vis_hook` in ``build_hooks``::

    def build_hooks(self):
        return maybe_add_vis_hook(self, super().build_hooks())
"""
from typing import List, Optional

import torch

import detectron2.utils.comm as comm
from detectron2.config import configurable
from detectron2.data import DatasetCatalog
from detectron2.engine import HookBase, PeriodicWriter

from ..inspection import draw
from ..inspection.draw import Canvas, display_scale
from ..inspection.inputs import load_dataset_input

__all__ = ["PredictionVisHook", "insert_vis_hook", "maybe_add_vis_hook"]


class PredictionVisHook(HookBase):
    """Puts pictures of predictions vs GT on a few images into the trainer's EventStorage."""

    @configurable
    def __init__(self, *, period: int, dataset_name: str, input_cfg, num_images: int = 4,
                 score_thresh: float = 0.5, min_side: int = 256):
        """
        Args:
            period (int): draw every ``period`` iterations (and after the last); 0: never.
            dataset_name (str): a registered data set; its first ``num_images`` images are used.
            input_cfg (CfgNode): a config whose INPUT.FORMAT / MIN_SIZE_TEST / MAX_SIZE_TEST
                read and resize the images (as :func:`frcnn_plugin.inspection.load_dataset_input`).
            num_images (int): number of images, >= 1.
            score_thresh (float): draw predictions with a score >= this.
            min_side (int): pictures are zoomed by an integer factor to at least this size.
        """
        if int(period) < 0 or int(num_images) < 1:
            raise ValueError("TEST.VIS_PERIOD={!r} must be >= 0 and TEST.VIS_NUM_IMAGES={!r} >= 1"
                             .format(period, num_images))
        self.period = int(period)
        self.dataset_name = dataset_name
        self.input_cfg = input_cfg
        self.num_images = int(num_images)
        self.score_thresh = float(score_thresh)
        self.min_side = int(min_side)
        self._inputs = None

    @classmethod
    def from_config(cls, cfg):
        names = list(cfg.DATASETS.TEST) or list(cfg.DATASETS.TRAIN)
        return {
            "period": cfg.TEST.VIS_PERIOD,
            "dataset_name": names[0],
            "input_cfg": cfg,
            "num_images": cfg.TEST.VIS_NUM_IMAGES,
            "score_thresh": cfg.TEST.VIS_SCORE_THRESH,
        }

    def _load_inputs(self):
        n = min(self.num_images, len(DatasetCatalog.get(self.dataset_name)))
        return [load_dataset_input(self.input_cfg, self.dataset_name, i) for i in range(n)]

    @torch.no_grad()
    def draw(self, model) -> List:
        """Pictures of the model's predictions vs GT, one (3, H, W) uint8 array per image."""
        if self._inputs is None:
            self._inputs = self._load_inputs()
        model = getattr(model, "module", model)  # DistributedDataParallel
        was_training = model.training
        model.eval()
        try:
            outputs = [model([inp.inputs])[0]["instances"].to("cpu") for inp in self._inputs]
        finally:
            model.train(was_training)
        pictures = []
        for inp, out in zip(self._inputs, outputs):
            h, w = inp.image_size
            boxes = out.pred_boxes[out.scores >= self.score_thresh].clone()
            boxes.scale(w / inp.original_size[1], h / inp.original_size[0])
            canvas = Canvas(inp.image_rgb, display_scale(inp.image_size, self.min_side))
            canvas.boxes(boxes.tensor.tolist(), draw.PREDICTION, width=1)
            if inp.gt is not None:
                canvas.boxes(inp.gt.gt_boxes.tensor.tolist(), draw.GT, width=2)
            pictures.append(canvas.to_chw())
        return pictures

    def put_images(self, storage, model):
        """Draw and put every picture into ``storage`` as ``val_predictions/<index>``."""
        for i, picture in enumerate(self.draw(model)):
            storage.put_image("val_predictions/{}".format(i), picture)

    def after_step(self):
        if self.period <= 0 or not comm.is_main_process():
            return
        next_iter = self.trainer.iter + 1
        if next_iter % self.period == 0 or next_iter == self.trainer.max_iter:
            self.put_images(self.trainer.storage, self.trainer.model)


def maybe_add_vis_hook(trainer, hooks: list, cfg=None) -> list:
    """Insert a :class:`PredictionVisHook` into ``hooks`` when ``TEST.VIS_PERIOD > 0``.

    It goes just before the first ``PeriodicWriter`` (so a picture is written in the iteration
    it is drawn), else at the end. Returns ``hooks`` (modified in place).

    Args:
        trainer: a DefaultTrainer (its ``cfg`` is used unless ``cfg`` is given).
        hooks (list[HookBase]): e.g. ``DefaultTrainer.build_hooks()``'s result.
    """
    cfg = cfg if cfg is not None else trainer.cfg
    if cfg.TEST.get("VIS_PERIOD", 0) <= 0:
        return hooks
    return insert_vis_hook(hooks, PredictionVisHook(cfg))


def insert_vis_hook(hooks: list, hook) -> list:
    """Insert ``hook`` just before the first ``PeriodicWriter`` of ``hooks`` (else at the end),
    in place; returns ``hooks``."""
    index: Optional[int] = next(
        (i for i, h in enumerate(hooks) if isinstance(h, PeriodicWriter)), len(hooks))
    hooks.insert(index, hook)
    return hooks
