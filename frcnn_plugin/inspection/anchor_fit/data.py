"""Extracting the boxes: a data set's GT boxes, resized as the test-time pipeline resizes each
image (``ResizeShortestEdge(INPUT.MIN_SIZE_TEST, INPUT.MAX_SIZE_TEST)``), from the records'
annotations and image sizes only (no image is read)."""
from typing import List, Sequence, Tuple

import numpy as np

from detectron2.data.transforms import ResizeShortestEdge
from detectron2.structures import BoxMode

from ...errors import DataError

__all__ = ["dataset_gt_boxes"]


def dataset_gt_boxes(
    dataset_dicts: Sequence[dict], min_size: int, max_size: int, max_images: int = 0
) -> List[Tuple[Tuple[int, int], np.ndarray]]:
    """GT boxes of each image, resized as ``ResizeShortestEdge(min_size, max_size)`` resizes it.

    Args:
        dataset_dicts (list[dict]): detectron2 records with ``height``, ``width`` and
            ``annotations`` (``bbox``, ``bbox_mode``); crowd boxes are skipped.
        min_size, max_size (int): INPUT.MIN_SIZE_TEST / INPUT.MAX_SIZE_TEST.
        max_images (int): use only the first ``max_images`` records (0: all).

    Returns:
        list of ((height, width) after resizing, (G, 4) float XYXY boxes in resized pixels),
        for the images with at least one box of positive size.
    """
    out = []
    records = dataset_dicts[:max_images] if max_images else dataset_dicts
    for r in records:
        if "height" not in r or "width" not in r:
            raise DataError(
                "Record {!r} has no height/width; the anchor analysis reads image sizes from the "
                "records, not from the files".format(r.get("file_name", r.get("image_id")))
            )
        h, w = int(r["height"]), int(r["width"])
        nh, nw = ResizeShortestEdge.get_output_shape(h, w, int(min_size), int(max_size))
        boxes = [
            BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS)
            for a in r.get("annotations", [])
            if a.get("iscrowd", 0) == 0
        ]
        if not boxes:
            continue
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * [nw / w, nh / h, nw / w, nh / h]
        b = b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]
        if len(b):
            out.append(((nh, nw), b))
    return out
