"""Benchmark inputs: a registered data set, or generated COCO-shaped images.

Every model of one benchmark run gets the **same** inputs: data-set dicts mapped once by the
config's :class:`DatasetMapper` (resize, flip in training), kept in memory, in the same order.

``--synthetic coco`` writes JPEG images with COCO's shapes to a temporary folder and registers
them as a COCO-format data set, so they go through exactly the same loading path as real data:

* image sizes drawn from the most common (height, width) pairs of COCO 2017 (approximate
  frequencies, :data:`COCO_IMAGE_SIZES`); ResizeShortestEdge (600, max 1000) turns them into
  600x800, 600x899, 800x600, 563x1000, 600x600, ... inputs;
* on average ~7.3 boxes per image (geometric distribution, COCO train2017: 860k boxes / 118k
  images), box sizes 41 % small (< 32^2), 34 % medium, 25 % large (COCO's split), aspect ratios
  1/3 ... 3, 80 classes drawn uniformly;
* smooth random images with the boxes painted in, so that JPEG decoding costs about what it
  costs for photographs (pure noise would decode much slower).
"""
import json
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.utils.env import seed_all_rng

from frcnn_plugin.data import FRCNNDatasetMapper
from frcnn_plugin.data.checks import load_test_dataset_dicts, load_train_dataset_dicts

__all__ = [
    "COCO_IMAGE_SIZES",
    "SYNTHETIC_COCO_NUM_CLASSES",
    "sample_coco_image_sizes",
    "write_synthetic_coco",
    "register_synthetic_coco",
    "dataset_dicts",
    "map_inputs",
]

logger = logging.getLogger(__name__)

# (height, width): approximate frequency among COCO 2017 images (the 13 most common shapes).
COCO_IMAGE_SIZES: Dict[Tuple[int, int], float] = {
    (480, 640): 0.32,
    (427, 640): 0.18,
    (640, 480): 0.10,
    (640, 427): 0.07,
    (425, 640): 0.05,
    (426, 640): 0.05,
    (424, 640): 0.04,
    (360, 640): 0.04,
    (512, 640): 0.03,
    (612, 612): 0.03,
    (640, 640): 0.03,
    (375, 500): 0.03,
    (500, 375): 0.03,
}
SYNTHETIC_COCO_NUM_CLASSES = 80
# COCO's box-size split (sqrt of area, original pixels): small < 32, medium < 96, large.
_BOX_SIZE_BINS = ((0.41, 8, 32), (0.34, 32, 96), (0.25, 96, None))
_MEAN_BOXES_PER_IMAGE = 7.3


def sample_coco_image_sizes(rng: np.random.RandomState, num: int) -> List[Tuple[int, int]]:
    """``num`` (height, width) pairs drawn from :data:`COCO_IMAGE_SIZES`."""
    sizes = list(COCO_IMAGE_SIZES)
    p = np.array([COCO_IMAGE_SIZES[s] for s in sizes])
    idx = rng.choice(len(sizes), size=num, p=p / p.sum())
    return [sizes[i] for i in idx]


def _sample_boxes(rng, height, width, num_classes, num_boxes=None):
    """COCO-like boxes (XYWH, original pixels) and category ids (1-based); ``num_boxes`` of
    them, or a COCO-like count (geometric, mean 7.3, at most 50) when None."""
    n = num_boxes if num_boxes is not None else int(
        min(rng.geometric(1.0 / _MEAN_BOXES_PER_IMAGE), 50))
    probs = np.array([b[0] for b in _BOX_SIZE_BINS])
    boxes, classes = [], []
    for _ in range(n):
        _, lo, hi = _BOX_SIZE_BINS[rng.choice(len(_BOX_SIZE_BINS), p=probs)]
        hi = min(hi or 10**9, 0.9 * min(height, width))
        side = rng.uniform(lo, max(hi, lo + 1))
        ratio = float(np.exp(rng.uniform(np.log(1 / 3), np.log(3))))  # h / w
        w = min(side / np.sqrt(ratio), width - 1.0)
        h = min(side * np.sqrt(ratio), height - 1.0)
        x = rng.uniform(0, width - w)
        y = rng.uniform(0, height - h)
        boxes.append([round(x, 2), round(y, 2), round(w, 2), round(h, 2)])
        classes.append(int(rng.randint(num_classes)) + 1)
    return boxes, classes


def _draw(rng, height, width, boxes):
    """A smooth random image (uint8 HxWx3) with the boxes painted in flat colours."""
    small = rng.randint(0, 256, size=(max(height // 40, 2), max(width // 40, 2), 3))
    image = np.asarray(
        Image.fromarray(small.astype(np.uint8)).resize((width, height), Image.BILINEAR)
    ).copy()
    for x, y, w, h in boxes:
        image[int(y) : int(y + h), int(x) : int(x + w)] = rng.randint(0, 256, size=3)
    noise = rng.randint(-8, 9, size=image.shape)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def write_synthetic_coco(
    root: str,
    num_images: int,
    seed: int = 0,
    image_size: Optional[Tuple[int, int]] = None,
    num_classes: int = SYNTHETIC_COCO_NUM_CLASSES,
    boxes_per_image: Optional[int] = None,
) -> str:
    """Write ``num_images`` COCO-shaped JPEG images and a COCO annotation file under ``root``.

    Args:
        root (str): output folder (created).
        num_images (int): number of images.
        seed (int): seed; the same arguments give the same files.
        image_size (tuple[int, int] or None): (height, width) of every image; None: COCO's
            sizes (:func:`sample_coco_image_sizes`).
        num_classes (int): number of categories (ids 1 ... num_classes).
        boxes_per_image (int or None): exactly this many boxes in every image; None: a
            COCO-like count per image.

    Returns:
        str: the annotation file's path.
    """
    rng = np.random.RandomState(seed)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    sizes = (
        [tuple(image_size)] * num_images
        if image_size is not None
        else sample_coco_image_sizes(rng, num_images)
    )
    images, annotations = [], []
    for i, (h, w) in enumerate(sizes):
        boxes, classes = _sample_boxes(rng, h, w, num_classes, boxes_per_image)
        file_name = "{:06d}.jpg".format(i)
        Image.fromarray(_draw(rng, h, w, boxes)).save(
            os.path.join(root, "images", file_name), quality=90
        )
        images.append({"id": i + 1, "file_name": file_name, "height": h, "width": w})
        for box, cls in zip(boxes, classes):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": cls,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": k + 1, "name": "class_{}".format(k + 1)} for k in range(num_classes)]
    json_file = os.path.join(root, "annotations.json")
    with open(json_file, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return json_file


def register_synthetic_coco(name: str, root: str, num_images: int, seed: int = 0,
                            image_size: Optional[Tuple[int, int]] = None,
                            boxes_per_image: Optional[int] = None) -> str:
    """Write (:func:`write_synthetic_coco`) and register a synthetic COCO-shaped data set.

    Returns:
        str: ``name``.
    """
    json_file = write_synthetic_coco(root, num_images, seed=seed, image_size=image_size,
                                     boxes_per_image=boxes_per_image)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, json_file, os.path.join(root, "images"))
    return name


def dataset_dicts(cfg, name: str, is_train: bool) -> List[dict]:
    """The images of data set ``name`` through the plugin's one loader and its checks
    (:mod:`frcnn_plugin.data.checks`): as the trainer's (invalid boxes dropped, empty images
    filtered by the config) or the evaluator's (every image file present)."""
    if is_train:
        return load_train_dataset_dicts(cfg, [name])
    return load_test_dataset_dicts(cfg, name)


def map_inputs(cfg, dicts: Sequence[dict], num: int, is_train: bool, seed: int = 0) -> List[dict]:
    """The first ``num`` dicts (cycled when fewer) through the config's
    ``FRCNNDatasetMapper(cfg, is_train)``, with seeded augmentations: model inputs as detectron2's
    loaders produce them ("image" uint8 CHW tensor, "height"/"width", "instances" in
    training)."""
    if not dicts:
        raise ValueError("The data set is empty (after filtering images without annotations)")
    seed_all_rng(seed)
    mapper = FRCNNDatasetMapper(cfg, is_train)
    return [mapper(dict(dicts[i % len(dicts)])) for i in range(num)]
