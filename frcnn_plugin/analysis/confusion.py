"""The confusion matrix of a detector, with a background row and column.

At an IoU threshold and a score threshold: the detections scoring at least the threshold, per
image, highest score first, are matched greedily to the still unmatched GT box of highest IoU
(at least the threshold), of any class. A matched pair counts at (GT class, predicted class);
an unmatched detection at (background, predicted class): a false positive; an unmatched GT
box at (GT class, background): a missed object. Crowd GT boxes are left out.
"""
from typing import List, Tuple

import numpy as np
from pycocotools import mask as mask_util

__all__ = ["confusion_matrix"]


def confusion_matrix(gt, results: List[dict], iou_thresh: float = 0.5,
                     score_thresh: float = 0.5) -> Tuple[np.ndarray, List[str]]:
    """
    Args:
        gt: ``pycocotools.coco.COCO`` ground truth.
        results (list[dict]): COCO results (``image_id``, ``category_id``, ``bbox``, ``score``).

    Returns:
        (matrix, names): (K + 1) x (K + 1) int64 counts, rows GT class then background, columns
        predicted class then background; ``names`` the K class names and "background".
    """
    cat_ids = gt.getCatIds()
    index = {c: i for i, c in enumerate(cat_ids)}
    k = len(cat_ids)
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    by_image = {}
    for r in results:
        if r["score"] >= score_thresh:
            by_image.setdefault(r["image_id"], []).append(r)
    for image_id in gt.getImgIds():
        anns = [a for a in gt.loadAnns(gt.getAnnIds(imgIds=[image_id])) if not a.get("iscrowd")]
        dets = sorted(by_image.get(image_id, []), key=lambda r: -r["score"])
        matched = np.zeros(len(anns), dtype=bool)
        if anns and dets:
            iou = mask_util.iou([d["bbox"] for d in dets], [a["bbox"] for a in anns],
                                [0] * len(anns))
        for i, d in enumerate(dets):
            j = -1
            if anns:
                candidates = np.where(~matched & (iou[i] >= iou_thresh))[0]
                if len(candidates):
                    j = int(candidates[np.argmax(iou[i][candidates])])
            if j >= 0:
                matched[j] = True
                matrix[index[anns[j]["category_id"]], index[d["category_id"]]] += 1
            else:
                matrix[k, index[d["category_id"]]] += 1
        for a, m in zip(anns, matched):
            if not m:
                matrix[index[a["category_id"]], k] += 1
    names = [c["name"] for c in gt.loadCats(cat_ids)] + ["background"]
    return matrix, names
