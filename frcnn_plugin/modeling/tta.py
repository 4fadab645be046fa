"""Test-time augmentation (TTA) for the plugin's detectors: detectron2's
``GeneralizedRCNNWithTTA`` and ``DatasetMapperTTA`` with detectron2's keys (``TEST.AUG.ENABLED``,
``TEST.AUG.MIN_SIZES``, ``TEST.AUG.MAX_SIZE``, ``TEST.AUG.FLIP``).

Each test image is run at every size of ``MIN_SIZES`` (short edge, long edge at most
``MAX_SIZE``), also flipped with ``FLIP``; the boxes of all runs are mapped back to the original
image and merged by per-class NMS (``MODEL.ROI_HEADS.NMS_THRESH_TEST``, at most
``TEST.DETECTIONS_PER_IMAGE``): detectron2's own code, unchanged.

:class:`~frcnn_plugin.modeling.meta_arch.FRCNNGeneralizedRCNN` needs each input's original
size (its RPN drops proposals smaller than ``MIN_SIZE`` pixels of the original image).
detectron2's TTA mapper copies the input's ``height``/``width`` into every augmented input,
which is what the model reads; :class:`FRCNNGeneralizedRCNNWithTTA` only removes the training
mapper's crop scale (``frcnn_input_scale``) from the augmented inputs, since it describes the
loader's resize, not the TTA's. It extends detectron2's class at ``_get_augmented_inputs``,
the step that makes the augmented inputs; everything else is inherited.

Python configs have no ``TEST.AUG``: :func:`tta_config` makes the few keys the wrapper reads
from plain values (see :func:`frcnn_plugin.engine.lazy_trainer.lazy_test_with_tta`).
"""
from detectron2.config import get_cfg
from detectron2.modeling import GeneralizedRCNN, GeneralizedRCNNWithTTA
from torch.nn.parallel import DistributedDataParallel

from ..data.dataset_mapper import INPUT_SCALE_KEY
from ..errors import ConfigError

__all__ = ["FRCNNGeneralizedRCNNWithTTA", "check_tta_model", "tta_config"]


def check_tta_model(cfg, model):
    """A :class:`ConfigError` for what detectron2's TTA refuses with a bare assertion: a
    model that is not a ``GeneralizedRCNN`` (e.g. RetinaNet), keypoints, precomputed
    proposals, and for empty or non-positive sizes."""
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    problems = []
    if not isinstance(inner, GeneralizedRCNN):
        problems.append("the model is a {} (allowed: GeneralizedRCNN and its subclasses, e.g. "
                        "FRCNNGeneralizedRCNN)".format(type(inner).__name__))
    if cfg.MODEL.KEYPOINT_ON:
        problems.append("MODEL.KEYPOINT_ON=True (allowed: False)")
    if cfg.MODEL.LOAD_PROPOSALS:
        problems.append("MODEL.LOAD_PROPOSALS=True (allowed: False)")
    sizes = list(cfg.TEST.AUG.MIN_SIZES)
    if not sizes or any(int(s) <= 0 for s in sizes) or int(cfg.TEST.AUG.MAX_SIZE) <= 0:
        problems.append("TEST.AUG.MIN_SIZES={} / MAX_SIZE={} (allowed: one or more positive "
                        "sizes, a positive maximum)".format(tuple(sizes), cfg.TEST.AUG.MAX_SIZE))
    if problems:
        raise ConfigError("Test-time augmentation (TEST.AUG.ENABLED) cannot run: {}".format(
            "; ".join(problems)))


def tta_config(*, num_classes, nms_thresh, detections_per_image, min_sizes, max_size=4000,
               flip=True, mask_on=False):
    """A detectron2 ``CfgNode`` with the keys :class:`GeneralizedRCNNWithTTA` and
    ``DatasetMapperTTA`` read, from plain values (for models built from a Python config)."""
    cfg = get_cfg()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = int(num_classes)
    cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = float(nms_thresh)
    cfg.MODEL.MASK_ON = bool(mask_on)
    cfg.TEST.DETECTIONS_PER_IMAGE = int(detections_per_image)
    cfg.TEST.AUG.ENABLED = True
    cfg.TEST.AUG.MIN_SIZES = tuple(int(s) for s in min_sizes)
    cfg.TEST.AUG.MAX_SIZE = int(max_size)
    cfg.TEST.AUG.FLIP = bool(flip)
    return cfg


class FRCNNGeneralizedRCNNWithTTA(GeneralizedRCNNWithTTA):
    """detectron2's ``GeneralizedRCNNWithTTA`` (same arguments: ``cfg, model, tta_mapper=None,
    batch_size=3``) for the plugin's models; see the module docstring."""

    def __init__(self, cfg, model, tta_mapper=None, batch_size=3):
        check_tta_model(cfg, model)
        super().__init__(cfg, model, tta_mapper=tta_mapper, batch_size=batch_size)

    def _get_augmented_inputs(self, input):
        augmented_inputs, tfms = super()._get_augmented_inputs(input)
        for x in augmented_inputs:
            # the original size comes from height/width (kept by DatasetMapperTTA); a crop
            # scale recorded by the training mapper would describe another image
            x.pop(INPUT_SCALE_KEY, None)
        return augmented_inputs, tfms
