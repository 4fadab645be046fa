"""One image as the model sees it at test time, with its ground truth, for the inspection tools.

The image is read as detectron2's data pipeline reads it (``cfg.INPUT.FORMAT``) and resized by
the test-time augmentation the config implies, ``ResizeShortestEdge(INPUT.MIN_SIZE_TEST,
INPUT.MAX_SIZE_TEST)``; ground-truth boxes go through the same transform
(:func:`detectron2.data.detection_utils.transform_instance_annotations`).
"""
import os
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BoxMode, Instances

from ..data.checks import load_dataset_dicts
from ..data.mappers import BAD_IMAGE_ERRORS
from ..errors import BadImageError, MissingFileError, UserError

__all__ = [
    "InspectionInput", "test_resize", "read_image", "load_image_input", "load_dataset_input"
]


@dataclass
class InspectionInput:
    """One preprocessed image.

    Attributes:
        inputs (dict): the model's input: ``image`` (3, H, W) tensor in ``cfg.INPUT.FORMAT``,
            resized; ``height``, ``width``: the original size.
        image_rgb (ndarray): (H, W, 3) uint8 RGB of the resized image (for pictures).
        gt (Instances or None): ``gt_boxes`` (XYXY, resized-input pixels) and ``gt_classes``;
            None when the image has no ground truth.
        original_size (tuple[int, int]): (height, width) before resizing.
        source (str): where the image came from (a file, or "dataset[index]").
    """

    inputs: dict
    image_rgb: np.ndarray
    gt: Optional[Instances]
    original_size: tuple
    source: str

    @property
    def image_size(self):
        """(height, width) after resizing."""
        return tuple(self.image_rgb.shape[:2])


def test_resize(cfg) -> T.Augmentation:
    """The data pipeline's test-time resize:
    ``ResizeShortestEdge(INPUT.MIN_SIZE_TEST, INPUT.MAX_SIZE_TEST)``."""
    return T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")


def _make_input(cfg, image: np.ndarray, annos, source: str) -> InspectionInput:
    """Resize ``image`` (HWC in cfg.INPUT.FORMAT) and its annotations (None: no GT)."""
    original_size = tuple(image.shape[:2])
    aug_input = T.AugInput(image)
    transforms = T.AugmentationList([test_resize(cfg)])(aug_input)
    image = aug_input.image
    gt = None
    if annos is not None:
        annos = [
            utils.transform_instance_annotations(a, transforms, image.shape[:2])
            for a in annos
            if a.get("iscrowd", 0) == 0
        ]
        gt = utils.filter_empty_instances(utils.annotations_to_instances(annos, image.shape[:2]))
    inputs = {
        "image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
        "height": original_size[0],
        "width": original_size[1],
    }
    rgb = utils.convert_image_to_rgb(image, cfg.INPUT.FORMAT)
    return InspectionInput(inputs, np.ascontiguousarray(rgb), gt, original_size, source)


def read_image(path: str, image_format: str, record: Optional[dict] = None) -> np.ndarray:
    """detectron2's ``read_image``, with errors that name the file: ``MissingFileError`` for a
    missing file, ``BadImageError`` for one that is not a readable image (or, with a data set
    ``record``, not of the record's size)."""
    if "://" not in path and not os.path.isfile(path):
        raise MissingFileError("Image not found: {}".format(path))
    try:
        image = utils.read_image(path, format=image_format)
        if record is not None:
            utils.check_image_size(record, image)
    except BAD_IMAGE_ERRORS as e:
        raise BadImageError("Cannot read image {} ({}: {}); allowed: an image file PIL can read "
                            "(PNG, JPEG, ...)".format(path, type(e).__name__, e)) from e
    return image


def load_image_input(
    cfg, path: str, gt_boxes: Optional[Sequence[Sequence[float]]] = None,
    gt_classes: Optional[Sequence[int]] = None,
) -> InspectionInput:
    """An image file, optionally with GT boxes given by hand.

    Args:
        path (str): image file.
        gt_boxes (list[list[float]] or None): XYXY boxes in original-image pixels; None (or
            empty): the image has no ground truth.
        gt_classes (list[int] or None): class of each box (default 0).
    """
    image = read_image(path, cfg.INPUT.FORMAT)
    annos = None
    if gt_boxes:
        classes = list(gt_classes) if gt_classes is not None else [0] * len(gt_boxes)
        annos = [
            {"bbox": [float(v) for v in b], "bbox_mode": BoxMode.XYXY_ABS, "category_id": int(c)}
            for b, c in zip(gt_boxes, classes)
        ]
    return _make_input(cfg, image, annos, path)


def load_dataset_input(cfg, dataset_name: str, index: int = 0) -> InspectionInput:
    """Image ``index`` of a registered data set (``DatasetCatalog``, through
    :func:`frcnn_plugin.data.checks.load_dataset_dicts`), with its annotations.

    Raises:
        UserError: the data set is not registered or unreadable, ``index`` is out of range,
            the image is missing or unreadable.
    """
    dicts = load_dataset_dicts(dataset_name)
    if not 0 <= index < len(dicts):
        raise UserError(
            "--index {} is out of range; allowed: 0 ... {} (data set {!r} has {} images)".format(
                index, len(dicts) - 1, dataset_name, len(dicts)
            )
        )
    record = dicts[index]
    image = read_image(record["file_name"], cfg.INPUT.FORMAT, record)
    return _make_input(
        cfg, image, record.get("annotations", []), "{}[{}]".format(dataset_name, index)
    )
